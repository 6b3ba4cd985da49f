//! `offer-sim load`: drives a live server over gRPC with scenario customers
//! and reports throughput and latency percentiles per RPC. Redemptions flow
//! back after their simulated delay (scaled by `--seconds-per-day`), batched
//! through `RecordRedemptions`. `--rpc health` calls `grpc.health.v1.Health/Check`
//! instead of SelectOffer: an RPC that does no work, the stack's baseline.
//! The timed calls go through a lean client of our own
//! ([`crate::raw_grpc`]): with tonic's, the load generator's core was the
//! limit of Health/Check before the server's was.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use offer_bandit::proto::{self, offer_service_client::OfferServiceClient};
use prost::Message as _;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus,
};

use crate::{
    raw_grpc::{RawChannel, frame},
    scenario::{Scenario, SimVisit},
};

/// The timed RPCs' paths.
const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
const SELECT_OFFER: &str = "/offerbandit.v1.OfferService/SelectOffer";

/// Which RPC the workers call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LoadRpc {
    /// SelectOffer with scenario customers (and redemptions flowing back).
    Select,
    /// grpc.health.v1.Health/Check: the stack's no-work baseline.
    Health,
    /// Durable redemptions: `--decisions` decisions are made first (not
    /// timed), then redeemed in streams of `--batch` (1: unary RecordRedemption).
    Redeem,
}

/// What to run.
pub(crate) struct LoadOptions {
    pub(crate) target: String,
    pub(crate) campaign: String,
    pub(crate) concurrency: usize,
    /// HTTP/2 connections the callers share (caller `w` uses `w % connections`).
    pub(crate) connections: usize,
    pub(crate) duration: Duration,
    pub(crate) rps: Option<f64>,
    pub(crate) rpc: LoadRpc,
    pub(crate) seconds_per_day: f64,
    pub(crate) seed: u64,
    /// `Redeem`: decisions made before the timed phase.
    pub(crate) decisions: usize,
    /// `Redeem`: redemptions per RecordRedemptions stream (1: unary).
    pub(crate) batch: usize,
    /// How an `https://` target is checked (None: plaintext only).
    pub(crate) tls: Option<crate::raw_grpc::ClientTls>,
}

/// Figures of one RPC.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RpcFigures {
    pub(crate) rpc: String,
    /// Calls that returned OK.
    pub(crate) ok: u64,
    /// Failed calls by gRPC status code name.
    pub(crate) errors: BTreeMap<String, u64>,
    /// OK calls per second over the run.
    pub(crate) per_second: f64,
    /// Items per second (redemptions for RecordRedemptions, else = per_second).
    pub(crate) items_per_second: f64,
    pub(crate) p50_us: u64,
    pub(crate) p90_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    pub(crate) max_us: u64,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LoadReport {
    pub(crate) target: String,
    pub(crate) campaign: String,
    pub(crate) concurrency: usize,
    pub(crate) connections: usize,
    pub(crate) seconds: f64,
    /// CPU the load generator itself used over the timed run, in cores
    /// (its CPU seconds over the wall-clock seconds; Linux only).
    pub(crate) client_cores_busy: Option<f64>,
    /// Cores the load generator may run on.
    pub(crate) client_cores: usize,
    pub(crate) rps_limit: Option<f64>,
    pub(crate) rpcs: Vec<RpcFigures>,
}

#[derive(Default)]
struct Tally {
    hist: Option<Histogram<u64>>,
    ok: u64,
    items: u64,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn record(&mut self, started: Instant, result: Result<u64, tonic::Status>) {
        match result {
            Ok(items) => {
                let us = started.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
                if let Some(h) = &mut self.hist {
                    let _ = h.record(us.max(1));
                }
                self.ok += 1;
                self.items += items;
            }
            Err(s) => *self.errors.entry(format!("{:?}", s.code())).or_insert(0) += 1,
        }
    }

