//! The commands and their flags (clap): `compare`, `replay`, `ope`, `drive`,
//! `campaign-config` and `load`; `commands/` runs them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use offer_bandit::Buckets;

use crate::{load, ope, policies::POLICY_HELP};

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
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
    /// Your own history of sends (CSV) in, a verdict out: what your sends earned and what personalization would have.
    History(crate::history::HistoryArgs),
}

#[derive(Args)]
#[command(after_help = "Example (the stack's baseline, then the real work):\n  \
    offer-sim load --target http://127.0.0.1:50051 --rpc health --concurrency 32 --duration 10s\n  \
    offer-sim load --target http://127.0.0.1:50051 --scenario simulator/scenarios/coffee-loyalty.toml --campaign coffee --concurrency 32 --duration 10s")]
pub(crate) struct LoadArgs {
    /// The server's gRPC address (https:// with --ca-cert for a TLS server).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub(crate) target: String,
    /// PEM certificate of the CA that signed the server's certificate
    /// (https:// targets; the server's own for a self-signed one).
    #[arg(long)]
    pub(crate) ca_cert: Option<PathBuf>,
    /// The name the server's certificate is checked for (default: the
    /// target's host).
    #[arg(long, requires = "ca_cert")]
    pub(crate) tls_domain: Option<String>,
    /// Scenario whose customers visit (default: coffee-loyalty, built in).
    #[arg(long)]
    pub(crate) scenario: Option<PathBuf>,
    /// Campaign id on the server.
    #[arg(long, default_value = "coffee")]
    pub(crate) campaign: String,
    /// Concurrent callers.
    #[arg(long, default_value_t = 32)]
    pub(crate) concurrency: usize,
    /// HTTP/2 connections the callers share, as many client processes
    /// would open (h2load's benchmarks use 16).
    #[arg(long, default_value_t = 1)]
    pub(crate) connections: usize,
    /// How long to run (e.g. 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) duration: std::time::Duration,
    /// Total calls per second to aim for (default: as fast as possible).
    #[arg(long)]
    pub(crate) rps: Option<f64>,
    /// SelectOffer (with redemptions flowing back), Health/Check (baseline),
    /// or durable redemptions of decisions made first.
    #[arg(long, value_enum, default_value_t = load::LoadRpc::Select)]
    pub(crate) rpc: load::LoadRpc,
    /// With --rpc redeem: decisions to make (untimed) before redeeming them.
    #[arg(long, default_value_t = 200_000)]
    pub(crate) decisions: usize,
    /// With --rpc redeem: redemptions per RecordRedemptions stream (1 = unary RecordRedemption).
    #[arg(long, default_value_t = 500)]
    pub(crate) batch: usize,
    /// Wall-clock seconds per simulated day of redemption delay.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) seconds_per_day: f64,
    /// Seed of the customers and coins.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct DriveArgs {
    /// The server's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub(crate) target: String,
    /// Scenario file (TOML).
    #[arg(long)]
    pub(crate) scenario: PathBuf,
    /// Campaign id on the server (see `offer-sim campaign-config`).
    #[arg(long)]
    pub(crate) campaign: String,
    /// Visits to send.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) decisions: u64,
    /// Concurrent SelectOffer calls per wave.
    #[arg(long, default_value_t = 32)]
    pub(crate) concurrency: usize,
    /// Seed of the visits and redemption coins.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct CampaignConfigArgs {
    /// Scenario file (TOML).
    #[arg(long)]
    pub(crate) scenario: PathBuf,
    /// Campaign id.
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// The policy to serve: segment-ts, linear-ts or logistic-ts, with
    /// options as in `compare` (default: the winner of --results, else
    /// segment-ts).
    #[arg(long)]
    pub(crate) policy: Option<String>,
    /// A compare run's results.json (or its --out directory): serve the
    /// best policy the server runs, by expected redemptions per visit.
    #[arg(long)]
    pub(crate) results: Option<PathBuf>,
    /// Reward window (e.g. 7d; tests use seconds).
    #[arg(long, default_value = "7d")]
    pub(crate) reward_window: String,
}

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    offer-sim ope --logs decisions.jsonl --policy uniform\n  \
    offer-sim ope --logs decisions.jsonl --policy logistic-ts --train-fraction 0.5\n  \
    offer-sim ope --obd ../shared/data/obd --campaign men --behavior random --target bts --prior ../shared/data/obd/prior_bts.yaml")]
