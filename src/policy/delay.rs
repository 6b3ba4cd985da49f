//! Delayed feedback (Chapelle 2014): how long a campaign's redemptions take
//! to arrive, and how much a decision still pending should weigh as a
//! non-redemption.
//!
//! Counting a decision as a non-redemption the moment it is made, and adding
//! the redemption when it comes, estimates `p x N(t - D) / N(t)`: an offer
//! whose traffic just quadrupled looks worse until its redemptions catch up.
//! Instead a pending decision of age `a` weighs `F(a)`, the probability that
//! its redemption, if it is to come, would have arrived by now; it weighs 1
//! once it is redeemed or its window closes. In the Beta-Bernoulli model the
//! likelihood of a pending decision, `1 - p F(a)`, is taken as
//! `(1 - p)^F(a)`: exact at `F = 0` and `F = 1`, and close for the small
//! rates of loyalty offers.
//!
//! `F` is learned per campaign ([`DelayModel`]) from the redemption delays of
//! decisions whose window has closed (complete data: no censoring bias),
//! over log-spaced buckets of the reward window, starting from an
//! exponential prior (mean a quarter of the window). Pending decisions are
//! kept as counts per [`TICKS_PER_WINDOW`]-th of the window of their
//! decision time ([`PendingAges`]); their weight is taken on whole ticks of
//! event time ([`DelayModel::weights`]), so the live writer, recovery and the
//! simulator compute the same numbers from the same decision timestamps.
//!
//! The contextual policies take the same expectation with whole
//! observations: a pending decision's non-redemption is revealed when
//! `F(age)` passes the decision's own uniform draw ([`Reveals`]), under a
//! model learned as segment-ts's is ([`DelayLearner`]).

use std::collections::BTreeMap;

/// Ticks a reward window is divided into: a pending decision's age is known
/// to a tick.
pub const TICKS_PER_WINDOW: i64 = 64;

/// Log-spaced buckets of delay over the window (each a factor of
/// `sqrt(2)` wider than the one before; the first holds everything below
/// `window / 2^11.5`).
const BUCKETS: usize = 24;

/// Pseudo-redemptions the exponential prior is worth: past a few hundred
/// observed delays, the data decide.
pub const PRIOR_REDEMPTIONS: f64 = 50.0;

/// The prior's mean delay, as a share of the window.
const PRIOR_MEAN_SHARE: f64 = 0.25;

/// Weights are kept in fixed point, in units of 2^-32 of a decision, so that
/// sums over pending decisions are exact integers: the same whatever the
/// order decisions were added in (live, replayed at a restart, simulated).
const WEIGHT_UNIT: f64 = 4_294_967_296.0;

/// A campaign's delay distribution: of the decisions redeemed within their
/// window, how long the redemption took.
#[derive(Debug, Clone, PartialEq)]
pub struct DelayModel {
    window_ms: i64,
    /// Observed delays per bucket.
    counts: [u64; BUCKETS],
    /// The weight of a pending decision per age in ticks (0..=TICKS), in
    /// [`WEIGHT_UNIT`]s, as of the last [`DelayModel::refresh`].
    weights: Vec<u64>,
}

impl DelayModel {
    /// The prior model for a reward window of `window_ms` (at least 1 ms).
    pub fn new(window_ms: i64) -> Self {
        let mut m = DelayModel {
            window_ms: window_ms.max(TICKS_PER_WINDOW),
            counts: [0; BUCKETS],
            weights: Vec::new(),
        };
        m.refresh();
        m
    }

