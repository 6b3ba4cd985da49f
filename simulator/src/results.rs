//! The results of a comparison run: what `--json`, `results.json`, the curves
//! CSV and the HTML report are made from. Plain data, serializable.

use serde::{Deserialize, Serialize};

/// A mean over seeds with its 95% interval (Student t over seeds; equal to the
/// mean when there is a single seed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Estimate {
    /// Mean over seeds.
    pub(crate) mean: f64,
    /// Lower end of the 95% interval.
    pub(crate) low: f64,
    /// Upper end of the 95% interval.
    pub(crate) high: f64,
}

/// One policy's figures over all seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PolicySummary {
    /// Policy spec as given on the command line (e.g. `segment-ts`, `epsilon-greedy:0.1`).
    pub(crate) policy: String,
    /// Decisions per seed.
    pub(crate) rounds: u64,
    /// Seeds run.
    pub(crate) seeds: u64,
    /// Realized redemptions per decision (redemption rate).
    pub(crate) mean_reward: f64,
    /// 95% interval of `mean_reward` over seeds.
    pub(crate) mean_reward_ci: Estimate,
    /// Mean true redemption probability of the chosen offers.
    pub(crate) mean_expected_reward: f64,
    /// 95% interval of `mean_expected_reward`.
    pub(crate) mean_expected_reward_ci: Estimate,
    /// Expected redemptions per 1,000 visits (1000 x mean_expected_reward).
    pub reward_per_1000: Estimate,
    /// Realized net value per 1,000 visits.
    pub value_per_1000: f64,
    /// 95% interval of `value_per_1000`.
    pub value_per_1000_ci: Estimate,
    /// Expected redemptions lost against the oracle over the run (sum of max p - p chosen).
    pub(crate) cumulative_regret: Estimate,
    /// mean_expected_reward / oracle mean of max p.
    pub(crate) fraction_of_oracle: f64,
    /// 95% interval of `fraction_of_oracle`.
    pub(crate) fraction_of_oracle_ci: Estimate,
    /// Mean expected value of the chosen offers / oracle mean of max (p x value).
    pub(crate) fraction_of_value_oracle: f64,
    /// 95% interval of `fraction_of_value_oracle`.
    pub(crate) fraction_of_value_oracle_ci: Estimate,
    /// mean_expected_reward / uniform-random expected reward - 1.
    pub(crate) uplift_vs_random: Estimate,
    /// Decisions (choose + learn) per second of one core, median over seeds.
    pub(crate) decisions_per_second: f64,
    /// Expected net value per 1,000 visits (true probabilities x values of
    /// the chosen offers), with its 95% interval over seeds.
    #[serde(default)]
    pub(crate) expected_value_per_1000: Estimate,
    /// The difference against the run's baseline (the team's rule when the
    /// run has one), paired by seed; absent without a baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) vs_baseline: Option<Versus>,
}

/// A policy against the run's baseline: the mean over seeds of the per-seed
/// differences (same seed, same visits and coins), with a 95% Student-t
/// interval over seeds (equal to the mean with a single seed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Versus {
    /// The baseline's policy spec.
    pub(crate) baseline: String,
    /// Expected redemptions per 1,000 visits, this policy minus the baseline.
    pub(crate) redemptions_per_1000: Estimate,
    /// Expected net value per 1,000 visits, this policy minus the baseline.
    pub(crate) value_per_1000: Estimate,
    /// Seeds paired.
    pub(crate) seeds: u64,
}

/// What a run's results are drawn from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Evidence {
    /// A scenario: a simulated population (`compare`).
    #[default]
    SimulatedPopulation,
    /// A full-feedback dataset (`replay`).
    FullFeedbackDataset,
}

