//! SIGTERM: requests in flight finish and are durable; idle connections do
//! not hold the shutdown for the grace period.

use std::time::{Duration, Instant};

use crate::support::{TestServer, redeem, select};

#[tokio::test]
async fn in_flight_requests_finish_and_idle_connections_do_not_wait() {
    let mut server = TestServer::start(None, &["--shutdown-grace", "10s"]);
    let mut offers = server.offers().await;
    let d = offers
        .select_offer(select("coffee", &[("lifecycle", "active")]))
        .await
        .expect("select")
        .into_inner();
    // A RecordRedemptions stream is open (in flight) when SIGTERM arrives.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut streaming = server.offers().await;
    let call = tokio::spawn(async move {
        streaming
            .record_redemptions(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // An idle connection stays open too.
    let _idle = server.offers().await;
    server.sigterm();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send(redeem(&d.decision_id)).await.expect("send");
    drop(tx);
    let out = call
        .await
        .expect("task")
        .expect("the in-flight stream finishes")
        .into_inner();
    assert_eq!(out.applied, 1);
    let started = Instant::now();
    assert_eq!(server.wait_exit(Duration::from_secs(15)), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "exit took {:?}: idle connections held the shutdown",
        started.elapsed()
    );
    drop(offers);
    // The redemption acknowledged during shutdown is on disk.
    server.relaunch();
    let mut offers = server.offers().await;
    let again = offers
        .record_redemption(redeem(&d.decision_id))
        .await
        .expect("redeem")
        .into_inner();
    assert!(again.already_recorded);
}
