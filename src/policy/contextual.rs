//! Contextual Thompson sampling: one Bayesian regression per offer over the
//! encoded context, `linear-ts` (Gaussian likelihood, as in Agrawal & Goyal
//! 2013) or `logistic-ts` (Bernoulli likelihood with a Gaussian posterior
//! kept by online Laplace steps, as in Chapelle & Li 2011). Each offer's score
//! is a 1-D draw from its predictive distribution, so the propensity of the
//! chosen offer is a 1-D integral. Updates are rank-1: O(d^2).

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::shared_prior::SharedPrior;
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
    /// Learn the prior variances from the campaign's offers
    /// ([`SharedPrior`]); false keeps `prior_variance` for every column.
    pub adaptive_prior: bool,
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
                adaptive_prior: true,
            },
            Likelihood::Logistic => ContextualConfig {
                likelihood,
                prior_variance: 0.1,
                prior_rate: 0.05,
                noise_variance: 1.0,
                exploration: 0.3,
                half_life: None,
                adaptive_prior: true,
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
    /// Observations absorbed (one per decision, one more per redemption).
    pub observations: u64,
    /// Decisions learned from.
    pub decisions: u64,
    /// Sum of the predicted redemption rates at those decisions' contexts.
    pub predicted_sum: f64,
}

impl GaussianPosterior {
    /// The prior: independent weights of variance `config.prior_variance`,
    /// the intercept (column 0) centred on the prior rate.
    pub fn prior(dim: usize, config: &ContextualConfig) -> Self {
        let mut mean = vec![0.0; dim];
        if let Some(m) = mean.first_mut() {
            *m = Self::configured_intercept(config);
        }
        GaussianPosterior {
            mean,
            cov: SymMatrix::scaled_identity(dim, config.prior_variance),
            observations: 0,
            decisions: 0,
            predicted_sum: 0.0,
        }
    }

    /// The intercept's prior mean for `config.prior_rate`.
    pub fn configured_intercept(config: &ContextualConfig) -> f64 {
        Self::intercept_for_rate(config.prior_rate.clamp(1e-6, 1.0 - 1e-6), config)
    }

    /// A redemption rate on the model's scale: itself for linear-ts, its
    /// logit for logistic-ts.
    pub fn intercept_for_rate(rate: f64, config: &ContextualConfig) -> f64 {
        match config.likelihood {
            Likelihood::Linear => rate,
            Likelihood::Logistic => (rate / (1.0 - rate)).ln(),
        }
    }

    /// Re-bases the posterior from prior mean `from` to `to` (the prior
    /// variances `variance` unchanged), exactly: the mean `S (P0 mu0 + b)`
    /// moves by `S P0 (to - from)`. O(d) per column whose mean moves.
    pub fn move_prior_mean(&mut self, from: &[f64], to: &[f64], variance: &[f64]) {
        let scaled: Vec<(u32, f64)> = from
            .iter()
            .zip(to)
            .zip(variance)
            .enumerate()
            .take(self.mean.len())
            .filter(|(_, ((a, b), _))| a != b)
            .map(|(i, ((a, b), v))| (i as u32, (b - a) / v))
            .filter(|(_, d)| d.is_finite())
            .collect();
        if scaled.is_empty() {
            return;
        }
        for (m, v) in self.mean.iter_mut().zip(self.cov.mul_sparse(&scaled)) {
            *m += v;
        }
    }

    /// Learns from a decision when it is made, as a non-redemption; a later
    /// redemption adds a positive observation ([`Self::learn_redemption`]).
    ///
    /// This is how the model copes with redemptions arriving days later: it
    /// never waits for the reward window, and it learns
    /// `q = p / (1 + p)` ("fake negative" training, Ktena et al. 2019), which
    /// is increasing in the redemption rate `p`, so the best offer is the
    /// same; [`Self::rate`] maps it back to `p`.
    pub fn learn_decision(&mut self, x: &Sparse, config: &ContextualConfig) {
        self.learn(x, false, config, None);
    }

    /// Learns that a decision was redeemed.
    pub fn learn_redemption(&mut self, x: &Sparse, config: &ContextualConfig) {
        self.learn(x, true, config, None);
    }

