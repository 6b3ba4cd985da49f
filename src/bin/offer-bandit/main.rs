//! The `offer-bandit` binary.

mod admin_cli;
mod check_config;
mod cli;
mod client;
mod export;

use anyhow::Context as _;
use clap::Parser;

use cli::{Cli, Command, LogFormat, Retention, ServeArgs};
use offer_bandit::{
    BROKEN_PIPE_EXIT, CustomerKey, EngineOptions, GuardConfig, IdKeys, Limits, ServeOptions,
    config, is_broken_pipe, quiet_on_broken_pipe, serve, shutdown_signal,
};

/// mimalloc: glibc's malloc spent a fifth of the server's CPU under load
/// (asked for plain blocks: see `offer_bandit_alloc`).
#[global_allocator]
static ALLOCATOR: offer_bandit_alloc::MiMalloc = offer_bandit_alloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    let result = run(cli).await;
    if let Err(e) = &result
        && is_broken_pipe(e.as_ref())
    {
        std::process::exit(BROKEN_PIPE_EXIT);
    }
    result
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            init_logs(args.log_format);
            let opts = serve_options(*args)?;
            let result = serve(opts, shutdown_signal()).await;
            // Exit now: dropping the runtime would wait for blocking work
            // (a reader of a stalled stream, a store stuck on a full disk),
            // and SIGTERM must end the process.
            match result {
                Ok(()) => std::process::exit(0),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "exiting");
                    eprintln!("Error: {e:?}");
                    std::process::exit(1)
                }
            }
        }
        Command::Export(args) => {
            let n = export::run(args).await?;
            eprintln!("exported {n} decisions");
            Ok(())
        }
        Command::Forget(args) => export::forget(args).await,
        Command::Access(args) => export::access(args).await,
        Command::Report(args) => export::report(args).await,
        Command::OfferStatus(args) => admin_cli::offer_status(args).await,
        Command::CampaignStatus(args) => admin_cli::campaign_status(args).await,
        Command::CampaignGet(args) => admin_cli::campaign_get(args).await,
        Command::CampaignPut(args) => admin_cli::campaign_put(args).await,
        Command::OfferAdd(args) => admin_cli::offer_add(args).await,
        Command::Backup(args) => export::backup(args).await,
        Command::Restore(args) => {
            // Checked here too: the store's own check reads as a damaged record.
            if ["db", "conf"]
                .iter()
                .any(|f| args.data_dir.join(f).exists())
            {
                anyhow::bail!(
                    "{} already holds a store; nothing was changed. Restore into a new or empty directory (--data-dir), then start the server on it; to replace this store, stop its server and move the directory aside first",
                    args.data_dir.display()
                );
            }
            let n = offer_bandit::store::restore_snapshot(&args.from, &args.data_dir)?;
            println!(
                "restored {n} entries into {}; start the server with --data-dir {}",
                args.data_dir.display(),
                args.data_dir.display()
            );
            Ok(())
        }
        Command::Migrate(args) => migrate(args),
        Command::CheckConfig { path } => {
            for c in config::load_file(&path)? {
                for line in check_config::describe(&c) {
                    println!("{line}");
                }
            }
            Ok(())
        }
    }
}

