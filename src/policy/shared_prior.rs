//! A prior learned from the campaign: the offers of a contextual campaign
//! share one prior variance per feature group, re-estimated from all their
//! posteriors (empirical Bayes, the EM step of automatic relevance
//! determination, pooled across offers as in a hierarchical model).
//!
//! Twelve separate regressions each have to learn, from their own few
//! redemptions, that a feature (a region, an age band) says nothing. Pooled,
//! the campaign learns it from every decision: the variance of a group whose
//! weights stay near zero in every offer shrinks, and the offers stop
//! spending evidence and exploration on it, while a group that matters gets
//! more room. Each posterior is then re-based on the new prior exactly, as
//! if it had been learned under it (its evidence kept as the Gaussian
//! pseudo-observations the Laplace steps made of it).

use serde::{Deserialize, Serialize};

use super::contextual::{ContextualConfig, GaussianPosterior};
use crate::features::Encoder;
use crate::linalg::{Sparse, SymMatrix};

/// Learning events before the first re-estimation of the variances.
pub const FIRST_ESTIMATE: u64 = 256;
/// Learning events before the intercept's prior mean first follows the
/// campaign's rate; it follows again at every power of two up to
/// [`FIRST_ESTIMATE`], then at every re-estimation.
pub const FIRST_RATE: u64 = 16;
/// Pseudo-decisions at the configured `prior_rate` in the campaign's rate.
pub const RATE_PSEUDO_DECISIONS: f64 = 10.0;
/// The estimated variances stay within these bounds (widened to hold a
/// configured `prior_variance` outside them).
pub const MIN_VARIANCE: f64 = 1e-3;
/// See [`MIN_VARIANCE`].
pub const MAX_VARIANCE: f64 = 1.0;
/// Relative change below which a group's variance is left as it is.
pub const RETUNE: f64 = 0.05;
/// Campaigns of at most this many encoded columns learn their prior unless
/// told not to; larger ones only when asked (`adaptive_prior = true`), as a
/// re-estimation costs O(K d^3) in the server's writer thread (about 0.3 ms
/// for K = 12, d = 64; some 4,000 times that at d = 1,024).
pub const DEFAULT_MAX_COLUMNS: usize = 256;

/// Whether the variances have been estimated after `events` learning
/// events (before that they are the configured ones).
pub fn variances_estimated(events: u64) -> bool {
    events >= FIRST_ESTIMATE
}

/// Whether a campaign of `dim` encoded columns learns its prior by default.
pub fn on_by_default(dim: usize) -> bool {
    dim <= DEFAULT_MAX_COLUMNS
}

/// Ridge on the offer effects, `lambda = V / tau^2`: each effect's own prior
/// variance is an eighth of its column's, so an effect takes several offers
/// that agree (one offer alone moves it by 1/9 of its deviation, five by
/// 5/13). Chosen on `loyalty_dev.csv` and the scenario files among 0.25, 1,
/// 2, 4, 8 and 16: below 2 the effects were noisy enough to cost linear-ts
/// about 2 points of the oracle (see BENCHMARKS.md).
pub const OFFER_EFFECT_RIDGE: f64 = 8.0;

/// An offer with evidence, as the offer effects' regression reads it.
struct Evidence<'a> {
    /// Its index among the campaign's offers.
    offer: usize,
    /// Its offer features, as (effect column, value) pairs.
    features: Vec<(usize, f64)>,
    /// Its posterior.
    model: &'a GaussianPosterior,
}

/// The learned prior of one contextual campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedPrior {
    /// Prior variance of each encoded column (the intercept keeps the
    /// configured one).
    pub variance: Vec<f64>,
    /// Learning events (decisions and redemptions) across the offers.
    pub events: u64,
    /// The event count at which the variances are next re-estimated: every
    /// `max(256, events / 8)` events, so the cost (O(K d^3) for K offers,
    /// d columns) is paid about 30 times in the first 20,000 events and
    /// rarely after.
    pub next_estimate: u64,
    /// The intercept's learned prior mean, on the model's scale (a logit
    /// for logistic-ts, a rate for linear-ts); `None` until first learned,
    /// the configured `prior_rate` until then.
    pub intercept: Option<f64>,
    /// With offer features: how each offer feature column moves the prior
    /// mean of each context column, `offer_effects[i * p + f]` for context
    /// column i and offer column f + 1 of p + 1 (the offer encoding's
    /// intercept, column 0, has none). These are the context x offer
    /// feature interactions, learned across offers; column 0's row holds the
    /// offer features' main effects. Empty without offer features.
    pub offer_effects: Vec<f64>,
}

/// Steps of linear-ts's noise variance per doubling: the noise moves in
/// steps of 2^(1/8) (9%), so that once the campaign's rate settles its
/// evidence is no longer rescaled (O(K d^3) each time) for every small move.
const NOISE_STEPS_PER_DOUBLING: f64 = 8.0;

/// linear-ts's noise variance at a campaign rate `rate` (the intercept's
/// mean): `rate (1 - rate)`, `rate` kept in [0.01, 0.99], on a grid of
/// [`NOISE_STEPS_PER_DOUBLING`] steps per doubling, when
/// `config.noise_from_rate`; else `config.noise_variance`.
pub fn noise_at(rate: f64, config: &ContextualConfig) -> f64 {
    match (config.likelihood, config.noise_from_rate) {
        (super::contextual::Likelihood::Linear, true) => {
            let p = rate.clamp(0.01, 0.99);
            let steps = ((p * (1.0 - p)).log2() * NOISE_STEPS_PER_DOUBLING).round();
            (steps / NOISE_STEPS_PER_DOUBLING).exp2()
        }
        _ => config.noise_variance,
    }
}