    /// [`Self::learn_decision`] (`redeemed` false) or
    /// [`Self::learn_redemption`] (true) under a prior with per-column
    /// variances `prior` (a learned prior; None: `config.prior_variance`),
    /// which bounds forgetting.
    pub fn learn(
        &mut self,
        x: &Sparse,
        redeemed: bool,
        config: &ContextualConfig,
        prior: Option<&[f64]>,
    ) {
        if !redeemed {
            let (mu, _) = self.predictive(x);
            self.predicted_sum += Self::rate(mu, config.likelihood);
            self.decisions += 1;
        }
        self.update_under(x, f64::from(u8::from(redeemed)), config, prior);
    }

    /// The redemption rate implied by a latent score under decision-time
    /// learning: `p = q / (1 - q)` where `q` is the modelled rate.
    pub fn rate(latent: f64, likelihood: Likelihood) -> f64 {
        let q = match likelihood {
            Likelihood::Linear => latent,
            Likelihood::Logistic => sigmoid(latent),
        }
        .clamp(0.0, 0.999);
        q / (1.0 - q)
    }

    /// Whether this posterior has learned nothing yet (it is its prior).
    pub fn learned_nothing(&self) -> bool {
        self.observations == 0 && self.decisions == 0
    }

    /// Predictive mean and variance of the latent score `x.w`.
    pub fn predictive(&self, x: &Sparse) -> (f64, f64) {
        (dot_sparse(&self.mean, x), self.cov.quad(x).max(1e-12))
    }

    /// Whether a decoded posterior is usable: mean and covariance agree on
    /// the dimension and hold finite numbers.
    pub fn is_well_formed(&self) -> bool {
        self.mean.len() == self.cov.dim()
            && self.cov.is_well_formed()
            && self.mean.iter().all(|m| m.is_finite())
    }

    /// Removes one observation `y` at `x` that [`GaussianPosterior::update`]
    /// absorbed earlier (erasure of a customer). Exact for linear regression
    /// without forgetting, whose posterior is a sum of per-observation
    /// terms; for logistic regression, or with forgetting, the observation
    /// is taken out as a Gaussian pseudo-observation at the current estimate,
    /// which is approximate. Returns whether it was exact. Leaves the
    /// posterior as it is (and returns false) when it is too narrow along
    /// `x` for the observation to have been part of it; the observation is
    /// still no longer counted (the campaign's rate counts redemptions as
    /// observations beyond decisions).
    pub fn unlearn(&mut self, x: &Sparse, y: f64, config: &ContextualConfig) -> bool {
        let (mu, s2) = self.predictive(x);
        let (noise, target) = match config.likelihood {
            Likelihood::Linear => (config.noise_variance, y),
            Likelihood::Logistic => {
                let p = sigmoid(mu);
                let h = (p * (1.0 - p)).max(1e-9);
                // The Laplace step is a Gaussian observation of the latent
                // score with variance 1/h and this target.
                (1.0 / h, mu + (y - p) / h)
            }
        };
        let denom = noise - s2;
        if denom <= 1e-12 * noise {
            self.observations = self.observations.saturating_sub(1);
            return false;
        }
        let sx = self.cov.mul_sparse(x);
        let gain = (mu - target) / denom;
        for (m, s) in self.mean.iter_mut().zip(&sx) {
            *m += s * gain;
        }
        self.cov.rank1_sub(&sx, -1.0 / denom);
        self.observations = self.observations.saturating_sub(1);
        config.likelihood == Likelihood::Linear && config.half_life.is_none()
    }

    /// Forgets a decision learned by [`GaussianPosterior::learn_decision`]
    /// (and, if `redeemed`, its [`GaussianPosterior::learn_redemption`]).
    /// Returns whether the subtraction was exact.
    pub fn unlearn_decision(
        &mut self,
        x: &Sparse,
        redeemed: bool,
        config: &ContextualConfig,
    ) -> bool {
        let mut exact = true;
        if redeemed {
            exact &= self.unlearn(x, 1.0, config);
        }
        exact &= self.unlearn(x, 0.0, config);
        let (mu, _) = self.predictive(x);
        self.predicted_sum = (self.predicted_sum - Self::rate(mu, config.likelihood)).max(0.0);
        self.decisions = self.decisions.saturating_sub(1);
        exact
    }

