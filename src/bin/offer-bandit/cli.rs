//! Command-line interface of the `offer-bandit` binary. Every flag can also be
//! set by an `OFFER_BANDIT_*` environment variable; flags win.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};

/// What `--version` prints after the name: the build's version and the
/// store schema it reads and writes (an older build refuses a newer store).
pub(crate) static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (store schema {})",
        env!("CARGO_PKG_VERSION"),
        offer_bandit::store::SCHEMA_VERSION
    )
});

/// Loyalty offer decisions by Thompson sampling, over gRPC, on embedded storage.
///
/// Checkout services call SelectOffer with a customer's context and get an
/// offer and a decision id; feedback pipelines call RecordRedemption with that
/// id when the offer is redeemed. The model learns from every decision.
#[derive(Debug, Parser)]
#[command(name = "offer-bandit", version = VERSION.as_str(), propagate_version = true)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the gRPC server (with the built-in demo campaign unless --config is given).
    Serve(Box<ServeArgs>),
    /// Validate a campaign config file and print what it declares.
    CheckConfig {
        /// The TOML file.
        path: PathBuf,
    },
    /// Write a running server's decision log as JSON Lines (the input of `offer-sim ope`).
    Export(ExportArgs),
    /// Print a running server's campaign report: bandit vs control uplift, offers, and (contextual
    /// campaigns) which features the learned prior found to matter.
    Report(ReportArgs),
    /// Print a running server's config of a campaign as TOML, with its revision.
    CampaignGet(CampaignGetArgs),
    /// Create a campaign on a running server, or replace its config, from a TOML file.
    ///
    /// The file holds one campaign, in the campaign file's format. Changes
    /// keep what the campaign learned, so the policy, segment_by, features
    /// and hash_bits cannot change (use a new campaign id); offers the file
    /// drops are no longer chosen. Live changes survive restarts unless the
    /// campaign file (--config) is edited afterwards: then the file wins.
    CampaignPut(CampaignPutArgs),
    /// Add an offer to a campaign on a running server; it starts at the prior.
    OfferAdd(OfferAddArgs),
    /// Pause, resume or retire an offer on a running server (takes effect at once).
    OfferStatus(OfferStatusArgs),
    /// Pause, resume or retire a campaign on a running server (takes effect at once).
    CampaignStatus(CampaignStatusArgs),
    /// Erase one customer's decisions from a running server (GDPR/CCPA), posteriors included.
    Forget(ForgetArgs),
    /// Print everything a running server stores about one customer, as JSON (right of access).
    Access(ForgetArgs),
    /// Write a consistent backup of a running server's store to a file.
    Backup(BackupArgs),
    /// Turn a backup file into a new data directory (the server must not be using it).
    Restore(RestoreArgs),
    /// Migrate a stopped server's store to this build's schema (what `serve` does when it
    /// opens it); with --dry-run, only say what that would do, without writing to the store.
    Migrate(MigrateArgs),
}

/// How the admin subcommands reach a server.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClientArgs {
    /// The server's gRPC address (https:// for TLS).
    #[arg(
        long,
        env = "OFFER_BANDIT_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// PEM certificate of the CA (or the self-signed server certificate) to
    /// trust for https:// (default: the system's roots are not used; pass one).
    #[arg(long, env = "OFFER_BANDIT_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Domain name to check the server's certificate against (default: the host of --server).
    #[arg(long, env = "OFFER_BANDIT_TLS_DOMAIN")]
    pub tls_domain: Option<String>,
    /// The bearer token to send.
    #[command(flatten)]
    pub token: TokenArgs,
}

/// Where a bearer token comes from: a file, or the environment. Never a
/// flag's value: command lines show in `ps` and shell histories.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TokenArgs {
    /// File holding the bearer token, at least 16 bytes (or set
    /// OFFER_BANDIT_AUTH_TOKEN). The server requires it as
    /// "authorization: Bearer <token>"; the admin commands send it. On the
    /// server it is the admin token: it may call everything.
    #[arg(long, env = "OFFER_BANDIT_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,
}

impl TokenArgs {
    /// The token, if one is configured (validated).
    pub(crate) fn read(&self) -> anyhow::Result<Option<String>> {
        read_token(self.auth_token_file.as_deref(), "OFFER_BANDIT_AUTH_TOKEN")
    }
}