/// `config` with the noise variance learning uses now: the learned prior's
/// ([`SharedPrior::noise_variance`]), or without one, that at the
/// configured `prior_rate`.
pub fn learning_config(config: &ContextualConfig, prior: Option<&SharedPrior>) -> ContextualConfig {
    let noise_variance = match prior {
        Some(p) => p.noise_variance(config),
        None => noise_at(config.prior_rate, config),
    };
    ContextualConfig {
        noise_variance,
        ..*config
    }
}

impl SharedPrior {
    /// The configured prior, before any evidence, for `dim` context columns
    /// and `offer_columns` offer feature columns (0 without offer features;
    /// otherwise the offer encoding's dimension, intercept included).
    pub fn new(dim: usize, offer_columns: usize, config: &ContextualConfig) -> Self {
        SharedPrior {
            variance: vec![config.prior_variance; dim],
            events: 0,
            next_estimate: FIRST_ESTIMATE,
            intercept: None,
            offer_effects: vec![0.0; dim * offer_columns.saturating_sub(1)],
        }
    }

    /// The configured prior under `config`, before any evidence, for the
    /// same columns and offer columns as this one.
    pub fn restarted(&self, config: &ContextualConfig) -> Self {
        Self::new(self.variance.len(), self.offer_columns() + 1, config)
    }

    /// Offer feature columns besides the offer encoding's intercept.
    fn offer_columns(&self) -> usize {
        match self.variance.len() {
            0 => 0,
            d => self.offer_effects.len() / d,
        }
    }

    /// Whether a decoded prior fits `dim` columns and `offer_columns` offer
    /// columns (as [`Self::new`] takes them) and holds usable numbers.
    pub fn is_well_formed(&self, dim: usize, offer_columns: usize) -> bool {
        self.variance.len() == dim
            && self.offer_effects.len() == dim * offer_columns.saturating_sub(1)
            && self.holds_usable_numbers()
    }

    /// Whether a decoded prior holds usable numbers in a consistent shape,
    /// whatever the campaign's config says of its size.
    pub fn holds_usable_numbers(&self) -> bool {
        self.variance.iter().all(|v| v.is_finite() && *v > 0.0)
            && self.intercept.is_none_or(f64::is_finite)
            && self.offer_effects.iter().all(|v| v.is_finite())
            && self.offer_effects.len().is_multiple_of(self.variance.len())
    }

    /// Whether anything has been learned into the prior yet (the intercept's
    /// mean or the variances).
    pub fn has_estimated(&self) -> bool {
        self.intercept.is_some() || self.next_estimate > FIRST_ESTIMATE
    }

    /// linear-ts's observation noise variance: with
    /// `config.noise_from_rate`, that of a Bernoulli at the campaign's
    /// pooled rate (the intercept's learned mean, [`Self::campaign_rate`]),
    /// `p (1 - p)` with `p` kept in [0.01, 0.99]; else the configured one.
    /// Every offer's evidence is kept in units of it: when it moves, the
    /// evidence is rescaled ([`Self::reestimate`]).
    pub fn noise_variance(&self, config: &ContextualConfig) -> f64 {
        noise_at(self.intercept_mean(config), config)
    }

    /// The intercept's prior mean: learned, or the configured one.
    pub fn intercept_mean(&self, config: &ContextualConfig) -> f64 {
        self.intercept
            .unwrap_or_else(|| GaussianPosterior::configured_intercept(config))
    }

    /// The prior mean of the weights of a new offer whose features encode
    /// to `offer` (empty without offer features): the intercept's mean, plus
    /// the learned effects of the offer's features. An offer with evidence
    /// has its own, learned without it ([`Self::mean_of`]).
    pub fn prior_mean(&self, offer: &Sparse, config: &ContextualConfig) -> Vec<f64> {
        self.mean_with(self.intercept_mean(config), &self.offer_effects, offer)
    }

    /// The prior mean posterior `m` (of an offer whose features encode to
    /// `offer`) is based on: its own, or, when it keeps none (a store
    /// written before posteriors kept theirs), the one for its features.
    pub fn mean_of(
        &self,
        m: &GaussianPosterior,
        offer: &Sparse,
        config: &ContextualConfig,
    ) -> Vec<f64> {
        if m.prior_mean.len() == self.variance.len() {
            m.prior_mean.clone()
        } else {
            self.prior_mean(offer, config)
        }
    }

    /// `intercept` in column 0, plus `effects` (laid out as
    /// [`Self::offer_effects`]) times the offer's features.
    fn mean_with(&self, intercept: f64, effects: &[f64], offer: &Sparse) -> Vec<f64> {
        let dim = self.variance.len();
        let mut mean = vec![0.0; dim];
        if let Some(m) = mean.first_mut() {
            *m = intercept;
        }
        let p = self.offer_columns();
        if effects.len() != dim * p {
            return mean;
        }
        for &(f, z) in offer.iter().filter(|(f, _)| *f > 0 && (*f as usize) <= p) {
            let f = f as usize - 1;
            for (i, m) in mean.iter_mut().enumerate() {
                *m += z * effects[i * p + f];
            }
        }
        mean
    }

    /// The prior variances new posteriors start from: the learned ones, the
    /// intercept's the configured one.
    pub fn prior_variances(&self, config: &ContextualConfig) -> Vec<f64> {
        let mut v = self.variance.clone();
        if let Some(v) = v.first_mut() {
            *v = config.prior_variance;
        }
        v
    }

