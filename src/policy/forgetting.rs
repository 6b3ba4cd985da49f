//! Forgetting over event time: every offer's evidence is discounted by the
//! event time that has passed, back towards the offer's prior, so that an
//! offer Thompson sampling stopped showing regains its variance and is tried
//! again, and a posterior never hardens for good.
//!
//! In information form a posterior is its prior plus evidence,
//! `P = P0 + E` and `b = P0 mu0 + e` (precision `P`, mean `P^-1 b`).
//! Discounting by `k` in (0, 1] keeps `P0 + k E` and `P0 mu0 + k e`: each
//! past observation then weighs `k` of what it did, and the posterior is
//! never wider than its prior ("stabilized" forgetting, Kulhavy and Zarrop
//! 1993). Discounts compose (`k1` then `k2` is `k1 k2`), so how often they
//! are applied changes nothing but the rounding of time.
//!
//! Time is the events' own: the learning step advances a campaign's clock to
//! an event's timestamp (the decision's), on whole [`TICK_MS`] ticks, and
//! then discounts every offer of the campaign by the ticks passed. Every
//! event (a decision's revealed non-redemption, its redemption) carries its
//! decision's timestamp and comes after the decision, so the clock is the
//! latest decision time learned, and an event older than it is learned at
//! full weight. The live writer, recovery (replaying
//! the same events in the same order) and the simulator therefore agree
//! exactly; no wall clock is read.

use super::contextual::{ContextualConfig, GaussianPosterior};
use super::shared_prior::SharedPrior;
use crate::linalg::{Sparse, SymMatrix, solve_positive_definite};

/// The clock's resolution: a day of event time (a discount costs O(d^3)
/// per offer, paid once per tick; at half-lives of days, daily steps lose
/// nothing measurable).
pub const TICK_MS: i64 = 86_400_000;

/// The default half-life of evidence, in days of event time.
pub const DEFAULT_HALF_LIFE_DAYS: f64 = 30.0;

/// A posterior's clock before its first discount: the next event sets it.
pub const NEVER: i64 = i64::MIN;

/// The start of the tick holding `at_ms`.
pub fn tick_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(TICK_MS) * TICK_MS
}

/// Milliseconds in a day.
pub const DAY_MS: f64 = 86_400_000.0;

/// The share of its weight an observation keeps after `elapsed_ms` of event
/// time under a half-life of `half_life_ms` (1 for no time or no
/// forgetting).
pub fn kept(elapsed_ms: f64, half_life_ms: Option<f64>) -> f64 {
    match half_life_ms {
        Some(h) if h > 0.0 && elapsed_ms > 0.0 => 0.5f64.powf(elapsed_ms / h),
        _ => 1.0,
    }
}

/// The share of its weight an observation of the decision made at
/// `decided_ms` still has in `posterior`:
/// `2^(-(clock - max(tick(decided), since)) / half-life)`, where `since` is
/// when the posterior's discounting began (evidence from before then kept
/// its full weight until then), times [`KEPT_ON_ALARM`](super::change::KEPT_ON_ALARM)
/// for each alarm of change detection after the decision (an estimate for
/// an observation learned after such an alarm). Exact for the decision's own observation
/// (learned when the clock reached its tick); a redemption learned after the
/// clock moved on holds a little more than this.
pub fn kept_over_time(
    config: &ContextualConfig,
    posterior: &GaussianPosterior,
    decided_ms: i64,
) -> f64 {
    // Alarms of change detection after the decision discounted it too.
    let alarms = posterior.change.kept(decided_ms);
    if posterior.forgotten_to_ms == NEVER {
        return alarms;
    }
    let from = tick_of(decided_ms).max(posterior.forgetting_since_ms);
    alarms
        * kept(
            posterior.forgotten_to_ms.saturating_sub(from) as f64,
            config.time_half_life_ms,
        )
}

