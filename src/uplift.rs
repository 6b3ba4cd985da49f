//! Control groups: which arm a visit falls in, each arm's counts, and the
//! bandit-versus-control uplift with 95% intervals. Pure: no storage or
//! gRPC types.

use serde::{Deserialize, Serialize};

/// Who chose a decision's offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Arm {
    /// The campaign's learning policy.
    #[default]
    Bandit,
    /// The control policy (a fixed or uniformly random offer).
    Control,
}

impl Arm {
    /// The name used in reports and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Bandit => "bandit",
            Arm::Control => "control",
        }
    }

    /// Both arms, bandit first.
    pub const ALL: [Arm; 2] = [Arm::Bandit, Arm::Control];

    /// Index into per-arm arrays.
    pub fn index(self) -> usize {
        match self {
            Arm::Bandit => 0,
            Arm::Control => 1,
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
pub fn stable_draw(hash: &[u8; 32]) -> f64 {
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

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

impl Estimate {
    fn normal(value: f64, se: f64) -> Self {
        Estimate {
            value,
            low: value - Z95 * se,
            high: value + Z95 * se,
        }
    }
}

/// One arm, summarized.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArmSummary {
    /// The arm.
    pub arm: Arm,
    /// Its counts.
    pub counts: ArmCounts,
    /// Redemptions per decision (Wald interval; pending decisions count as
    /// not redeemed yet, in both arms alike).
    pub rate: Estimate,
    /// Redemption value per 1,000 decisions.
    pub value_per_1000: Estimate,
}

/// Bandit minus control.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Uplift {
    /// Difference of redemption rates (absolute).
    pub rate_difference: Estimate,
    /// Bandit rate / control rate - 1 (delta method); None when the control
    /// arm has no redemptions yet.
    pub rate_relative: Option<Estimate>,
    /// Difference of value per 1,000 decisions.
    pub value_per_1000_difference: Estimate,
}

/// Rate and value of one arm with their standard errors.
fn summarize(arm: Arm, c: ArmCounts) -> (ArmSummary, f64, f64) {
    let n = c.decisions.max(1) as f64;
    let p = c.redemptions as f64 / n;
    let se_p = (p * (1.0 - p) / n).sqrt();
    // Per-decision value: v on redemption, 0 otherwise.
    let mean_v = c.value_sum / n;
    let var_v = (c.value_sq_sum / n - mean_v * mean_v).max(0.0);
    let se_v = (var_v / n).sqrt();
    (
        ArmSummary {
            arm,
            counts: c,
            rate: Estimate::normal(p, se_p),
            value_per_1000: Estimate::normal(1000.0 * mean_v, 1000.0 * se_v),
        },
        se_p,
        se_v,
    )
}

/// Both arms and, when both have decisions, the uplift.
pub fn compare(bandit: ArmCounts, control: ArmCounts) -> (ArmSummary, ArmSummary, Option<Uplift>) {
    let (b, se_b, sev_b) = summarize(Arm::Bandit, bandit);
    let (c, se_c, sev_c) = summarize(Arm::Control, control);
    if bandit.decisions == 0 || control.decisions == 0 {
        return (b, c, None);
    }
    let (pb, pc) = (b.rate.value, c.rate.value);
    let rate_relative = (control.redemptions > 0 && bandit.redemptions > 0).then(|| {
        let ratio = pb / pc;
        let se = ratio * ((se_b / pb).powi(2) + (se_c / pc).powi(2)).sqrt();
        Estimate::normal(ratio - 1.0, se)
    });
    let uplift = Uplift {
        rate_difference: Estimate::normal(pb - pc, (se_b * se_b + se_c * se_c).sqrt()),
        rate_relative,
        value_per_1000_difference: Estimate::normal(
            b.value_per_1000.value - c.value_per_1000.value,
            1000.0 * (sev_b * sev_b + sev_c * sev_c).sqrt(),
        ),
    };
    (b, c, Some(uplift))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

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
        // Closed form: 100 of 1000 vs 50 of 1000.
        let arm = |d, r, v: f64| ArmCounts {
            decisions: d,
            redemptions: r,
            expired: d - r,
            value_sum: r as f64 * v,
            value_sq_sum: r as f64 * v * v,
        };
        let (b, c, u) = compare(arm(1000, 100, 2.0), arm(1000, 50, 2.0));
        let u = u.expect("both arms");
        let se = (0.1 * 0.9 / 1000.0_f64 + 0.05 * 0.95 / 1000.0).sqrt();
        assert!((u.rate_difference.value - 0.05).abs() < 1e-12);
        assert!((u.rate_difference.high - (0.05 + Z95 * se)).abs() < 1e-12);
        assert!((b.value_per_1000.value - 200.0).abs() < 1e-9);
        assert!((c.value_per_1000.value - 100.0).abs() < 1e-9);
        let rel = u.rate_relative.expect("control redeemed");
        assert!((rel.value - 1.0).abs() < 1e-12);
        // Coverage: 95% intervals of the difference cover the true 0.03
        // in about 95% of 400 simulated experiments.
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut covered = 0;
        for _ in 0..400 {
            let draw = |p: f64, n: u64, rng: &mut ChaCha8Rng| {
                let r = (0..n).filter(|_| rng.random::<f64>() < p).count() as u64;
                arm(n, r, 3.0)
            };
            let (_, _, u) = compare(draw(0.08, 2000, &mut rng), draw(0.05, 2000, &mut rng));
            let d = u.expect("both").rate_difference;
            if d.low <= 0.03 && 0.03 <= d.high {
                covered += 1;
            }
        }
        // Binomial(400, 0.95): 380 expected, sd 4.4.
        assert!((362..=396).contains(&covered), "covered {covered} of 400");
        // An empty arm: no uplift yet.
        assert!(compare(arm(10, 1, 1.0), ArmCounts::default()).2.is_none());
    }
}