    /// A new offer's posterior: the prior itself, for an offer whose
    /// features encode to `offer`.
    pub fn posterior(&self, offer: &Sparse, config: &ContextualConfig) -> GaussianPosterior {
        let mut p = GaussianPosterior::prior(self.variance.len(), config);
        p.cov = SymMatrix::diagonal(&self.prior_variances(config));
        p.mean = self.prior_mean(offer, config);
        p.prior_mean = p.mean.clone();
        p
    }

    /// Counts one learning event; true when a re-estimation is due.
    pub fn count(&mut self) -> bool {
        self.events += 1;
        self.events >= self.next_estimate
            || (self.events >= FIRST_RATE
                && self.events < FIRST_ESTIMATE
                && self.events.is_power_of_two())
    }

    /// The campaign's rate so far, as the intercept's prior mean on the
    /// model's scale. Every decision is learned as one observation, 1 if
    /// redeemed, so the modelled rate is redemptions over decisions: here
    /// `(R + 10 prior_rate) / (D + 10)` over every
    /// offer's D decisions and R redemptions, but `left_out`'s (an offer's
    /// own prior must not hold its own evidence, as segment-ts's does not).
    /// A new offer thus starts as good as the campaign does on average, and
    /// is tried until its own evidence says otherwise: a fixed `prior_rate`
    /// far below a campaign's real rates made its offers look worse than
    /// they were and locked some out.
    fn campaign_rate(
        models: &[GaussianPosterior],
        left_out: Option<usize>,
        config: &ContextualConfig,
    ) -> f64 {
        let (decisions, observations) = models
            .iter()
            .enumerate()
            .filter(|(k, _)| Some(*k) != left_out)
            .fold((0u64, 0u64), |(d, o), (_, m)| {
                (d + m.decisions, o + m.observations)
            });
        let redemptions = observations.saturating_sub(decisions) as f64;
        let r0 = config.prior_rate.clamp(1e-6, 1.0 - 1e-6);
        let rate =
            (redemptions + RATE_PSEUDO_DECISIONS * r0) / (decisions as f64 + RATE_PSEUDO_DECISIONS);
        GaussianPosterior::intercept_for_rate(rate.clamp(1e-4, 1.0 - 1e-4), config)
    }

    /// Sets the intercept's prior mean to the campaign's rate, and, when the
    /// variances are due, re-estimates the rest of the prior by one EM step
    /// over the offers' posteriors (means `m`, covariances `S`):
    /// - with offer features, the offer effects `B`, by ridge regression of
    ///   the offers' deviations from the base mean on their features
    ///   (`(Z'Z + lambda I) B = Z' (m - m0)` with `lambda` =
    ///   [`OFFER_EFFECT_RIDGE`], one small solve for every context
    ///   column at once; offers that learned nothing carry no evidence and
    ///   are left out): each offer's weights are modelled as
    ///   `N(m0 + B z, V)` with each effect's own prior `N(0, V / lambda)`,
    ///   the hierarchical model of offers that share features;
    /// - each group's variance `V`, as the mean, over the offers and the
    ///   group's columns, of the posterior second moment about the offer's
    ///   prior mean, `(m_i - mu0_i)^2 + S_ii`, clamped to [`MIN_VARIANCE`,
    ///   `MAX_VARIANCE`] (widened to hold the configured variance);
    ///
    /// then re-bases every posterior on the new prior, exactly. The
    /// intercept and effects kept here (reported, and new offers' prior)
    /// are learned from every offer; each offer with evidence is re-based on
    /// its own prior mean, learned the same way from the *other* offers'
    /// evidence (leave one out: its own data would otherwise count twice,
    /// once in its likelihood and once in its prior). Effects are learned
    /// only when the variances are due; the intercept-only steps before the
    /// first such estimate keep the effects as they are (none yet).
    /// `offers[k]` is the encoded features of `models[k]` (missing or
    /// empty: none). The sums do not depend on the order of `models` (a
    /// restart may number offers differently). Offers that have learned
    /// nothing are set to the new prior itself, as a restart builds them.
    /// Returns whether the prior changed (if not, no posterior did).
    pub fn reestimate(
        &mut self,
        encoder: &Encoder,
        models: &mut [GaussianPosterior],
        offers: &[Vec<(u32, f64)>],
        config: &ContextualConfig,
    ) -> bool {
        let dim = self.variance.len();
        let features = |k: usize| offers.get(k).map_or(&[][..], Vec::as_slice);
        let old_means: Vec<Vec<f64>> = models
            .iter()
            .enumerate()
            .map(|(k, m)| self.mean_of(m, features(k), config))
            .collect();
        let old = self.variance.clone();
        let old_effects = self.offer_effects.clone();
        let old_intercept = self.intercept_mean(config);
        self.intercept = Some(Self::campaign_rate(models, None, config));
        let full = self.events >= self.next_estimate;
        let new_means: Vec<Vec<f64>> = {
            let evidence = self.offers_with_evidence(models, offers);
            if full
                && let Some(b) =
                    self.solve_offer_effects(&evidence, None, self.intercept_mean(config))
            {
                self.offer_effects = b;
            }
            (0..models.len())
                .map(|k| {
                    if models[k].learned_nothing() {
                        return self.prior_mean(features(k), config);
                    }
                    let intercept = Self::campaign_rate(models, Some(k), config);
                    let own_effects = match full {
                        true => self.solve_offer_effects(&evidence, Some(k), intercept),
                        false => None,
                    };
                    let effects = own_effects.as_deref().unwrap_or(&self.offer_effects);
                    self.mean_with(intercept, effects, features(k))
                })
                .collect()
        };
        if full {
            let usable: Vec<(&GaussianPosterior, &Vec<f64>)> = models
                .iter()
                .zip(&new_means)
                .filter(|(m, _)| m.mean.len() == dim)
                .collect();
            let groups = encoder.groups().into_iter().map(|g| g.columns);
            for g in groups.filter(|g| g.start < g.end && g.end <= dim) {
                let mut terms: Vec<f64> = usable
                    .iter()
                    .flat_map(|(m, mu0)| {
                        g.clone()
                            .map(|i| (m.mean[i] - mu0[i]).powi(2) + m.cov.get(i, i))
                    })
                    .collect();
                terms.sort_by(f64::total_cmp);
                let n = terms.len();
                let sum: f64 = terms.iter().sum();
                if n > 0 && sum.is_finite() {
                    // The bounds widen to hold the configured variance.
                    let (lo, hi) = (
                        MIN_VARIANCE.min(config.prior_variance),
                        MAX_VARIANCE.max(config.prior_variance),
                    );
                    let v = (sum / n as f64).clamp(lo, hi);
                    // A group whose estimate moved less than RETUNE keeps its
                    // variance: re-basing costs O(d^2) per column, and the
                    // estimates settle as evidence grows.
                    if (v / old[g.start] - 1.0).abs() > RETUNE {
                        self.variance[g.clone()].fill(v);
                    }
                }
            }
            self.next_estimate = self.events + FIRST_ESTIMATE.max(self.events / 8);
        }
        if old == self.variance
            && old_effects == self.offer_effects
            && old_intercept == self.intercept_mean(config)
            && old_means == new_means
        {
            return false;
        }
        self.rebase(models, offers, config, &old, &old_means, &new_means);
        // Evidence in units of the old noise variance, in those of the new:
        // each observation weighs old / new of what it did (exact for a
        // linear model: its precision is the prior's plus X'X / noise).
        let (before, after) = (noise_at(old_intercept, config), self.noise_variance(config));
        if before != after {
            let keep = before / after;
            let variances = self.prior_variances(config);
            for (k, m) in models.iter_mut().enumerate() {
                if m.learned_nothing() || m.mean.len() != dim {
                    continue;
                }
                let mean0 = self.mean_of(m, features(k), config);
                m.discount(keep, &mean0, &variances);
            }
        }
        true
    }