/// Which policy the others are measured against, and why it was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Baseline {
    /// Its policy spec (`marketer`, `rules:FILE`, `fixed-best`, `uniform`).
    pub(crate) policy: String,
    /// `your-rule` (marketer or rules:FILE), `best-single-offer`
    /// (fixed-best) or `random-offer` (uniform).
    pub(crate) kind: String,
    /// How the report names it ("your rule (marketer)", ...).
    pub(crate) label: String,
}

/// One point of a policy's learning curve, averaged over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct CurvePoint {
    /// Decisions made so far.
    pub(crate) round: u64,
    /// Cumulative expected regret vs the oracle at this round.
    pub(crate) cumulative_regret: Estimate,
    /// Mean expected reward of the decisions since the previous point.
    pub(crate) window_expected_reward: f64,
    /// Oracle mean of max p over the same window.
    pub(crate) window_oracle_reward: f64,
}

/// A policy's learning curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PolicyCurve {
    /// Policy spec.
    pub(crate) policy: String,
    /// Points in increasing round order.
    pub(crate) points: Vec<CurvePoint>,
}

/// How one policy split one customer segment's traffic over the offers
/// (all seeds, last half of the run, when learning has settled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SegmentShares {
    /// Value of the report's segment feature.
    pub(crate) segment: String,
    /// Decisions counted.
    pub(crate) visits: u64,
    /// Share of each offer (same order as `RunReport::offers`), summing to 1.
    pub(crate) share: Vec<f64>,
    /// Offer the oracle chose most often in this segment.
    pub(crate) oracle_top_offer: String,
}

/// Offer shares by segment for one policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PolicyShares {
    /// Policy spec.
    pub(crate) policy: String,
    /// One entry per segment value, sorted by name.
    pub(crate) segments: Vec<SegmentShares>,
}

/// Everything a run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunReport {
    /// `compare` or `replay`.
    pub(crate) mode: String,
    /// Scenario or dataset name.
    pub(crate) title: String,
    /// Scenario file or dataset path.
    pub(crate) source: String,
    /// The command line that produced this report.
    pub(crate) command: String,
    /// Seeds run (0, 1, ... seeds-1 offset by `first_seed`).
    pub(crate) seeds: u64,
    /// First seed.
    pub(crate) first_seed: u64,
    /// Decisions per seed.
    pub(crate) rounds: u64,
    /// Mean over visits of the best offer's redemption probability.
    pub(crate) oracle_mean_reward: f64,
    /// Mean over visits of the best offer's expected value (p x value).
    pub(crate) oracle_mean_value: f64,
    /// Mean over visits of the mean p over candidate offers.
    pub(crate) random_mean_reward: f64,
    /// Offer ids, in the order used by `SegmentShares::share`.
    pub(crate) offers: Vec<String>,
    /// Context feature whose values define the segments in `shares`.
    pub(crate) segment_feature: String,
    /// Per-policy summaries, in command-line order.
    pub(crate) policies: Vec<PolicySummary>,
    /// Per-policy learning curves.
    pub(crate) curves: Vec<PolicyCurve>,
    /// Per-policy offer shares by segment.
    pub(crate) shares: Vec<PolicyShares>,
    /// Offer display names (the scenario's `name`, else the id), in the
    /// order of `offers`.
    #[serde(default)]
    pub(crate) offer_names: Vec<String>,
    /// Where the numbers come from.
    #[serde(default)]
    pub(crate) evidence: Evidence,
    /// What every policy is measured against; absent when the run has no
    /// rule and no baseline policy.
    #[serde(default)]
    pub(crate) baseline: Option<Baseline>,
    /// The result in one sentence, with its interval.
    #[serde(default)]
    pub(crate) verdict: String,
}

impl RunReport {
    /// How offer `id` is shown: its name when the run has one.
    pub(crate) fn offer_display(&self, id: &str) -> String {
        self.offers
            .iter()
            .position(|o| o == id)
            .and_then(|i| self.offer_names.get(i))
            .filter(|n| !n.is_empty())
            .cloned()
            .unwrap_or_else(|| id.to_owned())
    }
}