pub(crate) struct OpeArgs {
    /// The service's decision log (`offer-bandit export`, JSON Lines).
    #[arg(long, conflicts_with = "obd")]
    pub(crate) logs: Option<PathBuf>,
    /// Target policy for --logs: uniform, fixed:OFFER, or a learning policy
    /// (segment-ts, linear-ts, logistic-ts...) trained on the first
    /// --train-fraction of the log and frozen.
    #[arg(long, default_value = "uniform")]
    pub(crate) policy: String,
    /// Share of the log (oldest first) a learning target policy is trained on.
    #[arg(long, default_value_t = 0.5)]
    pub(crate) train_fraction: f64,
    /// Instead of freezing, evaluate the learning policy with the replay
    /// method (needs a uniformly random log).
    #[arg(long)]
    pub(crate) replay: bool,
    /// Reward: 1 per redemption, or the redemption's value.
    #[arg(long, value_enum, default_value_t = ObjectiveArg::Redemptions)]
    pub(crate) reward: ObjectiveArg,
    /// For --logs: evaluate only decisions whose reward window closed before
    /// this time (Unix ms), whatever their outcome. Default: the end of the
    /// earliest window still open, so every decision evaluated is final.
    #[arg(long)]
    pub(crate) cut: Option<i64>,
    /// Open Bandit Dataset directory (holding random/ and bts/).
    #[arg(long)]
    pub(crate) obd: Option<PathBuf>,
    /// OBD campaign (all, men, women).
    #[arg(long, default_value = "men")]
    pub(crate) campaign: String,
    /// OBD policy whose log is read: random or bts.
    #[arg(long, default_value = "random")]
    pub(crate) behavior: String,
    /// OBD policy to evaluate: bts (from --prior) or random.
    #[arg(long, default_value = "bts")]
    pub(crate) target: String,
    /// prior_bts.yaml of the OBD (the production Bernoulli-TS prior).
    #[arg(long)]
    pub(crate) prior: Option<PathBuf>,
    /// Monte Carlo simulations for the BTS action distribution.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) sims: usize,
    /// Clip importance weights at this value.
    #[arg(long)]
    pub(crate) clip: Option<f64>,
    /// Bootstrap resamples for the intervals.
    #[arg(long, default_value_t = 500)]
    pub(crate) bootstrap: usize,
    /// Confidence level of the intervals.
    #[arg(long, default_value_t = 0.95)]
    pub(crate) level: f64,
    /// A logged propensity below this does not support the target's choice
    /// (its importance weight would exceed the inverse).
    #[arg(long, default_value_t = ope::DEFAULT_MIN_SUPPORT)]
    pub(crate) min_support: f64,
    /// Importance-weighted estimates are withheld when more than this share
    /// of the target's choices (by three standard errors) lack support.
    #[arg(long, default_value_t = ope::DEFAULT_MAX_UNSUPPORTED)]
    pub(crate) max_unsupported: f64,
    /// Seed (bootstrap, Monte Carlo, policy randomness).
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Print one JSON object per estimator.
    #[arg(long)]
    pub(crate) json: bool,
}

/// What the policies maximize.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ObjectiveArg {
    /// P(redeem).
    Redemptions,
    /// P(redeem) x offer net value.
    Value,
}

#[derive(Args)]
pub(crate) struct Common {
    /// Comma-separated policy specs:
    #[arg(long, value_delimiter = ',', long_help = format!("Comma-separated policy specs:\n{POLICY_HELP}"))]
    pub(crate) policies: Option<Vec<String>>,
    /// Independent runs per policy (seeds first-seed, first-seed+1, ...).
    #[arg(long, default_value_t = 5)]
    pub(crate) seeds: u64,
    /// First seed; the same seed gives the same results.
    #[arg(long, default_value_t = 1)]
    pub(crate) first_seed: u64,
    /// Decisions per run (default: the scenario's horizon or the dataset's rows).
    #[arg(long)]
    pub(crate) rounds: Option<u64>,
    /// What the learners maximize.
    #[arg(long, value_enum, default_value_t = ObjectiveArg::Redemptions)]
    pub(crate) objective: ObjectiveArg,
    /// Pseudo-observations a new segment borrows from the campaign (segment-ts).
    #[arg(long, default_value_t = 10.0)]
    pub(crate) prior_strength: f64,
    /// The campaign's `min_propensity`, as the server applies it: segment-ts,
    /// linear-ts and logistic-ts (engine: too) give every candidate at least
    /// this probability (0: off; at most 1 / the number of offers).
    #[arg(long, default_value_t = 0.0, value_parser = min_propensity)]
    pub(crate) min_propensity: f64,
    /// Learn decisions in batches of this many, as a server does: its writer
    /// collects answered decisions every `--learn-interval` (5 ms), so a
    /// batch is decisions per second x the interval (100 at 20,000/s).
    /// Outcomes are learned after every decision made before them. 1: each
    /// decision at once. Library policies only (not engine:).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(crate) learn_every: u64,
    /// Write results.json, curves.csv, report.html and regret.svg here.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Print the per-policy results as a JSON array instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// Contextual policies: quantile buckets per numeric feature (default: 8
    /// for a dataset, 6 for a scenario).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub(crate) bins: Option<u64>,
    /// Contextual policies: how a number's buckets become columns.
    #[arg(long, value_enum, default_value_t = Buckets::Steps)]
    pub(crate) buckets: Buckets,
}

/// A probability for `--min-propensity`.
fn min_propensity(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("'{s}' is not a probability in [0, 1]")),
    }
}

impl Common {
    /// The bucket count and encoding of inferred features.
    pub(crate) fn buckets(&self, default_bins: u64) -> (usize, Buckets) {
        (self.bins.unwrap_or(default_bins) as usize, self.buckets)
    }
}

#[derive(Args)]
pub(crate) struct CompareArgs {
    /// Scenario file (TOML); see simulator/scenarios/coffee-loyalty.toml.
    #[arg(long)]
    pub(crate) scenario: PathBuf,
    /// Contextual policies: offer attributes (of category, kind, depth)
    /// that the learned prior shares across offers, as the server's
    /// `offer_features`, joined by '+', e.g. category+kind.
    #[arg(long, value_name = "NAMES")]
    pub(crate) offer_features: Option<String>,
    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(Args)]
pub(crate) struct ReplayArgs {
    /// Full-feedback dataset (CSV).
    #[arg(long)]
    pub(crate) dataset: PathBuf,
    /// Visit the rows in a seeded random order instead of file order.
    #[arg(long)]
    pub(crate) shuffle: bool,
    /// Categorical column whose values are the report's segments
    /// (default: `lifecycle` if present, else the first categorical column).
    #[arg(long)]
    pub(crate) segment_by: Option<String>,
    /// Contextual policies: offer attributes that the learned prior shares
    /// across offers, as the server's `offer_features`, joined by '+', e.g.
    /// category+kind+depth; read from `<dataset>.meta.json`'s "offers" list.
    #[arg(long, value_name = "NAMES")]
    pub(crate) offer_features: Option<String>,
    #[command(flatten)]
    pub(crate) common: Common,
}