    /// Re-bases the posterior from a prior with per-column variances `old`
    /// and mean `mean0` (missing entries 0) to one with variances `new` and
    /// the same mean, keeping the evidence: with `D = diag(1/new - 1/old)`,
    /// the covariance becomes `(S^-1 + D)^-1` (one Sherman-Morrison step per
    /// changed column) and the mean `m - S' D (m - mean0)`. O(d^3) when
    /// every column changes.
    /// Returns the number of columns left on the old variance because the
    /// covariance there exceeds the old prior (which evidence never makes
    /// it; rounding or a forgetting bound could).
    pub fn rebase_prior(&mut self, old: &[f64], new: &[f64], mean0: &[f64]) -> usize {
        let mut skipped = 0;
        let dim = self.mean.len();
        let mut shift: Vec<(u32, f64)> = Vec::new();
        for (i, (o, n)) in old.iter().zip(new).enumerate().take(dim) {
            let di = 1.0 / n - 1.0 / o;
            if di == 0.0 || !di.is_finite() {
                continue;
            }
            let col = self.cov.column(i);
            let denom = 1.0 + di * col[i];
            // Positive whenever the covariance is below the old prior's, as
            // evidence keeps it; skip a column where rounding says otherwise.
            if denom <= 1e-9 {
                skipped += 1;
                continue;
            }
            self.cov.rank1_sub(&col, di / denom);
            let deviation = self.mean[i] - mean0.get(i).copied().unwrap_or(0.0);
            if deviation != 0.0 {
                shift.push((i as u32, di * deviation));
            }
        }
        // D m uses the new covariance S' = (S^-1 + D)^-1, complete only now.
        let delta = self.cov.mul_sparse(&shift);
        for (m, d) in self.mean.iter_mut().zip(delta) {
            *m -= d;
        }
        skipped
    }

    /// Absorbs one observation `y` (1 redeemed, 0 not) at `x`.
    pub fn update(&mut self, x: &Sparse, y: f64, config: &ContextualConfig) {
        self.update_under(x, y, config, None);
    }

