//! `offer-sim`: compare offer policies on simulated loyalty programs and on
//! full-feedback datasets, with the library's own policies and the server's
//! decision/feedback loop, without the network.

mod dataset;
mod drive;
mod engine_run;
mod evaluate;
mod experiment;
mod load;
mod logs;
mod offer_features;
mod ope;
mod output;
mod policies;

mod report;
mod results;
mod run;

mod scenario;
mod stats;
mod world;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use offer_bandit::features::{Buckets, Encoder, infer_specs};

use crate::{
    dataset::Dataset,
    experiment::{Plan, execute},
    policies::{POLICY_HELP, PolicyEnv},
    results::RunReport,
    scenario::Scenario,
    world::{ReplayWorld, ScenarioWorld},
};

#[derive(Parser)]
#[command(
    name = "offer-sim",
    version,
    about = "Compare loyalty-offer policies before they go live",
    long_about = "Compare loyalty-offer policies before they go live.\n\n\
        `compare` runs policies on a simulated loyalty program (a scenario file);\n\
        `replay` runs them on a full-feedback dataset (true redemption probability\n\
        of every offer for every visit). Both print a table, and with --out write\n\
        results.json, curves.csv, report.html and regret.svg.",
    after_help = "Example:\n  offer-sim compare --scenario simulator/scenarios/coffee-loyalty.toml --out sim-report"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compare policies on a simulated population (scenario file).
    Compare(CompareArgs),
    /// Compare policies on a full-feedback dataset (CSV with p_<offer> columns).
    Replay(ReplayArgs),
    /// Estimate what a policy would have earned on logged decisions (off-policy evaluation).
    Ope(OpeArgs),
    /// Send a scenario's customers to a live server over gRPC, redeeming per the scenario's truth.
    Drive(DriveArgs),
    /// Print an offer-bandit campaign file for a scenario's offers (to serve it with --config).
    CampaignConfig(CampaignConfigArgs),
    /// Load-test a live server: throughput and latency percentiles per RPC.
    Load(LoadArgs),
}

#[derive(Args)]
#[command(after_help = "Example (the stack's baseline, then the real work):\n  \
    offer-sim load --target http://127.0.0.1:50051 --rpc health --concurrency 32 --duration 10s\n  \
    offer-sim load --target http://127.0.0.1:50051 --scenario simulator/scenarios/coffee-loyalty.toml --campaign coffee --concurrency 32 --duration 10s")]
struct LoadArgs {
    /// The server's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// Scenario whose customers visit (default: coffee-loyalty, built in).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Campaign id on the server.
    #[arg(long, default_value = "coffee")]
    campaign: String,
    /// Concurrent callers.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How long to run (e.g. 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: std::time::Duration,
    /// Total calls per second to aim for (default: as fast as possible).
    #[arg(long)]
    rps: Option<f64>,
    /// SelectOffer (with redemptions flowing back), Health/Check (baseline),
    /// or durable redemptions of decisions made first.
    #[arg(long, value_enum, default_value_t = load::LoadRpc::Select)]
    rpc: load::LoadRpc,
    /// With --rpc redeem: decisions to make (untimed) before redeeming them.
    #[arg(long, default_value_t = 200_000)]
    decisions: usize,
    /// With --rpc redeem: redemptions per RecordRedemptions stream (1 = unary RecordRedemption).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Wall-clock seconds per simulated day of redemption delay.
    #[arg(long, default_value_t = 1.0)]
    seconds_per_day: f64,
    /// Seed of the customers and coins.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DriveArgs {
    /// The server's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// Scenario file (TOML).
    #[arg(long)]
    scenario: PathBuf,
    /// Campaign id on the server (see `offer-sim campaign-config`).
    #[arg(long)]
    campaign: String,
    /// Visits to send.
    #[arg(long, default_value_t = 10_000)]
    decisions: u64,
    /// Concurrent SelectOffer calls per wave.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seed of the visits and redemption coins.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CampaignConfigArgs {
    /// Scenario file (TOML).
    #[arg(long)]
    scenario: PathBuf,
    /// Campaign id.
    #[arg(long)]
    id: Option<String>,
    /// segment-ts, linear-ts or logistic-ts.
    #[arg(long, default_value = "segment-ts")]
    policy: String,
    /// Reward window (e.g. 7d; tests use seconds).
    #[arg(long, default_value = "7d")]
    reward_window: String,
}

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    offer-sim ope --logs decisions.jsonl --policy uniform\n  \
    offer-sim ope --logs decisions.jsonl --policy logistic-ts --train-fraction 0.5\n  \
    offer-sim ope --obd ../shared/data/obd --campaign men --behavior random --target bts --prior ../shared/data/obd/prior_bts.yaml")]
