//! `/metrics` exposes the named Prometheus series after traffic.

use std::io::{Read, Write};

use offer_bandit::proto::GetCampaignStatsRequest;

use crate::support::{TestServer, redeem_batch, select};

fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to /metrics");
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    assert!(
        out.starts_with("HTTP/1.1 200"),
        "{}",
        &out[..out.len().min(200)]
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_the_named_series_after_traffic() {
    let server = TestServer::start(None, &[]);
    let mut client = server.offers().await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let part = ["morning", "afternoon"][i % 2];
        let d = client
            .select_offer(select(
                "coffee",
                &[("lifecycle", "active"), ("daypart", part)],
            ))
            .await
            .expect("select")
            .into_inner();
        ids.push(d.decision_id);
    }
    let out = redeem_batch(&mut client, &ids[..5]).await;
    assert_eq!(out.applied, 5);
    // A bad request, to see a non-OK status code counted.
    let err = client
        .select_offer(select("tea", &[]))
        .await
        .expect_err("unknown campaign");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let mut admin = server.admin().await;
    admin
        .get_campaign_stats(GetCampaignStatsRequest {
            campaign: "coffee".into(),
        })
        .await
        .expect("stats");

    let text = scrape(&server.metrics_addr);
    for needle in [
        "offer_bandit_rpc_requests_total{method=\"/offerbandit.v1.OfferService/SelectOffer\",code=\"0\"} 20",
        "offer_bandit_rpc_requests_total{method=\"/offerbandit.v1.OfferService/SelectOffer\",code=\"5\"} 1",
        "offer_bandit_rpc_duration_seconds_bucket{method=\"/offerbandit.v1.OfferService/SelectOffer\",le=\"0.001\"}",
        "offer_bandit_decisions_pending{campaign=\"coffee\"} 15",
        "offer_bandit_redemptions_applied_total{campaign=\"coffee\"} 5",
        "offer_bandit_flush_duration_seconds_count",
        "offer_bandit_decisions_total{campaign=\"coffee\",offer=",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle}:\n{text}");
    }
    let shares: u64 = text
        .lines()
        .filter(|l| l.starts_with("offer_bandit_decisions_total{campaign=\"coffee\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(
        shares, 20,
        "per-offer decision counters add up to the decisions made"
    );
}