/// The server's tokens of the narrower roles (see `offer_bandit::Role`),
/// each from a file or the environment.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RoleTokenArgs {
    /// File holding the read token (or set OFFER_BANDIT_READ_TOKEN): the
    /// dashboard and the read-only CampaignAdmin RPCs (ListCampaigns,
    /// GetCampaignStats, GetCampaignReport, GetCampaignConfig). Needs the
    /// admin token (--auth-token-file) too.
    #[arg(long, env = "OFFER_BANDIT_READ_TOKEN_FILE")]
    pub read_token_file: Option<PathBuf>,
    /// File holding the decide token (or set OFFER_BANDIT_DECIDE_TOKEN):
    /// OfferService, when --auth-scope is "all". Needs the admin token too.
    #[arg(long, env = "OFFER_BANDIT_DECIDE_TOKEN_FILE")]
    pub decide_token_file: Option<PathBuf>,
}

impl RoleTokenArgs {
    /// The read token and the decide token, if configured (validated).
    pub(crate) fn read(&self) -> anyhow::Result<(Option<String>, Option<String>)> {
        Ok((
            read_token(self.read_token_file.as_deref(), "OFFER_BANDIT_READ_TOKEN")?,
            read_token(
                self.decide_token_file.as_deref(),
                "OFFER_BANDIT_DECIDE_TOKEN",
            )?,
        ))
    }
}

/// A token from `file`, else from the environment variable `var`.
fn read_token(file: Option<&std::path::Path>, var: &str) -> anyhow::Result<Option<String>> {
    let inline = match std::env::var(var) {
        Ok(t) => Some(t),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => anyhow::bail!("{var} is not valid UTF-8"),
    };
    crate::client::read_token(file, inline.as_deref())
}

/// Flags of `offer-bandit report`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ReportArgs {
    /// How to reach the server.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Campaign id.
    #[arg(long)]
    pub campaign: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `offer-bandit campaign-get`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CampaignGetArgs {
    /// How to reach the server.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Campaign id.
    #[arg(long)]
    pub campaign: String,
    /// Print JSON (revision, source, served, config_toml) instead of TOML.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `offer-bandit campaign-put`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CampaignPutArgs {
    /// How to reach the server.
    #[command(flatten)]
    pub client: ClientArgs,
    /// TOML file with one campaign (a [[campaigns]] entry, or its keys at the top level).
    pub file: PathBuf,
    /// Apply only if the campaign is still at this revision (0: only create).
    #[arg(long)]
    pub expected_revision: Option<u64>,
}

/// Flags of `offer-bandit offer-add`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct OfferAddArgs {
    /// How to reach the server.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Campaign id.
    #[arg(long)]
    pub campaign: String,
    /// Offer id: 1-64 letters, digits, '_', '-' or '.'.
    #[arg(long)]
    pub id: String,
    /// Display name (default: the id).
    #[arg(long)]
    pub name: Option<String>,
    /// Net value of one redemption (default 1).
    #[arg(long)]
    pub value: Option<f64>,
    /// Product category.
    #[arg(long)]
    pub category: Option<String>,
    /// One of the campaign's offer_features, as NAME=VALUE (repeat for
    /// each): true/false is a flag, a number a number, anything else a
    /// category (quote it to make a number one: tier='"2"'), e.g.
    /// --feature kind=bogo --feature depth=0.5.
    #[arg(long = "feature", value_name = "NAME=VALUE")]
    pub features: Vec<String>,
    /// A display attribute SelectOffer returns with the offer, as
    /// NAME=TEXT (repeat for each), e.g. --display headline="20% off".
    #[arg(long = "display", value_name = "NAME=TEXT")]
    pub display: Vec<String>,
    /// Most decisions that may ever choose it.
    #[arg(long)]
    pub max_decisions: Option<u64>,
    /// Most redemptions, counting those its pending decisions are expected to bring.
    #[arg(long)]
    pub max_redemptions: Option<u64>,
    /// Most decisions per day (of the campaign's time zone), paced over the day.
    #[arg(long)]
    pub max_decisions_per_day: Option<u64>,
    /// Most redemptions per day (of the campaign's time zone), paced over the day.
    #[arg(long)]
    pub max_redemptions_per_day: Option<u64>,
    /// Largest value one redemption may report (above it RecordRedemption
    /// is refused); unset: the server-wide limit of 1e9.
    #[arg(long)]
    pub max_value: Option<f64>,
    /// Apply only if the campaign is still at this revision.
    #[arg(long)]
    pub expected_revision: Option<u64>,
}

