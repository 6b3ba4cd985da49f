//! Overload: a flood beyond --max-in-flight gets RESOURCE_EXHAUSTED at once
//! while health checks keep answering; slow requests hit --request-timeout;
//! oversized messages are refused. The server serves normally afterwards.

use std::time::{Duration, Instant};

use offer_bandit::proto::{self, offer_service_client::OfferServiceClient};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::support::{TestServer, category, select};

#[tokio::test]
async fn a_flood_is_shed_and_health_stays_responsive() {
    let server = TestServer::start(None, &["--max-in-flight", "4"]);
    let mut callers = Vec::new();
    for c in 0..4u32 {
        // Several connections, many streams each.
        let channel = server.channel().await;
        for i in 0..100 {
            let mut client = OfferServiceClient::new(channel.clone());
            callers.push(tokio::spawn(async move {
                let mut codes = Vec::new();
                for j in 0..5 {
                    let tier = if (c + i + j).is_multiple_of(2) {
                        "gold"
                    } else {
                        "silver"
                    };
                    let r = client
                        .select_offer(select("coffee", &[("tier", tier)]))
                        .await;
                    codes.push(r.map_or_else(
                        |s| {
                            if s.code() == Code::ResourceExhausted {
                                assert_eq!(crate::error_contract::reason_of(&s), "OVERLOADED");
                            }
                            s.code()
                        },
                        |_| Code::Ok,
                    ));
                }
                codes
            }));
        }
    }
    // Health checks during the flood: each answers, and quickly.
    let mut health = HealthClient::new(server.channel().await);
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(2),
            health.check(HealthCheckRequest {
                service: String::new(),
            }),
        )
        .await;
        assert!(
            matches!(r, Ok(Ok(_))),
            "health check failed during the flood"
        );
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut ok = 0;
    let mut shed = 0;
    for c in callers {
        for code in c.await.expect("caller") {
            match code {
                Code::Ok => ok += 1,
                Code::ResourceExhausted => shed += 1,
                other => panic!("unexpected status {other:?}"),
            }
        }
    }
    assert!(ok > 0, "some requests must get through");
    assert!(shed > 0, "2000 requests over 4 slots must shed some");
    assert!(
        slowest < Duration::from_secs(1),
        "slowest health check {slowest:?}"
    );
    // Calm again: served normally.
    let mut offers = server.offers().await;
    offers
        .select_offer(select("coffee", &[("tier", "gold")]))
        .await
        .expect("served after the flood");
}

#[tokio::test]
async fn a_request_that_runs_too_long_gets_deadline_exceeded() {
    let server = TestServer::start(None, &["--request-timeout", "300ms"]);
    let mut offers = server.offers().await;
    // A redemption stream that never ends keeps its handler waiting.
    let (tx, rx) = tokio::sync::mpsc::channel::<proto::RecordRedemptionRequest>(1);
    let started = Instant::now();
    let r = offers
        .record_redemptions(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    let status = r.expect_err("must time out");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(crate::error_contract::reason_of(&status), "TIMEOUT");
    assert!(status.message().contains("--request-timeout"));
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(tx);
    offers
        .select_offer(select("coffee", &[("tier", "gold")]))
        .await
        .expect("served afterwards");
}

#[tokio::test]
async fn oversized_messages_are_refused() {
    let server = TestServer::start(None, &["--max-message-bytes", "2048"]);
    let mut offers = server.offers().await;
    let mut req = select("coffee", &[]);
    req.context
        .insert("note".into(), category(&"x".repeat(4000)));
    let status = offers.select_offer(req).await.expect_err("too large");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    offers
        .select_offer(select("coffee", &[("tier", "gold")]))
        .await
        .expect("served afterwards");
}
