//! Change detection per offer: when an offer's outcomes stop matching what
//! its posterior predicts, its old evidence is discounted towards its prior,
//! so that the offer (and only it) is learned again from what it does now.
//!
//! The test is a score test on the offer's recent outcomes against its
//! posterior's predictions: over the events of the current and the previous
//! tick of event time ([`super::forgetting::TICK_MS`], a day), with `p` the
//! predictive rate at each event's context before it is learned,
//!
//! `z = sum(y - p) / sqrt(sum p (1 - p))`,
//!
//! checked after every event once `sum p (1 - p)` reaches
//! [`MIN_VARIANCE`]. `|z|` above the threshold (default
//! [`DEFAULT_THRESHOLD`]) is an alarm: the offer keeps [`KEPT_ON_ALARM`]
//! of its evidence ([`GaussianPosterior::discount`], never wider than its
//! prior) and the sums restart. An alarm does not move the posterior's
//! mean much (it weighs its evidence less against the prior), but new
//! outcomes then move it ten times as fast; if its predictions are still
//! off, the next alarm discounts again.
//!
//! Why these sums: they are linear, so a retraction (a non-redemption
//! taken back when its redemption comes) subtracts what it added (at the
//! offer's prediction of the moment, which has moved a little since). Once
//! the non-redemption's day has left the window, the retraction and the
//! redemption together add 1 to the residuals and nothing to the variance;
//! in a steady stream as many non-redemptions still to be taken back are in
//! the window, at `-p` each, so the window holds the redemptions' `1 - p`.
//! A CUSUM's clipping at 0 cannot be undone by a retraction (half the
//! redemptions come after a reveal: a CUSUM alarmed on stationary data). And summed over the
//! offer's contexts, a model that fits some contexts worse than others
//! (shrunk by the learned prior) still predicts the offer's total: the
//! intercept's score equation holds it there.
//!
//! The sums live in the posterior ([`ChangeWatch`]) and move only with
//! learning events, in their order, on their decisions' timestamps, so the
//! live writer, recovery and the simulator agree, and a checkpoint keeps
//! them.

use serde::{Deserialize, Serialize};

use super::contextual::{GaussianPosterior, Likelihood};
use super::forgetting::{NEVER, tick_of};

/// The default alarm threshold on `|z|`.
pub const DEFAULT_THRESHOLD: f64 = 5.0;

/// The share of its evidence an offer keeps when an alarm fires.
pub const KEPT_ON_ALARM: f64 = 0.1;

/// The least `sum p (1 - p)` (about the expected redemptions, at low
/// rates) before the test is read.
pub const MIN_VARIANCE: f64 = 10.0;

/// How many alarm times a posterior remembers (older ones weigh
/// `KEPT_ON_ALARM^4` or less).
const REMEMBERED_ALARMS: usize = 4;

/// One tick's sums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TickSums {
    /// `sum (y - p)`.
    pub residual: f64,
    /// `sum p (1 - p)`.
    pub variance: f64,
    /// `sum s`, with `s` the standard deviation of `p` from the posterior's
    /// own uncertainty (delta method): its predictions' errors are shared
    /// by the events, so their sum's variance is at most `spread^2`.
    pub spread: f64,
}

/// One offer's sums over the current and the previous tick, and its recent
/// alarms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeWatch {
    /// The tick (Unix ms) of `current`: the latest event time seen.
    pub tick_ms: i64,
    /// The current tick's sums.
    pub current: TickSums,
    /// The previous tick's.
    pub previous: TickSums,
    /// Alarms so far.
    pub alarms: u64,
    /// Event times (Unix ms, the decision's) of the latest alarms, oldest
    /// first: evidence from decisions before each keeps [`KEPT_ON_ALARM`]
    /// of its weight (erasure removes it with that weight).
    pub alarm_ms: Vec<i64>,
}

impl Default for ChangeWatch {
    fn default() -> Self {
        ChangeWatch {
            tick_ms: NEVER,
            current: TickSums::default(),
            previous: TickSums::default(),
            alarms: 0,
            alarm_ms: Vec::new(),
        }
    }
}

/// A prediction of an outcome: its rate and that rate's standard deviation
/// under the posterior.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// The predictive redemption rate.
    pub rate: f64,
    /// Its standard deviation from the posterior's uncertainty.
    pub sd: f64,
}

/// The prediction at a context whose latent score has predictive mean `mu`
/// and variance `var` (logistic-ts: the probit approximation of the
/// sigmoid's expectation, and the sd by the delta method).
pub fn predict((mu, var): (f64, f64), likelihood: Likelihood) -> Prediction {
    let latent = match likelihood {
        Likelihood::Logistic => mu / (1.0 + std::f64::consts::PI * var / 8.0).sqrt(),
        Likelihood::Linear => mu,
    };
    let rate = GaussianPosterior::rate(latent, likelihood).clamp(1e-4, 1.0 - 1e-4);
    let slope = match likelihood {
        Likelihood::Logistic => rate * (1.0 - rate),
        Likelihood::Linear => 1.0,
    };
    Prediction {
        rate,
        sd: slope * var.max(0.0).sqrt(),
    }
}

