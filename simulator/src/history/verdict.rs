//! The verdict on a history: what the sends earned, what a policy would have
//! earned on the same customers (cross-fitted: fitted on one half of the
//! customers, scored doubly robust on the other half, and the other way
//! round), and the difference, per 1,000 sends, with intervals clustered by
//! customer and valid at any look (the same kind as the server's report).

use offer_bandit::{policy::Policy, sequential_multiplier};
use serde::Serialize;

use crate::{
    evaluate::{self, TargetProbs},
    logs::Log,
    ope::{self, Round},
    policies::{self, PolicyEnv},
    report::signed,
};

/// A figure and its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Figure {
    pub(crate) value: f64,
    pub(crate) low: f64,
    pub(crate) high: f64,
}

/// What the intervals assume, said once for every figure.
pub(crate) const INTERVAL: &str = "95%, clustered by customer (a customer's sends may be correlated in any way; customers independent of one another), and valid at any look (an asymptotic confidence sequence), like the server's report";

/// Mean of per-send `terms`, its cluster-robust standard error, and the
/// number of clusters (customers; a send without one is its own).
pub(crate) fn clustered(terms: &[f64], clusters: &[Option<u64>]) -> (f64, f64, usize) {
    let n = terms.len().max(1) as f64;
    let mean = terms.iter().sum::<f64>() / n;
    let mut sums: std::collections::HashMap<u64, (f64, f64)> = std::collections::HashMap::new();
    let mut ss = 0.0;
    let mut singles = 0usize;
    for (t, c) in terms.iter().zip(clusters) {
        match c {
            Some(c) => {
                let e = sums.entry(*c).or_default();
                e.0 += t;
                e.1 += 1.0;
            }
            None => {
                ss += (t - mean).powi(2);
                singles += 1;
            }
        }
    }
    for (t, k) in sums.values() {
        ss += (t - mean * k).powi(2);
    }
    let c = (sums.len() + singles) as f64;
    let var = if c > 1.0 {
        c / (c - 1.0) * ss / (n * n)
    } else {
        0.0
    };
    (mean, var.sqrt(), sums.len() + singles)
}

/// [`clustered`] as a figure per 1,000 sends, its interval widened to stay
/// valid at any look and clipped to `[lo, hi]` (per send).
pub(crate) fn per_1000(terms: &[f64], clusters: &[Option<u64>], lo: f64, hi: f64) -> Figure {
    let (m, se, c) = clustered(terms, clusters);
    let k = sequential_multiplier(c as f64);
    Figure {
        value: 1000.0 * m.clamp(lo, hi),
        low: 1000.0 * (m - k * se).clamp(lo, hi),
        high: 1000.0 * (m + k * se).clamp(lo, hi),
    }
}

/// The doubly robust term of each round: the reward model's value of the
/// target, corrected by the importance-weighted residual of the logged
/// action.
pub(crate) fn dr_terms(rounds: &[Round]) -> Vec<f64> {
    rounds
        .iter()
        .map(|r| {
            let w = if r.propensity > 0.0 {
                r.target / r.propensity
            } else {
                0.0
            };
            r.predicted_target + w * (r.reward - r.predicted)
        })
        .collect()
}

/// The policy `spec`'s action probabilities at every send, cross-fitted:
/// a policy learns from one fold's sends (their offers and outcomes) and
/// gives the probabilities on the other fold. A policy that does not learn
/// (a rule) gives the same as without folds.
pub(crate) fn cross_fitted_targets(
    spec: &str,
    log: &Log,
    weights: &[f64],
) -> anyhow::Result<Vec<TargetProbs>> {
    let env = PolicyEnv::for_log(log, weights.to_vec())?;
    let mut targets = vec![Vec::new(); log.rows.len()];
    for scored in 0..2 {
        let mut policy: Box<dyn Policy> = policies::build(spec, &env)?;
        for (i, r) in log.rows.iter().enumerate() {
            if evaluate::fold(log, i) == scored {
                continue;
            }
            let f = policy.features(&r.context)?;
            evaluate::learn_logged(policy.as_mut(), &f, r);
        }
        for (i, r) in log.rows.iter().enumerate() {
            if evaluate::fold(log, i) != scored {
                continue;
            }
            let f = policy.features(&r.context)?;
            let mut p = vec![0.0; log.actions.len()];
            for &c in &r.candidates {
                p[c] = policy.propensity(&f, &r.candidates, c);
            }
            targets[i] = p;
        }
    }
    Ok(targets)
}

/// What one policy would have earned, against the sends.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Counterfactual {
    /// The policy (`logistic-ts`, `rules:FILE`, ...).
    pub(crate) policy: String,
    /// Redemptions per 1,000 sends it would have earned; null when the
    /// history cannot support it.
    pub(crate) redemptions_per_1000: Option<Figure>,
    /// Its gain over the sends as they were made.
    pub(crate) gain_redemptions_per_1000: Option<Figure>,
    /// Value per 1,000 sends (with a value column).
    pub(crate) value_per_1000: Option<Figure>,
    /// Its gain in value over the sends.
    pub(crate) gain_value_per_1000: Option<Figure>,
    /// Estimated share of the policy's choices that go where the history
    /// never (or almost never) sent that offer.
    pub(crate) unsupported_share: f64,
    /// True when that share is too large to say anything: the figures are
    /// then null.
    pub(crate) withheld: bool,
    /// Share of the sends the policy would have given each offer (in the
    /// order of the report's offers).
    pub(crate) offer_share: Vec<f64>,
    /// Every off-policy estimator on redemptions, for the advanced section.
    pub(crate) estimators: Vec<ope::Estimate>,
}

