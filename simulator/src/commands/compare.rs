//! `compare` (a scenario) and `replay` (a full-feedback dataset): policies
//! run side by side over seeds, then the table or JSON, and with `--out` the
//! report files.

use anyhow::Context as _;
use offer_bandit::{Encoder, infer_specs};

use crate::{
    cli::{Common, CompareArgs, ObjectiveArg, ReplayArgs},
    dataset::Dataset,
    experiment::{Plan, execute},
    offer_features, output,
    policies::PolicyEnv,
    results::{Evidence, RunReport},
    scenario::Scenario,
    world::{ReplayWorld, ScenarioWorld},
};

/// The policies compared when `--policies` is not given.
const DEFAULT_POLICIES: &str = "uniform,fixed-best,epsilon-greedy,ucb1,segment-ts,logistic-ts";

/// The policy specs to run: `--policies`, or the defaults plus `extra`.
fn specs(common: &Common, extra: &[&str]) -> Vec<String> {
    match &common.policies {
        Some(p) => p
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        None => DEFAULT_POLICIES
            .split(',')
            .chain(extra.iter().copied())
            .map(str::to_owned)
            .collect(),
    }
}

/// Worker threads: `--threads`, or every core.
fn threads(common: &Common) -> usize {
    common
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The command line as typed, for the report.
fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// What each offer's redemption is worth to the learners under `objective`.
fn weights(objective: ObjectiveArg, values: &[f64]) -> Vec<f64> {
    match objective {
        ObjectiveArg::Redemptions => vec![1.0; values.len()],
        ObjectiveArg::Value => values.iter().map(|v| v.max(1e-9)).collect(),
    }
}

/// The offer with the highest weighted mean (the fixed-best policy's offer).
fn best_offer(weighted_means: &[f64]) -> usize {
    weighted_means
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// `offer-sim compare`: policies on a simulated loyalty program.
pub(crate) fn compare(a: CompareArgs) -> anyhow::Result<()> {
    let scenario = Scenario::load(&a.scenario)?;
    let offers: Vec<String> = scenario.offers().iter().map(|o| o.id.clone()).collect();
    let values: Vec<f64> = scenario.offers().iter().map(|o| o.net_value()).collect();
    let w = weights(a.common.objective, &values);
    let means = ScenarioWorld::offer_means(&scenario, 20_000, a.common.first_seed);
    let weighted: Vec<f64> = means.iter().zip(&w).map(|(m, w)| m * w).collect();
    let rule = |ctx: &offer_bandit::Context, c: &[usize]| scenario.marketer_choice(ctx, c);
    let plan = Plan {
        specs: specs(&a.common, &["marketer"]),
        learn_every: a.common.learn_every,
        seeds: a.common.seeds,
        first_seed: a.common.first_seed,
        rounds: a.common.rounds.unwrap_or_else(|| scenario.rounds()),
        segment_feature: scenario.report_segment().to_owned(),
        offers: offers.clone(),
        offer_names: scenario.offers().iter().map(|o| o.name.clone()).collect(),
        evidence: Evidence::SimulatedPopulation,
        env: PolicyEnv {
            offers: offers.clone(),
            weights: w,
            best_fixed: best_offer(&weighted),
            default_segment_by: vec![scenario.report_segment().to_owned()],
            marketer: scenario.has_marketer_rule().then_some(&rule as _),
            prior_strength: a.common.prior_strength,
            min_propensity: a.common.min_propensity,
            encoder: ScenarioWorld::encoder(&scenario, a.common.first_seed, a.common.buckets(6))?,
            offer_features: match &a.offer_features {
                Some(names) => Some(offer_features::encode(
                    &split_names(names),
                    &offer_features::of_scenario(scenario.offers()),
                )?),
                None => None,
            },
            window_ms: (scenario.reward_window_days() * offer_bandit::policy::forgetting::DAY_MS)
                as i64,
        },
        threads: threads(&a.common),
        progress: !a.common.quiet,
    };
    let outcome = execute(&plan, &|seed| ScenarioWorld::new(&scenario, seed))?;
    let source = a.scenario.display().to_string();
    finish(
        &a.common,
        outcome.into_report("compare", scenario.name(), &source, &command_line(), &plan),
    )
}

/// `a+b+c` as names.
fn split_names(list: &str) -> Vec<String> {
    list.split('+')
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect()
}

/// `offer-sim replay`: policies on a full-feedback dataset.
pub(crate) fn replay(a: ReplayArgs) -> anyhow::Result<()> {
    let data = Dataset::load(&a.dataset)?;
    let segment_feature = match a.segment_by.clone() {
        Some(f) => {
            if !data.features.contains(&f) {
                anyhow::bail!("--segment-by {f}: the dataset has no column '{f}'");
            }
            f
        }
        None => data
            .features
            .iter()
            .zip(&data.numeric)
            .find(|(f, _)| *f == "lifecycle")
            .or_else(|| data.features.iter().zip(&data.numeric).find(|(_, n)| !**n))
            .map(|(f, _)| f.clone())
            .unwrap_or_default(),
    };
    let mean_values: Vec<f64> = (0..data.offers.len())
        .map(|k| data.rows.iter().map(|r| r.value[k]).sum::<f64>() / data.rows.len() as f64)
        .collect();
    let w = weights(a.common.objective, &mean_values);
    let weighted: Vec<f64> = match a.common.objective {
        ObjectiveArg::Redemptions => data.offer_means(),
        ObjectiveArg::Value => (0..data.offers.len())
            .map(|k| data.rows.iter().map(|r| r.p[k] * r.value[k]).sum::<f64>())
            .collect(),
    };
    let plan = Plan {
        specs: specs(&a.common, &[]),
        learn_every: a.common.learn_every,
        seeds: a.common.seeds,
        first_seed: a.common.first_seed,
        rounds: a.common.rounds.unwrap_or(data.rows.len() as u64),
        segment_feature: segment_feature.clone(),
        offers: data.offers.clone(),
        offer_names: data.offers.clone(),
        evidence: Evidence::FullFeedbackDataset,
        env: PolicyEnv {
            offers: data.offers.clone(),
            weights: w,
            best_fixed: best_offer(&weighted),
            default_segment_by: vec![segment_feature],
            marketer: None,
            prior_strength: a.common.prior_strength,
            min_propensity: a.common.min_propensity,
            encoder: Encoder::new(
                {
                    let (bins, buckets) = a.common.buckets(8);
                    infer_specs(data.rows.iter().map(|r| &r.context), bins, buckets, 32)
                },
                8,
            )?,
            offer_features: match &a.offer_features {
                Some(names) => Some(offer_features::encode(
                    &split_names(names),
                    &offer_features::of_dataset(&a.dataset, &data.offers)?,
                )?),
                None => None,
            },
            // A dataset's feedback is immediate.
            window_ms: 0,
        },
        threads: threads(&a.common),
        progress: !a.common.quiet,
    };
    let shuffle = a.shuffle;
    let outcome = execute(&plan, &|seed| ReplayWorld::new(&data, seed, shuffle))
        .with_context(|| format!("replaying {}", a.dataset.display()))?;
    let title = a.dataset.file_stem().map_or_else(
        || "dataset".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    let source = a.dataset.display().to_string();
    finish(
        &a.common,
        outcome.into_report("replay", &title, &source, &command_line(), &plan),
    )
}

/// Prints the table or JSON, and writes the `--out` directory.
fn finish(common: &Common, report: RunReport) -> anyhow::Result<()> {
    if common.json {
        println!("{}", output::json(&report)?);
    } else {
        print!("{}", output::table(&report));
    }
    if let Some(dir) = &common.out {
        output::write_dir(dir, &report)?;
        if !common.json {
            println!(
                "wrote {}/report.html (and results.json, curves.csv, regret.svg)",
                dir.display()
            );
        }
    }
    Ok(())
}
