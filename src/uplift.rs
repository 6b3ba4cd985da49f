//! Control groups: which arm a visit falls in, each arm's counts, and the
//! bandit-versus-control uplift over decisions whose window has closed,
//! with 95% intervals clustered by customer and valid at every look (from
//! per-customer sums). Pure: no storage or gRPC types.

use serde::{Deserialize, Serialize};

/// Who chose a decision's offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Arm {
    /// The campaign's learning policy.
    #[default]
    Bandit,
    /// The control policy (a fixed or uniformly random offer).
    Control,
    /// What the caller showed when offer-bandit was down or slow, logged
    /// afterwards (`RecordFallback`): not random, so never in the control
    /// group and outside the bandit-vs-control comparison.
    Fallback,
    /// A customer who has not consented to personalization: the control
    /// policy's offer, with no context and no customer kept; outside the
    /// comparison (who consents is not random).
    NonPersonalized,
}

impl Arm {
    /// The name used in reports and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Bandit => "bandit",
            Arm::Control => "control",
            Arm::Fallback => "fallback",
            Arm::NonPersonalized => "non_personalized",
        }
    }

    /// The arm named `name` (as [`Arm::as_str`] spells it).
    pub fn from_name(name: &str) -> Option<Arm> {
        Arm::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// Every arm, bandit first: the two compared, then those outside the
    /// comparison.
    pub const ALL: [Arm; 4] = [
        Arm::Bandit,
        Arm::Control,
        Arm::Fallback,
        Arm::NonPersonalized,
    ];

    /// Index into per-arm arrays.
    pub fn index(self) -> usize {
        match self {
            Arm::Bandit => 0,
            Arm::Control => 1,
            Arm::Fallback => 2,
            Arm::NonPersonalized => 3,
        }
    }

    /// The arm of a uniform draw `u` in [0, 1) under `control_share`.
    pub fn of(u: f64, control_share: f64) -> Arm {
        if u < control_share {
            Arm::Control
        } else {
            Arm::Bandit
        }
    }
}

/// The arm draw of a customer: the first 8 bytes of a keyed hash as a
/// number in [0, 1), so that a customer stays in one arm.
pub(crate) fn stable_draw(hash: &[u8; 32]) -> f64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&hash[..8]);
    (u64::from_be_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// Lifetime counts of one arm of a campaign.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmCounts {
    /// Decisions made.
    pub decisions: u64,
    /// Decisions redeemed.
    pub redemptions: u64,
    /// Decisions whose window closed without a redemption.
    pub expired: u64,
    /// Sum of redemption values.
    pub value_sum: f64,
    /// Sum of squared redemption values (for the value interval).
    pub value_sq_sum: f64,
}

impl ArmCounts {
    /// Decisions still inside their window.
    pub fn pending(&self) -> u64 {
        self.decisions
            .saturating_sub(self.redemptions + self.expired)
    }
}

/// An estimate with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Estimate {
    /// Point estimate.
    pub value: f64,
    /// Lower end of the 95% interval.
    pub low: f64,
    /// Upper end of the 95% interval.
    pub high: f64,
}

impl Estimate {
    /// `value` plus or minus `z` standard errors `se`.
    fn around(value: f64, se: f64, z: f64) -> Self {
        Estimate {
            value,
            low: value - z * se,
            high: value + z * se,
        }
    }

    /// The estimate with its interval clipped to the possible range.
    fn within(self, lo: f64, hi: f64) -> Self {
        Estimate {
            value: self.value.clamp(lo, hi),
            low: self.low.clamp(lo, hi),
            high: self.high.clamp(lo, hi),
        }
    }
}

/// One arm, summarized.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArmSummary {
    /// The arm.
    pub arm: Arm,
    /// Its lifetime counts (open windows included).
    pub counts: ArmCounts,
    /// Its decisions whose reward window has closed, by customer: what the
    /// rate and value below are computed on.
    pub closed: ClusterSums,
    /// Redemptions per decision among closed windows, with its 95% interval
    /// clustered by customer and valid at any look.
    pub rate: Estimate,
    /// Redemption value per 1,000 decisions among closed windows, with its
    /// interval of the same kind.
    pub value_per_1000: Estimate,
}