/// Flags of `offer-bandit offer-status`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct OfferStatusArgs {
    /// How to reach the server.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Campaign id.
    #[arg(long)]
    pub campaign: String,
    /// Offer id.
    #[arg(long)]
    pub offer: String,
    /// "active", "paused" or "retired" (final).
    #[arg(long)]
    pub status: String,
}

/// Flags of `offer-bandit campaign-status`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CampaignStatusArgs {
    /// How to reach the server.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Campaign id.
    #[arg(long)]
    pub campaign: String,
    /// "active", "paused" or "retired" (final: never served again; redemptions still count).
    #[arg(long)]
    pub status: String,
}

/// Flags of `offer-bandit forget` and `offer-bandit access`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ForgetArgs {
    /// How to reach the server.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The customer id, as sent in SelectOffer.
    #[arg(long)]
    pub customer_id: String,
}

/// Flags of `offer-bandit backup`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BackupArgs {
    /// How to reach the server.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The backup file to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// Flags of `offer-bandit restore`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RestoreArgs {
    /// The backup file.
    #[arg(long)]
    pub from: PathBuf,
    /// The new data directory (must not hold a store yet).
    #[arg(long)]
    pub data_dir: PathBuf,
}

/// Flags of `offer-bandit migrate`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct MigrateArgs {
    /// The data directory (its server must be stopped).
    #[arg(
        long,
        env = "OFFER_BANDIT_DATA_DIR",
        default_value = "offer-bandit-data"
    )]
    pub data_dir: PathBuf,
    /// Say what the migration would do, and change nothing (reads a copy
    /// of the store, made beside it and removed afterwards).
    #[arg(long)]
    pub dry_run: bool,
}