    /// The reward window.
    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }

    /// One tick of event time: the window over [`TICKS_PER_WINDOW`].
    pub fn tick_ms(&self) -> i64 {
        self.window_ms / TICKS_PER_WINDOW
    }

    /// The tick holding `at_ms`.
    pub fn tick_of(&self, at_ms: i64) -> i64 {
        at_ms.div_euclid(self.tick_ms())
    }

    /// Redemptions observed (excluding the prior).
    pub fn observed(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Observed delays per bucket (for checkpoints and reports).
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Learns one redemption that took `delay_ms`, of a decision whose
    /// window has closed. Delays outside the window are ignored (they were
    /// refused as late). Takes effect at the next [`DelayModel::refresh`].
    pub fn learn(&mut self, delay_ms: i64) {
        if (0..=self.window_ms).contains(&delay_ms) {
            self.counts[self.bucket(delay_ms)] += 1;
        }
    }

    /// The upper edge of bucket `k` (the last one's is the window).
    fn edge(&self, k: usize) -> f64 {
        let w = self.window_ms as f64;
        w * 2f64.powf(-((BUCKETS - 1 - k) as f64) / 2.0)
    }

    fn bucket(&self, delay_ms: i64) -> usize {
        let d = delay_ms as f64;
        (0..BUCKETS)
            .find(|&k| d < self.edge(k))
            .unwrap_or(BUCKETS - 1)
    }

    /// The prior's CDF: an exponential of mean a quarter of the window,
    /// conditioned on arriving within it.
    fn prior_cdf(&self, delay_ms: f64) -> f64 {
        let w = self.window_ms as f64;
        let mean = PRIOR_MEAN_SHARE * w;
        let t = delay_ms.clamp(0.0, w);
        (1.0 - (-t / mean).exp()) / (1.0 - (-w / mean).exp())
    }

    /// `F(age)`: the probability that a redemption (within the window)
    /// arrives within `age_ms` of its decision, learned delays blended with
    /// the prior; linear within a bucket.
    pub fn cdf(&self, age_ms: f64) -> f64 {
        let w = self.window_ms as f64;
        if age_ms <= 0.0 {
            return 0.0;
        }
        if age_ms >= w {
            return 1.0;
        }
        let n = self.observed() as f64;
        let mut below = 0.0;
        let mut lo = 0.0;
        for k in 0..BUCKETS {
            let hi = self.edge(k);
            let prior_mass = self.prior_cdf(hi) - self.prior_cdf(lo);
            let mass = self.counts[k] as f64 + PRIOR_REDEMPTIONS * prior_mass;
            if age_ms < hi {
                below += mass * (age_ms - lo) / (hi - lo);
                break;
            }
            below += mass;
            lo = hi;
        }
        (below / (n + PRIOR_REDEMPTIONS)).clamp(0.0, 1.0)
    }

    /// Recomputes the weight of a pending decision per age in ticks from the
    /// delays learned so far.
    pub fn refresh(&mut self) {
        let tick = self.tick_ms() as f64;
        self.weights = (0..=TICKS_PER_WINDOW)
            .map(|a| (self.cdf(a as f64 * tick) * WEIGHT_UNIT).round() as u64)
            .collect();
    }

    /// The weight of a pending decision `age_ticks` old, as of the last
    /// refresh: 0 for one made in the current tick, 1 once its window has
    /// passed.
    pub fn weight(&self, age_ticks: i64) -> f64 {
        self.weight_units(age_ticks) as f64 / WEIGHT_UNIT
    }

    fn weight_units(&self, age_ticks: i64) -> u64 {
        match usize::try_from(age_ticks) {
            Ok(a) => self.weights.get(a).copied().unwrap_or(WEIGHT_UNIT as u64),
            Err(_) => 0,
        }
    }
}

/// Decisions still pending, counted per tick of their decision time, and
/// what they weigh as of a tick of the clock (kept exact as they come and
/// go; recomputed when the clock or the delay model moves).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PendingAges {
    by_tick: BTreeMap<i64, u64>,
    /// The sum of their weights, in [`WEIGHT_UNIT`]s.
    units: u128,
}