/// Bandit minus control, over decisions whose window has closed, with
/// intervals clustered by customer and valid at any look (95% that every
/// interval holds the truth at every look at once, asymptotically),
/// clipped to the possible range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Uplift {
    /// Difference of redemption rates (absolute).
    pub rate_difference: Estimate,
    /// Bandit rate / control rate - 1 (delta method); None until both arms
    /// have a redemption.
    pub rate_relative: Option<Estimate>,
    /// Difference of value per 1,000 decisions.
    pub value_per_1000_difference: Estimate,
}

/// One arm's rate and value with their intervals: `counts` are its lifetime
/// counts, `closed` its per-customer sums over closed windows. Also for the
/// arms outside the comparison (fallback, non_personalized).
pub fn summary(arm: Arm, counts: ArmCounts, closed: &ClusterSums) -> ArmSummary {
    let (p, var_p) = closed.rate();
    let (m, var_m) = closed.value_per_decision();
    let k = sequential_multiplier(closed.clusters as f64);
    ArmSummary {
        arm,
        counts,
        closed: *closed,
        rate: Estimate::around(p, var_p.sqrt(), k).within(0.0, 1.0),
        // Values are never negative: neither is their interval.
        value_per_1000: Estimate::around(1000.0 * m, 1000.0 * var_m.sqrt(), k)
            .within(0.0, f64::INFINITY),
    }
}

/// Both arms and, once both have a closed window, the uplift: see
/// [`Uplift`]. Each arm is (lifetime counts, per-customer sums over closed
/// windows). Assumes customers independent of one another (a customer's
/// visits may be correlated in any way) and their arm fixed.
pub fn compare(
    bandit: (ArmCounts, &ClusterSums),
    control: (ArmCounts, &ClusterSums),
) -> (ArmSummary, ArmSummary, Option<Uplift>) {
    let b = summary(Arm::Bandit, bandit.0, bandit.1);
    let c = summary(Arm::Control, control.0, control.1);
    let uplift = compare_sequential(bandit.1, control.1);
    (b, c, uplift)
}

/// Per-customer sums of one arm, for standard errors clustered by
/// customer: each customer i (an anonymous visit is a customer of its own)
/// contributes its decisions n_i, redemptions y_i and redemption value v_i,
/// counted over decisions whose reward window has closed. Every field is a
/// sum, so arms merge by addition; but a customer's squares change with each
/// of their decisions, so whoever keeps these must also keep each
/// customer's [`CustomerTotals`] per arm and apply [`ClusterSums::grow`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterSums {
    /// Customers (clusters) with at least one decision.
    pub clusters: u64,
    /// Σ n_i.
    pub decisions: f64,
    /// Σ y_i.
    pub redemptions: f64,
    /// Σ v_i.
    pub value: f64,
    /// Σ n_i².
    pub decisions_sq: f64,
    /// Σ y_i².
    pub redemptions_sq: f64,
    /// Σ n_i y_i.
    pub decisions_redemptions: f64,
    /// Σ v_i².
    pub value_sq: f64,
    /// Σ n_i v_i.
    pub decisions_value: f64,
}

/// One customer's decisions in one arm of a campaign whose reward window
/// has closed: their cluster in [`ClusterSums`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomerTotals {
    /// Decisions (n_i).
    pub decisions: u64,
    /// Of those, redeemed (y_i).
    pub redemptions: u64,
    /// Their redemption value (v_i).
    pub value: f64,
}

impl CustomerTotals {
    /// The totals with one more closed decision (`value`: its redemption's
    /// value, `None` when it was not redeemed).
    pub fn with_decision(self, value: Option<f64>) -> Self {
        CustomerTotals {
            decisions: self.decisions + 1,
            redemptions: self.redemptions + u64::from(value.is_some()),
            value: self.value + value.unwrap_or(0.0),
        }
    }

    fn as_tuple(self) -> (f64, f64, f64) {
        (self.decisions as f64, self.redemptions as f64, self.value)
    }
}

impl ClusterSums {
    /// Adds a customer whose totals are (n, y, v).
    pub fn add_customer(&mut self, n: f64, y: f64, v: f64) {
        self.grow((0.0, 0.0, 0.0), (n, y, v));
    }

