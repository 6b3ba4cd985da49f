//! Contextual Thompson sampling: one Bayesian regression per offer over the
//! encoded context, `linear-ts` (Gaussian likelihood, as in Agrawal & Goyal
//! 2013) or `logistic-ts` (Bernoulli likelihood with a Gaussian posterior
//! kept by online Laplace steps, as in Chapelle & Li 2011). Each offer's score
//! is a 1-D draw from its predictive distribution, so the propensity of the
//! chosen offer is a 1-D integral. Updates are rank-1: O(d^2).

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::thompson::{self, GaussianArm, Link, sigmoid};
use super::{Features, Outcome, Policy, PolicyError};
use crate::context::Context;
use crate::features::Encoder;
use crate::linalg::{Sparse, SymMatrix, dot_sparse};

/// The regression's likelihood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Likelihood {
    /// Redemption rate = x.w, Gaussian noise.
    Linear,
    /// Redemption rate = sigmoid(x.w), Bernoulli outcome.
    Logistic,
}

impl Likelihood {
    fn link(self) -> Link {
        match self {
            Likelihood::Linear => Link::Identity,
            Likelihood::Logistic => Link::Logistic,
        }
    }
}

/// Hyperparameters of a contextual campaign.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ContextualConfig {
    /// The likelihood.
    pub likelihood: Likelihood,
    /// Prior variance of each weight.
    pub prior_variance: f64,
    /// Prior redemption rate, the intercept's prior mean (as a rate).
    pub prior_rate: f64,
    /// Observation noise variance (linear only).
    pub noise_variance: f64,
    /// Multiplies the predictive standard deviation when sampling (1 = plain
    /// Thompson sampling; smaller explores less). Default 0.3: posterior
    /// sampling over-explores with many features and few positives, as
    /// Chapelle & Li (2011) observed; measured in BENCHMARKS.md.
    pub exploration: f64,
    /// Evidence of an offer halves every this many of its observations
    /// (None: no forgetting).
    pub half_life: Option<f64>,
}

impl ContextualConfig {
    /// Defaults for a likelihood.
    pub fn new(likelihood: Likelihood) -> Self {
        match likelihood {
            Likelihood::Linear => ContextualConfig {
                likelihood,
                prior_variance: 0.01,
                prior_rate: 0.05,
                noise_variance: 0.05,
                exploration: 0.3,
                half_life: None,
            },
            Likelihood::Logistic => ContextualConfig {
                likelihood,
                prior_variance: 0.1,
                prior_rate: 0.05,
                noise_variance: 1.0,
                exploration: 0.3,
                half_life: None,
            },
        }
    }
}

/// A Gaussian posterior over one offer's weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GaussianPosterior {
    /// Posterior mean.
    pub mean: Vec<f64>,
    /// Posterior covariance.
    pub cov: SymMatrix,
    /// Observations absorbed.
    pub observations: u64,
    /// Sum of the predicted rates at the observed contexts (before each update).
    pub predicted_sum: f64,
}

impl GaussianPosterior {
    /// The prior: independent weights of variance `config.prior_variance`,
    /// the intercept (column 0) centred on the prior rate.
    pub fn prior(dim: usize, config: &ContextualConfig) -> Self {
        let mut mean = vec![0.0; dim];
        if let Some(m) = mean.first_mut() {
            let r = config.prior_rate.clamp(1e-6, 1.0 - 1e-6);
            *m = match config.likelihood {
                Likelihood::Linear => r,
                Likelihood::Logistic => (r / (1.0 - r)).ln(),
            };
        }
        GaussianPosterior {
            mean,
            cov: SymMatrix::scaled_identity(dim, config.prior_variance),
            observations: 0,
            predicted_sum: 0.0,
        }
    }

    /// Predictive mean and variance of the latent score `x.w`.
    pub fn predictive(&self, x: &Sparse) -> (f64, f64) {
        (dot_sparse(&self.mean, x), self.cov.quad(x).max(1e-12))
    }

