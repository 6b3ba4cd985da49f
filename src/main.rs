//! The `offer-bandit` binary.

use clap::Parser;
use offer_bandit::{
    cli::{Cli, Command, LogFormat},
    config,
    engine::EngineOptions,
    server::{self, ServeOptions},
    service::Limits,
};

/// mimalloc: glibc's malloc spent a fifth of the server's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_logs(args.log_format);
            let campaigns = match &args.config {
                Some(path) => config::load_file(path)?,
                None => config::demo()?,
            };
            let opts = ServeOptions {
                listen: args.listen,
                data_dir: args.data_dir,
                campaigns,
                engine: EngineOptions {
                    durable_decisions: args.durable_decisions,
                },
                sweep_interval: args.sweep_interval,
                limits: Limits::default(),
                shutdown_grace: args.shutdown_grace,
                metrics_listen: (!args.no_metrics).then_some(args.metrics_listen),
                cache_bytes: args.cache_mb << 20,
            };
            server::serve(opts, server::shutdown_signal()).await
        }
        Command::Export(args) => {
            let n = offer_bandit::export::run(args).await?;
            eprintln!("exported {n} decisions");
            Ok(())
        }
        Command::CheckConfig { path } => {
            for c in config::load_file(&path)? {
                let offers: Vec<&str> = c.offers.iter().map(|o| o.id.as_str()).collect();
                println!(
                    "campaign {}: policy {}, segment_by {:?}, reward_window {}, objective {}, offers {}",
                    c.id,
                    c.policy.as_str(),
                    c.segment_by,
                    humantime::format_duration(c.reward_window),
                    c.objective.as_str(),
                    offers.join(", ")
                );
            }
            Ok(())
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