    /// A customer's totals went from `before` to `after` (from zero: a new
    /// customer; to zero: one removed): the streaming update of every sum.
    pub fn grow(&mut self, before: (f64, f64, f64), after: (f64, f64, f64)) {
        let ((n0, y0, v0), (n1, y1, v1)) = (before, after);
        if n0 == 0.0 && n1 > 0.0 {
            self.clusters += 1;
        } else if n0 > 0.0 && n1 == 0.0 {
            self.clusters = self.clusters.saturating_sub(1);
        }
        self.decisions += n1 - n0;
        self.redemptions += y1 - y0;
        self.value += v1 - v0;
        self.decisions_sq += n1 * n1 - n0 * n0;
        self.redemptions_sq += y1 * y1 - y0 * y0;
        self.decisions_redemptions += n1 * y1 - n0 * y0;
        self.value_sq += v1 * v1 - v0 * v0;
        self.decisions_value += n1 * v1 - n0 * v0;
    }

    /// A customer's totals went from `before` to `after`.
    pub fn change_customer(&mut self, before: CustomerTotals, after: CustomerTotals) {
        self.grow(before.as_tuple(), after.as_tuple());
    }

    /// Sums of an arm whose every decision is its own customer (lifetime
    /// counts without customers: anonymous traffic).
    pub fn independent(c: &ArmCounts) -> Self {
        let n = c.decisions as f64;
        let y = c.redemptions as f64;
        ClusterSums {
            clusters: c.decisions,
            decisions: n,
            redemptions: y,
            value: c.value_sum,
            decisions_sq: n,
            redemptions_sq: y,
            decisions_redemptions: y,
            value_sq: c.value_sq_sum,
            decisions_value: c.value_sum,
        }
    }

    /// Redemptions per decision and its cluster-robust variance,
    /// C/(C-1) Σ (y_i - p n_i)² / N², floored at the binomial variance of
    /// (y + 1) / (n + 2) so that an arm with no redemptions yet does not
    /// get a zero-width interval.
    pub fn rate(&self) -> (f64, f64) {
        let n = self.decisions.max(1.0);
        let p = self.redemptions / n;
        let c = self.clusters as f64;
        let ss =
            self.redemptions_sq - 2.0 * p * self.decisions_redemptions + p * p * self.decisions_sq;
        let var = if c > 1.0 {
            c / (c - 1.0) * ss.max(0.0) / (n * n)
        } else {
            0.0
        };
        let shrunk = (self.redemptions + 1.0) / (n + 2.0);
        (p, var.max(shrunk * (1.0 - shrunk) / n))
    }

    /// Value per decision and its cluster-robust variance.
    pub fn value_per_decision(&self) -> (f64, f64) {
        let n = self.decisions.max(1.0);
        let m = self.value / n;
        let c = self.clusters as f64;
        let ss = self.value_sq - 2.0 * m * self.decisions_value + m * m * self.decisions_sq;
        let var = if c > 1.0 {
            c / (c - 1.0) * ss.max(0.0) / (n * n)
        } else {
            0.0
        };
        (m, var)
    }
}

/// Customers at which the anytime-valid intervals are tightest; from a
/// tenth to ten times this many they are at most 27% wider than there.
pub(crate) const PLANNED_CUSTOMERS: f64 = 1_000.0;

/// The multiplier of the standard error in a 95% asymptotic confidence
/// sequence (Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas, "Time-uniform
/// central limit theory and asymptotic confidence sequences"): Robbins'
/// normal-mixture boundary `sqrt(2 (tρ² + 1) / (tρ²) · ln(sqrt(tρ² + 1) / α))`
/// after `t` customers, with ρ² = (−2 ln α + ln(1 − 2 ln α)) / t* chosen to
/// be tightest at t* = [`PLANNED_CUSTOMERS`]. About 3.0 there (1.96 for a
/// one-look interval): the price of looking every day.
pub fn sequential_multiplier(customers: f64) -> f64 {
    let alpha: f64 = 0.05;
    let l = -2.0 * alpha.ln();
    let rho2 = (l + (1.0 + l).ln()) / PLANNED_CUSTOMERS;
    let tr = customers.max(1.0) * rho2;
    (2.0 * (tr + 1.0) / tr * ((tr + 1.0).sqrt() / alpha).ln()).sqrt()
}

