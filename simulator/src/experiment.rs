//! Runs every (policy, seed) pair of a comparison in parallel and turns the
//! per-seed totals into the report: summaries with intervals over seeds,
//! learning curves and offer shares by segment.

use std::{
    collections::BTreeMap,
    sync::{Mutex, atomic::AtomicUsize, atomic::Ordering},
};

use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{
    engine_run::EngineDecider,
    policies::{PolicyEnv, build},
    results::{
        Baseline, CurvePoint, Evidence, PolicyCurve, PolicyShares, PolicySummary, RunReport,
        SegmentShares,
    },
    run::{SeedResult, World, run_batched, run_with},
    stats::{estimate, median},
    versus,
};

/// What to run.
pub(crate) struct Plan<'a> {
    /// Policy specs.
    pub(crate) specs: Vec<String>,
    /// Seeds `first_seed .. first_seed + seeds`.
    pub(crate) seeds: u64,
    pub(crate) first_seed: u64,
    /// Decisions per run.
    pub(crate) rounds: u64,
    /// Feature whose values are the report's segments.
    pub(crate) segment_feature: String,
    /// Offer ids.
    pub(crate) offers: Vec<String>,
    /// Offer display names, in the order of `offers`.
    pub(crate) offer_names: Vec<String>,
    /// Where the visits come from.
    pub(crate) evidence: Evidence,
    /// Policy construction.
    pub(crate) env: PolicyEnv<'a>,
    /// Worker threads.
    pub(crate) threads: usize,
    /// Show a progress bar (on stderr).
    pub(crate) progress: bool,
    /// Library policies learn their decisions in batches of this many
    /// (1: each at once).
    pub(crate) learn_every: u64,
}

/// The aggregated outcome of a plan.
pub(crate) struct Outcome {
    pub(crate) policies: Vec<PolicySummary>,
    pub(crate) curves: Vec<PolicyCurve>,
    pub(crate) shares: Vec<PolicyShares>,
    pub(crate) oracle_mean_reward: f64,
    pub(crate) oracle_mean_value: f64,
    pub(crate) random_mean_reward: f64,
    pub(crate) baseline: Option<Baseline>,
}

impl Outcome {
    /// The full report of a run.
    pub(crate) fn into_report(
        self,
        mode: &str,
        title: &str,
        source: &str,
        command: &str,
        plan: &Plan<'_>,
    ) -> RunReport {
        RunReport {
            mode: mode.to_owned(),
            title: title.to_owned(),
            source: source.to_owned(),
            command: command.to_owned(),
            seeds: plan.seeds,
            first_seed: plan.first_seed,
            rounds: plan.rounds,
            oracle_mean_reward: self.oracle_mean_reward,
            oracle_mean_value: self.oracle_mean_value,
            random_mean_reward: self.random_mean_reward,
            offers: plan.offers.clone(),
            segment_feature: plan.segment_feature.clone(),
            verdict: versus::verdict(&self.policies, self.baseline.as_ref(), plan.evidence),
            policies: self.policies,
            curves: self.curves,
            shares: self.shares,
            offer_names: plan.offer_names.clone(),
            evidence: plan.evidence,
            baseline: self.baseline,
        }
    }
}

/// A policy spec with this prefix runs on the library's engine
/// (`engine:logistic-ts`): see `engine_run`.
pub(crate) const ENGINE_PREFIX: &str = "engine:";