    /// The offers with evidence, with their offer features (as column, value
    /// pairs of the effects' layout) and their index, in an order that does
    /// not depend on how they are numbered (a restart may number them
    /// differently, and the sums must come out the same to the last bit).
    fn offers_with_evidence<'a>(
        &self,
        models: &'a [GaussianPosterior],
        offers: &[Vec<(u32, f64)>],
    ) -> Vec<Evidence<'a>> {
        let p = self.offer_columns();
        let dim = self.variance.len();
        if p == 0 {
            return Vec::new();
        }
        let mut usable: Vec<Evidence<'a>> = models
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.learned_nothing() && m.mean.len() == dim)
            .filter_map(|(k, m)| {
                let z = offers
                    .get(k)?
                    .iter()
                    .filter(|(f, _)| *f > 0 && (*f as usize) <= p)
                    .map(|&(f, v)| (f as usize - 1, v))
                    .collect();
                Some(Evidence {
                    offer: k,
                    features: z,
                    model: m,
                })
            })
            .collect();
        usable.sort_by(|a, b| {
            let (za, ma, zb, mb) = (&a.features, a.model, &b.features, b.model);
            let key = |z: &[(usize, f64)], m: &GaussianPosterior| {
                z.iter()
                    .flat_map(|&(f, v)| [f as f64, v])
                    .chain(m.mean.iter().copied())
                    .collect::<Vec<f64>>()
            };
            let (ka, kb) = (key(za, ma), key(zb, mb));
            ka.iter()
                .zip(&kb)
                .map(|(x, y)| x.total_cmp(y))
                .find(|o| o.is_ne())
                .unwrap_or(ka.len().cmp(&kb.len()))
        });
        usable
    }

    /// The M-step for the offer effects (see [`Self::reestimate`]) over the
    /// offers with `evidence` but `left_out`, about the intercept `base`;
    /// laid out as [`Self::offer_effects`]. `None` without offer features
    /// or when the solve fails.
    fn solve_offer_effects(
        &self,
        evidence: &[Evidence<'_>],
        left_out: Option<usize>,
        base: f64,
    ) -> Option<Vec<f64>> {
        let p = self.offer_columns();
        let dim = self.variance.len();
        if p == 0 {
            return None;
        }
        // Normal equations: A = Z'Z + ridge I (p x p), R = Z'T (p x dim).
        let mut a = vec![0.0; p * p];
        let mut r = vec![0.0; p * dim];
        for e in evidence.iter().filter(|e| Some(e.offer) != left_out) {
            let (z, m) = (&e.features, e.model);
            for &(f, zf) in z {
                for &(g, zg) in z {
                    a[f * p + g] += zf * zg;
                }
                for (i, mi) in m.mean.iter().enumerate() {
                    let target = if i == 0 { mi - base } else { *mi };
                    r[f * dim + i] += zf * target;
                }
            }
        }
        for f in 0..p {
            a[f * p + f] += OFFER_EFFECT_RIDGE;
        }
        let b = crate::linalg::solve_positive_definite(&a, p, &r, dim)?;
        if !b.iter().all(|v| v.is_finite()) {
            return None;
        }
        // b is p x dim; the effects are stored dim x p.
        let mut effects = vec![0.0; dim * p];
        for i in 0..dim {
            for f in 0..p {
                effects[i * p + f] = b[f * dim + i];
            }
        }
        Some(effects)
    }

    /// Re-bases every posterior from the variances `old` and its prior mean
    /// `old_means[k]` onto the current variances and `new_means[k]`.
    fn rebase(
        &self,
        models: &mut [GaussianPosterior],
        offers: &[Vec<(u32, f64)>],
        config: &ContextualConfig,
        old: &[f64],
        old_means: &[Vec<f64>],
        new_means: &[Vec<f64>],
    ) {
        let dim = self.variance.len();
        let variances = self.prior_variances(config);
        let mut skipped = 0;
        for (k, m) in models.iter_mut().enumerate() {
            if m.mean.len() != dim {
                continue;
            }
            let features = offers.get(k).map_or(&[][..], Vec::as_slice);
            if m.learned_nothing() {
                *m = self.posterior(features, config);
                continue;
            }
            let (Some(from), Some(to)) = (old_means.get(k), new_means.get(k)) else {
                continue;
            };
            skipped += m.rebase_prior(old, &self.variance, from);
            m.move_prior_mean(from, to, &variances);
        }
        if skipped > 0 {
            tracing::warn!(
                columns = skipped,
                "learned prior: columns whose covariance exceeded the old prior kept their variance"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::dot_sparse;
    use crate::policy::contextual::Likelihood;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Rows with an intercept and `d - 1` one-hot-ish 0/1 columns.
    fn rows(seed: u64, n: usize, d: usize) -> Vec<Vec<(u32, f64)>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let mut x = vec![(0, 1.0)];
                x.extend(
                    (1..d)
                        .filter(|_| rng.random::<f64>() < 0.5)
                        .map(|i| (i as u32, 1.0)),
                );
                x
            })
            .collect()
    }

    #[test]
    fn rebasing_equals_learning_under_the_new_prior() {
        // Linear regression is exact: the posterior learned under prior A
        // and re-based on prior B equals the one learned under B.
        let d = 5;
        let data = rows(3, 300, d);
        let truth = [0.1, 0.3, -0.2, 0.0, 0.05];
        let mut config = ContextualConfig::new(Likelihood::Linear);
        config.prior_variance = 0.5;
        let new: Vec<f64> = vec![0.5, 0.02, 2.0, 0.001, 0.5];
        let mut rebased = GaussianPosterior::prior(d, &config);
        let mut direct = GaussianPosterior::prior(d, &config);
        direct.rebase_prior(&[0.5; 5], &new, &[]);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for x in &data {
            let y = dot_sparse(&truth, x) + 0.1 * (rng.random::<f64>() - 0.5);
            rebased.update(x, y, &config);
            direct.update(x, y, &config);
        }
        rebased.rebase_prior(&[0.5; 5], &new, &[]);
        for i in 0..d {
            assert!((rebased.mean[i] - direct.mean[i]).abs() < 1e-9, "mean {i}");
            for j in 0..d {
                let (a, b) = (rebased.cov.get(i, j), direct.cov.get(i, j));
                assert!(
                    (a - b).abs() < 1e-9 * b.abs().max(1e-6),
                    "cov {i},{j}: {a} {b}"
                );
            }
        }
    }

    #[test]
    fn shifting_the_intercept_mean_equals_learning_under_it() {
        // Linear regression is exact: learning under one prior mean and
        // then moving it gives what learning under the new one gives.
        let d = 6;
        let from = ContextualConfig {
            prior_rate: 0.05,
            ..ContextualConfig::new(Likelihood::Linear)
        };
        let to = ContextualConfig {
            prior_rate: 0.3,
            ..from
        };
        let mut shifted = GaussianPosterior::prior(d, &from);
        let mut direct = GaussianPosterior::prior(d, &to);
        let mut rng = ChaCha8Rng::seed_from_u64(41);
        for x in rows(8, 300, d) {
            let y = f64::from(u8::from(rng.random::<f64>() < 0.3));
            shifted.update(&x, y, &from);
            direct.update(&x, y, &to);
        }
        let (mut a, mut b) = (vec![0.0; d], vec![0.0; d]);
        (a[0], b[0]) = (0.05, 0.3);
        shifted.move_prior_mean(&a, &b, &vec![from.prior_variance; d]);
        for (a, b) in shifted.mean.iter().zip(&direct.mean) {
            assert!(
                (a - b).abs() < 1e-9,
                "{:?} vs {:?}",
                shifted.mean,
                direct.mean
            );
        }
    }

    /// A posterior at the prior `N(mean, diag(variance))`.
    fn prior_at(mean: &[f64], variance: &[f64]) -> GaussianPosterior {
        let config = ContextualConfig::new(Likelihood::Linear);
        let mut p = GaussianPosterior::prior(mean.len(), &config);
        p.mean = mean.to_vec();
        p.cov = SymMatrix::diagonal(variance);
        p
    }

    #[test]
    fn rebasing_and_shifting_around_a_prior_mean_equal_learning_under_it() {
        // Linear regression is exact. Learned under (variances A, mean a),
        // then re-based on variances B and shifted to mean b: the posterior
        // learned under (B, b) directly.
        let d = 5;
        let config = ContextualConfig::new(Likelihood::Linear);
        let (va, vb) = ([0.5; 5], [0.5, 0.02, 2.0, 0.001, 0.3]);
        let (ma, mb) = ([0.05, 0.3, -0.4, 0.2, 0.0], [0.1, -0.2, 0.25, 0.0, 0.6]);
        let mut moved = prior_at(&ma, &va);
        let mut direct = prior_at(&mb, &vb);
        let truth = [0.1, 0.3, -0.2, 0.0, 0.05];
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for x in rows(10, 300, d) {
            let y = dot_sparse(&truth, &x) + 0.1 * (rng.random::<f64>() - 0.5);
            moved.update(&x, y, &config);
            direct.update(&x, y, &config);
        }
        moved.rebase_prior(&va, &vb, &ma);
        moved.move_prior_mean(&ma, &mb, &vb);
        for i in 0..d {
            assert!(
                (moved.mean[i] - direct.mean[i]).abs() < 1e-9,
                "mean {i}: {:?} vs {:?}",
                moved.mean,
                direct.mean
            );
            for j in 0..d {
                let (a, b) = (moved.cov.get(i, j), direct.cov.get(i, j));
                assert!((a - b).abs() < 1e-9 * b.abs().max(1e-6), "cov {i},{j}");
            }
        }
    }

    /// Eight offers of two kinds learned on a stream where column 1 (a
    /// customer trait) raises kind "a"'s rate and lowers kind "b"'s; two more
    /// offers, one of each kind, never shown. Returns the prior and the
    /// models.
    #[allow(clippy::type_complexity)]
    fn two_kinds(
        with_features: bool,
    ) -> (SharedPrior, Vec<GaussianPosterior>, Vec<Vec<(u32, f64)>>) {
        let d = 3;
        let config = ContextualConfig::new(Likelihood::Logistic);
        let category = |name: &str| crate::features::FeatureSpec::Categorical {
            name: name.into(),
            values: vec!["yes".into()],
        };
        let encoder = Encoder::new(vec![category("trait")], 0).expect("valid");
        assert_eq!(encoder.dim(), d);
        let offer_encoder = Encoder::new(
            vec![crate::features::FeatureSpec::Categorical {
                name: "kind".into(),
                values: vec!["a".into(), "b".into()],
            }],
            0,
        )
        .expect("valid");
        let kind = |k: usize| if k.is_multiple_of(2) { "a" } else { "b" };
        let offers: Vec<Vec<(u32, f64)>> = (0..10)
            .map(|k| {
                let c = crate::context::Context::from([(
                    "kind".to_owned(),
                    crate::context::FeatureValue::Category(kind(k).into()),
                )]);
                offer_encoder.encode(&c).expect("encodes")
            })
            .collect();
        let (columns, offers) = if with_features {
            (offer_encoder.dim(), offers)
        } else {
            (0, Vec::new())
        };
        let mut models: Vec<GaussianPosterior> = (0..10)
            .map(|_| GaussianPosterior::prior(d, &config))
            .collect();
        let mut prior = SharedPrior::new(d, columns, &config);
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        for t in 0..24_000 {
            let k = t % 8;
            let on = rng.random::<f64>() < 0.5;
            let x: Vec<(u32, f64)> = if on {
                vec![(0, 1.0), (1, 1.0)]
            } else {
                vec![(0, 1.0), (2, 1.0)]
            };
            let sign = if kind(k) == "a" { 1.0 } else { -1.0 };
            let z = -2.0 + if on { 1.5 * sign } else { -0.5 * sign };
            let redeemed = rng.random::<f64>() < crate::policy::thompson::sigmoid(z);
            for learned in [Some(false), redeemed.then_some(true)]
                .into_iter()
                .flatten()
            {
                let bound = prior.variance.clone();
                models[k].learn(&x, learned, &config, Some(&bound));
                if prior.count() {
                    prior.reestimate(&encoder, &mut models, &offers, &config);
                }
            }
        }
        (prior, models, offers)
    }

    #[test]
    fn offer_features_carry_what_offers_like_it_learned() {
        let (prior, models, offers) = two_kinds(true);
        // Offers 8 (kind a) and 9 (kind b) never learned: they are the prior
        // for their kind, which has learned the kinds' opposite use of the
        // trait (column 1) from the eight others, shrunk by the ridge: with
        // four offers of each kind, to 4 / (4 + 8) of their mean.
        let (a, b) = (&models[8], &models[9]);
        assert!(a.learned_nothing() && b.learned_nothing());
        let trait_effect = |m: &GaussianPosterior| m.mean[1] - m.mean[2];
        let learned: Vec<f64> = models[..8].iter().map(trait_effect).collect();
        let mean_of = |first: usize| learned.iter().skip(first).step_by(2).sum::<f64>() / 4.0;
        let (mean_a, mean_b) = (mean_of(0), mean_of(1));
        assert!(
            mean_a > 1.2 && mean_b < -1.2,
            "learned offers {learned:.2?}"
        );
        let share = 4.0 / (4.0 + OFFER_EFFECT_RIDGE);
        for (new, mean) in [(trait_effect(a), mean_a), (trait_effect(b), mean_b)] {
            assert!(
                (new - share * mean).abs() < 0.15 * share * mean.abs(),
                "new offer {new:.3}, its kind's offers {mean:.3}: expected about {:.3}",
                share * mean
            );
        }
        assert_eq!(prior.offer_effects.len(), 3 * 3);
        // Without offer features the new offers know nothing of the trait.
        // The estimate does not depend on how offers are numbered.
        let config = ContextualConfig::new(Likelihood::Logistic);
        let effects = |models: &[GaussianPosterior], offers: &[Vec<(u32, f64)>]| {
            let evidence = prior.offers_with_evidence(models, offers);
            prior.solve_offer_effects(&evidence, None, prior.intercept_mean(&config))
        };
        let (mut reversed_models, mut reversed_offers) = (models.clone(), offers.clone());
        reversed_models.reverse();
        reversed_offers.reverse();
        let again = effects(&models, &offers);
        assert!(again.is_some());
        assert_eq!(again, effects(&reversed_models, &reversed_offers));
        let (plain, models, _) = two_kinds(false);
        assert!(plain.offer_effects.is_empty());
        assert!(trait_effect(&models[8]).abs() < 1e-12);
        assert!(trait_effect(&models[9]).abs() < 1e-12);
        // The kinds explain the trait's weights, so the variance about the
        // prior mean is smaller with them (about half: each offer's
        // deviation is measured from its own prior mean, learned from the
        // seven others).
        assert!(
            prior.variance[1] < 0.6 * plain.variance[1],
            "{} vs {}",
            prior.variance[1],
            plain.variance[1]
        );
    }

    #[test]
    fn new_offers_start_at_the_campaign_rate() {
        let d = 4;
        let config = ContextualConfig::new(Likelihood::Logistic);
        let encoder = Encoder::new(
            vec![crate::features::FeatureSpec::Categorical {
                name: "c".into(),
                values: vec!["a".into(), "b".into()],
            }],
            0,
        )
        .expect("valid");
        let mut models: Vec<GaussianPosterior> = (0..3)
            .map(|_| GaussianPosterior::prior(d, &config))
            .collect();
        let mut prior = SharedPrior::new(d, 0, &config);
        assert!(!prior.has_estimated());
        let x = vec![(0, 1.0), (1, 1.0)];
        // Offer 0 is shown 40 times and redeemed 12 times; 1 and 2 never.
        let mut estimates = Vec::new();
        for t in 0..40 {
            for redeemed in [false, true].into_iter().take(1 + usize::from(t % 10 < 3)) {
                models[0].learn(&x, redeemed, &config, None);
                if prior.count() {
                    prior.reestimate(&encoder, &mut models, &[], &config);
                    estimates.push(prior.events);
                }
            }
        }
        // At 16, 32 learning events (52 in all, short of 64).
        assert_eq!(estimates, [16, 32]);
        assert!(prior.has_estimated());
        // As of the 32nd event: 32 observations, of which some redemptions.
        let logit = |r: f64| (r / (1.0 - r)).ln();
        let mu = prior.intercept.expect("learned");
        assert!(mu > logit(0.05) + 1.0, "{mu}: well above the configured 5%");
        // An offer that learned nothing starts there, with the prior's spread.
        assert_eq!(models[1].mean[0], mu);
        assert_eq!(prior.posterior(&[], &config).mean[0], mu);
        // The exact rule, recomputed on the current counts.
        let (o, dcs) = (models[0].observations as f64, models[0].decisions as f64);
        prior.events = 63;
        assert!(prior.count(), "64 is a power of two");
        prior.reestimate(&encoder, &mut models, &[], &config);
        let want = logit((o - dcs + 10.0 * 0.05) / (dcs + 10.0));
        assert!((prior.intercept.expect("learned") - want).abs() < 1e-12);
    }

    /// A visit's encoded context, and whether it redeemed.
    type Visit = (Vec<(u32, f64)>, bool);

    /// One decision of `x` learned by `m`, as its one observation.
    fn visit(m: &mut GaussianPosterior, x: &Sparse, redeemed: bool, config: &ContextualConfig) {
        m.learn(x, redeemed, config, None);
    }

    /// Leave one out, as segment-ts does: an offer's prior mean is learned
    /// from the other offers' evidence, not its own. Linear regression is
    /// exact, so after the intercept's step each offer's posterior is the
    /// one learned directly under the rate of the *other* offers,
    /// `(R_-k + 10 r0) / (D_-k + 10)`.
    #[test]
    fn an_offers_intercept_prior_leaves_out_its_own_evidence() {
        let d = 3;
        // A fixed noise variance: learned directly below (the noise of the
        // pooled rate has its own test, in contextual_ts).
        let config = ContextualConfig {
            noise_from_rate: false,
            ..ContextualConfig::new(Likelihood::Linear)
        };
        let encoder = Encoder::new(
            vec![crate::features::FeatureSpec::Categorical {
                name: "c".into(),
                values: vec!["a".into(), "b".into()],
            }],
            0,
        )
        .expect("valid");
        // Offer 0 redeems half its visits, offers 1 and 2 one in twenty.
        let rates = [0.5, 0.05, 0.05];
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let data: Vec<Vec<Visit>> = rates
            .iter()
            .map(|&r| {
                (0..200)
                    .map(|_| {
                        let x = vec![(0, 1.0), (1 + u32::from(rng.random::<bool>()), 1.0)];
                        (x, rng.random::<f64>() < r)
                    })
                    .collect()
            })
            .collect();
        let mut models: Vec<GaussianPosterior> = data
            .iter()
            .map(|rows| {
                let mut m = GaussianPosterior::prior(d, &config);
                for (x, y) in rows {
                    visit(&mut m, x, *y, &config);
                }
                m
            })
            .collect();
        let counts: Vec<(f64, f64)> = models
            .iter()
            .map(|m| (m.decisions as f64, m.observations as f64))
            .collect();
        let mut prior = SharedPrior::new(d, 0, &config);
        // Short of the first estimate of the variances: the intercept only.
        prior.events = 16;
        assert!(prior.reestimate(&encoder, &mut models, &[], &config));
        for k in 0..3 {
            let (decisions, observations) = counts
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != k)
                .fold((0.0, 0.0), |(d, o), (_, c)| (d + c.0, o + c.1));
            let others = (observations - decisions + 10.0 * config.prior_rate) / (decisions + 10.0);
            let under_others = ContextualConfig {
                prior_rate: others,
                ..config
            };
            let mut direct = GaussianPosterior::prior(d, &under_others);
            for (x, y) in &data[k] {
                visit(&mut direct, x, *y, &under_others);
            }
            for (a, b) in models[k].mean.iter().zip(&direct.mean) {
                assert!(
                    (a - b).abs() < 1e-9,
                    "offer {k}: {:?} vs {:?} under the others' rate {others}",
                    models[k].mean,
                    direct.mean
                );
            }
            assert!((models[k].prior_mean[0] - others).abs() < 1e-12);
        }
        // The campaign's own intercept (new offers, reports) pools them all.
        let (decisions, observations) = counts
            .iter()
            .fold((0.0, 0.0), |(d, o), c| (d + c.0, o + c.1));
        let all = (observations - decisions + 10.0 * config.prior_rate) / (decisions + 10.0);
        assert!((prior.intercept.expect("learned") - all).abs() < 1e-12);
    }

    /// An offer alone with evidence has no other offer to learn its prior
    /// from: its intercept and offer effects stay the configured ones, and
    /// its posterior is the one learned directly under the configured mean
    /// (with the re-estimated variances), however far its own data lie.
    #[test]
    fn an_offer_alone_learns_no_prior_from_its_own_evidence() {
        let d = 3;
        // A fixed noise variance: learned directly below (the noise of the
        // pooled rate has its own test, in contextual_ts).
        let config = ContextualConfig {
            noise_from_rate: false,
            ..ContextualConfig::new(Likelihood::Linear)
        };
        let encoder = Encoder::new(
            vec![crate::features::FeatureSpec::Categorical {
                name: "c".into(),
                values: vec!["a".into(), "b".into()],
            }],
            0,
        )
        .expect("valid");
        // Offer features: one categorical "kind"; both offers are kind a.
        let offers: Vec<Vec<(u32, f64)>> = vec![vec![(0, 1.0), (1, 1.0)]; 2];
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let rows: Vec<(Vec<(u32, f64)>, bool)> = (0..300)
            .map(|_| {
                let b = rng.random::<bool>();
                let x = vec![(0, 1.0), (1 + u32::from(b), 1.0)];
                (x, rng.random::<f64>() < if b { 0.6 } else { 0.2 })
            })
            .collect();
        let mut models = vec![GaussianPosterior::prior(d, &config); 2];
        for (x, y) in &rows {
            visit(&mut models[0], x, *y, &config);
        }
        let mut prior = SharedPrior::new(d, 3, &config);
        prior.events = FIRST_ESTIMATE;
        assert!(prior.reestimate(&encoder, &mut models, &offers, &config));
        assert!(
            prior.offer_effects.iter().any(|e| e.abs() > 1e-3),
            "the campaign's effects learn from offer 0: {:?}",
            prior.offer_effects
        );
        let configured = GaussianPosterior::prior(d, &config).mean;
        let mut direct = GaussianPosterior::prior(d, &config);
        direct.rebase_prior(
            &[config.prior_variance; 3],
            &prior.prior_variances(&config),
            &configured,
        );
        for (x, y) in &rows {
            visit(&mut direct, x, *y, &config);
        }
        for (a, b) in models[0].mean.iter().zip(&direct.mean) {
            assert!(
                (a - b).abs() < 1e-9,
                "{:?} vs {:?}",
                models[0].mean,
                direct.mean
            );
        }
        assert_eq!(models[0].prior_mean, configured);
        // Offer 1, with nothing of its own, starts at the campaign's prior.
        assert_eq!(models[1].mean, prior.prior_mean(&offers[1], &config));
    }

    #[test]
    fn pooled_estimate_shrinks_what_no_offer_uses() {
        // Eight offers; columns 1-2 matter (differently per offer), columns
        // 3-4 never do. The learned prior keeps room for the first group and
        // shrinks the second.
        let d = 5;
        let config = ContextualConfig::new(Likelihood::Logistic);
        let mut models: Vec<GaussianPosterior> = (0..8)
            .map(|_| GaussianPosterior::prior(d, &config))
            .collect();
        let mut prior = SharedPrior::new(d, 0, &config);
        // Two one-value categories: groups of columns 1-2 and 3-4.
        let category = |name: &str| crate::features::FeatureSpec::Categorical {
            name: name.into(),
            values: vec!["yes".into()],
        };
        let encoder = Encoder::new(vec![category("used"), category("unused")], 0).expect("valid");
        let groups: Vec<_> = encoder.groups().into_iter().map(|g| g.columns).collect();
        assert_eq!(groups, [1..3, 3..5]);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for (t, x) in rows(6, 16_000, d).iter().enumerate() {
            let k = t % 8;
            let sign = if k % 2 == 0 { 1.0 } else { -1.0 };
            let w = [-2.0, 1.2 * sign, -1.2 * sign, 0.0, 0.0];
            let p = crate::policy::thompson::sigmoid(dot_sparse(&w, x));
            // Decision-time learning, as the server and the simulator do:
            // the decision as a 0, a redemption as an extra 1.
            let redeemed = rng.random::<f64>() < p;
            for learned in [Some(false), redeemed.then_some(true)]
                .into_iter()
                .flatten()
            {
                models[k].learn(x, learned, &config, None);
                if prior.count() {
                    prior.reestimate(&encoder, &mut models, &[], &config);
                }
            }
        }
        let (used, unused) = (prior.variance[1], prior.variance[3]);
        assert!(used > 0.5, "variance of the used group {used}");
        assert!(unused < 0.02, "variance of the unused group {unused}");
        assert_eq!(
            prior.variance[0], config.prior_variance,
            "intercept untouched"
        );
        assert!(prior.next_estimate > prior.events);
        for m in &models {
            assert!(m.is_well_formed());
        }
    }
}