    /// [`Self::update`] under per-column prior variances (see [`Self::learn`]).
    pub fn update_under(
        &mut self,
        x: &Sparse,
        y: f64,
        config: &ContextualConfig,
        prior: Option<&[f64]>,
    ) {
        let (mu, mut s2) = self.predictive(x);
        let mut sx = self.cov.mul_sparse(x);
        if let Some(half_life) = config.half_life {
            // Directional forgetting (Kulhavy 1987): inflate the variance along
            // x only, by 2^(1/half_life) per observation, never past the
            // prior's variance along x. Unobserved directions keep theirs, so
            // nothing winds up.
            let variance = |i: u32| {
                prior
                    .and_then(|p| p.get(i as usize))
                    .copied()
                    .unwrap_or(config.prior_variance)
            };
            let prior = x.iter().map(|&(i, v)| variance(i) * v * v).sum::<f64>();
            let f = 0.5f64.powf(-1.0 / half_life.max(1.0)).min(prior / s2);
            if f > 1.0 {
                self.cov.rank1_sub(&sx, -(f - 1.0) / s2);
                sx.iter_mut().for_each(|v| *v *= f);
                s2 *= f;
            }
        }
        let (gain, shrink) = match config.likelihood {
            Likelihood::Linear => {
                let denom = config.noise_variance + s2;
                ((y - mu) / denom, 1.0 / denom)
            }
            Likelihood::Logistic => {
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
}

/// Contextual Thompson sampling over one [`GaussianPosterior`] per offer.
#[derive(Debug, Clone)]
pub struct ContextualTs {
    encoder: Encoder,
    config: ContextualConfig,
    weights: Vec<f64>,
    models: Vec<GaussianPosterior>,
    /// The learned prior, when `config.adaptive_prior`.
    prior: Option<SharedPrior>,
    /// Per offer, its encoded offer features (empty: none); see
    /// [`Self::with_offer_features`].
    offer_features: Vec<Vec<(u32, f64)>>,
}

impl ContextualTs {
    /// A fresh model; `weights[i]` multiplies offer i's sampled rate.
    pub fn new(encoder: Encoder, config: ContextualConfig, weights: Vec<f64>) -> Self {
        let models = weights
            .iter()
            .map(|_| GaussianPosterior::prior(encoder.dim(), &config))
            .collect();
        ContextualTs {
            prior: config
                .adaptive_prior
                .then(|| SharedPrior::new(encoder.dim(), 0, &config)),
            encoder,
            config,
            weights,
            models,
            offer_features: Vec::new(),
        }
    }

    /// With offer features: `features[i]` is offer i's features encoded by
    /// an encoder of `columns` dimensions (intercept included). The learned
    /// prior then also learns how offer features move each context weight
    /// (see [`SharedPrior::reestimate`]), so an offer with little evidence
    /// starts where offers like it are. Without the learned prior
    /// (`adaptive_prior` off) offer features have nothing to act on and are
    /// ignored. Call before learning.
    pub fn with_offer_features(mut self, features: Vec<Vec<(u32, f64)>>, columns: usize) -> Self {
        if let Some(prior) = &mut self.prior {
            *prior = SharedPrior::new(self.encoder.dim(), columns, &self.config);
        }
        self.offer_features = features;
        self
    }

    /// One event through the one learning step ([`super::learning`]).
    fn learn_event(&mut self, x: &Sparse, offer: usize, redeemed: bool) {
        let offer_features = &self.offer_features;
        let step = super::learning::Step {
            encoder: &self.encoder,
            config: &self.config,
            offer_features: &|| offer_features.clone(),
        };
        step.learn(&mut self.models, self.prior.as_mut(), offer, x, redeemed);
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
        gaussian_arms(&self.models, &self.config, &self.weights, x, candidates)
    }
}

/// The Thompson arms of `candidates` at `x`, given every offer's posterior
/// and weight. When every candidate has the same weight the link is dropped:
/// a monotone transform applied to every score changes neither the argmax
/// nor its probability, and the identity is the cheapest to integrate.
pub fn gaussian_arms(
    models: &[GaussianPosterior],
    config: &ContextualConfig,
    weights: &[f64],
    x: &Sparse,
    candidates: &[usize],
) -> Vec<GaussianArm> {
    let weight = |c: usize| weights.get(c).copied().unwrap_or(1.0);
    let first = candidates.first().map_or(1.0, |&c| weight(c));
    let uniform = candidates.iter().all(|&c| weight(c) == first);
    candidates
        .iter()
        .map(|&c| {
            let (mean, var) = models.get(c).map_or((0.0, 1.0), |m| m.predictive(x));
            let sd = config.exploration.max(1e-6) * var.sqrt();
            // Both models learn q = p / (1 + p) (decision-time negatives),
            // and the value objective ranks by p x value, not q x value.
            match (uniform, config.likelihood) {
                // Any monotone map of the latent ranks alike.
                (true, _) => GaussianArm {
                    mean,
                    sd,
                    link: Link::Identity,
                    weight: 1.0,
                },
                // logit q = ln p, so ln(p v) = z + ln v: still a Gaussian,
                // and the exact linear shortcut applies.
                (false, Likelihood::Logistic) => GaussianArm {
                    mean: mean + weight(c).max(f64::MIN_POSITIVE).ln(),
                    sd,
                    link: Link::Identity,
                    weight: 1.0,
                },
                (false, Likelihood::Linear) => GaussianArm {
                    mean,
                    sd,
                    link: Link::Odds,
                    weight: weight(c),
                },
            }
        })
        .collect()
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
    fn choose_with_propensity(
        &self,
        f: &Features,
        candidates: &[usize],
        rng: &mut dyn Rng,
    ) -> (usize, f64) {
        // As the server does: the arms once, for the draw and the propensity.
        match thompson::choose(&self.arms(&f.x, candidates), rng) {
            Some(c) => (candidates[c.index], c.propensity),
            None => (candidates[0], 1.0),
        }
    }
    fn on_decision(&mut self, f: &Features, offer: usize) {
        self.learn_event(&f.x, offer, false);
    }
    fn on_outcome(&mut self, f: &Features, offer: usize, outcome: Outcome) {
        if let Outcome::Redeemed { .. } = outcome {
            self.learn_event(&f.x, offer, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::FeatureSpec;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Dense random design: intercept plus `d - 1` features in [-1, 1].
    fn design(rng: &mut ChaCha8Rng, d: usize) -> Vec<(u32, f64)> {
        let mut x = vec![(0, 1.0)];
        x.extend((1..d).map(|i| (i as u32, rng.random_range(-1.0..1.0))));
        x
    }

    fn max_error(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    /// The value objective ranks by P(redeem) x value. Both models learn
    /// q = p / (1 + p); ranking by q x value picked B below (q x v: A 0.286,
    /// B 0.326) though A earns more (p x v: A 0.400, B 0.375). After 12,000
    /// decisions, A must take most of the last quarter, as segment-ts gives it.
    #[test]
    fn the_value_objective_ranks_by_redemption_rate_times_value() {
        use crate::policy::{Features, Outcome, Policy};
        let (p, v) = ([0.40, 0.15], [1.0, 2.5]);
        for likelihood in [Likelihood::Logistic, Likelihood::Linear] {
            let encoder = Encoder::new(Vec::new(), 0).expect("intercept only");
            let mut policy =
                ContextualTs::new(encoder, ContextualConfig::new(likelihood), v.to_vec());
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let f = Features {
                segment: String::new(),
                x: vec![(0, 1.0)],
            };
            // A warm start of 1,000 decisions each, alternating: the
            // ranking is under test here, not exploration (at 0.3 of the
            // posterior spread, an offer whose prior score starts ln 2.5
            // below another's is never tried; issue 18, item 9).
            let (warm, n, mut late_a) = (2_000usize, 12_000usize, 0u32);
            for t in 0..warm + n {
                let offer = if t < warm {
                    t % 2
                } else {
                    policy.choose(&f, &[0, 1], &mut rng)
                };
                policy.on_decision(&f, offer);
                if rng.random::<f64>() < p[offer] {
                    policy.on_outcome(&f, offer, Outcome::Redeemed { value: v[offer] });
                }
                if t >= warm + 3 * n / 4 && offer == 0 {
                    late_a += 1;
                }
            }
            let share = f64::from(late_a) / (n / 4) as f64;
            assert!(
                share > 0.8,
                "{likelihood:?}: A got {share:.3} of the last quarter"
            );
        }
    }

    #[test]
    fn unlearning_too_narrow_a_posterior_still_uncounts_the_observations() {
        // Wider along x than the noise: no observation there can be taken
        // out, but the counts must drop, or the campaign's rate would count
        // a phantom redemption.
        let config = ContextualConfig {
            prior_variance: 1.0,
            noise_variance: 0.05,
            ..ContextualConfig::new(Likelihood::Linear)
        };
        let mut m = GaussianPosterior::prior(2, &config);
        m.observations = 2;
        m.decisions = 1;
        let before = m.mean.clone();
        let x = vec![(0, 1.0), (1, 1.0)];
        assert!(!m.unlearn_decision(&x, true, &config));
        assert_eq!((m.observations, m.decisions), (0, 0));
        assert_eq!(m.mean, before, "the posterior itself is left as it was");
    }

    #[test]
    fn unlearning_a_customer_restores_the_posterior_without_them() {
        let mut rng = ChaCha8Rng::seed_from_u64(31);
        let d = 6;
        let rows: Vec<(Vec<(u32, f64)>, bool)> = (0..400)
            .map(|_| (design(&mut rng, d), rng.random::<f64>() < 0.2))
            .collect();
        let erased = [17usize, 203, 399];
        for likelihood in [Likelihood::Linear, Likelihood::Logistic] {
            let config = ContextualConfig::new(likelihood);
            let mut with_all = GaussianPosterior::prior(d, &config);
            let mut without = GaussianPosterior::prior(d, &config);
            for (i, (x, redeemed)) in rows.iter().enumerate() {
                with_all.learn_decision(x, &config);
                if *redeemed {
                    with_all.learn_redemption(x, &config);
                }
                if !erased.contains(&i) {
                    without.learn_decision(x, &config);
                    if *redeemed {
                        without.learn_redemption(x, &config);
                    }
                }
            }
            let mut exact = true;
            for &i in erased.iter().rev() {
                exact &= with_all.unlearn_decision(&rows[i].0, rows[i].1, &config);
            }
            let err = max_error(&with_all.mean, &without.mean);
            let cov_err = (0..d)
                .map(|i| {
                    (with_all.cov.get(i, i) - without.cov.get(i, i)).abs() / without.cov.get(i, i)
                })
                .fold(0.0, f64::max);
            assert_eq!(with_all.observations, without.observations);
            assert_eq!(with_all.decisions, without.decisions);
            match likelihood {
                // A sum of terms: taking three out is exact (to rounding).
                Likelihood::Linear => {
                    assert!(exact);
                    assert!(err < 1e-9 && cov_err < 1e-9, "linear: {err} {cov_err}");
                }
                // A sequence of Laplace steps: close, and said to be approximate.
                Likelihood::Logistic => {
                    assert!(!exact);
                    assert!(err < 0.02 && cov_err < 0.02, "logistic: {err} {cov_err}");
                }
            }
        }
    }

    #[test]
    fn linear_posterior_mean_converges_to_true_weights() {
        let truth = [0.3, -0.2, 0.5, 0.1, -0.4];
        let mut config = ContextualConfig::new(Likelihood::Linear);
        config.prior_variance = 1.0;
        config.noise_variance = 0.01;
        let mut post = GaussianPosterior::prior(truth.len(), &config);
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        let noise = rand_distr::Normal::new(0.0, 0.1).expect("sd > 0");
        for _ in 0..5_000 {
            let x = design(&mut rng, truth.len());
            let y = dot_sparse(&truth, &x) + rng.sample(noise);
            post.update(&x, y, &config);
        }
        // Standard error of each weight is about 0.1 / sqrt(5000 / 3) = 0.0025.
        let err = max_error(&post.mean, &truth);
        assert!(err < 0.015, "max weight error {err}: {:?}", post.mean);
        // The posterior variance matches the closed form sigma^2 (X^T X)^{-1} ~ 0.01 * 3 / 5000.
        let v = post.cov.get(1, 1);
        assert!(
            (v - 0.01 * 3.0 / 5000.0).abs() < 0.3 * 0.01 * 3.0 / 5000.0,
            "variance {v}"
        );
    }

    #[test]
    fn logistic_posterior_mean_converges_to_true_weights() {
        let truth = [-1.5, 1.0, -0.8, 0.5];
        let mut config = ContextualConfig::new(Likelihood::Logistic);
        config.prior_variance = 4.0;
        let mut post = GaussianPosterior::prior(truth.len(), &config);
        let mut rng = ChaCha8Rng::seed_from_u64(22);
        for _ in 0..40_000 {
            let x = design(&mut rng, truth.len());
            let y = f64::from(u8::from(
                rng.random::<f64>() < sigmoid(dot_sparse(&truth, &x)),
            ));
            post.update(&x, y, &config);
        }
        // Fisher information ~ 40,000 x 0.1 per weight: standard error ~ 0.03.
        let err = max_error(&post.mean, &truth);
        assert!(err < 0.12, "max weight error {err}: {:?}", post.mean);
    }

    fn two_offer_policy(half_life: Option<f64>) -> ContextualTs {
        let specs = vec![FeatureSpec::Flag {
            name: "member".into(),
        }];
        let encoder = Encoder::new(specs, 0).expect("valid");
        let mut config = ContextualConfig::new(Likelihood::Logistic);
        config.half_life = half_life;
        config.exploration = 1.0;
        ContextualTs::new(encoder, config, vec![1.0, 1.0])
    }

    /// Expected regret over the second phase of a scripted stream in which
    /// offer 0 (30% vs 10%) stops working (2%) halfway.
    fn phase_two_regret(half_life: Option<f64>, seed: u64) -> f64 {
        let mut policy = two_offer_policy(half_life);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let ctx = Context::new();
        let mut regret = 0.0;
        for t in 0..8_000 {
            let p: [f64; 2] = if t < 4_000 {
                [0.30, 0.10]
            } else {
                [0.02, 0.10]
            };
            let f = policy.features(&ctx).expect("encodes");
            let o = policy.choose(&f, &[0, 1], &mut rng);
            if t >= 4_000 {
                regret += p[0].max(p[1]) - p[o];
            }
            policy.on_decision(&f, o);
            let outcome = if rng.random::<f64>() < p[o] {
                Outcome::Redeemed { value: 1.0 }
            } else {
                Outcome::Expired
            };
            policy.on_outcome(&f, o, outcome);
        }
        regret
    }

    #[test]
    fn decision_time_learning_estimates_the_redemption_rate() {
        // Negatives at decision time plus a positive per redemption: the
        // model's q estimates p / (1 + p), and `rate` maps it back to p.
        let policy = two_offer_policy(None);
        let mut policy = policy;
        let mut rng = ChaCha8Rng::seed_from_u64(24);
        let f = policy.features(&Context::new()).expect("encodes");
        for _ in 0..20_000 {
            policy.on_decision(&f, 0);
            if rng.random::<f64>() < 0.2 {
                policy.on_outcome(&f, 0, Outcome::Redeemed { value: 1.0 });
            }
        }
        let (mu, _) = policy.models()[0].predictive(&f.x);
        let p = GaussianPosterior::rate(mu, Likelihood::Logistic);
        // Standard error of the rate over 20,000 decisions: about 0.003.
        assert!((p - 0.2).abs() < 0.012, "estimated rate {p}");
    }

    #[test]
    fn forgetting_recovers_from_an_abrupt_change_faster() {
        let seeds = 1..=5;
        let with: f64 = seeds
            .clone()
            .map(|s| phase_two_regret(Some(300.0), s))
            .sum();
        let without: f64 = seeds.map(|s| phase_two_regret(None, s)).sum();
        assert!(
            with < 0.5 * without,
            "regret with forgetting {with:.1} vs without {without:.1}"
        );
    }

    #[test]
    fn propensities_sum_to_one_and_match_draws() {
        let specs = vec![
            FeatureSpec::Categorical {
                name: "tier".into(),
                values: vec!["low".into(), "high".into()],
            },
            FeatureSpec::Numeric {
                name: "hour".into(),
                min: 0.0,
                max: 24.0,
                bins: vec![14.0],
                buckets: None,
            },
        ];
        let encoder = Encoder::new(specs, 0).expect("valid");
        let mut policy = ContextualTs::new(
            encoder,
            ContextualConfig::new(Likelihood::Logistic),
            vec![1.0, 2.0, 1.0, 0.5],
        );
        let mut rng = ChaCha8Rng::seed_from_u64(23);
        let mut ctx = Context::new();
        ctx.insert(
            "tier".into(),
            crate::context::FeatureValue::Category("low".into()),
        );
        ctx.insert("hour".into(), crate::context::FeatureValue::Number(15.0));
        let f = policy.features(&ctx).expect("encodes");
        for i in 0..3_000 {
            let o = i % 4;
            let win = rng.random::<f64>() < [0.3, 0.1, 0.2, 0.05][o];
            let outcome = if win {
                Outcome::Redeemed { value: 1.0 }
            } else {
                Outcome::Expired
            };
            policy.on_decision(&f, o);
            policy.on_outcome(&f, o, outcome);
        }
        let candidates = [0, 1, 2, 3];
        let mut wins = [0usize; 4];
        let draws = 200_000;
        for _ in 0..draws {
            wins[policy.choose(&f, &candidates, &mut rng)] += 1;
        }
        let mut total = 0.0;
        for (o, w) in wins.iter().enumerate() {
            let got = policy.propensity(&f, &candidates, o);
            total += got;
            let want = *w as f64 / draws as f64;
            assert!(
                (got - want).abs() < 0.01,
                "offer {o}: {got:.4} vs {want:.4}"
            );
        }
        assert!((total - 1.0).abs() < 0.005, "sum {total}");
    }
}