impl ChangeWatch {
    /// Adds an outcome the posterior predicted as `prediction` (before
    /// learning it) of a decision made at `at_ms`; `weight` -1 takes one
    /// back (a retracted non-redemption). Returns the test's `z` once there
    /// is enough to read it: the residuals' sum over its standard
    /// deviation, `sqrt(variance + spread^2)`.
    pub fn observe(
        &mut self,
        prediction: Prediction,
        redeemed: bool,
        at_ms: i64,
        weight: f64,
    ) -> Option<f64> {
        let p = prediction.rate;
        let tick = tick_of(at_ms);
        if tick > self.tick_ms {
            self.previous =
                if self.tick_ms != NEVER && tick - self.tick_ms == super::forgetting::TICK_MS {
                    self.current
                } else {
                    TickSums::default()
                };
            self.current = TickSums::default();
            self.tick_ms = tick;
        }
        let y = f64::from(u8::from(redeemed));
        self.current.residual += weight * (y - p);
        self.current.variance += weight * p * (1.0 - p);
        self.current.spread += weight * prediction.sd;
        let variance = self.current.variance + self.previous.variance;
        let spread = self.current.spread + self.previous.spread;
        (variance >= MIN_VARIANCE).then(|| {
            (self.current.residual + self.previous.residual) / (variance + spread * spread).sqrt()
        })
    }

    /// Records an alarm at event time `at_ms` and restarts the sums.
    pub fn alarm(&mut self, at_ms: i64) {
        self.current = TickSums::default();
        self.previous = TickSums::default();
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
    use crate::policy::forgetting::TICK_MS;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Feeds `n` outcomes at rate `truth` predicted at `predicted`, 500 a
    /// tick; half the redemptions come after their non-redemption was
    /// learned (and is taken back). Returns the alarms and the index of
    /// the first.
    fn feed(
        w: &mut ChangeWatch,
        rng: &mut ChaCha8Rng,
        predicted: f64,
        truth: f64,
        n: i64,
        from: i64,
    ) -> (u64, Option<i64>) {
        let predicted = Prediction {
            rate: predicted,
            sd: 0.0,
        };
        let (mut alarms, mut first) = (0, None);
        let mut retract = Vec::new();
        for i in from..from + n {
            let at = i * TICK_MS / 500;
            let redeemed = rng.random::<f64>() < truth;
            let mut zs = Vec::new();
            if redeemed && rng.random::<bool>() {
                zs.push(w.observe(predicted, false, at, 1.0));
                retract.push(at);
            } else {
                zs.push(w.observe(predicted, redeemed, at, 1.0));
            }
            if retract.len() > 20 {
                let back = retract.remove(0);
                zs.push(w.observe(predicted, false, back, -1.0));
                zs.push(w.observe(predicted, true, back, 1.0));
            }
            if zs
                .into_iter()
                .flatten()
                .any(|z| z.abs() > DEFAULT_THRESHOLD)
            {
                w.alarm(at);
                alarms += 1;
                first.get_or_insert(i - from);
            }
        }
        (alarms, first)
    }

    /// A stationary stream whose prediction is right does not alarm in
    /// 400,000 outcomes at rates from 2% to 40%, retractions included
    /// (a CUSUM on the same stream, which cannot undo its clipping at 0,
    /// alarmed on the high-rate offer of the drift scenario daily).
    #[test]
    fn a_stationary_stream_rarely_alarms() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut alarms = 0;
        for p in [0.02, 0.05, 0.1, 0.2, 0.4] {
            let mut w = ChangeWatch::default();
            alarms += feed(&mut w, &mut rng, p, p, 80_000, 0).0;
        }
        assert_eq!(alarms, 0, "false alarms");
    }

    /// At 500 outcomes a tick, a drop of the odds by e^3 (30% to 2.3%) is
    /// found within 300 outcomes, a rise (5% to 28%) within 300 (the
    /// previous tick's outcomes, still in the window, dilute the first).
    #[test]
    fn a_shift_is_found_quickly() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for (predicted, truth, within) in [(0.3, 0.023, 300), (0.05, 0.28, 300)] {
            let mut w = ChangeWatch::default();
            feed(&mut w, &mut rng, predicted, predicted, 5_000, 0);
            let (_, first) = feed(&mut w, &mut rng, predicted, truth, 1_000, 5_000);
            assert!(
                first.is_some_and(|n| n <= within),
                "{predicted} -> {truth}: {first:?}"
            );
        }
    }

    /// A retraction at the same prediction takes back exactly what its
    /// non-redemption added; a
    /// tick later the oldest sums leave the window.
    #[test]
    fn retractions_are_exact_and_the_window_is_two_ticks() {
        let at = |rate| Prediction { rate, sd: 0.01 };
        let mut w = ChangeWatch::default();
        w.observe(at(0.2), true, 0, 1.0);
        let before = w.clone();
        w.observe(at(0.3), false, 5, 1.0);
        w.observe(at(0.3), false, 5, -1.0);
        let (a, b) = (w.current, before.current);
        assert!((a.residual - b.residual).abs() < 1e-15);
        assert!((a.variance - b.variance).abs() < 1e-15);
        assert!((a.spread - b.spread).abs() < 1e-15);
        w.observe(at(0.2), false, TICK_MS, 1.0);
        assert_eq!(w.previous, a);
        w.observe(at(0.2), false, 3 * TICK_MS, 1.0);
        assert_eq!(w.previous, TickSums::default(), "a tick with no events");
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
