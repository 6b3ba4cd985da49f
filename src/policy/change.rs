//! Change detection per offer: when an offer's outcomes stop matching what
//! its posterior predicts, its old evidence is discounted towards its prior,
//! so that the offer (and only it) is learned again from what it does now.
//!
//! The test is Page's CUSUM (1954) on the log-likelihood ratio of each
//! outcome, two-sided: against the posterior's prediction `p0` at the
//! decision's context, the alternatives are the same context with the odds
//! moved by `e^-SHIFT` (the offer got worse) or `e^SHIFT` (better):
//!
//! `fell <- max(0, fell + ln P(y | p_fell) - ln P(y | p0))`, likewise `rose`.
//!
//! Either passing the threshold `h` is an alarm: the offer keeps
//! [`KEPT_ON_ALARM`] of its evidence ([`GaussianPosterior::discount`],
//! bounded by the prior) and both sums restart at 0. On a stationary stream
//! whose predictions are right, an alarm takes at least `e^h` observations
//! on average (Wald's bound, per side); a drop from a 30% to a 2% rate is
//! found in about `h / 0.19` observations. An offer whose prediction at a
//! context is itself too uncertain to tell a shift of `SHIFT` (predictive
//! standard deviation of the logit above `SHIFT / 2`, e.g. a new offer)
//! does not count there.
//!
//! The sums live in the posterior ([`ChangeWatch`]) and move only with
//! learning events, in their order, so the live writer, recovery and the
//! simulator agree, and a checkpoint keeps them.

use serde::{Deserialize, Serialize};

use super::contextual::{GaussianPosterior, Likelihood};

/// The shift of the log-odds the test looks for, each way.
pub const SHIFT: f64 = 1.0;

/// The default alarm threshold on either sum (nats).
pub const DEFAULT_THRESHOLD: f64 = 12.0;

/// The share of its evidence an offer keeps when an alarm fires.
pub const KEPT_ON_ALARM: f64 = 0.1;

/// How many alarm times a posterior remembers (older ones weigh
/// `KEPT_ON_ALARM^4` or less).
const REMEMBERED_ALARMS: usize = 4;

/// One offer's two CUSUM sums and its recent alarms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChangeWatch {
    /// The sum testing for a fall of the odds by `e^-SHIFT`.
    pub fell: f64,
    /// The sum testing for a rise by `e^SHIFT`.
    pub rose: f64,
    /// Alarms so far.
    pub alarms: u64,
    /// Event times (Unix ms, the decision's) of the latest alarms, oldest
    /// first: evidence from decisions before each keeps [`KEPT_ON_ALARM`]
    /// of its weight (erasure removes it with that weight).
    pub alarm_ms: Vec<i64>,
}

/// The log-likelihood ratios of outcome `redeemed` for a fall and a rise of
/// the log-odds by `SHIFT` at a context whose latent score under the
/// posterior has predictive mean `mu` and variance `var`; None when the
/// prediction is too uncertain to tell.
fn ratios(mu: f64, var: f64, likelihood: Likelihood, redeemed: bool) -> Option<(f64, f64)> {
    let p0 = GaussianPosterior::rate(mu, likelihood).clamp(1e-4, 1.0 - 1e-4);
    // The predictive sd of the log-odds (linear-ts: by the delta method).
    let sd = match likelihood {
        Likelihood::Logistic => var.sqrt(),
        Likelihood::Linear => var.sqrt() / (p0 * (1.0 - p0)),
    };
    if !(sd <= SHIFT / 2.0) {
        return None;
    }
    let z = (p0 / (1.0 - p0)).ln();
    let ln_p = |p: f64| if redeemed { p.ln() } else { (1.0 - p).ln() };
    let base = ln_p(p0);
    let fell = ln_p(super::thompson::sigmoid(z - SHIFT)) - base;
    let rose = ln_p(super::thompson::sigmoid(z + SHIFT)) - base;
    Some((fell, rose))
}

