//! The commands that work with a live server: `drive` (a scenario's
//! customers through it), `load` (throughput and latency) and
//! `campaign-config` (a campaign file for a scenario's offers).

use offer_bandit::Buckets;

use crate::{
    campaign_file,
    cli::{CampaignConfigArgs, DriveArgs, LoadArgs},
    drive, load,
    scenario::Scenario,
    world::ScenarioWorld,
};

/// Sends a scenario's customers to a live server, redeeming per the
/// scenario's truth, and prints the summary.
pub(crate) fn drive(a: DriveArgs) -> anyhow::Result<()> {
    let scenario = Scenario::load(&a.scenario)?;
    let rt = runtime()?;
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

/// Load-tests a live server and prints throughput and latency percentiles
/// per RPC.
pub(crate) fn load(a: LoadArgs) -> anyhow::Result<()> {
    let scenario = match &a.scenario {
        Some(p) => Scenario::load(p)?,
        None => Scenario::built_in_coffee_loyalty()?,
    };
    let opts = load::LoadOptions {
        target: a.target.clone(),
        campaign: a.campaign.clone(),
        concurrency: a.concurrency.max(1),
        connections: a.connections.clamp(1, a.concurrency.max(1)),
        duration: a.duration,
        rps: a.rps,
        rpc: a.rpc,
        seconds_per_day: a.seconds_per_day,
        seed: a.seed,
        decisions: a.decisions,
        batch: a.batch,
        tls: match &a.ca_cert {
            Some(path) => Some(crate::raw_grpc::ClientTls {
                ca_pem: std::fs::read(path).map_err(|e| {
                    anyhow::anyhow!("reading the CA certificate {}: {e}", path.display())
                })?,
                domain: a.tls_domain.clone(),
            }),
            None => None,
        },
    };
    let rt = runtime()?;
    let report = rt.block_on(load::run(opts, std::sync::Arc::new(scenario)))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} for {:.1}s, {} callers on {} connection{}{}",
            report.target,
            report.seconds,
            report.concurrency,
            report.connections,
            if report.connections == 1 { "" } else { "s" },
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
        if let Some(busy) = report.client_cores_busy {
            println!(
                "load generator: {busy:.2} of its {} core{} busy",
                report.client_cores,
                if report.client_cores == 1 { "" } else { "s" }
            );
        }
    }
    if report.client_bound() {
        eprintln!(
            "warning: the load generator kept its cores at least 90% busy: these rates are its own limit as much as the server's (give it more cores, or compare against h2load; the check is reliable when it is pinned, e.g. taskset -c 1)"
        );
    }
    Ok(())
}

/// Prints an offer-bandit campaign file for a scenario's offers, serving
/// the policy given or the winner of a compare run.
pub(crate) fn campaign_config(a: CampaignConfigArgs) -> anyhow::Result<()> {
    let scenario = Scenario::load(&a.scenario)?;
    let id = a.id.clone().unwrap_or_else(|| scenario.name().to_owned());
    let encoder = ScenarioWorld::encoder(&scenario, 1, (6, Buckets::Steps))?;
    let choice = campaign_file::choose(a.policy.as_deref(), a.results.as_deref())?;
    let toml = campaign_file::campaign_toml(&scenario, &id, &choice, &a.reward_window, &encoder)?;
    eprintln!("policy {}: {}", choice.spec, choice.why);
    print!("{toml}");
    Ok(())
}

/// The runtime the gRPC client runs on.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}