/// Validates `serve`'s flags into the server's options.
fn serve_options(args: ServeArgs) -> anyhow::Result<ServeOptions> {
    let campaigns = match &args.config {
        Some(path) => config::load_file_campaigns(path)?,
        None => config::demo_campaigns()?,
    };
    let token = args.token.read()?;
    let (read_token, decide_token) = args.role_tokens.read()?;
    // Secrets come from files or the environment, never a flag's value.
    let secret_env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let customer_key = match (
        &args.customer_key_file,
        secret_env("OFFER_BANDIT_CUSTOMER_KEY"),
    ) {
        (Some(p), _) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the customer key file {}", p.display()))?;
            Some(
                CustomerKey::from_hex(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
            )
        }
        (None, Some(text)) => Some(
            CustomerKey::from_hex(&text)
                .map_err(|e| anyhow::anyhow!("OFFER_BANDIT_CUSTOMER_KEY: {e}"))?,
        ),
        (None, None) => None,
    };
    let decision_id_keys = match (
        &args.decision_id_keys_file,
        secret_env("OFFER_BANDIT_DECISION_ID_KEYS"),
    ) {
        (Some(p), _) => {
            let text = std::fs::read_to_string(p).with_context(|| {
                format!("cannot read the decision-id keys file {}", p.display())
            })?;
            IdKeys::parse_file(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        }
        (None, Some(text)) => IdKeys::parse_file(&text)
            .map_err(|e| anyhow::anyhow!("OFFER_BANDIT_DECISION_ID_KEYS: {e}"))?,
        (None, None) => Vec::new(),
    };
    let max_offers = usize::try_from(args.max_offers).unwrap_or(usize::MAX);
    for c in &campaigns {
        anyhow::ensure!(
            c.config.offers.len() <= max_offers,
            "campaign '{}' has {} offers; the limit is {max_offers} (--max-offers)",
            c.config.id,
            c.config.offers.len()
        );
    }
    Ok(ServeOptions {
        engine: EngineOptions {
            durable_decisions: args.durable_decisions,
            checkpoint_interval: args.checkpoint_interval,
            learn_interval: args.learn_interval,
            writer_niceness: args.writer_nice,
            max_offers,
            strict_context: args.strict_context,
            ..EngineOptions::default()
        },
        sweep_interval: args.sweep_interval,
        limits: Limits {
            max_features: args.max_features,
            max_feature_name: args.max_feature_name,
            max_category: args.max_category,
            max_candidates: args.max_candidates,
            max_key: args.max_key,
            max_stream: args.max_stream,
        },
        decision_id_keys,
        max_streams_per_connection: args.max_streams_per_connection,
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        idle_timeout: args.idle_timeout,
        min_free_bytes: args.min_free_mb.saturating_mul(1 << 20),
        shutdown_grace: args.shutdown_grace,
        metrics_listen: (!args.no_metrics).then_some(args.metrics_listen),
        http_listen: args.http_listen,
        cache_bytes: args.cache_mb << 20,
        customer_key,
        retention: match args.retention {
            Retention::For(d) => Some(d),
            Retention::Never => None,
        },
        guard: GuardConfig {
            token,
            read_token,
            decide_token,
            scope: args.auth_scope,
            max_in_flight: usize::try_from(args.max_in_flight).unwrap_or(usize::MAX),
            request_timeout: args.request_timeout,
        },
        dashboard_allowed_hosts: args.dashboard_allowed_hosts,
        tls: args.tls_cert.zip(args.tls_key),
        tls_reload_interval: args.tls_reload_interval,
        metrics_tls: args.metrics_tls,
        max_message_bytes: usize::try_from(args.max_message_bytes).unwrap_or(usize::MAX),
        transparent_huge_pages: args.transparent_huge_pages,
        ..ServeOptions::new(args.listen, args.data_dir, campaigns)
    })
}

/// Logs to stderr, in colour only when stderr is a terminal (a pipe, a
/// file or journald gets no escape codes).
fn init_logs(format: LogFormat) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// `offer-bandit migrate [--dry-run]`.
fn migrate(args: cli::MigrateArgs) -> anyhow::Result<()> {
    use offer_bandit::store::{Migration, SCHEMA_VERSION, plan_migration};
    let dir = args.data_dir.display();
    let plan = plan_migration(&args.data_dir)?;
    let found = plan.found.as_deref().unwrap_or("none");
    let what = match &plan.migration {
        Migration::Create => format!(
            "{dir} holds no store: `serve` would create one at schema {SCHEMA_VERSION}; nothing to migrate"
        ),
        Migration::Current => {
            format!("{dir} is at schema {SCHEMA_VERSION}, this build's: nothing to migrate")
        }
        Migration::RewriteFrom3 => format!(
            "{dir} is at schema 3: the migration rewrites {} decision records (each gets no customer and the bandit arm), writes the bandit arm's counts and the report's per-customer sums of {} campaigns, and marks the store schema {SCHEMA_VERSION}, in one batch; a build older than this one will then refuse the store, so take a backup first (README, Upgrades)",
            plan.decisions, plan.campaigns
        ),
        Migration::RebuildFrom(from) => format!(
            "{dir} is at schema {from}: the migration reads {} decision records, writes the report's per-customer sums of closed windows for {} campaigns, and marks it schema {SCHEMA_VERSION}, in one batch; nothing else changes. A build older than this one will then refuse the store, so take a backup first (README, Upgrades)",
            plan.decisions, plan.campaigns
        ),
        Migration::Unreadable(reason) => anyhow::bail!(
            "{dir}: {reason}; nothing was changed. Run the build that wrote it, or restore a backup taken before the upgrade"
        ),
    };
    if args.dry_run {
        println!("dry run, nothing was changed (store schema found: {found}): {what}");
        return Ok(());
    }
    if matches!(plan.migration, Migration::Create | Migration::Current) {
        println!("{what}");
        return Ok(());
    }
    offer_bandit::store::Store::open(&args.data_dir)?.flush()?;
    println!("migrated (store schema found: {found}): {what}");
    Ok(())
}