/// Flags of `offer-bandit export`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ExportArgs {
    /// How to reach the server.
    #[command(flatten)]
    pub client: ClientArgs,
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
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of `offer-bandit serve`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ServeArgs {
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
    /// Serve SelectOffer, RecordRedemption and RecordFallback as JSON over
    /// HTTP/1.1 on this address too (off by default; HTTPS with --tls-cert;
    /// printed on stdout as "offer-bandit gateway on ADDR"; described at
    /// GET /v1/openapi.json).
    #[arg(long, env = "OFFER_BANDIT_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
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
    /// How often learned contextual models are written to disk. After a
    /// crash, a restart replays what was learned since from the stored
    /// decision records (longer intervals write less and replay more).
    #[arg(long, env = "OFFER_BANDIT_CHECKPOINT_INTERVAL", default_value = "1s", value_parser = parse_checkpoint_interval)]
    pub checkpoint_interval: Duration,
    /// How long a decision SelectOffer answered without waiting may sit in
    /// the queue before the writer stores it and learns from it. The writer
    /// takes them all at once per interval instead of waking per decision;
    /// "0s" wakes it for each (slower under load). Redemptions, and
    /// decisions with a budget, cap, request_id or --durable-decisions, are
    /// taken at once.
    #[arg(long, env = "OFFER_BANDIT_LEARN_INTERVAL", default_value = "5ms", value_parser = parse_learn_interval)]
    pub learn_interval: Duration,
    /// Lower the writer thread's CPU priority by this much (its nice value,
    /// Linux; 0 leaves it equal to the request handlers'). Where requests
    /// and the writer share a core, a request then preempts a write
    /// group's commit instead of waiting behind it: on one core at half
    /// load with varied customers, SelectOffer's p99 fell by a fifth, and
    /// the maximum throughput by 1-5% (BENCHMARKS.md). Much more starves the
    /// writer at saturation: at 10, callers waited for room in its queue
    /// (p99.9 at the maximum 30 ms, against 7 ms at 0 and at 5).
    #[arg(long, env = "OFFER_BANDIT_WRITER_NICE", default_value_t = 5, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub writer_nice: i32,
    /// Leave transparent huge pages to the system's setting. By default the
    /// server turns them off for its own process (Linux): with them, each
    /// first touch of a huge page zeroes 2 MiB on the core serving
    /// requests, and sled takes fresh I/O buffers for every write group.
    /// On one core, SelectOffer gained 3-5% of throughput without them
    /// (BENCHMARKS.md).
    #[arg(long, env = "OFFER_BANDIT_TRANSPARENT_HUGE_PAGES")]
    pub transparent_huge_pages: bool,
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
    /// PEM certificate chain for TLS (with --tls-key), for gRPC and the
    /// gateway (--http-listen); without both, they are plaintext.
    #[arg(long, env = "OFFER_BANDIT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS (with --tls-cert).
    #[arg(long, env = "OFFER_BANDIT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// How often the TLS certificate and key are reread: a renewed pair
    /// serves new connections from the next check on, without a restart
    /// (a pair that does not match at two checks in a row is logged and the
    /// one before kept); 0s: never, else 100ms to 1d.
    #[arg(long, env = "OFFER_BANDIT_TLS_RELOAD_INTERVAL", default_value = "1m", value_parser = parse_tls_reload_interval)]
    pub tls_reload_interval: Duration,
    /// Serve the metrics port (/metrics, /healthz, /readyz, the dashboard)
    /// over TLS too, with --tls-cert (scrapers and probes then use https).
    #[arg(
        long,
        env = "OFFER_BANDIT_METRICS_TLS",
        requires_if("true", "tls_cert"),
        conflicts_with = "no_metrics"
    )]
    pub metrics_tls: bool,
    /// The admin token (none, and no other token: no authentication).
    #[command(flatten)]
    pub token: TokenArgs,
    /// The read and decide tokens.
    #[command(flatten)]
    pub role_tokens: RoleTokenArgs,
    /// Host names (or IPs) the dashboard pages answer to, comma-separated,
    /// besides localhost, loopback IPs and the --metrics-listen IP; other
    /// Host headers get 421 (against DNS rebinding). /metrics answers any.
    #[arg(
        long,
        env = "OFFER_BANDIT_DASHBOARD_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub dashboard_allowed_hosts: Vec<String>,
    /// What needs a token at all: "admin" (CampaignAdmin) or "all" (every
    /// RPC but health checks). The dashboard needs a read or admin token
    /// whenever any token is configured; /metrics never does.
    #[arg(
        long,
        env = "OFFER_BANDIT_AUTH_SCOPE",
        value_enum,
        default_value = "admin"
    )]
    pub auth_scope: offer_bandit::AuthScope,
    /// File holding the 64-hex-digit key customer ids are hashed under (or
    /// set OFFER_BANDIT_CUSTOMER_KEY to the digits themselves). Without
    /// it the store generates one on first start and keeps it. A store refuses
    /// to start under a different key than the one it was first used with.
    #[arg(long, env = "OFFER_BANDIT_CUSTOMER_KEY_FILE")]
    pub customer_key_file: Option<PathBuf>,
    /// File of extra keys decision ids are signed with, one per line:
    /// "<key id 1-255> <64 hex digits>". The first signs new ids; every
    /// listed key (and key 0, derived from the customer key) verifies. To
    /// rotate: put a new key first, restart, and drop the old one once the
    /// longest reward window since has closed. Or set
    /// OFFER_BANDIT_DECISION_ID_KEYS to the file's text.
    #[arg(long, env = "OFFER_BANDIT_DECISION_ID_KEYS_FILE")]
    pub decision_id_keys_file: Option<PathBuf>,
    /// How long resolved (redeemed or expired) decision records are kept after
    /// their reward window, e.g. "90d"; "never" keeps them. Their evidence stays
    /// in the posteriors either way.
    #[arg(long, env = "OFFER_BANDIT_RETENTION", default_value = "90d", value_parser = parse_retention)]
    pub retention: Retention,
    /// Most OfferService and CampaignAdmin requests in flight; beyond it,
    /// requests get RESOURCE_EXHAUSTED at once (health checks are never limited).
    #[arg(long, env = "OFFER_BANDIT_MAX_IN_FLIGHT", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_in_flight: u64,
    /// Most concurrent HTTP/2 streams (requests) on one connection.
    #[arg(long, env = "OFFER_BANDIT_MAX_STREAMS_PER_CONNECTION", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_streams_per_connection: u32,
    /// Most open connections on the gRPC port (and as many on the gateway's);
    /// beyond it, new connections are closed at once (existing ones are
    /// served).
    #[arg(long, env = "OFFER_BANDIT_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// A connection that has sent nothing and received nothing for this
    /// long is closed (clients reconnect; HTTP/2 keep-alive pings count as
    /// traffic).
    #[arg(long, env = "OFFER_BANDIT_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_idle_timeout)]
    pub idle_timeout: Duration,
    /// Refuse SelectOffer contexts with keys the campaign does not declare
    /// (INVALID_ARGUMENT, naming them); without it they are ignored and
    /// listed in the reply's ignored_features.
    #[arg(long, env = "OFFER_BANDIT_STRICT_CONTEXT")]
    pub strict_context: bool,
    /// Most offers in one campaign (the file, PutCampaign and AddOffer);
    /// explain and propensities cost time in proportion.
    #[arg(long, env = "OFFER_BANDIT_MAX_OFFERS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(2..=100_000))]
    pub max_offers: u64,
    /// Writes are refused (UNAVAILABLE) while the data directory's disk
    /// has less free space than this, in MiB, so that a full disk never
    /// wedges the store; they resume once space is freed.
    #[arg(long, env = "OFFER_BANDIT_MIN_FREE_MB", default_value_t = 64)]
    pub min_free_mb: u64,
    /// Longest a request may run before DEADLINE_EXCEEDED.
    #[arg(long, env = "OFFER_BANDIT_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Largest request message, in bytes.
    #[arg(long, env = "OFFER_BANDIT_MAX_MESSAGE_BYTES", default_value_t = 4 << 20, value_parser = clap::value_parser!(u64).range(1024..=(256 << 20)))]
    pub max_message_bytes: u64,
    /// Most features in one context.
    #[arg(long, env = "OFFER_BANDIT_MAX_FEATURES", default_value_t = 64)]
    pub max_features: usize,
    /// Longest feature name, in bytes.
    #[arg(long, env = "OFFER_BANDIT_MAX_FEATURE_NAME", default_value_t = 64)]
    pub max_feature_name: usize,
    /// Longest category value, in bytes.
    #[arg(long, env = "OFFER_BANDIT_MAX_CATEGORY", default_value_t = 256)]
    pub max_category: usize,
    /// Most candidate offers in one request.
    #[arg(long, env = "OFFER_BANDIT_MAX_CANDIDATES", default_value_t = 256)]
    pub max_candidates: usize,
    /// Longest customer_id or request_id, in bytes.
    #[arg(long, env = "OFFER_BANDIT_MAX_KEY", default_value_t = 128)]
    pub max_key: usize,
    /// Most redemptions in one RecordRedemptions stream.
    #[arg(long, env = "OFFER_BANDIT_MAX_STREAM", default_value_t = 50_000)]
    pub max_stream: usize,
    /// Log format (logs go to stderr; filter with RUST_LOG, default "info").
    #[arg(
        long,
        env = "OFFER_BANDIT_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

