//! The service learns: the best offer takes over, per segment.

use std::collections::HashMap;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::support::{TestServer, campaign_toml, logistic_campaign_toml, redeem_batch, select};

/// Runs `rounds` visits in waves of `wave` concurrent selects; redemptions
/// (drawn from `rate(segment, offer)`) go back in one stream per wave.
/// Returns the chosen offers per segment, in order.
async fn run(
    server: &TestServer,
    segments: &[&str],
    rounds: usize,
    rate: impl Fn(&str, &str) -> f64,
) -> HashMap<String, Vec<String>> {
    let client = server.offers().await;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut chosen: HashMap<String, Vec<String>> = HashMap::new();
    let wave = 50;
    for _ in 0..rounds / wave {
        let mut calls = Vec::new();
        for _ in 0..wave {
            let seg = segments[rng.random_range(0..segments.len())].to_owned();
            let mut c = client.clone();
            let req = select("promo", &[("type", seg.as_str())]);
            calls.push(tokio::spawn(async move {
                (seg, c.select_offer(req).await.expect("select").into_inner())
            }));
        }
        let mut redeemed = Vec::new();
        for call in calls {
            let (seg, resp) = call.await.expect("join");
            if rng.random::<f64>() < rate(&seg, &resp.offer_id) {
                redeemed.push(resp.decision_id.clone());
            }
            chosen.entry(seg).or_default().push(resp.offer_id);
        }
        let mut c = client.clone();
        let out = redeem_batch(&mut c, &redeemed).await;
        assert_eq!(out.applied as usize, redeemed.len());
    }
    chosen
}

fn share(chosen: &[String], offer: &str, last: usize) -> f64 {
    let tail = &chosen[chosen.len().saturating_sub(last)..];
    tail.iter().filter(|o| *o == offer).count() as f64 / tail.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_offer_takes_over() {
    let server = TestServer::start(
        Some(&campaign_toml("promo", &[], "1h", &["a", "b", "best", "c"])),
        &[],
    );
    let chosen = run(&server, &["x"], 5_000, |_, o| {
        if o == "best" { 0.30 } else { 0.05 }
    })
    .await;
    let s = share(&chosen["x"], "best", 1_000);
    println!("share of the 30% offer in the last 1,000 of 5,000 selections: {s:.3}");
    assert!(
        s > 0.80,
        "best offer got {s:.3} of the last 1,000 selections"
    );
}

/// 5,000 visits a segment. A new segment borrows `prior_strength` from the
/// campaign, where each segment's best offer is the other's 5% one.
///
/// A 2 s window, swept every 50 ms: non-redemptions count as failures
/// within the run. With a 1 h window they barely did: a pending decision
/// weighs nothing in the delay model's current tick (56 s of a 1 h window)
/// and little in the next, so the arms learned almost from redemptions
/// alone, and the share varied from run to run. It read
/// 0.85-0.96 with 3,000 visits a segment (once 0.78 in CI), 0.88-1.00 with
/// 5,000, and once 0.760 in a CI run that shared the machine with
/// benchmarks. With the 2 s window: 0.995-1.000 in five runs, and
/// 0.997-1.000 in three on a quarter of one core (30 s a run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_segment_finds_its_own_best_offer() {
    let server = TestServer::start(
        Some(&campaign_toml(
            "promo",
            &["type"],
            "2s",
            &["a", "b", "c", "d"],
        )),
        &["--sweep-interval", "50ms"],
    );
    let best = |seg: &str| if seg == "commuter" { "a" } else { "c" };
    let chosen = run(&server, &["commuter", "weekender"], 10_000, |seg, o| {
        if o == best(seg) { 0.30 } else { 0.05 }
    })
    .await;
    for seg in ["commuter", "weekender"] {
        let s = share(&chosen[seg], best(seg), 1_000);
        println!(
            "segment {seg}: share of its best offer '{}' in its last 1,000 selections: {s:.3}",
            best(seg)
        );
        assert!(s > 0.80, "segment {seg}: best offer got {s:.3}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logistic_ts_learns_a_context_dependent_best_offer() {
    // No segment_by: the model learns from the encoded context alone.
    let server = TestServer::start(
        // A 1 s window, swept every 50 ms: a non-redemption is learned
        // within a second (revealed by the delay model, or at the close).
        Some(&logistic_campaign_toml(
            "promo",
            &["commuter", "weekender"],
            "1s",
            &["a", "b", "c", "d"],
        )),
        &["--sweep-interval", "50ms"],
    );
    let best = |seg: &str| if seg == "commuter" { "a" } else { "c" };
    let chosen = run(&server, &["commuter", "weekender"], 4_000, |seg, o| {
        if o == best(seg) { 0.30 } else { 0.05 }
    })
    .await;
    for seg in ["commuter", "weekender"] {
        let s = share(&chosen[seg], best(seg), 1_000);
        println!(
            "logistic-ts, customers of type {seg}: share of their best offer '{}' in their last 1,000 selections: {s:.3}",
            best(seg)
        );
        assert!(s > 0.80, "type {seg}: best offer got {s:.3}");
    }
}