    fn merge(&mut self, o: Tally) {
        if let (Some(h), Some(oh)) = (&mut self.hist, &o.hist) {
            let _ = h.add(oh);
        }
        self.ok += o.ok;
        self.items += o.items;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_insert(0) += v;
        }
    }

    fn figures(&self, rpc: &str, seconds: f64) -> RpcFigures {
        let q = |p: f64| self.hist.as_ref().map_or(0, |h| h.value_at_quantile(p));
        RpcFigures {
            rpc: rpc.to_owned(),
            ok: self.ok,
            errors: self.errors.clone(),
            per_second: self.ok as f64 / seconds,
            items_per_second: self.items as f64 / seconds,
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: self.hist.as_ref().map_or(0, |h| h.max()),
        }
    }
}

fn tally() -> Tally {
    Tally {
        hist: Histogram::new_with_bounds(1, 60_000_000, 3).ok(),
        ..Tally::default()
    }
}

/// Requests each worker draws before the timed run and then cycles through.
const POOL: usize = 2048;

/// `n` SelectOffer requests for scenario visits, with each visit's true
/// redemption probabilities, drawn from round `w * n` on.
fn request_pool(
    scenario: &Scenario,
    campaign: &str,
    w: usize,
    n: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<(proto::SelectOfferRequest, Vec<f64>)> {
    let mut visit = SimVisit::new();
    (0..n)
        .map(|i| {
            let round = (w * n + i) as u64 % scenario.rounds().max(1);
            scenario.draw_visit(round, rng, &mut visit);
            let req = proto::SelectOfferRequest {
                campaign: campaign.to_owned(),
                context: visit
                    .context
                    .iter()
                    .map(|(k, v)| (k.clone(), crate::drive::to_proto(v)))
                    .collect(),
                ..Default::default()
            };
            (req, visit.p.clone())
        })
        .collect()
}

/// A redemption waiting for its simulated delay.
struct Due {
    at: Instant,
    decision_id: String,
}

/// Runs the load; returns its report.
pub(crate) async fn run(opts: LoadOptions, scenario: Arc<Scenario>) -> anyhow::Result<LoadReport> {
    match (opts.target.starts_with("https://"), opts.tls.is_some()) {
        (true, false) => anyhow::bail!(
            "{}: an https:// target needs --ca-cert (the CA that signed the server's certificate)",
            opts.target
        ),
        (false, true) => anyhow::bail!(
            "{}: --ca-cert is for https:// targets; this one is plaintext",
            opts.target
        ),
        _ => {}
    }
    let connect = || async {
        let mut endpoint = tonic::transport::Endpoint::from_shared(opts.target.clone())?;
        // Checked above: a CA is given exactly when the target is https://.
        if let Some(tls) = &opts.tls {
            endpoint = endpoint.tls_config(tls.tonic(&opts.target)?)?;
        }
        endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to {}", opts.target))
    };
    if opts.rpc == LoadRpc::Redeem {
        let mut channels = Vec::with_capacity(opts.connections.max(1));
        for _ in 0..opts.connections.max(1) {
            channels.push(connect().await?);
        }
        return run_redeem(opts, scenario, channels).await;
    }
    // The timed calls go over lean connections of their own; redemptions
    // over one of tonic's.
    let redemptions = connect().await?;
    let health_request = frame(&HealthCheckRequest {
        service: String::new(),
    });
    let mut raw = Vec::with_capacity(opts.connections.max(1));
    for _ in 0..opts.connections.max(1) {
        let channel = RawChannel::connect(&opts.target, opts.tls.as_ref()).await?;
        // One untimed call each: the server's settings have arrived (its
        // stream limit is known) and the header tables are warm.
        channel
            .unary(HEALTH_CHECK, health_request.clone())
            .await
            .with_context(|| format!("{}: Health/Check", opts.target))?;
        raw.push(channel);
    }
    // Requests are drawn and encoded before the clock starts, so that the
    // load generator spends the run sending, not simulating customers.
    let pools: Vec<(Pool, ChaCha8Rng)> = (0..opts.concurrency)
        .map(|w| {
            let mut rng = worker_rng(opts.seed, w);
            if opts.rpc != LoadRpc::Select {
                return (Vec::new(), rng);
            }
            let pool = request_pool(&scenario, &opts.campaign, w, POOL, &mut rng)
                .into_iter()
                .map(|(req, p)| (frame(&req), p))
                .collect();
            // The same stream then draws the redemption coins.
            (pool, rng)
        })
        .collect();
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let deadline = started + opts.duration;
    // A call still unanswered this long after the run's end is counted as
    // DeadlineExceeded, so that a lost reply cannot hang the run.
    let call_deadline = tokio::time::Instant::from_std(deadline + CALL_GRACE);
    let due: Arc<Mutex<Vec<Due>>> = Arc::new(Mutex::new(Vec::new()));
    let per_worker_interval = opts
        .rps
        .map(|r| Duration::from_secs_f64(opts.concurrency as f64 / r.max(1e-9)));
    let mut workers = Vec::with_capacity(opts.concurrency);
    for (w, (pool, mut rng)) in pools.into_iter().enumerate() {
        let channel = raw[w % raw.len()].clone();
        let health_request = health_request.clone();
        let scenario = scenario.clone();
        let due = due.clone();
        let (rpc, spd) = (opts.rpc, opts.seconds_per_day);
        let concurrency = opts.concurrency;
        workers.push(tokio::spawn(async move {
            let mut t = tally();
            // Phases are staggered so that callers do not fire in bursts.
            let phase = w as f64 / concurrency as f64;
            let mut ticker = per_worker_interval.map(|i| {
                let start = tokio::time::Instant::now() + i.mul_f64(phase);
                let mut t = tokio::time::interval_at(start, i);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            let mut round: u64 = w as u64;
            while Instant::now() < deadline {
                if let Some(tk) = &mut ticker {
                    tk.tick().await;
                }
                let s = Instant::now();
                // SelectOffer's reply, with the true redemption
                // probabilities of the request's customer; None for a
                // Health/Check.
                let reply = match rpc {
                    LoadRpc::Redeem => break,
                    LoadRpc::Health => timed(
                        call_deadline,
                        channel.unary(HEALTH_CHECK, health_request.clone()),
                    )
                    .await
                    .and_then(serving)
                    .map(|()| None),
                    LoadRpc::Select => {
                        let Some((req, p)) = pool.get(round as usize % pool.len().max(1)) else {
                            break;
                        };
                        round += 1;
                        timed(call_deadline, channel.unary(SELECT_OFFER, req.clone()))
                            .await
                            .and_then(|m| {
                                proto::SelectOfferResponse::decode(m)
                                    .map_err(|e| tonic::Status::internal(format!("reply: {e}")))
                            })
                            .map(|resp| Some((resp, p)))
                    }
                };
                let selected = match reply {
                    Ok(selected) => {
                        t.record(s, Ok(1));
                        selected
                    }
                    Err(e) => {
                        t.record(s, Err(e));
                        if carry_on(&channel).await {
                            continue;
                        }
                        break;
                    }
                };
                if let Some((resp, p)) = selected {
                    let p = scenario
                        .offers()
                        .iter()
                        .position(|o| o.id == resp.offer_id)
                        .map_or(0.0, |k| p[k]);
                    if rng.random::<f64>() < p {
                        let delay = scenario.draw_delay_days(&mut rng) * spd;
                        if let Ok(mut d) = due.lock() {
                            d.push(Due {
                                at: Instant::now() + Duration::from_secs_f64(delay.max(0.0)),
                                decision_id: resp.decision_id,
                            });
                        }
                    }
                }
            }
            t
        }));
    }
    // Redemptions flow back in batches as they come due.
    let redeemer = {
        let due = due.clone();
        let mut offers = OfferServiceClient::new(redemptions);
        tokio::spawn(async move {
            let mut t = tally();
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let now = Instant::now();
                let batch: Vec<proto::RecordRedemptionRequest> = match due.lock() {
                    Ok(mut d) => {
                        let (ready, later): (Vec<Due>, Vec<Due>) =
                            d.drain(..).partition(|x| x.at <= now);
                        *d = later;
                        ready
                            .into_iter()
                            .map(|x| proto::RecordRedemptionRequest {
                                decision_id: x.decision_id,
                                ..Default::default()
                            })
                            .collect()
                    }
                    Err(_) => break,
                };
                if batch.is_empty() {
                    continue;
                }
                let n = batch.len() as u64;
                let s = Instant::now();
                let r = offers
                    .record_redemptions(tokio_stream::iter(batch))
                    .await
                    .map(|_| n);
                t.record(s, r);
            }
            t
        })
    };
    let mut select = tally();
    for w in workers {
        select.merge(w.await?);
    }
    let redeem = redeemer.await?;
    let seconds = started.elapsed().as_secs_f64();
    let client_cores_busy = cores_busy(cpu_before, seconds);
    let name = match opts.rpc {
        LoadRpc::Health => "Health/Check",
        _ => "SelectOffer",
    };
    let mut rpcs = vec![select.figures(name, seconds)];
    if opts.rpc == LoadRpc::Select {
        rpcs.push(redeem.figures("RecordRedemptions (batches)", seconds));
    }
    Ok(LoadReport {
        target: opts.target,
        campaign: opts.campaign,
        concurrency: opts.concurrency,
        connections: raw.len(),
        seconds,
        client_cores_busy,
        client_cores: client_cores(),
        rps_limit: opts.rps,
        rpcs,
    })
}

/// A caller's requests, encoded, each with its offers' true redemption
/// probabilities.
type Pool = Vec<(Bytes, Vec<f64>)>;

/// How long after the run's end a call may still be answered.
const CALL_GRACE: Duration = Duration::from_secs(10);

/// A worker's random stream.
fn worker_rng(seed: u64, w: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(w as u64))
}

/// `call`, or DeadlineExceeded once `deadline` passes.
async fn timed<T>(
    deadline: tokio::time::Instant,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    tokio::time::timeout_at(deadline, call)
        .await
        .unwrap_or_else(|_| {
            Err(tonic::Status::deadline_exceeded(
                "no reply by the run's end",
            ))
        })
}

/// Ok when a Health/Check reply says SERVING.
fn serving(reply: Bytes) -> Result<(), tonic::Status> {
    let r = HealthCheckResponse::decode(reply)
        .map_err(|e| tonic::Status::internal(format!("reply: {e}")))?;
    if r.status == ServingStatus::Serving as i32 {
        Ok(())
    } else {
        Err(tonic::Status::unavailable("not serving"))
    }
}

/// After a failed call: whether the worker goes on (its connection is
/// alive; it yields first, so that a run of failures cannot starve the
/// other callers).
async fn carry_on(channel: &RawChannel) -> bool {
    tokio::task::yield_now().await;
    !channel.is_lost()
}

/// The CPU seconds this process has used (user and system, all threads), read
/// from `/proc/self/stat` (Linux; None elsewhere).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is the 3rd field, utime the 14th and stime the 15th.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // In clock ticks: USER_HZ, 100 on every Linux architecture Rust targets.
    Some((utime + stime) / 100.0)
}