struct OpeArgs {
    /// The service's decision log (`offer-bandit export`, JSON Lines).
    #[arg(long, conflicts_with = "obd")]
    logs: Option<PathBuf>,
    /// Target policy for --logs: uniform, fixed:OFFER, or a learning policy
    /// (segment-ts, linear-ts, logistic-ts...) trained on the first
    /// --train-fraction of the log and frozen.
    #[arg(long, default_value = "uniform")]
    policy: String,
    /// Share of the log (oldest first) a learning target policy is trained on.
    #[arg(long, default_value_t = 0.5)]
    train_fraction: f64,
    /// Instead of freezing, evaluate the learning policy with the replay
    /// method (needs a uniformly random log).
    #[arg(long)]
    replay: bool,
    /// Reward: 1 per redemption, or the redemption's value.
    #[arg(long, value_enum, default_value_t = ObjectiveArg::Redemptions)]
    reward: ObjectiveArg,
    /// For --logs: evaluate only decisions whose reward window closed before
    /// this time (Unix ms), whatever their outcome. Default: the end of the
    /// earliest window still open, so every decision evaluated is final.
    #[arg(long)]
    cut: Option<i64>,
    /// Open Bandit Dataset directory (holding random/ and bts/).
    #[arg(long)]
    obd: Option<PathBuf>,
    /// OBD campaign (all, men, women).
    #[arg(long, default_value = "men")]
    campaign: String,
    /// OBD policy whose log is read: random or bts.
    #[arg(long, default_value = "random")]
    behavior: String,
    /// OBD policy to evaluate: bts (from --prior) or random.
    #[arg(long, default_value = "bts")]
    target: String,
    /// prior_bts.yaml of the OBD (the production Bernoulli-TS prior).
    #[arg(long)]
    prior: Option<PathBuf>,
    /// Monte Carlo simulations for the BTS action distribution.
    #[arg(long, default_value_t = 100_000)]
    sims: usize,
    /// Clip importance weights at this value.
    #[arg(long)]
    clip: Option<f64>,
    /// Bootstrap resamples for the intervals.
    #[arg(long, default_value_t = 500)]
    bootstrap: usize,
    /// Confidence level of the intervals.
    #[arg(long, default_value_t = 0.95)]
    level: f64,
    /// A logged propensity below this does not support the target's choice
    /// (its importance weight would exceed the inverse).
    #[arg(long, default_value_t = ope::DEFAULT_MIN_SUPPORT)]
    min_support: f64,
    /// Importance-weighted estimates are withheld when more than this share
    /// of the target's choices (by three standard errors) lack support.
    #[arg(long, default_value_t = ope::DEFAULT_MAX_UNSUPPORTED)]
    max_unsupported: f64,
    /// Seed (bootstrap, Monte Carlo, policy randomness).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object per estimator.
    #[arg(long)]
    json: bool,
}

/// What the policies maximize.
#[derive(Clone, Copy, ValueEnum)]
enum ObjectiveArg {
    /// P(redeem).
    Redemptions,
    /// P(redeem) x offer net value.
    Value,
}