impl ChangeWatch {
    /// Adds an outcome the posterior predicted with latent mean `mu` and
    /// variance `var` (before learning it); `weight` -1 takes one back (a
    /// retracted non-redemption). Returns whether an alarm fires under
    /// `threshold`; the caller then discounts ([`Self::alarm`]).
    pub fn observe(
        &mut self,
        (mu, var): (f64, f64),
        redeemed: bool,
        likelihood: Likelihood,
        weight: f64,
        threshold: f64,
    ) -> bool {
        let Some((fell, rose)) = ratios(mu, var, likelihood, redeemed) else {
            return false;
        };
        self.fell = (self.fell + weight * fell).max(0.0);
        self.rose = (self.rose + weight * rose).max(0.0);
        self.fell > threshold || self.rose > threshold
    }

    /// Records an alarm at event time `at_ms` and restarts the sums.
    pub fn alarm(&mut self, at_ms: i64) {
        self.fell = 0.0;
        self.rose = 0.0;
        self.alarms += 1;
        self.alarm_ms.push(at_ms);
        if self.alarm_ms.len() > REMEMBERED_ALARMS {
            self.alarm_ms.remove(0);
        }
    }

    /// The share of its weight alarms left an observation of a decision
    /// made at `decided_ms`: [`KEPT_ON_ALARM`] for each alarm after it. An
    /// estimate when the observation was learned after an alarm later than
    /// its decision (a late redemption).
    pub fn kept(&self, decided_ms: i64) -> f64 {
        self.alarm_ms
            .iter()
            .filter(|&&t| t > decided_ms)
            .fold(1.0, |k, _| k * KEPT_ON_ALARM)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// On a stationary stream whose prediction is right, alarms are rare:
    /// at most 2 in 200,000 outcomes at rates from 2% to 40% (Wald's bound
    /// gives one per e^12 = 163,000 per side at most on average).
    #[test]
    fn a_stationary_stream_rarely_alarms() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut alarms = 0;
        for p in [0.02, 0.05, 0.1, 0.2, 0.4] {
            let mut w = ChangeWatch::default();
            let z = (p / (1.0 - p)).ln();
            for _ in 0..40_000 {
                let y = rng.random::<f64>() < p;
                if w.observe((z, 0.01), y, Likelihood::Logistic, 1.0, DEFAULT_THRESHOLD) {
                    w.alarm(0);
                    alarms += 1;
                }
            }
        }
        assert!(alarms <= 2, "{alarms} false alarms");
    }

    /// A drop of the odds by e^3 (30% to 2.3%) is found within 150
    /// outcomes, a rise (5% to 28%) within 150; an uncertain prediction
    /// never counts.
    #[test]
    fn a_shift_is_found_quickly() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for (predicted, truth) in [(0.3f64, 0.023), (0.05, 0.28)] {
            let z = (predicted / (1.0 - predicted)).ln();
            let mut w = ChangeWatch::default();
            let found = (1..=1_000).find(|_| {
                let y = rng.random::<f64>() < truth;
                w.observe((z, 0.01), y, Likelihood::Logistic, 1.0, DEFAULT_THRESHOLD)
            });
            assert!(
                found.is_some_and(|n| n <= 150),
                "{predicted} -> {truth}: {found:?}"
            );
            let mut wide = ChangeWatch::default();
            assert!(!(0..1_000).any(|_| wide.observe(
                (z, 1.0),
                rng.random::<f64>() < truth,
                Likelihood::Logistic,
                1.0,
                DEFAULT_THRESHOLD
            )));
        }
    }

    /// Alarms after a decision discount what it left; older alarms are
    /// forgotten after four.
    #[test]
    fn alarms_discount_earlier_decisions() {
        let mut w = ChangeWatch::default();
        w.alarm(100);
        w.alarm(200);
        assert_eq!(w.kept(250), 1.0);
        assert!((w.kept(150) - KEPT_ON_ALARM).abs() < 1e-15);
        assert!((w.kept(50) - KEPT_ON_ALARM * KEPT_ON_ALARM).abs() < 1e-15);
        for t in [300, 400, 500] {
            w.alarm(t);
        }
        assert_eq!(w.alarm_ms, vec![200, 300, 400, 500]);
        assert_eq!(w.alarms, 5);
    }
}
