//! Every policy against the team's rule: which policy is the baseline (the
//! team's rule when the run has one), the per-seed paired differences in
//! redemptions and money per 1,000 decisions, and the verdict sentence.

use crate::{
    report::signed,
    results::{Baseline, Estimate, Evidence, PolicySummary, Versus},
    run::SeedResult,
    stats::estimate,
};

/// What the page says about the interval of a difference.
pub(crate) const PAIRED_INTERVAL: &str = "Differences are paired by seed: with the same seed every policy meets the same customers, the same visits and the same redemption coins, so each seed gives one difference, and the interval is a 95% Student-t interval over those differences. It assumes the seeds are independent draws of the same population, and it speaks of that population over a run of this length; with one seed there is no interval.";

/// The baseline among `specs`: the first `rules:FILE`, else `marketer`
/// (both the team's rule), else `fixed-best`, else `uniform`.
pub(crate) fn choose_baseline(specs: &[String]) -> Option<(usize, Baseline)> {
    let find = |pred: &dyn Fn(&str) -> bool| specs.iter().position(|s| pred(s.trim()));
    if let Some(i) = find(&|s| s.starts_with("rules:")) {
        return Some((i, baseline(&specs[i], "your-rule", "your rule")));
    }
    if let Some(i) = find(&|s| s == "marketer") {
        return Some((i, baseline(&specs[i], "your-rule", "your rule")));
    }
    if let Some(i) = find(&|s| s == "fixed-best") {
        return Some((
            i,
            baseline(&specs[i], "best-single-offer", "the best single offer"),
        ));
    }
    find(&|s| s == "uniform").map(|i| (i, baseline(&specs[i], "random-offer", "a random offer")))
}

fn baseline(spec: &str, kind: &str, what: &str) -> Baseline {
    Baseline {
        policy: spec.to_owned(),
        kind: kind.to_owned(),
        label: format!("{what} ({spec})"),
    }
}

/// Expected redemptions per 1,000 decisions of one run.
fn redemptions_per_1000(r: &SeedResult) -> f64 {
    1000.0 * r.expected / r.rounds.max(1) as f64
}

/// Expected net value per 1,000 decisions of one run.
pub(crate) fn value_per_1000(r: &SeedResult) -> f64 {
    1000.0 * r.expected_value / r.rounds.max(1) as f64
}

/// `runs` against `base`, seed by seed (both in seed order).
pub(crate) fn versus(runs: &[SeedResult], base: &[SeedResult], spec: &str) -> Versus {
    let diff = |f: fn(&SeedResult) -> f64| -> Estimate {
        let d: Vec<f64> = runs.iter().zip(base).map(|(a, b)| f(a) - f(b)).collect();
        estimate(&d)
    };
    Versus {
        baseline: spec.to_owned(),
        redemptions_per_1000: diff(redemptions_per_1000),
        value_per_1000: diff(value_per_1000),
        seeds: runs.len().min(base.len()) as u64,
    }
}

/// "(interval +35.0 to +47.0)", or a note when there is none.
fn interval(e: &Estimate, decimals: usize) -> String {
    if e.low.is_finite() && e.high.is_finite() && e.high > e.low {
        format!(
            "(interval {} to {})",
            signed(e.low, decimals),
            signed(e.high, decimals)
        )
    } else {
        "(one seed: no interval; run --seeds 5 for one)".to_owned()
    }
}

/// `s` with its first letter in upper case.
fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_uppercase().chain(chars).collect::<String>()
    })
}

/// Where the numbers come from, as the end of the verdict sentence.
fn on_what(evidence: Evidence) -> &'static str {
    match evidence {
        Evidence::SimulatedPopulation => "on this simulated population",
        Evidence::FullFeedbackDataset => "on this dataset's visits",
    }
}

