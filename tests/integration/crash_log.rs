//! `kill -9` without `--durable-decisions`: decisions go to the writer's
//! next group (one block per group), contextual posteriors are learned in
//! memory and checkpointed every `--checkpoint-interval`, and startup
//! replays the learning events since the last checkpoint from the decision
//! records. Three ways to kill it:
//!
//! - at random moments under concurrent SelectOffer + RecordRedemption
//!   traffic on a `logistic-ts` campaign: no acknowledged redemption lost
//!   or counted twice, and the counts replay consistently;
//! - after the learned posterior was published but before it was
//!   checkpointed: replay gives back the posterior served before the kill;
//! - while large groups are being written (64 streams, `--learn-interval
//!   50ms`): the store holds whole groups only.
//!
//! Cycles of the random kills: `OFFER_BANDIT_CRASH_LOG_CYCLES` (default 6
//! each; the kill moments are drawn from a seeded generator, printed).

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use offer_bandit::proto::{
    self, DecisionLogEntry, GetCampaignStatsResponse, offer_service_client::OfferServiceClient,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::support::{
    TestServer, campaign_toml, http_get, logistic_campaign_toml, redeem, redeem_batch, select,
};

const TYPES: [&str; 3] = ["x", "y", "z"];

/// The generator the kill moments are drawn from, its seed printed.
fn kill_moments(seed: u64) -> ChaCha8Rng {
    println!("kill moments from ChaCha8 seed {seed}");
    ChaCha8Rng::seed_from_u64(seed)
}

fn cycles() -> usize {
    std::env::var("OFFER_BANDIT_CRASH_LOG_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

/// What the server acknowledged to the traffic of one cycle.
#[derive(Default)]
struct Acked {
    /// Decisions whose RecordRedemption answered OK.
    redeemed: Vec<String>,
    /// SelectOffer answers.
    decisions: usize,
}

/// `streams` concurrent callers on one connection, until the server dies
/// (or `stop` is set): SelectOffer with the context `context(n)`, and a
/// RecordRedemption for every `redeem_every`th decision.
fn traffic(
    channel: &tonic::transport::Channel,
    campaign: &'static str,
    streams: usize,
    redeem_every: usize,
    context: fn(usize) -> Vec<(&'static str, &'static str)>,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Acked>>, Vec<tokio::task::JoinHandle<()>>) {
    let acked = Arc::new(Mutex::new(Acked::default()));
    let tasks = (0..streams)
        .map(|stream| {
            let acked = acked.clone();
            let stop = stop.clone();
            let mut client = OfferServiceClient::new(channel.clone());
            tokio::spawn(async move {
                let mut n = stream;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let Ok(d) = client.select_offer(select(campaign, &context(n))).await else {
                        return;
                    };
                    let d = d.into_inner();
                    acked.lock().expect("lock").decisions += 1;
                    if !n.is_multiple_of(redeem_every) {
                        continue;
                    }
                    match client.record_redemption(redeem(&d.decision_id)).await {
                        Ok(r) => {
                            assert!(
                                !r.into_inner().already_recorded,
                                "a fresh decision cannot be a duplicate"
                            );
                            acked.lock().expect("lock").redeemed.push(d.decision_id);
                        }
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    (acked, tasks)
}

fn typed(n: usize) -> Vec<(&'static str, &'static str)> {
    vec![("type", TYPES[n % TYPES.len()])]
}

fn tiered(n: usize) -> Vec<(&'static str, &'static str)> {
    vec![("tier", ["gold", "silver", "bronze", "none"][n % 4])]
}

/// The whole decision log of `campaign`.
async fn export(server: &TestServer, campaign: &str) -> Vec<DecisionLogEntry> {
    let mut stream = server
        .admin()
        .await
        .export_decisions(proto::ExportDecisionsRequest {
            campaign: campaign.into(),
            ..Default::default()
        })
        .await
        .expect("export")
        .into_inner();
    let mut out = Vec::new();
    while let Some(e) = stream.message().await.expect("export entry") {
        out.push(e);
    }
    out
}

/// Checks the decision log against the counts and the acknowledged
/// redemptions: every decision once, every acknowledged redemption's
/// decision there and redeemed, as many redeemed as counted.
fn check_log(log: &[DecisionLogEntry], stats: &GetCampaignStatsResponse, acked: &[String]) {
    let ids: HashSet<&str> = log.iter().map(|e| e.decision_id.as_str()).collect();
    assert_eq!(ids.len(), log.len(), "a decision exported twice");
    let decisions: u64 = stats.offers.iter().map(|o| o.decisions).sum();
    let redeemed: u64 = stats.offers.iter().map(|o| o.redeemed).sum();
    assert_eq!(log.len() as u64, decisions, "log and counts disagree");
    let outcome: HashMap<&str, &str> = log
        .iter()
        .map(|e| (e.decision_id.as_str(), e.outcome.as_str()))
        .collect();
    let logged_redeemed = outcome.values().filter(|o| **o == "redeemed").count();
    assert_eq!(logged_redeemed as u64, redeemed, "log and counts disagree");
    for id in acked {
        assert_eq!(
            outcome.get(id.as_str()).copied(),
            Some("redeemed"),
            "decision {id} of an acknowledged redemption"
        );
    }
}

/// Every acknowledged redemption is stored once: sent again, each is a
/// duplicate, and the counts do not move.
async fn check_redeemed_once(server: &TestServer, campaign: &str, acked: &[String]) {
    let before = server.stats(campaign).await;
    let again = redeem_batch(&mut server.offers().await, acked).await;
    assert_eq!(
        (again.duplicates as usize, again.applied, again.rejected),
        (acked.len(), 0, 0),
        "acknowledged redemptions lost or doubled"
    );
    assert_eq!(server.stats(campaign).await, before, "a duplicate counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contextual_campaign_loses_and_doubles_nothing_under_kill_9() {
    const STREAMS: usize = 16;
    let cycles = cycles();
    let mut rng = kill_moments(1919);
    // A 30-day window: no non-redemption is revealed while the test runs
    // (issue 18's delayed feedback learns each decision once, as its
    // outcome), so every learning event is a redemption and the counts are
    // exact.
    let mut server = TestServer::start(
        Some(&logistic_campaign_toml(
            "promo",
            &TYPES,
            "30d",
            &["a", "b", "c"],
        )),
        &[],
    );
    let mut acked_total: Vec<String> = Vec::new();
    let (mut answered, mut stored) = (0usize, 0u64);
    for cycle in 0..cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let (acked, tasks) = traffic(&server.channel().await, "promo", STREAMS, 2, typed, stop);
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1200))).await;
        server.kill();
        for t in tasks {
            t.await.expect("a traffic task panicked");
        }
        server.relaunch();
        let acked = std::mem::take(&mut *acked.lock().expect("lock"));
        answered += acked.decisions;
        acked_total.extend(acked.redeemed);

        let stats = server.stats("promo").await;
        let decisions: u64 = stats.offers.iter().map(|o| o.decisions).sum();
        let redeemed: u64 = stats.offers.iter().map(|o| o.redeemed).sum();
        let acked_n = acked_total.len() as u64;
        // A redemption in flight at the kill may have landed without an
        // answer: at most one per stream per cycle.
        assert!(
            redeemed >= acked_n && redeemed <= acked_n + (STREAMS * (cycle + 1)) as u64,
            "cycle {cycle}: {redeemed} redeemed for {acked_n} acknowledged"
        );
        // Each redeemed decision learned once, as a redemption (a decision
        // and a redemption observed), the others not yet: replay counted
        // each event once.
        for o in &stats.offers {
            assert!(o.redeemed <= o.decisions, "cycle {cycle}: {o:?}");
            assert_eq!(
                o.model_observations,
                2 * o.redeemed,
                "cycle {cycle}: offer {} learned a redemption other than once",
                o.offer_id
            );
        }
        assert_eq!(stats.model_version, decisions + redeemed, "cycle {cycle}");
        assert_eq!(stats.prior_events, redeemed, "cycle {cycle}");
        check_log(&export(&server, "promo").await, &stats, &acked_total);
        check_redeemed_once(&server, "promo", &acked_total).await;
        stored = decisions;
    }
    println!(
        "contextual kill -9: {cycles} cycles, {STREAMS} streams, {answered} decisions answered, \
         {stored} stored, {} redemptions acknowledged (lost 0, doubled 0)",
        acked_total.len()
    );
}

/// The parts of the stats that carry the learned posterior, for comparing
/// a replayed one with the one served: f64s within `tol` (relative).
fn assert_same_posterior(a: &GetCampaignStatsResponse, b: &GetCampaignStatsResponse, what: &str) {
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1e-12);
    assert_eq!(
        (a.model_version, a.prior_events),
        (b.model_version, b.prior_events),
        "{what}: learning events"
    );
    assert_eq!(a.offers.len(), b.offers.len(), "{what}");
    for (x, y) in a.offers.iter().zip(&b.offers) {
        assert_eq!(
            (&x.offer_id, x.decisions, x.redeemed, x.model_observations),
            (&y.offer_id, y.decisions, y.redeemed, y.model_observations),
            "{what}: counts"
        );
        assert!(
            close(x.mean_predicted_rate, y.mean_predicted_rate),
            "{what}: offer {} mean predicted rate {} != {}",
            x.offer_id,
            x.mean_predicted_rate,
            y.mean_predicted_rate
        );
    }
    assert_eq!(a.feature_priors.len(), b.feature_priors.len(), "{what}");
    for (x, y) in a.feature_priors.iter().zip(&b.feature_priors) {
        assert!(
            x.feature == y.feature && close(x.prior_variance, y.prior_variance),
            "{what}: learned prior {x:?} != {y:?}"
        );
    }
    match (a.prior_rate, b.prior_rate) {
        (Some(x), Some(y)) => assert!(close(x, y), "{what}: prior rate {x} != {y}"),
        (x, y) => assert_eq!(x, y, "{what}: prior rate"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_a_publish_and_a_checkpoint_replays_the_served_posterior() {
    const STREAMS: usize = 8;
    // Checkpoints only when the test forces one.
    // A 30-day window and every decision redeemed: each decision is one
    // learning event, its redemption (no reveal comes while the test runs).
    let mut server = TestServer::start(
        Some(&logistic_campaign_toml(
            "promo",
            &TYPES,
            "30d",
            &["a", "b", "c"],
        )),
        &["--checkpoint-interval", "1h"],
    );
    let channel = server.channel().await;
    // Phase 0 ends with a checkpoint; phase 1 is learned after it, published
    // to the select path group by group, and never checkpointed. It runs
    // past the learned prior's first re-estimation (256 events), which
    // replay must redo.
    let mut acked_total = Vec::new();
    for (phase, until_events) in [(0, 60), (1, 420)] {
        let stop = Arc::new(AtomicBool::new(false));
        let (acked, tasks) = traffic(&channel, "promo", STREAMS, 1, typed, stop.clone());
        let mut admin = server.admin().await;
        // Polls the learning events (each read also a barrier) until enough.
        while crate::support::campaign_stats(&mut admin, "promo")
            .await
            .prior_events
            < until_events
        {
            // Pacing the reads only: each read is itself the barrier.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.expect("a traffic task panicked");
        }
        acked_total.extend(std::mem::take(&mut acked.lock().expect("lock").redeemed));
        if phase == 0 {
            server.checkpoint().await;
        }
    }
    // Nothing is flushed for a decision that no one waits on; a redemption
    // is flushed before its OK, with every group before it. So the last act
    // is a redemption, after all traffic stopped.
    let mut offers = server.offers().await;
    let last = offers
        .select_offer(select("promo", &typed(0)))
        .await
        .expect("select")
        .into_inner();
    let r = offers
        .record_redemption(redeem(&last.decision_id))
        .await
        .expect("redeem");
    assert!(!r.into_inner().already_recorded);
    acked_total.push(last.decision_id);
    drop(offers);
    // The admin read waits for everything answered before it: what it shows
    // was learned from committed events only.
    let served = server.stats("promo").await;
    assert!(
        served
            .feature_priors
            .iter()
            .any(|f| (f.prior_variance - 0.1).abs() > 1e-6),
        "the learned prior was not re-estimated: {:?}",
        served.feature_priors
    );
    server.kill();
    {
        // The kill fell between a publish and a checkpoint: the store's
        // checkpoint is older than the served posterior, and the events
        // between are all in the decision records.
        let store = offer_bandit::store::Store::open(server.data_dir()).expect("open store");
        let checkpoint = store.model_seq().expect("model seq");
        let mut tail = 0u64;
        store
            .scan_decisions(0, i64::MAX, |_, rec| {
                tail += u64::from(rec.learned_seq > checkpoint);
                tail += u64::from(rec.redeemed_seq > checkpoint);
                true
            })
            .expect("scan");
        drop(store);
        assert!(
            checkpoint > 0 && checkpoint < 256 && checkpoint < served.prior_events,
            "checkpoint at {checkpoint}, served {}: the kill was not between them",
            served.prior_events
        );
        assert_eq!(
            checkpoint + tail,
            served.prior_events,
            "learning events served but not in the log"
        );
        println!(
            "publish/checkpoint kill: checkpoint at event {checkpoint}, {tail} events replayed, \
             {} served",
            served.prior_events
        );
    }
    server.relaunch();
    let replayed = server.stats("promo").await;
    assert_same_posterior(&served, &replayed, "replayed after kill -9");
    println!(
        "replayed posterior equal bit for bit: {}",
        served == replayed
    );
    check_log(&export(&server, "promo").await, &replayed, &acked_total);
    // Startup stored the replayed posterior as a checkpoint; a graceful
    // restart loads it.
    server.restart();
    let reloaded = server.stats("promo").await;
    assert_same_posterior(&served, &reloaded, "after a graceful restart");
    check_redeemed_once(&server, "promo", &acked_total).await;
}

/// Write groups so far, from /metrics: (commands, groups, groups of more
/// than one block's worth of commands).
fn write_groups(metrics_addr: &str) -> (f64, f64, f64) {
    let (_, body) = http_get(metrics_addr, "/metrics");
    let value = |series: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let name = "offer_bandit_write_group_commands";
    let count = value(&format!("{name}_count"));
    let in_one_block = value(&format!(
        "{name}_bucket{{le=\"{}\"}}",
        offer_bandit::store::BLOCK_MAX
    ));
    (value(&format!("{name}_sum")), count, count - in_one_block)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_blocks_are_written_keeps_whole_groups() {
    const STREAMS: usize = 64;
    let cycles = cycles();
    let mut rng = kill_moments(6464);
    let mut server = TestServer::start(
        Some(&campaign_toml("promo", &["tier"], "1h", &["a", "b", "c"])),
        &["--learn-interval", "50ms"],
    );
    let mut acked_total: Vec<String> = Vec::new();
    let (mut group_means, mut large_groups) = (Vec::new(), 0.0);
    for cycle in 0..cycles {
        let stop = Arc::new(AtomicBool::new(false));
        // Few redemptions: they wake the writer at once and cut groups short.
        let (acked, tasks) = traffic(&server.channel().await, "promo", STREAMS, 64, tiered, stop);
        // Traffic until at least one group has held more than a block's
        // worth of commands (so groups this large are being written), then
        // the kill at a random moment after.
        let started = std::time::Instant::now();
        while write_groups(&server.metrics_addr).2 < 1.0 {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "cycle {cycle}: no write group of more than one block in 20 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..800))).await;
        let (commands, groups, large) = write_groups(&server.metrics_addr);
        server.kill();
        for t in tasks {
            t.await.expect("a traffic task panicked");
        }
        assert!(
            groups > 0.0,
            "cycle {cycle}: no write group seen on /metrics"
        );
        group_means.push(commands / groups);
        large_groups += large;
        {
            // The store as the kill left it, before startup touches it:
            // each (segment, offer) cell counts exactly the decisions stored.
            let store = offer_bandit::store::Store::open(server.data_dir()).expect("open store");
            let mut stored: HashMap<(String, String), u64> = HashMap::new();
            store
                .scan_decisions(0, i64::MAX, |_, rec| {
                    *stored.entry((rec.segment, rec.offer)).or_default() += 1;
                    true
                })
                .expect("scan");
            let cells: HashMap<(String, String), u64> = store
                .load_cells()
                .expect("cells")
                .into_iter()
                .filter(|(k, _)| k.campaign == "promo")
                .map(|(k, c)| ((k.segment, k.offer), c.trials))
                .collect();
            drop(store);
            assert_eq!(
                stored, cells,
                "cycle {cycle}: stored decisions (left) and cell trials (right) differ: a torn group"
            );
        }
        server.relaunch();
        let acked = std::mem::take(&mut *acked.lock().expect("lock"));
        acked_total.extend(acked.redeemed);
        let stats = server.stats("promo").await;
        let trials: u64 = stats.cells.iter().map(|c| c.trials).sum();
        let successes: u64 = stats.cells.iter().map(|c| c.successes).sum();
        let decisions: u64 = stats.offers.iter().map(|o| o.decisions).sum();
        let redeemed: u64 = stats.offers.iter().map(|o| o.redeemed).sum();
        assert_eq!(
            (trials, successes),
            (decisions, redeemed),
            "cycle {cycle}: cells and offers disagree"
        );
        for c in &stats.cells {
            assert!(c.successes <= c.trials, "cycle {cycle}: {c:?}");
        }
        check_log(&export(&server, "promo").await, &stats, &acked_total);
        check_redeemed_once(&server, "promo", &acked_total).await;
    }
    println!(
        "block kill: {cycles} cycles, {STREAMS} streams, mean commands per write group before each kill {group_means:.1?}, \
         {large_groups} groups of more than one block, {} redemptions acknowledged (torn groups 0, lost 0, doubled 0)",
        acked_total.len()
    );
}