impl PendingAges {
    /// Moves the count of pending decisions made in `tick` by `delta`
    /// (never below zero), the clock being at `now_tick` and the weights
    /// those of `model` (as at the last [`PendingAges::reweigh`]).
    pub fn add(&mut self, model: &DelayModel, now_tick: i64, tick: i64, delta: i64) {
        let n = self.by_tick.entry(tick).or_insert(0);
        let before = *n;
        *n = before.saturating_add_signed(delta);
        let after = *n;
        if after == 0 {
            self.by_tick.remove(&tick);
        }
        let w = u128::from(model.weight_units(now_tick.saturating_sub(tick)));
        if after >= before {
            self.units += u128::from(after - before) * w;
        } else {
            self.units = self.units.saturating_sub(u128::from(before - after) * w);
        }
    }

    /// Pending decisions counted.
    pub fn count(&self) -> u64 {
        self.by_tick.values().sum()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.by_tick.is_empty()
    }

    /// Recomputes the weight for the clock at tick `now_tick` under
    /// `model`'s current weights.
    pub fn reweigh(&mut self, model: &DelayModel, now_tick: i64) {
        self.units = self
            .by_tick
            .iter()
            .map(|(&t, &n)| {
                u128::from(n) * u128::from(model.weight_units(now_tick.saturating_sub(t)))
            })
            .sum();
    }

    /// What the pending decisions weigh as non-redemptions: the sum of
    /// their [`DelayModel::weight`]s at the clock's tick.
    pub fn weight(&self) -> f64 {
        self.units as f64 / WEIGHT_UNIT
    }
}

/// A campaign's delay model as it learns over event time: redemption
/// delays wait until their decision's window has closed (so the model
/// learns from complete windows only), and are taken in on whole ticks.
#[derive(Debug, Clone)]
pub struct DelayLearner {
    model: DelayModel,
    /// The tick the model was last refreshed at.
    now_tick: i64,
    /// Redemption delays waiting for their decision's window to close, by
    /// when it closes.
    closing: std::collections::BinaryHeap<std::cmp::Reverse<(i64, i64)>>,
}

impl DelayLearner {
    /// The prior model over a reward window of `window_ms`.
    pub fn new(window_ms: i64) -> Self {
        DelayLearner {
            model: DelayModel::new(window_ms),
            now_tick: i64::MIN,
            closing: std::collections::BinaryHeap::new(),
        }
    }

    /// The model as of the last [`DelayLearner::advance`].
    pub fn model(&self) -> &DelayModel {
        &self.model
    }

    /// The tick of the last [`DelayLearner::advance`] that moved it.
    pub fn now_tick(&self) -> i64 {
        self.now_tick
    }

    /// The model and its tick without the delays still waiting for their
    /// window to close: what a published, read-only snapshot keeps (it
    /// never advances, and copying those delays at every publish would
    /// cost one entry per redemption in the window).
    pub fn without_closing(&self) -> Self {
        DelayLearner {
            model: self.model.clone(),
            now_tick: self.now_tick,
            closing: std::collections::BinaryHeap::new(),
        }
    }

    /// A decision made at `decided_ms` was redeemed at `redeemed_ms`: the
    /// model learns the delay once the decision's window has closed.
    pub fn redemption(&mut self, decided_ms: i64, redeemed_ms: i64) {
        let closes_ms = decided_ms.saturating_add(self.model.window_ms());
        let delay_ms = redeemed_ms.saturating_sub(decided_ms);
        self.closing.push(std::cmp::Reverse((closes_ms, delay_ms)));
    }

    /// Event time is now `now_ms`: when it is in a later tick than before,
    /// the delays of windows closed by the tick's start (the same set
    /// wherever in the tick the clock is read) are learned and the weights
    /// refreshed. Returns whether the tick moved.
    pub fn advance(&mut self, now_ms: i64) -> bool {
        let tick = self.model.tick_of(now_ms);
        if tick <= self.now_tick {
            return false;
        }
        self.now_tick = tick;
        let tick_start = tick.saturating_mul(self.model.tick_ms());
        while let Some(&std::cmp::Reverse((closes_ms, delay_ms))) = self.closing.peek()
            && closes_ms <= tick_start
        {
            self.model.learn(delay_ms);
            self.closing.pop();
        }
        self.model.refresh();
        true
    }
}