/// [`Uplift`] from each arm's per-customer sums; `None` until both arms
/// have a closed decision.
pub fn compare_sequential(bandit: &ClusterSums, control: &ClusterSums) -> Option<Uplift> {
    if bandit.decisions <= 0.0 || control.decisions <= 0.0 {
        return None;
    }
    let (pb, vb) = bandit.rate();
    let (pc, vc) = control.rate();
    let (mb, wb) = bandit.value_per_decision();
    let (mc, wc) = control.value_per_decision();
    let both = sequential_multiplier((bandit.clusters + control.clusters) as f64);
    let rate_relative = (bandit.redemptions > 0.0 && control.redemptions > 0.0).then(|| {
        let ratio = pb / pc;
        let se = ratio * (vb / (pb * pb) + vc / (pc * pc)).sqrt();
        Estimate::around(ratio - 1.0, se, both).within(-1.0, f64::INFINITY)
    });
    Some(Uplift {
        rate_difference: Estimate::around(pb - pc, (vb + vc).sqrt(), both).within(-1.0, 1.0),
        rate_relative,
        value_per_1000_difference: Estimate::around(
            1000.0 * (mb - mc),
            1000.0 * (wb + wc).sqrt(),
            both,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// z for a two-sided 95% interval.
    const Z95: f64 = 1.959_963_984_540_054;

    /// The interval the report used before: Wald, decisions independent,
    /// one look, over lifetime counts.
    fn wald_difference(b: ArmCounts, c: ArmCounts) -> Estimate {
        let rate = |a: ArmCounts| {
            let n = a.decisions.max(1) as f64;
            let p = a.redemptions as f64 / n;
            (p, p * (1.0 - p) / n)
        };
        let ((pb, vb), (pc, vc)) = (rate(b), rate(c));
        Estimate::around(pb - pc, (vb + vc).sqrt(), Z95)
    }

    #[test]
    fn arms_follow_the_share_and_customers_stay_put() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let n = 100_000;
        let control = (0..n)
            .filter(|_| {
                let h: [u8; 32] = rng.random();
                Arm::of(stable_draw(&h), 0.2) == Arm::Control
            })
            .count();
        let share = control as f64 / n as f64;
        // Binomial(100000, 0.2): sd of the share is 0.00126.
        assert!((share - 0.2).abs() < 5.0 * 0.001_26, "share {share}");
        let h = [7u8; 32];
        assert_eq!(Arm::of(stable_draw(&h), 0.3), Arm::of(stable_draw(&h), 0.3));
        assert_eq!(Arm::of(0.5, 0.0), Arm::Bandit);
    }

    #[test]
    fn intervals_match_the_closed_forms_and_cover_the_truth() {
        // Closed form: 100 of 1000 vs 50 of 1000, every decision its own
        // customer.
        let arm = |d, r, v: f64| ArmCounts {
            decisions: d,
            redemptions: r,
            expired: d - r,
            value_sum: r as f64 * v,
            value_sq_sum: r as f64 * v * v,
        };
        let (bc, cc) = (arm(1000, 100, 2.0), arm(1000, 50, 2.0));
        let (bs, cs) = (ClusterSums::independent(&bc), ClusterSums::independent(&cc));
        let (b, c, u) = compare((bc, &bs), (cc, &cs));
        let u = u.expect("both arms");
        let se = (bs.rate().1 + cs.rate().1).sqrt();
        assert!((u.rate_difference.value - 0.05).abs() < 1e-12);
        let k = sequential_multiplier(2000.0);
        assert!((u.rate_difference.high - (0.05 + k * se)).abs() < 1e-12);
        assert!((b.value_per_1000.value - 200.0).abs() < 1e-9);
        assert!((c.value_per_1000.value - 100.0).abs() < 1e-9);
        assert!(
            (b.rate.high - (0.1 + sequential_multiplier(1000.0) * bs.rate().1.sqrt())).abs()
                < 1e-12
        );
        let rel = u.rate_relative.expect("control redeemed");
        assert!((rel.value - 1.0).abs() < 1e-12);
        // Coverage at one look: the intervals valid at every look are
        // wider, so they cover the true 0.03 in at least 95% of 400
        // simulated experiments.
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut covered = 0;
        for _ in 0..400 {
            let draw = |p: f64, n: u64, rng: &mut ChaCha8Rng| {
                let r = (0..n).filter(|_| rng.random::<f64>() < p).count() as u64;
                ClusterSums::independent(&arm(n, r, 3.0))
            };
            let (b, c) = (draw(0.08, 2000, &mut rng), draw(0.05, 2000, &mut rng));
            let d = compare_sequential(&b, &c).expect("both").rate_difference;
            if d.low <= 0.03 && 0.03 <= d.high {
                covered += 1;
            }
        }
        // Binomial(400, 0.95): 380 expected, sd 4.4.
        assert!(covered >= 371, "covered {covered} of 400");
        // An empty arm: no uplift yet.
        let one = ClusterSums::independent(&arm(10, 1, 1.0));
        assert!(compare_sequential(&one, &ClusterSums::default()).is_none());
    }

    #[test]
    fn removing_a_customer_leaves_the_sums_of_the_others() {
        let build = |customers: &[CustomerTotals]| {
            let mut s = ClusterSums::default();
            for t in customers {
                s.change_customer(CustomerTotals::default(), *t);
            }
            s
        };
        let t = |n, y, v| CustomerTotals {
            decisions: n,
            redemptions: y,
            value: v,
        };
        let (a, b, c) = (t(3, 1, 2.5), t(7, 4, 10.0), t(1, 0, 0.0));
        let mut all = build(&[a, b, c]);
        all.change_customer(b, CustomerTotals::default());
        assert_eq!(all, build(&[a, c]), "exactly the sums without b");
        // One decision at a time builds the same totals as all at once.
        let mut grown = ClusterSums::default();
        let mut so_far = CustomerTotals::default();
        for v in [Some(2.5), None, None] {
            let next = so_far.with_decision(v);
            grown.change_customer(so_far, next);
            so_far = next;
        }
        assert_eq!(so_far, a);
        assert_eq!(grown, build(&[a]));
    }

    #[test]
    fn clustered_variance_matches_the_closed_forms() {
        // Every decision its own customer: C/(C-1) p(1-p)/n.
        let c = ArmCounts {
            decisions: 1000,
            redemptions: 100,
            expired: 900,
            value_sum: 250.0,
            value_sq_sum: 625.0,
        };
        let (p, var) = ClusterSums::independent(&c).rate();
        assert!((p - 0.1).abs() < 1e-12);
        // (Here the floor, (101/1002)(901/1002)/1000, is slightly larger.)
        let floor = (101.0 / 1002.0) * (901.0 / 1002.0) / 1000.0;
        assert!((var - (1000.0_f64 / 999.0 * 0.09 / 1000.0).max(floor)).abs() < 1e-15);
        // Two customers, (n, y) = (4, 4) and (6, 0): p = 0.4, residuals 2.4
        // and -2.4, variance 2 (2.4² + 2.4²) / 100 = 0.2304.
        let mut s = ClusterSums::default();
        s.add_customer(4.0, 4.0, 0.0);
        s.grow((0.0, 0.0, 0.0), (5.0, 0.0, 0.0));
        s.grow((5.0, 0.0, 0.0), (6.0, 0.0, 0.0));
        let (p, var) = s.rate();
        assert!(
            (p - 0.4).abs() < 1e-12 && (var - 0.2304).abs() < 1e-12,
            "{p} {var}"
        );
        // The multiplier: about 3.03 at the planned size, above 1.96 always.
        assert!((sequential_multiplier(PLANNED_CUSTOMERS) - 3.03).abs() < 0.01);
        for t in [1.0, 10.0, 100.0, 1e4, 1e6] {
            assert!(sequential_multiplier(t) > Z95, "{t}");
        }
        // Never outside the possible range, even with one redemption in two.
        let mut tiny = ClusterSums::default();
        tiny.add_customer(1.0, 1.0, 1.0);
        tiny.add_customer(1.0, 0.0, 0.0);
        let u = compare_sequential(&tiny, &tiny).expect("both");
        let b = summary(Arm::Bandit, ArmCounts::default(), &tiny);
        assert!(b.rate.low >= 0.0 && b.rate.high <= 1.0, "{b:?}");
        assert!(u.rate_difference.low >= -1.0 && u.rate_difference.high <= 1.0);
        // The report is clipped: 1 of 2 gave [-19, 119]% at one look.
        let (one, none) = (
            ArmCounts {
                decisions: 2,
                redemptions: 1,
                expired: 1,
                value_sum: 1.0,
                value_sq_sum: 1.0,
            },
            ArmCounts {
                decisions: 2,
                redemptions: 0,
                expired: 2,
                value_sum: 0.0,
                value_sq_sum: 0.0,
            },
        );
        let (b, _, u) = compare(
            (one, &ClusterSums::independent(&one)),
            (none, &ClusterSums::independent(&none)),
        );
        assert!(b.rate.low >= 0.0 && b.rate.high <= 1.0, "{b:?}");
        let d = u.expect("both").rate_difference;
        assert!(d.low >= -1.0 && d.high <= 1.0, "{d:?}");
    }

    #[test]
    fn sequential_clustered_intervals_cover_at_every_daily_look() {
        // 300 simulated experiments: 150 customers per arm, 10 visits each
        // at uniformly random days of 30; customer rates drawn from
        // Beta(9p, 9(1-p)) (intraclass correlation 1/(9+1) = 0.1), p = 0.12
        // for the bandit and 0.08 for control. Each day the analyst looks at
        // the rate difference (outcomes known at once here). An experiment
        // is covered if the true 0.04 is inside at all 30 looks.
        let mut rng = ChaCha8Rng::seed_from_u64(18);
        let (experiments, customers, visits, days) = (300, 150, 10, 30);
        let (mut covered_new, mut covered_old) = (0, 0);
        for _ in 0..experiments {
            // (day, arm, customer, redeemed) for every visit.
            let mut events: Vec<(usize, usize, usize, bool)> = Vec::new();
            for (arm, p) in [(0usize, 0.12f64), (1, 0.08)] {
                let beta = rand_distr::Beta::new(9.0 * p, 9.0 * (1.0 - p)).expect("beta");
                for c in 0..customers {
                    let q: f64 = rand_distr::Distribution::sample(&beta, &mut rng);
                    for _ in 0..visits {
                        events.push((rng.random_range(0..days), arm, c, rng.random::<f64>() < q));
                    }
                }
            }
            events.sort_unstable_by_key(|e| e.0);
            let mut per = vec![vec![(0.0f64, 0.0f64); customers]; 2];
            let mut counts = [ArmCounts::default(); 2];
            let (mut ok_new, mut ok_old) = (true, true);
            let mut next = 0;
            for day in 0..days {
                while next < events.len() && events[next].0 == day {
                    let (_, arm, c, r) = events[next];
                    per[arm][c].0 += 1.0;
                    per[arm][c].1 += f64::from(u8::from(r));
                    counts[arm].decisions += 1;
                    counts[arm].redemptions += u64::from(r);
                    next += 1;
                }
                let sums: Vec<ClusterSums> = per
                    .iter()
                    .map(|cs| {
                        let mut s = ClusterSums::default();
                        for &(n, y) in cs.iter().filter(|(n, _)| *n > 0.0) {
                            s.add_customer(n, y, y);
                        }
                        s
                    })
                    .collect();
                if let Some(u) = compare_sequential(&sums[0], &sums[1]) {
                    let d = u.rate_difference;
                    ok_new &= d.low <= 0.04 && 0.04 <= d.high;
                }
                if counts[0].decisions > 0 && counts[1].decisions > 0 {
                    let d = wald_difference(counts[0], counts[1]);
                    ok_old &= d.low <= 0.04 && 0.04 <= d.high;
                }
            }
            covered_new += usize::from(ok_new);
            covered_old += usize::from(ok_old);
        }
        println!(
            "covered at all 30 daily looks in {experiments} experiments: clustered sequential {covered_new}, independent one-look {covered_old}"
        );
        assert!(
            covered_new as f64 >= 0.93 * experiments as f64,
            "clustered sequential covered {covered_new}/{experiments}"
        );
        assert!(covered_old < covered_new);
    }
}