    /// Absorbs one observation `y` (1 redeemed, 0 not) at `x`.
    pub fn update(&mut self, x: &Sparse, y: f64, config: &ContextualConfig) {
        if let Some(h) = config.half_life {
            self.forget(h, config.prior_variance);
        }
        let (mu, s2) = self.predictive(x);
        let sx = self.cov.mul_sparse(x);
        let (gain, shrink) = match config.likelihood {
            Likelihood::Linear => {
                self.predicted_sum += mu;
                let denom = config.noise_variance + s2;
                ((y - mu) / denom, 1.0 / denom)
            }
            Likelihood::Logistic => {
                self.predicted_sum += sigmoid(mu);
                // Mode of N(z; mu, s2) x Bernoulli(y; sigmoid(z)) by Newton.
                let mut z = mu;
                for _ in 0..20 {
                    let p = sigmoid(z);
                    let step = ((y - p) - (z - mu) / s2) / (p * (1.0 - p) + 1.0 / s2);
                    z += step;
                    if step.abs() < 1e-10 {
                        break;
                    }
                }
                let p = sigmoid(z);
                let h = p * (1.0 - p);
                // At the mode (z - mu) / s2 = y - p.
                (y - p, h / (1.0 + h * s2))
            }
        };
        for (m, s) in self.mean.iter_mut().zip(&sx) {
            *m += s * gain;
        }
        self.cov.rank1_sub(&sx, shrink);
        self.observations += 1;
    }

    /// Inflates the covariance so that evidence halves every `half_life`
    /// observations, never beyond the prior variance.
    fn forget(&mut self, half_life: f64, prior_variance: f64) {
        let inflate = 0.5f64.powf(-1.0 / half_life.max(1.0));
        let cap = prior_variance / self.cov.max_diagonal().max(1e-300);
        let f = inflate.min(cap);
        if f > 1.0 {
            self.cov.scale(f);
        }
    }
}

/// Contextual Thompson sampling over one [`GaussianPosterior`] per offer.
#[derive(Debug, Clone)]
pub struct ContextualTs {
    encoder: Encoder,
    config: ContextualConfig,
    weights: Vec<f64>,
    models: Vec<GaussianPosterior>,
}

impl ContextualTs {
    /// A fresh model; `weights[i]` multiplies offer i's sampled rate.
    pub fn new(encoder: Encoder, config: ContextualConfig, weights: Vec<f64>) -> Self {
        let models = weights
            .iter()
            .map(|_| GaussianPosterior::prior(encoder.dim(), &config))
            .collect();
        ContextualTs {
            encoder,
            config,
            weights,
            models,
        }
    }

    /// The per-offer posteriors.
    pub fn models(&self) -> &[GaussianPosterior] {
        &self.models
    }

    /// The encoder.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// The Thompson arms of `candidates` at `x`.
    pub fn arms(&self, x: &Sparse, candidates: &[usize]) -> Vec<GaussianArm> {
        candidates
            .iter()
            .map(|&c| {
                let (mean, var) = self.models.get(c).map_or((0.0, 1.0), |m| m.predictive(x));
                GaussianArm {
                    mean,
                    sd: self.config.exploration.max(1e-6) * var.sqrt(),
                    link: self.config.likelihood.link(),
                    weight: self.weights.get(c).copied().unwrap_or(1.0),
                }
            })
            .collect()
    }
}

impl Policy for ContextualTs {
    fn features(&self, context: &Context) -> Result<Features, PolicyError> {
        let x = self
            .encoder
            .encode(context)
            .map_err(|e| PolicyError::Encoding(e.to_string()))?;
        Ok(Features {
            segment: String::new(),
            x,
        })
    }
    fn choose(&self, f: &Features, candidates: &[usize], rng: &mut dyn Rng) -> usize {
        let arms = self.arms(&f.x, candidates);
        thompson::argmax_draw(&arms, rng).map_or(candidates[0], |i| candidates[i])
    }
    fn propensity(&self, f: &Features, candidates: &[usize], offer: usize) -> f64 {
        match candidates.iter().position(|&c| c == offer) {
            Some(i) => thompson::win_probability(&self.arms(&f.x, candidates), i),
            None => 0.0,
        }
    }
    fn on_decision(&mut self, _: &Features, _: usize) {}
    fn on_outcome(&mut self, f: &Features, offer: usize, outcome: Outcome) {
        let y = f64::from(u8::from(matches!(outcome, Outcome::Redeemed { .. })));
        if let Some(m) = self.models.get_mut(offer) {
            m.update(&f.x, y, &self.config);
        }
    }
}