/// The share of its weight an observation still has under count-based
/// forgetting (`half_life`) after `later` more observations of its offer:
/// `2^(-later / half_life)`. An estimate: that forgetting acts along each
/// observation's direction only, so later observations elsewhere in the
/// context discount it less.
pub fn kept_over_count(config: &ContextualConfig, later: u64) -> f64 {
    match config.half_life {
        Some(h) => 0.5f64.powf(later as f64 / h.max(1.0)),
        None => 1.0,
    }
}

/// A prior's mean and per-column variances.
pub type PriorMoments = (Vec<f64>, Vec<f64>);

/// The prior an offer's posterior is discounted towards: its mean and
/// per-column variances (the learned prior's for offer features `offer`,
/// when the campaign has one; else the configured one).
pub fn offer_prior(
    prior: Option<&SharedPrior>,
    dim: usize,
    offer: &Sparse,
    config: &ContextualConfig,
) -> PriorMoments {
    match prior.filter(|p| p.variance.len() == dim) {
        Some(p) => (p.prior_mean(offer, config), p.prior_variances(config)),
        None => {
            let p = GaussianPosterior::prior(dim, config);
            (p.mean, vec![config.prior_variance; dim])
        }
    }
}

/// The prior posterior `m`, of an offer whose features encode to `offer`,
/// is discounted towards: under a learned prior, the prior mean it is based
/// on ([`SharedPrior::mean_of`]: its offer's own, left out of its own
/// evidence) and the learned variances; else as [`offer_prior`].
pub fn posterior_prior(
    prior: Option<&SharedPrior>,
    m: &GaussianPosterior,
    offer: &Sparse,
    config: &ContextualConfig,
) -> PriorMoments {
    let dim = m.mean.len();
    match prior.filter(|p| p.variance.len() == dim) {
        Some(p) => (p.mean_of(m, offer, config), p.prior_variances(config)),
        None => offer_prior(None, dim, offer, config),
    }
}

/// Brings every posterior of a campaign to the tick of `at_ms`: each one
/// behind it keeps `kept(ticks passed)` of its evidence; one that was never
/// discounted only takes the clock (it holds no evidence older than the
/// clock's first event). `prior_of(k, m)` is the prior of offer k, whose
/// posterior is `m` ([`posterior_prior`]).
/// Returns whether any posterior changed.
pub fn advance(
    models: &mut [GaussianPosterior],
    at_ms: i64,
    half_life_ms: f64,
    prior_of: &dyn Fn(usize, &GaussianPosterior) -> PriorMoments,
) -> bool {
    let now = tick_of(at_ms);
    let mut changed = false;
    for (k, m) in models.iter_mut().enumerate() {
        if m.forgotten_to_ms >= now {
            continue;
        }
        changed = true;
        if m.forgotten_to_ms == NEVER {
            // Discounting begins now: what it holds is not older for it.
            m.forgetting_since_ms = now;
        } else if !m.learned_nothing() {
            let keep = kept((now - m.forgotten_to_ms) as f64, Some(half_life_ms));
            let (mean, variance) = prior_of(k, m);
            m.discount(keep, &mean, &variance);
        }
        m.forgotten_to_ms = now;
    }
    changed
}