/// One (policy, seed) run.
fn run_one<W: World>(
    plan: &Plan<'_>,
    spec: &str,
    seed: u64,
    world: &(dyn Fn(u64) -> W + Sync),
    progress: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<SeedResult> {
    let mut w = world(seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xB4D1);
    let (rounds, segment) = (plan.rounds, &plan.segment_feature);
    match spec.strip_prefix(ENGINE_PREFIX) {
        Some(inner) => {
            let mut engine =
                EngineDecider::new(inner, &plan.env, w.window(), w.visits_per_day(), &rng)?;
            run_with(&mut engine, &mut w, rounds, &mut rng, segment, progress)
        }
        None => {
            let mut policy = build(spec, &plan.env)?;
            run_batched(
                policy.as_mut(),
                &mut w,
                rounds,
                &mut rng,
                segment,
                plan.learn_every,
                progress,
            )
        }
    }
}

/// Runs the plan; `world(seed)` makes the world of one seed (the same for
/// every policy, so policies face the same visits and coins).
pub(crate) fn execute<'a, W>(
    plan: &Plan<'a>,
    world: &(dyn Fn(u64) -> W + Sync),
) -> anyhow::Result<Outcome>
where
    W: World,
{
    // Validate every spec before spending time.
    for spec in &plan.specs {
        match spec.strip_prefix(ENGINE_PREFIX) {
            Some(_) if plan.learn_every > 1 => anyhow::bail!(
                "--learn-every applies to library policies; '{spec}' runs on the engine, which learns each decision before the next"
            ),
            Some(inner) => crate::engine_run::check(inner, &plan.env)?,
            None => drop(build(spec, &plan.env)?),
        }
    }
    let jobs: Vec<(usize, u64)> = (0..plan.specs.len())
        .flat_map(|p| (0..plan.seeds).map(move |s| (p, s)))
        .collect();
    let bar = if plan.progress {
        let bar = ProgressBar::new(jobs.len() as u64 * plan.rounds);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {percent:>3}% {human_pos}/{human_len} decisions, eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<anyhow::Result<SeedResult>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    let progress = |n: u64| bar.inc(n);
    std::thread::scope(|scope| {
        for _ in 0..plan.threads.max(1).min(jobs.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(p, s)) = jobs.get(j) else { break };
                    let seed = plan.first_seed + s;
                    let result = run_one(plan, &plan.specs[p], seed, world, &progress);
                    if let Ok(mut all) = results.lock() {
                        all[j] = Some(result);
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    let all = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a worker thread panicked"))?;
    let mut per_policy: Vec<Vec<SeedResult>> = plan.specs.iter().map(|_| Vec::new()).collect();
    for (j, r) in all.into_iter().enumerate() {
        let r = r.ok_or_else(|| anyhow::anyhow!("a run did not finish"))??;
        per_policy[jobs[j].0].push(r);
    }
    Ok(aggregate(plan, &per_policy))
}

fn aggregate(plan: &Plan<'_>, per_policy: &[Vec<SeedResult>]) -> Outcome {
    let per_round = |f: fn(&SeedResult) -> f64| -> f64 {
        let v: Vec<f64> = per_policy
            .iter()
            .flatten()
            .map(|r| f(r) / r.rounds.max(1) as f64)
            .collect();
        estimate(&v).mean
    };
    let oracle_mean_reward = per_round(|r| r.oracle);
    let oracle_mean_value = per_round(|r| r.oracle_value);
    let random_mean_reward = per_round(|r| r.random);
    let baseline = versus::choose_baseline(&plan.specs);
    let mut policies = Vec::new();
    let mut curves = Vec::new();
    let mut shares = Vec::new();
    for (spec, runs) in plan.specs.iter().zip(per_policy) {
        let col = |f: &dyn Fn(&SeedResult) -> f64| -> Vec<f64> { runs.iter().map(f).collect() };
        let n = |r: &SeedResult| r.rounds.max(1) as f64;
        let mean_reward = estimate(&col(&|r| r.redemptions / n(r)));
        let mean_expected = estimate(&col(&|r| r.expected / n(r)));
        let value_per_1000 = estimate(&col(&|r| 1000.0 * r.value / n(r)));
        let fraction = estimate(&col(&|r| r.expected / r.oracle));
        let fraction_value = estimate(&col(&|r| r.expected_value / r.oracle_value));
        let speed = col(&|r| r.rounds as f64 / r.policy_seconds.max(1e-12));
        policies.push(PolicySummary {
            policy: spec.clone(),
            rounds: plan.rounds,
            seeds: runs.len() as u64,
            mean_reward: mean_reward.mean,
            mean_reward_ci: mean_reward,
            mean_expected_reward: mean_expected.mean,
            mean_expected_reward_ci: mean_expected,
            reward_per_1000: estimate(&col(&|r| 1000.0 * r.expected / n(r))),
            value_per_1000: value_per_1000.mean,
            value_per_1000_ci: value_per_1000,
            cumulative_regret: estimate(&col(&|r| r.oracle - r.expected)),
            fraction_of_oracle: fraction.mean,
            fraction_of_oracle_ci: fraction,
            fraction_of_value_oracle: fraction_value.mean,
            fraction_of_value_oracle_ci: fraction_value,
            uplift_vs_random: estimate(&col(&|r| r.expected / r.random - 1.0)),
            decisions_per_second: median(&speed),
            expected_value_per_1000: estimate(&col(&versus::value_per_1000)),
            vs_baseline: baseline
                .as_ref()
                .map(|(b, base)| versus::versus(runs, &per_policy[*b], &base.policy)),
        });
        curves.push(curve(spec, runs));
        shares.push(segment_shares(spec, runs, &plan.offers));
    }
    Outcome {
        policies,
        curves,
        shares,
        oracle_mean_reward,
        oracle_mean_value,
        random_mean_reward,
        baseline: baseline.map(|(_, b)| b),
    }
}

fn curve(spec: &str, runs: &[SeedResult]) -> PolicyCurve {
    let points = runs.first().map_or(0, |r| r.curve.len());
    let points = (0..points)
        .map(|i| {
            let at = |f: fn(&(u64, f64, f64, f64)) -> f64| -> Vec<f64> {
                runs.iter().filter_map(|r| r.curve.get(i)).map(f).collect()
            };
            CurvePoint {
                round: runs[0].curve[i].0,
                cumulative_regret: estimate(&at(|p| p.1)),
                window_expected_reward: estimate(&at(|p| p.2)).mean,
                window_oracle_reward: estimate(&at(|p| p.3)).mean,
            }
        })
        .collect();
    PolicyCurve {
        policy: spec.to_owned(),
        points,
    }
}

fn segment_shares(spec: &str, runs: &[SeedResult], offers: &[String]) -> PolicyShares {
    let mut merged: BTreeMap<String, (Vec<u64>, Vec<u64>)> = BTreeMap::new();
    for r in runs {
        for (seg, (chosen, best)) in &r.shares {
            let e = merged
                .entry(seg.clone())
                .or_insert_with(|| (vec![0; offers.len()], vec![0; offers.len()]));
            for (a, b) in e.0.iter_mut().zip(chosen) {
                *a += b;
            }
            for (a, b) in e.1.iter_mut().zip(best) {
                *a += b;
            }
        }
    }
    let segments = merged
        .into_iter()
        .map(|(segment, (chosen, best))| {
            let visits: u64 = chosen.iter().sum();
            let top = best
                .iter()
                .enumerate()
                .max_by_key(|(_, c)| **c)
                .map_or(0, |(i, _)| i);
            SegmentShares {
                segment,
                visits,
                share: chosen
                    .iter()
                    .map(|&c| c as f64 / visits.max(1) as f64)
                    .collect(),
                oracle_top_offer: offers.get(top).cloned().unwrap_or_default(),
            }
        })
        .collect();
    PolicyShares {
        policy: spec.to_owned(),
        segments,
    }
}