/// The verdict: the best other policy (by expected redemptions) against the
/// baseline, in one sentence with its interval.
pub(crate) fn verdict(
    policies: &[PolicySummary],
    baseline: Option<&Baseline>,
    evidence: Evidence,
) -> String {
    let Some(base) = baseline else {
        return match policies
            .iter()
            .filter(|p| p.mean_expected_reward.is_finite())
            .max_by(|a, b| a.mean_expected_reward.total_cmp(&b.mean_expected_reward))
        {
            Some(p) => format!(
                "{} earns the most, {:.1} redemptions per 1,000 visits {}; add your rule (rules:FILE, or marketer in a scenario) or fixed-best to see what it gains over it.",
                p.policy,
                p.reward_per_1000.mean,
                on_what(evidence)
            ),
            None => "No policies were run.".to_owned(),
        };
    };
    let best = policies
        .iter()
        .filter(|p| p.policy != base.policy && p.mean_expected_reward.is_finite())
        .max_by(|a, b| a.mean_expected_reward.total_cmp(&b.mean_expected_reward));
    let Some((p, v)) = best.and_then(|p| p.vs_baseline.as_ref().map(|v| (p, v))) else {
        return format!(
            "Only {} was run: add a policy to compare with it.",
            base.label
        );
    };
    let r = &v.redemptions_per_1000;
    let money = format!(
        "{} in value {}",
        signed(v.value_per_1000.mean, 0),
        interval(&v.value_per_1000, 0)
    );
    let amount = format!("{} redemptions per 1,000 visits", signed(r.mean, 1));
    let head = if r.low > 0.0 && r.high > r.low {
        format!("{} would earn {amount} over {}", p.policy, base.label)
    } else if r.high < 0.0 && r.high > r.low {
        format!(
            "{} earns the most: {}, the best of the others, would earn {amount} against it",
            capitalized(&base.label),
            p.policy
        )
    } else if r.high > r.low {
        format!(
            "{} cannot be told apart from {}: {amount}",
            p.policy, base.label
        )
    } else {
        format!("{} would earn {amount} over {}", p.policy, base.label)
    };
    format!(
        "{head} {}, and {money}, {}.",
        interval(r, 1),
        on_what(evidence)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(expected: f64, value: f64) -> SeedResult {
        SeedResult {
            rounds: 1000,
            expected,
            expected_value: value,
            ..SeedResult::default()
        }
    }

    #[test]
    fn the_team_rule_is_the_baseline_when_there_is_one() {
        let specs = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let pick = |s: &[&str]| choose_baseline(&specs(s)).map(|(i, b)| (i, b.kind));
        assert_eq!(
            pick(&["uniform", "marketer", "rules:a.rules"]),
            Some((2, "your-rule".into()))
        );
        assert_eq!(
            pick(&["uniform", "fixed-best", "marketer"]),
            Some((2, "your-rule".into()))
        );
        assert_eq!(
            pick(&["uniform", "fixed-best"]),
            Some((1, "best-single-offer".into()))
        );
        assert_eq!(pick(&["ucb1", "uniform"]), Some((1, "random-offer".into())));
        assert_eq!(pick(&["ucb1"]), None);
    }

    /// Pairing by seed removes the spread the seeds share: a policy always
    /// 10 better than the rule on very different seeds gets a zero-width
    /// interval at +10, which unpaired intervals could not give.
    #[test]
    fn differences_are_paired_by_seed() {
        let rule = [run(50.0, 300.0), run(150.0, 900.0), run(90.0, 500.0)];
        let ts = [run(60.0, 310.0), run(160.0, 910.0), run(100.0, 510.0)];
        let v = versus(&ts, &rule, "marketer");
        assert_eq!(v.seeds, 3);
        assert!((v.redemptions_per_1000.mean - 10.0).abs() < 1e-9);
        assert!((v.redemptions_per_1000.high - v.redemptions_per_1000.low).abs() < 1e-9);
        assert!((v.value_per_1000.mean - 10.0).abs() < 1e-9);
        let noisy = [run(70.0, 300.0), run(150.0, 900.0), run(100.0, 500.0)];
        let v = versus(&noisy, &rule, "marketer");
        assert!(v.redemptions_per_1000.low < 10.0 && 10.0 < v.redemptions_per_1000.high);
    }

    #[test]
    fn the_verdict_says_gain_interval_and_where_from() {
        let summary = |policy: &str, mean: f64, vs: Option<Versus>| PolicySummary {
            policy: policy.into(),
            rounds: 1000,
            seeds: 3,
            mean_reward: mean,
            mean_reward_ci: Estimate::default(),
            mean_expected_reward: mean,
            mean_expected_reward_ci: Estimate::default(),
            reward_per_1000: Estimate::default(),
            value_per_1000: 0.0,
            value_per_1000_ci: Estimate::default(),
            cumulative_regret: Estimate::default(),
            fraction_of_oracle: 0.0,
            fraction_of_oracle_ci: Estimate::default(),
            fraction_of_value_oracle: 0.0,
            fraction_of_value_oracle_ci: Estimate::default(),
            uplift_vs_random: Estimate::default(),
            decisions_per_second: 0.0,
            expected_value_per_1000: Estimate::default(),
            vs_baseline: vs,
        };
        let gain = |low: f64, mean: f64, high: f64| Versus {
            baseline: "marketer".into(),
            redemptions_per_1000: Estimate { mean, low, high },
            value_per_1000: Estimate {
                mean: 6.0 * mean,
                low: 6.0 * low,
                high: 6.0 * high,
            },
            seeds: 5,
        };
        let Some((_, base)) = choose_baseline(&["marketer".to_owned()]) else {
            panic!("marketer is a baseline");
        };
        let policies = [
            summary("marketer", 0.147, Some(gain(0.0, 0.0, 0.0))),
            summary("logistic-ts", 0.188, Some(gain(35.0, 41.0, 47.0))),
            summary("uniform", 0.07, Some(gain(-80.0, -74.0, -70.0))),
        ];
        let v = verdict(&policies, Some(&base), Evidence::SimulatedPopulation);
        assert_eq!(
            v,
            "logistic-ts would earn +41.0 redemptions per 1,000 visits over your rule (marketer) (interval +35.0 to +47.0), and +246 in value (interval +210 to +282), on this simulated population."
        );
        let policies = [
            summary("marketer", 0.147, Some(gain(0.0, 0.0, 0.0))),
            summary("ucb1", 0.15, Some(gain(-2.0, 0.04, 3.0))),
        ];
        let v = verdict(&policies, Some(&base), Evidence::FullFeedbackDataset);
        assert!(
            v.starts_with("ucb1 cannot be told apart from your rule (marketer): 0.0 redemptions"),
            "{v}"
        );
        assert!(v.contains("(interval -2.0 to +3.0)") && v.ends_with("on this dataset's visits."));
        assert!(!v.contains("-0"), "{v}");
        let policies = [
            summary("marketer", 0.147, Some(gain(0.0, 0.0, 0.0))),
            summary("uniform", 0.07, Some(gain(-80.0, -74.0, -70.0))),
        ];
        let v = verdict(&policies, Some(&base), Evidence::SimulatedPopulation);
        assert!(
            v.starts_with("Your rule (marketer) earns the most: uniform, the best of the others, would earn -74.0 redemptions per 1,000 visits against it (interval -80.0 to -70.0)"),
            "{v}"
        );
    }
}