/// How long resolved decision records are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retention {
    /// Pruned this long after their reward window.
    For(Duration),
    /// Never pruned.
    Never,
}

fn parse_idle_timeout(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if !(Duration::from_secs(1)..=Duration::from_secs(365 * 86_400)).contains(&d) {
        return Err("the idle timeout must be from 1s to 365d".into());
    }
    Ok(d)
}

fn parse_checkpoint_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(10) {
        return Err("the checkpoint interval must be at least 10ms".into());
    }
    Ok(d)
}

/// 0s (never), or 100ms to 1d: shorter would reread the files in a busy
/// loop; far longer overflows the timer.
fn parse_tls_reload_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if !d.is_zero() && !(Duration::from_millis(100)..=Duration::from_secs(86_400)).contains(&d) {
        return Err("the TLS reload interval must be 0s (never) or from 100ms to 1d".into());
    }
    Ok(d)
}

fn parse_learn_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d > Duration::from_secs(1) {
        return Err("the learn interval must be at most 1s".into());
    }
    Ok(d)
}

fn parse_retention(s: &str) -> Result<Retention, String> {
    if s == "never" {
        return Ok(Retention::Never);
    }
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (or \"never\")"))?;
    if d < Duration::from_secs(1) {
        return Err("retention must be at least 1s (or \"never\")".into());
    }
    Ok(Retention::For(d))
}