/// Cores busy since `before` (from [`process_cpu_seconds`]) over `seconds`.
fn cores_busy(before: Option<f64>, seconds: f64) -> Option<f64> {
    let used = process_cpu_seconds()? - before?;
    (seconds > 0.0).then(|| used / seconds)
}

/// The cores this process may run on.
fn client_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl LoadReport {
    /// True when the load generator used at least 90% of its cores: then
    /// the rates measure the client as much as the server.
    pub(crate) fn client_bound(&self) -> bool {
        self.client_cores_busy
            .is_some_and(|busy| busy >= 0.9 * self.client_cores as f64)
    }
}

/// `--rpc redeem`: makes `opts.decisions` decisions as fast as it can (not
/// timed), then redeems them from `opts.concurrency` callers in streams of
/// `opts.batch` until all are redeemed or `opts.duration` has passed.
/// Every OK counts only once the server has flushed it to disk.
async fn run_redeem(
    opts: LoadOptions,
    scenario: Arc<Scenario>,
    channels: Vec<tonic::transport::Channel>,
) -> anyhow::Result<LoadReport> {
    let ids: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::with_capacity(opts.decisions)));
    let prefill_started = Instant::now();
    let mut makers = Vec::with_capacity(opts.concurrency);
    let per_worker = opts.decisions.div_ceil(opts.concurrency);
    for w in 0..opts.concurrency {
        let mut offers = OfferServiceClient::new(channels[w % channels.len()].clone());
        let (scenario, ids, campaign) = (scenario.clone(), ids.clone(), opts.campaign.clone());
        let seed = opts.seed;
        makers.push(tokio::spawn(async move {
            let mut rng = worker_rng(seed, w);
            let pool = request_pool(&scenario, &campaign, w, POOL.min(per_worker), &mut rng);
            let mut t = tally();
            for i in 0..per_worker {
                let req = pool[i % pool.len()].0.clone();
                let s = Instant::now();
                let r = offers.select_offer(req).await;
                if let Ok(resp) = &r
                    && let Ok(mut ids) = ids.lock()
                {
                    ids.push(resp.get_ref().decision_id.clone());
                }
                t.record(s, r.map(|_| 1));
            }
            t
        }));
    }
    let mut select = tally();
    for m in makers {
        select.merge(m.await?);
    }
    let prefill_seconds = prefill_started.elapsed().as_secs_f64();
    let batch = opts.batch.max(1);
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let deadline = started + opts.duration;
    let mut workers = Vec::with_capacity(opts.concurrency);
    for w in 0..opts.concurrency {
        let mut offers = OfferServiceClient::new(channels[w % channels.len()].clone());
        let ids = ids.clone();
        workers.push(tokio::spawn(async move {
            let mut t = tally();
            while Instant::now() < deadline {
                let chunk: Vec<String> = match ids.lock() {
                    Ok(mut ids) => {
                        let n = ids.len().saturating_sub(batch);
                        ids.split_off(n)
                    }
                    Err(_) => break,
                };
                if chunk.is_empty() {
                    break;
                }
                let s = Instant::now();
                let r = if batch == 1 {
                    offers
                        .record_redemption(proto::RecordRedemptionRequest {
                            decision_id: chunk.into_iter().next().unwrap_or_default(),
                            ..Default::default()
                        })
                        .await
                        .map(|_| 1)
                } else {
                    let items =
                        chunk
                            .into_iter()
                            .map(|decision_id| proto::RecordRedemptionRequest {
                                decision_id,
                                ..Default::default()
                            });
                    offers
                        .record_redemptions(tokio_stream::iter(items))
                        .await
                        .map(|r| r.get_ref().applied)
                };
                t.record(s, r);
            }
            t
        }));
    }
    let mut redeem = tally();
    for w in workers {
        redeem.merge(w.await?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let client_cores_busy = cores_busy(cpu_before, seconds);
    let name = if batch == 1 {
        "RecordRedemption (unary)".to_owned()
    } else {
        format!("RecordRedemptions ({batch}/stream)")
    };
    Ok(LoadReport {
        target: opts.target,
        campaign: opts.campaign,
        concurrency: opts.concurrency,
        connections: channels.len(),
        seconds,
        client_cores_busy,
        client_cores: client_cores(),
        rps_limit: None,
        rpcs: vec![
            select.figures("SelectOffer (prefill, untimed)", prefill_seconds),
            redeem.figures(&name, seconds),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reading rises with work (its clock ticks are 10 ms): a field
    /// misread, or one that does not count this process, stays put.
    #[cfg(target_os = "linux")]
    #[test]
    fn process_cpu_seconds_follow_work() {
        let before = process_cpu_seconds().expect("/proc/self/stat on Linux");
        assert!(before >= 0.0);
        let started = Instant::now();
        let mut x = 0u64;
        let mut now = before;
        while now < before + 0.05 && started.elapsed() < Duration::from_secs(10) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            now = process_cpu_seconds().expect("/proc/self/stat");
        }
        assert!(
            now >= before + 0.05,
            "{:.2} s of CPU counted in {:?} of spinning",
            now - before,
            started.elapsed()
        );
    }

    #[test]
    fn client_bound_from_ninety_percent_of_the_cores() {
        let report = |busy: Option<f64>| LoadReport {
            target: String::new(),
            campaign: String::new(),
            concurrency: 1,
            connections: 1,
            seconds: 1.0,
            client_cores_busy: busy,
            client_cores: 2,
            rps_limit: None,
            rpcs: Vec::new(),
        };
        assert!(report(Some(1.85)).client_bound());
        assert!(!report(Some(1.75)).client_bound());
        assert!(!report(None).client_bound());
    }
}