/// Non-redemptions still to be revealed, for the contextual policies: a
/// pending decision's non-redemption is learned at its *reveal age*, the
/// first tick of event time at which `F(age)` passes the decision's own
/// uniform draw `u` (fixed by its id, [`reveal_draw`]), unless its
/// redemption has come first; the window's close reveals the rest. So at
/// age `a` a decision not yet redeemed counts as a non-redemption with
/// probability `F(a)`: segment-ts's weighting ([`PendingAges`]) with whole
/// observations, one per decision, each learned once (a non-redemption
/// followed by a late redemption is taken back).
///
/// Entries are hints: a decision redeemed, expired or erased since is
/// skipped by the caller when it comes due, so nothing is removed here.
#[derive(Debug, Clone)]
pub struct Reveals<K: Ord> {
    /// By decision tick, a min-heap of (draw in [`WEIGHT_UNIT`]s, key).
    by_tick: BTreeMap<i64, std::collections::BinaryHeap<std::cmp::Reverse<(u64, K)>>>,
}

impl<K: Ord> Default for Reveals<K> {
    fn default() -> Self {
        Reveals {
            by_tick: BTreeMap::new(),
        }
    }
}

/// A decision's uniform draw for its reveal age, from 64 bits that identify
/// it (a hash of its id): in [0, 1) as [`WEIGHT_UNIT`]s.
pub fn reveal_draw(bits: u64) -> u64 {
    // splitmix64's finalizer: ids that differ in one bit draw apart.
    let mut z = bits.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) >> 32
}

impl<K: Ord> Reveals<K> {
    /// A decision made at `decided_ms` (`model` gives the ticks), with draw
    /// `draw` ([`reveal_draw`]), waits for its reveal.
    pub fn add(&mut self, model: &DelayModel, decided_ms: i64, draw: u64, key: K) {
        self.by_tick
            .entry(model.tick_of(decided_ms))
            .or_default()
            .push(std::cmp::Reverse((draw, key)));
    }

    /// Decisions waiting.
    pub fn len(&self) -> usize {
        self.by_tick.values().map(|h| h.len()).sum()
    }

    /// Whether none is waiting.
    pub fn is_empty(&self) -> bool {
        self.by_tick.is_empty()
    }