impl GaussianPosterior {
    /// Keeps `keep` (> 0; above 1 the evidence weighs more) of the
    /// evidence, towards the prior with mean
    /// `mean0` and per-column variances `variance0`:
    /// `S' = (k S^-1 + (1 - k) P0)^-1 = S (k S + (1 - k) S P0 S)^-1 S` and
    /// `m' = m + (1 - k) S' P0 (mu0 - m)`. O(d^3). Returns false, leaving
    /// the posterior as it is, when the sizes disagree or the covariance is
    /// not positive definite.
    pub fn discount(&mut self, keep: f64, mean0: &[f64], variance0: &[f64]) -> bool {
        let d = self.mean.len();
        if !(keep > 0.0 && keep.is_finite() && keep != 1.0)
            || mean0.len() != d
            || variance0.len() != d
        {
            return keep == 1.0;
        }
        let s = self.cov.as_row_major();
        // M = k S + (1 - k) S P0 S, symmetric positive definite; products
        // in i-l-j order, so the inner loops run along rows.
        let mut m: Vec<f64> = s.iter().map(|v| keep * v).collect();
        for i in 0..d {
            let row = &mut m[i * d..(i + 1) * d];
            for l in 0..d {
                let c = (1.0 - keep) * s[i * d + l] / variance0[l];
                if c == 0.0 {
                    continue;
                }
                for (r, slj) in row.iter_mut().zip(&s[l * d..(l + 1) * d]) {
                    *r += c * slj;
                }
            }
        }
        let Some(x) = solve_positive_definite(&m, d, s, d) else {
            return false;
        };
        // S' = S X, symmetrized against rounding.
        let mut next = vec![0.0; d * d];
        for i in 0..d {
            let row = &mut next[i * d..(i + 1) * d];
            for l in 0..d {
                let c = s[i * d + l];
                if c == 0.0 {
                    continue;
                }
                for (r, xlj) in row.iter_mut().zip(&x[l * d..(l + 1) * d]) {
                    *r += c * xlj;
                }
            }
        }
        for i in 0..d {
            for j in i + 1..d {
                let v = 0.5 * (next[i * d + j] + next[j * d + i]);
                next[i * d + j] = v;
                next[j * d + i] = v;
            }
        }
        let Some(cov) = SymMatrix::from_row_major(d, next) else {
            return false;
        };
        if !cov.is_well_formed() {
            return false;
        }
        let pull: Vec<(u32, f64)> = (0..d)
            .map(|i| {
                (
                    i as u32,
                    (1.0 - keep) * (mean0[i] - self.mean[i]) / variance0[i],
                )
            })
            .filter(|(_, v)| *v != 0.0)
            .collect();
        let shift = cov.mul_sparse(&pull);
        for (mi, v) in self.mean.iter_mut().zip(shift) {
            *mi += v;
        }
        self.cov = cov;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::contextual::Likelihood;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn design(rng: &mut ChaCha8Rng, d: usize) -> Vec<(u32, f64)> {
        let mut x = vec![(0, 1.0)];
        x.extend((1..d).map(|i| (i as u32, rng.random_range(-1.0..1.0))));
        x
    }

    /// Discounting a linear posterior by k is, exactly, the posterior in
    /// which every observation weighs k: learned with noise variance
    /// sigma^2 / k.
    #[test]
    fn discounting_equals_reweighting_every_observation() {
        let d = 5;
        let config = ContextualConfig::new(Likelihood::Linear);
        let keep = 0.3;
        let weighted = ContextualConfig {
            noise_variance: config.noise_variance / keep,
            ..config
        };
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut full = GaussianPosterior::prior(d, &config);
        let mut want = GaussianPosterior::prior(d, &config);
        for _ in 0..300 {
            let x = design(&mut rng, d);
            let y = f64::from(u8::from(rng.random::<f64>() < 0.2));
            full.update(&x, y, &config);
            want.update(&x, y, &weighted);
        }
        let (mean0, var0) = offer_prior(None, d, &[], &config);
        assert!(full.discount(keep, &mean0, &var0));
        for i in 0..d {
            assert!((full.mean[i] - want.mean[i]).abs() < 1e-9, "mean {i}");
            for j in 0..d {
                let (a, b) = (full.cov.get(i, j), want.cov.get(i, j));
                assert!(
                    (a - b).abs() < 1e-9 * b.abs().max(1e-6),
                    "cov {i},{j}: {a} vs {b}"
                );
            }
        }
    }

    /// Discounts compose, and a long time brings the posterior back to its
    /// prior, never past it.
    #[test]
    fn discounts_compose_and_stop_at_the_prior() {
        let d = 4;
        let config = ContextualConfig::new(Likelihood::Logistic);
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let mut a = GaussianPosterior::prior(d, &config);
        for _ in 0..500 {
            let x = design(&mut rng, d);
            a.update(&x, f64::from(u8::from(rng.random::<f64>() < 0.3)), &config);
        }
        let mut b = a.clone();
        let (mean0, var0) = offer_prior(None, d, &[], &config);
        assert!(a.discount(0.5, &mean0, &var0) && a.discount(0.4, &mean0, &var0));
        assert!(b.discount(0.2, &mean0, &var0));
        for i in 0..d {
            assert!((a.mean[i] - b.mean[i]).abs() < 1e-8);
            assert!((a.cov.get(i, i) - b.cov.get(i, i)).abs() < 1e-10);
        }
        assert!(b.discount(1e-12, &mean0, &var0));
        for i in 0..d {
            assert!(
                (b.mean[i] - mean0[i]).abs() < 1e-6,
                "mean {i}: {}",
                b.mean[i]
            );
            let v = b.cov.get(i, i);
            assert!(
                v <= var0[i] * (1.0 + 1e-9) && v > 0.99 * var0[i],
                "variance {i}: {v}"
            );
        }
    }

    /// The clock: every offer, the learned one or not, keeps 2^(-t/h) of its
    /// evidence; a fresh posterior only takes the time; an event in a tick
    /// already reached changes nothing.
    #[test]
    fn advancing_the_clock_discounts_every_offer_by_the_time_passed() {
        let d = 3;
        let config = ContextualConfig::new(Likelihood::Linear);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut models = vec![GaussianPosterior::prior(d, &config); 3];
        let start = 1_000 * TICK_MS;
        assert!(advance(&mut models, start, DAY_MS, &|_, _| offer_prior(
            None,
            d,
            &[],
            &config
        )));
        for m in &mut models[..2] {
            for _ in 0..200 {
                m.update(&design(&mut rng, d), 1.0, &config);
            }
        }
        let before = models.clone();
        let prior = |_: usize, _: &GaussianPosterior| offer_prior(None, d, &[], &config);
        assert!(!advance(&mut models, start + TICK_MS - 1, DAY_MS, &prior));
        assert_eq!(models, before, "same tick: nothing moves");
        assert!(advance(
            &mut models,
            start + DAY_MS as i64 + 5,
            DAY_MS,
            &prior
        ));
        let (mean0, var0) = offer_prior(None, d, &[], &config);
        for (k, m) in models.iter().enumerate() {
            let mut want = before[k].clone();
            if !want.learned_nothing() {
                want.discount(0.5, &mean0, &var0);
            }
            assert_eq!(m.forgotten_to_ms, start + DAY_MS as i64);
            assert!((m.mean[1] - want.mean[1]).abs() < 1e-12, "offer {k}");
            assert!((m.cov.get(1, 1) - want.cov.get(1, 1)).abs() < 1e-15);
        }
        assert!(models[1].cov.get(0, 0) > before[1].cov.get(0, 0));
    }

    /// Issue 18, item 4: under count-based forgetting (half-life 300),
    /// erasing the 400 oldest of 2,000 decisions of a linear-ts offer
    /// removes each with the weight it still has, so the rate estimate
    /// stays near the truth and the variance no wider than the prior.
    /// Removed at full weight, they drove the rate to -6 with a variance
    /// wider than the prior.
    #[test]
    fn erasing_old_decisions_under_forgetting_keeps_the_posterior_sane() {
        use crate::policy::contextual::Removal;
        let config = ContextualConfig {
            half_life: Some(300.0),
            time_half_life_ms: None,
            ..ContextualConfig::new(Likelihood::Linear)
        };
        let x = vec![(0, 1.0)];
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut m = GaussianPosterior::prior(1, &config);
        // Per decision, the index of its decision event and of its
        // redemption event, if any.
        let mut events = Vec::new();
        let mut n = 0u64;
        for _ in 0..2_000 {
            // One observation per decision: its outcome.
            let redeemed = rng.random::<f64>() < 0.2;
            m.learn(&x, redeemed, &config, None);
            let decided = n;
            n += 1;
            events.push((decided, redeemed.then_some(decided)));
        }
        let prior = config.prior_variance;
        for &(decided, redeemed) in &events[..400] {
            let removal = Removal {
                decision_weight: kept_over_count(&config, n - 1 - decided),
                redemption_weight: redeemed.map_or(1.0, |r| kept_over_count(&config, n - 1 - r)),
                weights_are_exact: false,
                prior_variance: &[],
            };
            m.unlearn_decision(&x, redeemed.is_some(), &removal, &config);
            let v = m.cov.get(0, 0);
            assert!(
                v <= prior * (1.0 + 1e-9),
                "variance {v} past the prior {prior}"
            );
        }
        let rate = GaussianPosterior::rate(m.mean[0], Likelihood::Linear);
        assert!((0.12..0.30).contains(&rate), "rate {rate}");
    }

    /// Learns 600 linear observations half an hour apart, discounting only
    /// from row `forgetting_from` on (before it, as a build without
    /// forgetting over time would), erases four of them with the weight
    /// [`kept_over_time`] gives, and checks the posterior equals one that
    /// never learned them.
    fn erasure_is_exact(seed: u64, forgetting_from: usize) {
        use crate::policy::contextual::Removal;
        let d = 4;
        let config = ContextualConfig {
            time_half_life_ms: Some(3.0 * DAY_MS),
            ..ContextualConfig::new(Likelihood::Linear)
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        /// (x, redeemed, decided at).
        type Row = (Vec<(u32, f64)>, bool, i64);
        let rows: Vec<Row> = (0..600)
            .map(|i| {
                (
                    design(&mut rng, d),
                    rng.random::<f64>() < 0.2,
                    i * 1_800_000,
                )
            })
            .collect();
        let erased = [3usize, 250, 420, 599];
        let prior = |_: usize, _: &GaussianPosterior| offer_prior(None, d, &[], &config);
        let half_life = config.time_half_life_ms.unwrap_or(1.0);
        let learn = |skip: &[usize]| {
            let mut models = vec![GaussianPosterior::prior(d, &config)];
            for (i, (x, redeemed, at)) in rows.iter().enumerate() {
                if i >= forgetting_from {
                    advance(&mut models, *at, half_life, &prior);
                }
                if skip.contains(&i) {
                    continue;
                }
                models[0].learn(x, *redeemed, &config, None);
            }
            models.remove(0)
        };
        let mut with_all = learn(&[]);
        let without = learn(&erased);
        assert_eq!(
            with_all.forgetting_since_ms,
            tick_of(rows[forgetting_from].2)
        );
        let (_, variances) = prior(0, &with_all);
        for &i in &erased {
            let (x, redeemed, at) = &rows[i];
            let w = kept_over_time(&config, &with_all, *at);
            let removal = Removal {
                decision_weight: w,
                redemption_weight: w,
                weights_are_exact: true,
                prior_variance: &variances,
            };
            assert!(with_all.unlearn_decision(x, *redeemed, &removal, &config));
        }
        for i in 0..d {
            assert!(
                (with_all.mean[i] - without.mean[i]).abs() < 1e-9,
                "mean {i}: {} vs {}",
                with_all.mean[i],
                without.mean[i]
            );
            let (a, b) = (with_all.cov.get(i, i), without.cov.get(i, i));
            assert!((a - b).abs() < 1e-9 * b, "variance {i}: {a} vs {b}");
        }
    }

    /// Under forgetting over time alone, a linear posterior without the
    /// erased decisions is recovered exactly: each is removed with the
    /// weight its age gives it.
    #[test]
    fn erasure_under_forgetting_over_time_is_exact_for_linear_ts() {
        erasure_is_exact(10, 0);
    }

    /// Evidence learned before discounting began (a store from a build
    /// without forgetting over time, or forgetting turned on later) kept
    /// its full weight until then: erasing it removes that weight, exactly,
    /// not the weight its age alone would give (rows 3 and 250 are older
    /// than row 300, where forgetting starts).
    #[test]
    fn erasure_of_evidence_older_than_the_forgetting_is_exact() {
        erasure_is_exact(11, 300);
    }
}