#[derive(Args)]
struct Common {
    /// Comma-separated policy specs:
    #[arg(long, value_delimiter = ',', long_help = format!("Comma-separated policy specs:\n{POLICY_HELP}"))]
    policies: Option<Vec<String>>,
    /// Independent runs per policy (seeds first-seed, first-seed+1, ...).
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// First seed; the same seed gives the same results.
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Decisions per run (default: the scenario's horizon or the dataset's rows).
    #[arg(long)]
    rounds: Option<u64>,
    /// What the learners maximize.
    #[arg(long, value_enum, default_value_t = ObjectiveArg::Redemptions)]
    objective: ObjectiveArg,
    /// Pseudo-observations a new segment borrows from the campaign (segment-ts).
    #[arg(long, default_value_t = 10.0)]
    prior_strength: f64,
    /// Write results.json, curves.csv, report.html and regret.svg here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the per-policy results as a JSON array instead of the table.
    #[arg(long)]
    json: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Contextual policies: quantile buckets per numeric feature (default: 8
    /// for a dataset, 6 for a scenario).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    bins: Option<u64>,
    /// Contextual policies: how a number's buckets become columns.
    #[arg(long, value_enum, default_value_t = Buckets::Steps)]
    buckets: Buckets,
}

impl Common {
    /// The bucket count and encoding of inferred features.
    fn buckets(&self, default_bins: u64) -> (usize, Buckets) {
        (self.bins.unwrap_or(default_bins) as usize, self.buckets)
    }
}

#[derive(Args)]
struct CompareArgs {
    /// Scenario file (TOML); see simulator/scenarios/coffee-loyalty.toml.
    #[arg(long)]
    scenario: PathBuf,
    /// Contextual policies: offer attributes (of category, kind, depth)
    /// that the learned prior shares across offers, as the server's
    /// `offer_features`, joined by '+', e.g. category+kind.
    #[arg(long, value_name = "NAMES")]
    offer_features: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct ReplayArgs {
    /// Full-feedback dataset (CSV).
    #[arg(long)]
    dataset: PathBuf,
    /// Visit the rows in a seeded random order instead of file order.
    #[arg(long)]
    shuffle: bool,
    /// Categorical column whose values are the report's segments
    /// (default: `lifecycle` if present, else the first categorical column).
    #[arg(long)]
    segment_by: Option<String>,
    /// Contextual policies: offer attributes that the learned prior shares
    /// across offers, as the server's `offer_features`, joined by '+', e.g.
    /// category+kind+depth; read from `<dataset>.meta.json`'s "offers" list.
    #[arg(long, value_name = "NAMES")]
    offer_features: Option<String>,
    #[command(flatten)]
    common: Common,
}

const DEFAULT_POLICIES: &str = "uniform,fixed-best,epsilon-greedy,ucb1,segment-ts,logistic-ts";

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Compare(a) => compare(a),
        Command::Replay(a) => replay(a),
        Command::Ope(a) => ope(a),
        Command::Drive(a) => {
            let scenario = Scenario::load(&a.scenario)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let d = rt.block_on(drive::drive(
                &a.target,
                &scenario,
                &a.campaign,
                a.decisions,
                a.concurrency.max(1),
                a.seed,
            ))?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                println!(
                    "{} decisions, {} redemptions ({} refused); mean true redemption probability of the chosen offers {:.4}",
                    d.decisions, d.redemptions, d.rejected, d.mean_expected_reward
                );
            }
            Ok(())
        }
        Command::Load(a) => {
            let scenario = match &a.scenario {
                Some(p) => Scenario::load(p)?,
                None => Scenario::parse(
                    include_str!("../scenarios/coffee-loyalty.toml"),
                    "coffee-loyalty (built in)",
                )?,
            };
            let opts = load::LoadOptions {
                target: a.target.clone(),
                campaign: a.campaign.clone(),
                concurrency: a.concurrency.max(1),
                duration: a.duration,
                rps: a.rps,
                rpc: a.rpc,
                seconds_per_day: a.seconds_per_day,
                seed: a.seed,
                decisions: a.decisions,
                batch: a.batch,
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let report = rt.block_on(load::run(opts, std::sync::Arc::new(scenario)))?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "{} for {:.1}s, {} callers{}",
                    report.target,
                    report.seconds,
                    report.concurrency,
                    report
                        .rps_limit
                        .map_or(String::new(), |r| format!(", aiming at {r} calls/s"))
                );
                println!(
                    "{:<28} {:>10} {:>12} {:>8} {:>8} {:>8} {:>8}  errors",
                    "rpc", "calls/s", "items/s", "p50 us", "p90 us", "p99 us", "p99.9 us"
                );
                for r in &report.rpcs {
                    println!(
                        "{:<28} {:>10.0} {:>12.0} {:>8} {:>8} {:>8} {:>8}  {:?}",
                        r.rpc,
                        r.per_second,
                        r.items_per_second,
                        r.p50_us,
                        r.p90_us,
                        r.p99_us,
                        r.p999_us,
                        r.errors
                    );
                }
            }
            Ok(())
        }
        Command::CampaignConfig(a) => {
            let scenario = Scenario::load(&a.scenario)?;
            let id = a.id.clone().unwrap_or_else(|| scenario.name().to_owned());
            let encoder = ScenarioWorld::encoder(&scenario, 1, (6, Buckets::Steps))?;
            print!(
                "{}",
                drive::campaign_toml(&scenario, &id, &a.policy, &a.reward_window, &encoder)?
            );
            Ok(())
        }
    }
}

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