    /// Takes out the decisions due at the tick of `now_ms` under `model`'s
    /// weights (draw below `F(age)`; every one at least a window old), in
    /// order of decision tick, then draw, then key: the same order wherever
    /// they are computed.
    pub fn due(&mut self, model: &DelayModel, now_ms: i64) -> Vec<K> {
        let now_tick = model.tick_of(now_ms);
        let mut out = Vec::new();
        let mut emptied = Vec::new();
        for (&tick, heap) in self.by_tick.range_mut(..=now_tick) {
            let threshold = model.weight_units(now_tick - tick);
            while let Some(std::cmp::Reverse((draw, _))) = heap.peek()
                && *draw < threshold
            {
                if let Some(std::cmp::Reverse((_, key))) = heap.pop() {
                    out.push(key);
                }
            }
            if heap.is_empty() {
                emptied.push(tick);
            }
        }
        for tick in emptied {
            self.by_tick.remove(&tick);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn prior_is_an_exponential_within_the_window() {
        let m = DelayModel::new(8 * DAY);
        assert_eq!(m.cdf(0.0), 0.0);
        assert_eq!(m.cdf((8 * DAY) as f64), 1.0);
        // Mean 2 days, truncated at 8: F(2 days) = (1 - e^-1) / (1 - e^-4).
        let want = (1.0 - (-1.0f64).exp()) / (1.0 - (-4.0f64).exp());
        assert!(
            (m.cdf((2 * DAY) as f64) - want).abs() < 0.01,
            "{}",
            m.cdf((2 * DAY) as f64)
        );
        let mut last = 0.0;
        for a in 0..=TICKS_PER_WINDOW {
            let w = m.weight(a);
            assert!(w >= last, "monotone");
            last = w;
        }
        assert_eq!(m.weight(0), 0.0);
        assert_eq!(m.weight(TICKS_PER_WINDOW), 1.0);
        assert_eq!(m.weight(TICKS_PER_WINDOW + 5), 1.0);
        assert_eq!(m.weight(-1), 0.0);
    }

    #[test]
    fn learned_delays_outweigh_the_prior() {
        // Every redemption takes exactly 1 day of an 8-day window.
        let mut m = DelayModel::new(8 * DAY);
        for _ in 0..5_000 {
            m.learn(DAY);
        }
        m.learn(9 * DAY); // outside the window: ignored
        assert_eq!(m.observed(), 5_000);
        m.refresh();
        // Half a day: almost none yet (the prior's 1% share says ~0.2).
        assert!(
            m.cdf((DAY / 2) as f64) < 0.01,
            "{}",
            m.cdf((DAY / 2) as f64)
        );
        // Two days: all of them.
        assert!(m.cdf((2 * DAY) as f64) > 0.99);
        // The weights follow only after a refresh.
        let mut stale = DelayModel::new(8 * DAY);
        let before = stale.weight(16);
        stale.learn(DAY);
        assert_eq!(stale.weight(16), before);
    }

    #[test]
    fn pending_weight_sums_ages() {
        let m = DelayModel::new(8 * DAY);
        let mut p = PendingAges::default();
        p.add(&m, 100, 100, 3);
        p.add(&m, 100, 90, 2);
        p.add(&m, 100, 10, 1); // long past its window
        assert_eq!(p.count(), 6);
        let want = 3.0 * 0.0 + 2.0 * m.weight(10) + 1.0;
        assert!((p.weight() - want).abs() < 1e-9);
        // Kept as they come and go equals recomputed, exactly.
        let mut again = p.clone();
        again.reweigh(&m, 100);
        assert_eq!(again, p);
        p.add(&m, 100, 90, -2);
        p.add(&m, 100, 10, -5); // never below zero
        assert_eq!(p.count(), 3);
        assert_eq!(p.weight(), 0.0);
        p.add(&m, 100, 100, -3);
        assert!(p.is_empty());
        // A tick later, the youngest weigh something.
        p.add(&m, 100, 100, 1);
        p.reweigh(&m, 101);
        assert_eq!(p.weight(), m.weight(1));
    }

    #[test]
    fn reveals_come_with_probability_f_of_age() {
        // 20,000 decisions in one tick: by each later tick, the share
        // revealed is F(age) (draws from their ids); none in their own
        // tick, all once the window has passed, in draw order within a tick.
        let m = DelayModel::new(8 * DAY);
        let mut r = Reveals::default();
        let n = 20_000u64;
        for id in 0..n {
            r.add(&m, 0, reveal_draw(id), id);
        }
        assert!(r.due(&m, 0).is_empty());
        let mut revealed = 0usize;
        for age in 1..=TICKS_PER_WINDOW {
            let due = r.due(&m, age * m.tick_ms());
            let draws: Vec<u64> = due.iter().map(|&id| reveal_draw(id)).collect();
            assert!(draws.windows(2).all(|w| w[0] <= w[1]), "in draw order");
            revealed += due.len();
            let share = revealed as f64 / n as f64;
            assert!(
                (share - m.weight(age)).abs() < 0.012,
                "age {age}: {share} revealed, F {}",
                m.weight(age)
            );
        }
        assert_eq!(revealed as u64, n);
        assert!(r.is_empty());
    }
}
