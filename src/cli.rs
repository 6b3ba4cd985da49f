//! Command-line interface of the `offer-bandit` binary. Every flag can also be
//! set by an `OFFER_BANDIT_*` environment variable; flags win.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};

/// Loyalty offer decisions by Thompson sampling, over gRPC, on embedded storage.
///
/// Checkout services call SelectOffer with a customer's context and get an
/// offer and a decision id; feedback pipelines call RecordRedemption with that
/// id when the offer is redeemed. The model learns from every decision.
#[derive(Debug, Parser)]
#[command(name = "offer-bandit", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server (with the built-in demo campaign unless --config is given).
    Serve(ServeArgs),
    /// Validate a campaign config file and print what it declares.
    CheckConfig {
        /// The TOML file.
        path: PathBuf,
    },
    /// Write a running server's decision log as JSON Lines (the input of `offer-sim ope`).
    Export(ExportArgs),
}

/// Flags of `offer-bandit export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// The server's gRPC address.
    #[arg(
        long,
        env = "OFFER_BANDIT_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// Campaign id.
    #[arg(long)]
    pub campaign: String,
    /// Decisions since: a duration ago ("24h", "7d") or Unix milliseconds (default: all).
    #[arg(long)]
    pub since: Option<String>,
    /// Decisions before: a duration ago or Unix milliseconds (default: now).
    #[arg(long)]
    pub until: Option<String>,
    /// Output file (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of `offer-bandit serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on for gRPC (port 0 picks a free port; the chosen
    /// address is printed on stdout as "offer-bandit listening on ADDR").
    #[arg(long, env = "OFFER_BANDIT_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Directory of the embedded database (created if missing; one server per directory).
    #[arg(
        long,
        env = "OFFER_BANDIT_DATA_DIR",
        default_value = "offer-bandit-data"
    )]
    pub data_dir: PathBuf,
    /// Address of the Prometheus `/metrics` HTTP endpoint (port 0 picks a free
    /// port, printed on stdout as "offer-bandit metrics on ADDR").
    #[arg(
        long,
        env = "OFFER_BANDIT_METRICS_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    pub metrics_listen: SocketAddr,
    /// Do not serve /metrics.
    #[arg(long, env = "OFFER_BANDIT_NO_METRICS")]
    pub no_metrics: bool,
    /// Campaign config file (TOML). Without it the built-in demo campaign "coffee" is served.
    #[arg(long, env = "OFFER_BANDIT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Flush each decision to disk before SelectOffer answers (slower; by
    /// default decisions reach disk within 500 ms, redemptions always before OK).
    #[arg(long, env = "OFFER_BANDIT_DURABLE_DECISIONS")]
    pub durable_decisions: bool,
    /// Page cache of the embedded database, in MiB (what does not fit is read
    /// from disk; this bounds most of the server's memory).
    #[arg(long, env = "OFFER_BANDIT_CACHE_MB", default_value_t = 128, value_parser = clap::value_parser!(u64).range(8..=65_536))]
    pub cache_mb: u64,
    /// How often decisions past their reward window are finalized.
    #[arg(long, env = "OFFER_BANDIT_SWEEP_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub sweep_interval: Duration,
    /// On SIGTERM/Ctrl-C, how long to wait for in-flight requests before closing connections.
    #[arg(long, env = "OFFER_BANDIT_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// Log format (logs go to stderr; filter with RUST_LOG, default "info").
    #[arg(
        long,
        env = "OFFER_BANDIT_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}