fn threads(common: &Common) -> usize {
    common
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

fn weights(objective: ObjectiveArg, values: &[f64]) -> Vec<f64> {
    match objective {
        ObjectiveArg::Redemptions => vec![1.0; values.len()],
        ObjectiveArg::Value => values.iter().map(|v| v.max(1e-9)).collect(),
    }
}

fn best_offer(weighted_means: &[f64]) -> usize {
    weighted_means
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

fn compare(a: CompareArgs) -> anyhow::Result<()> {
    let scenario = Scenario::load(&a.scenario)?;
    let offers: Vec<String> = scenario.offers().iter().map(|o| o.id.clone()).collect();
    let values: Vec<f64> = scenario.offers().iter().map(|o| o.net_value()).collect();
    let w = weights(a.common.objective, &values);
    let means = ScenarioWorld::offer_means(&scenario, 20_000, a.common.first_seed);
    let weighted: Vec<f64> = means.iter().zip(&w).map(|(m, w)| m * w).collect();
    let rule = |ctx: &offer_bandit::context::Context, c: &[usize]| scenario.marketer_choice(ctx, c);
    let plan = Plan {
        specs: specs(&a.common, &["marketer"]),
        seeds: a.common.seeds,
        first_seed: a.common.first_seed,
        rounds: a.common.rounds.unwrap_or_else(|| scenario.rounds()),
        segment_feature: scenario.report_segment().to_owned(),
        offers: offers.clone(),
        env: PolicyEnv {
            offers: offers.clone(),
            weights: w,
            best_fixed: best_offer(&weighted),
            default_segment_by: vec![scenario.report_segment().to_owned()],
            marketer: scenario.has_marketer_rule().then_some(&rule as _),
            prior_strength: a.common.prior_strength,
            encoder: ScenarioWorld::encoder(&scenario, a.common.first_seed, a.common.buckets(6))?,
            offer_features: match &a.offer_features {
                Some(names) => Some(offer_features::encode(
                    &split_names(names),
                    &offer_features::of_scenario(scenario.offers()),
                )?),
                None => None,
            },
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

fn replay(a: ReplayArgs) -> anyhow::Result<()> {
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
        seeds: a.common.seeds,
        first_seed: a.common.first_seed,
        rounds: a.common.rounds.unwrap_or(data.rows.len() as u64),
        segment_feature: segment_feature.clone(),
        offers: data.offers.clone(),
        env: PolicyEnv {
            offers: data.offers.clone(),
            weights: w,
            best_fixed: best_offer(&weighted),
            default_segment_by: vec![segment_feature],
            marketer: None,
            prior_strength: a.common.prior_strength,
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

fn ope(a: OpeArgs) -> anyhow::Result<()> {
    if !(a.level > 0.5 && a.level < 1.0) {
        anyhow::bail!("--level must be between 0.5 and 1");
    }
    if !(a.min_support >= 0.0 && a.min_support < 1.0) {
        anyhow::bail!("--min-support must be in [0, 1)");
    }
    if !(a.max_unsupported >= 0.0 && a.max_unsupported < 1.0) {
        anyhow::bail!("--max-unsupported must be in [0, 1)");
    }
    let opts = ope::Options {
        clip: a.clip,
        bootstrap: a.bootstrap.max(1),
        seed: a.seed,
        level: a.level,
        min_support: a.min_support,
        max_unsupported: a.max_unsupported,
    };
    let (estimates, header) = if let Some(dir) = &a.obd {
        let prior_dist = || -> anyhow::Result<Vec<Vec<f64>>> {
            let path = a
                .prior
                .as_ref()
                .context("--target bts needs --prior prior_bts.yaml")?;
            let (alpha, beta) = logs::load_bts_prior(path, &a.campaign)?;
            Ok(logs::bts_action_dist(&alpha, &beta, 3, a.sims, a.seed))
        };
        let log = logs::load_obd(dir, &a.behavior, &a.campaign)?;
        let targets = match a.target.as_str() {
            "bts" => {
                let dist = prior_dist()?;
                if dist.len() != log.actions.len() {
                    anyhow::bail!(
                        "the prior has {} items, the log {}",
                        dist.len(),
                        log.actions.len()
                    );
                }
                evaluate::per_slot(&log, &dist)
            }
            "random" => evaluate::uniform(&log),
            t => anyhow::bail!("--target must be bts or random, not '{t}'"),
        };
        let truth_log = logs::load_obd(dir, &a.target, &a.campaign)?;
        let truth =
            truth_log.rows.iter().map(|r| r.reward).sum::<f64>() / truth_log.rows.len() as f64;
        let rounds = evaluate::rounds(&log, &targets);
        (
            ope::with_truth(ope::estimate_all(&rounds, &opts), truth),
            format!(
                "OBD {}: value of {} estimated from the {} log ({} impressions); ground truth {:.5} = mean click of the {} log",
                a.campaign,
                a.target,
                a.behavior,
                log.rows.len(),
                truth,
                a.target
            ),
        )
    } else {
        let path = a
            .logs
            .as_ref()
            .context("give --logs FILE.jsonl or --obd DIR")?;
        let (log, cut) = logs::load_export(path, matches!(a.reward, ObjectiveArg::Value), a.cut)?;
        let header = format!(
            "{}: {} decisions whose reward window closed before {} ({} left out with the window still open, {} of them already redeemed), target {}",
            path.display(),
            log.rows.len(),
            cut.cut_unix_ms
                .map_or("the export (none open)".to_owned(), |t| format!(
                    "{t} (Unix ms)"
                )),
            cut.open,
            cut.open_redeemed,
            a.policy
        );
        match a.policy.as_str() {
            "uniform" => (
                ope::estimate_all(&evaluate::rounds(&log, &evaluate::uniform(&log)), &opts),
                header,
            ),
            spec if spec.starts_with("fixed:") => {
                let id = &spec["fixed:".len()..];
                let k = log
                    .actions
                    .iter()
                    .position(|x| x == id)
                    .with_context(|| format!("no offer '{id}' in the log"))?;
                (
                    ope::estimate_all(&evaluate::rounds(&log, &evaluate::fixed(&log, k)), &opts),
                    header,
                )
            }
            spec => {
                let env = PolicyEnv {
                    offers: log.actions.clone(),
                    weights: vec![1.0; log.actions.len()],
                    best_fixed: 0,
                    default_segment_by: Vec::new(),
                    marketer: None,
                    prior_strength: 10.0,
                    encoder: Encoder::new(
                        infer_specs(log.rows.iter().map(|r| &r.context), 8, Buckets::Steps, 32),
                        8,
                    )?,
                    offer_features: None,
                };
                let mut policy = policies::build(spec, &env)?;
                if a.replay {
                    if !evaluate::is_uniform(&log) {
                        anyhow::bail!(
                            "--replay needs a log of uniformly random decisions (propensity = 1 / candidates)"
                        );
                    }
                    let (mean, se, kept) =
                        evaluate::replay_learning(policy.as_mut(), &log, a.seed)?;
                    let e = ope::Estimate {
                        estimator: "replay".into(),
                        estimate: mean,
                        ci_low: mean - z_score(a.level) * se,
                        ci_high: mean + z_score(a.level) * se,
                        effective_sample_size: kept as f64,
                        rounds: log.rows.len(),
                        ground_truth: None,
                        relative_error: None,
                        warnings: if kept < 100 {
                            vec![format!("only {kept} decisions matched")]
                        } else {
                            Vec::new()
                        },
                        min_propensity: log
                            .rows
                            .iter()
                            .map(|r| r.propensity)
                            .fold(f64::INFINITY, f64::min),
                        unsupported_share: 0.0,
                        withheld: false,
                        interval: "normal approximation over the matched decisions (a uniformly random log)".to_owned(),
                    };
                    (vec![e], header)
                } else {
                    if !(a.train_fraction > 0.0 && a.train_fraction < 1.0) {
                        anyhow::bail!("--train-fraction must be between 0 and 1");
                    }
                    let train = (log.rows.len() as f64 * a.train_fraction) as usize;
                    let (test, targets) = evaluate::frozen(policy.as_mut(), &log, train)?;
                    (
                        ope::estimate_all(&evaluate::rounds(&test, &targets), &opts),
                        header,
                    )
                }
            }
        }
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&estimates)?);
        return Ok(());
    }
    println!("{header}");
    println!(
        "{:<10} {:>10} {:>22} {:>10} {:>12}",
        "estimator",
        "estimate",
        format!("{:.0}% interval", 100.0 * a.level),
        "ESS",
        "rel. error"
    );
    for e in &estimates {
        if e.withheld {
            println!(
                "{:<10} {:>10} {:>22} {:>10.0} {:>12}",
                e.estimator, "withheld", "(no support)", e.effective_sample_size, "-"
            );
            continue;
        }
        println!(
            "{:<10} {:>10.5} {:>22} {:>10.0} {:>12}",
            e.estimator,
            e.estimate,
            format!("[{:.5}, {:.5}]", e.ci_low, e.ci_high),
            e.effective_sample_size,
            e.relative_error
                .map_or("-".to_owned(), |r| format!("{:.1}%", 100.0 * r))
        );
    }
    if let Some(e) = estimates.first() {
        println!(
            "smallest logged propensity {:.3e}; target's share on unsupported actions {:.1}%",
            e.min_propensity,
            100.0 * e.unsupported_share
        );
    }
    let mut said = std::collections::BTreeSet::new();
    for e in &estimates {
        if said.insert(e.interval.clone()) {
            println!("interval of {}: {}", e.estimator, e.interval);
        }
    }
    let mut warned = std::collections::BTreeSet::new();
    for w in estimates.iter().flat_map(|e| &e.warnings) {
        if warned.insert(w.clone()) {
            println!("warning: {w}");
        }
    }
    Ok(())
}

/// Two-sided normal quantile for a confidence level (0.9, 0.95, 0.99 exact to
/// three digits; others by bisection on the normal CDF).
fn z_score(level: f64) -> f64 {
    let target = 0.5 + level / 2.0;
    let (mut lo, mut hi) = (0.0, 10.0);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if offer_bandit::policy::special::normal_cdf(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}