/// Scores `targets` on `log` (rewards: redemptions) and, with `values`, on
/// value.
pub(crate) fn counterfactual(
    policy: &str,
    log: &Log,
    values: Option<&[f64]>,
    targets: &[TargetProbs],
    opts: &ope::Options,
) -> Counterfactual {
    let clusters: Vec<Option<u64>> = log.rows.iter().map(|r| r.customer).collect();
    let rounds = evaluate::rounds(log, targets);
    let estimators = ope::estimate_all(&rounds, opts);
    let support = ope::support(&rounds, opts.min_support);
    let withheld = estimators
        .iter()
        .find(|e| e.estimator == "dr")
        .is_none_or(|e| e.withheld);
    let observed: Vec<f64> = log.rows.iter().map(|r| r.reward).collect();
    let dr = dr_terms(&rounds);
    let gain: Vec<f64> = dr.iter().zip(&observed).map(|(d, r)| d - r).collect();
    let (mut value, mut gain_value) = (None, None);
    if let Some(values) = values
        && !withheld
    {
        let mut by_value = log.clone();
        for (r, v) in by_value.rows.iter_mut().zip(values) {
            r.reward = *v;
        }
        let dr_v = dr_terms(&evaluate::rounds(&by_value, targets));
        let top = values.iter().copied().fold(0.0, f64::max);
        let g: Vec<f64> = dr_v.iter().zip(values).map(|(d, v)| d - v).collect();
        value = Some(per_1000(&dr_v, &clusters, 0.0, top));
        gain_value = Some(per_1000(&g, &clusters, -top, top));
    }
    let mut offer_share = vec![0.0; log.actions.len()];
    for t in targets {
        for (s, p) in offer_share.iter_mut().zip(t) {
            *s += p / targets.len().max(1) as f64;
        }
    }
    Counterfactual {
        policy: policy.to_owned(),
        offer_share,
        redemptions_per_1000: (!withheld).then(|| per_1000(&dr, &clusters, 0.0, 1.0)),
        gain_redemptions_per_1000: (!withheld).then(|| per_1000(&gain, &clusters, -1.0, 1.0)),
        value_per_1000: value,
        gain_value_per_1000: gain_value,
        unsupported_share: support.share,
        withheld,
        estimators,
    }
}

/// The verdict in one sentence.
pub(crate) fn sentence(c: &Counterfactual, yours: &Figure) -> String {
    let Some(g) = c.gain_redemptions_per_1000 else {
        return format!(
            "Your history cannot say what {} would have earned: about {:.0}% of its choices go to offers your sends (almost) never made for such customers, so nothing was learned about them there. What it can say: your sends earned {:.1} redemptions per 1,000 (interval {:.1} to {:.1}). To learn more, send a random offer to a small share of customers (5-10%) for a few weeks.",
            c.policy,
            100.0 * c.unsupported_share,
            yours.value,
            yours.low,
            yours.high
        );
    };
    let money = c.gain_value_per_1000.map_or(String::new(), |v| {
        format!(
            ", and {} in value per 1,000 sends (interval {} to {})",
            signed(v.value, 0),
            signed(v.low, 0),
            signed(v.high, 0)
        )
    });
    let head = if g.low > 0.0 {
        format!("{} would have earned more than your sends:", c.policy)
    } else if g.high < 0.0 {
        format!("Your sends earned more than {} would have:", c.policy)
    } else {
        format!(
            "Your history cannot tell {} from your sends apart yet:",
            c.policy
        )
    };
    format!(
        "{head} {} redemptions per 1,000 sends (interval {} to {}){money}.",
        signed(g.value, 1),
        signed(g.low, 1),
        signed(g.high, 1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clustered_standard_error_matches_the_closed_form() {
        // Two customers of two sends each, and one anonymous send.
        let terms = [1.0, 1.0, 0.0, 0.0, 1.0];
        let clusters = [Some(0), Some(0), Some(1), Some(1), None];
        let (m, se, c) = clustered(&terms, &clusters);
        assert_eq!(c, 3);
        assert!((m - 0.6).abs() < 1e-12);
        // Cluster residuals: 2 - 1.2, 0 - 1.2, 1 - 0.6.
        let ss: f64 = 0.8f64.powi(2) + 1.2f64.powi(2) + 0.4f64.powi(2);
        let want = (3.0 / 2.0 * ss / 25.0).sqrt();
        assert!((se - want).abs() < 1e-12, "{se} vs {want}");
    }

    #[test]
    fn figures_stay_in_the_possible_range() {
        let terms = [1.0, 1.0, 1.0, 0.0];
        let f = per_1000(&terms, &[None, None, None, None], 0.0, 1.0);
        assert!(f.high <= 1000.0 && f.low >= 0.0, "{f:?}");
        assert!(f.low < f.value && f.value < f.high);
    }
}
