//! Every decision is one trial and at most one success: duplicates, expiry,
//! late redemptions and request-id retries.

use std::time::Duration;

use offer_bandit::proto::GetCampaignStatsResponse;
use tonic::Code;

use crate::support::{TestServer, campaign_stats, campaign_toml, redeem, redeem_batch, select};

fn totals(s: &GetCampaignStatsResponse) -> (u64, u64, u64, u64) {
    s.offers.iter().fold((0, 0, 0, 0), |t, o| {
        (
            t.0 + o.decisions,
            t.1 + o.pending,
            t.2 + o.redeemed,
            t.3 + o.expired,
        )
    })
}

#[tokio::test]
async fn duplicate_redemptions_count_once() {
    let server = TestServer::start(Some(&campaign_toml("promo", &[], "1h", &["a", "b"])), &[]);
    let mut client = server.offers().await;
    let mut admin = server.admin().await;
    let d = client
        .select_offer(select("promo", &[]))
        .await
        .expect("select")
        .into_inner();
    let first = client
        .record_redemption(redeem(&d.decision_id))
        .await
        .expect("redeem")
        .into_inner();
    assert!(!first.already_recorded);
    assert_eq!(first.offer_id, d.offer_id);
    for _ in 0..3 {
        let again = client
            .record_redemption(redeem(&d.decision_id))
            .await
            .expect("redeem again")
            .into_inner();
        assert!(again.already_recorded);
    }
    // The same id three times in one stream, too.
    let batch = redeem_batch(&mut client, &vec![d.decision_id.clone(); 3]).await;
    assert_eq!((batch.applied, batch.duplicates, batch.rejected), (0, 3, 0));
    let s = campaign_stats(&mut admin, "promo").await;
    assert_eq!(totals(&s), (1, 0, 1, 0));
    let cell = s
        .cells
        .iter()
        .find(|c| c.offer_id == d.offer_id)
        .expect("cell");
    assert_eq!((cell.trials, cell.successes), (1, 1));

    // Fresh decision redeemed several times inside one stream: applied once.
    let d2 = client
        .select_offer(select("promo", &[]))
        .await
        .expect("select")
        .into_inner();
    let batch = redeem_batch(&mut client, &vec![d2.decision_id.clone(); 4]).await;
    assert_eq!((batch.applied, batch.duplicates), (1, 3));
    assert_eq!(
        totals(&campaign_stats(&mut admin, "promo").await),
        (2, 0, 2, 0)
    );
}

#[tokio::test]
async fn expiry_finalizes_once_and_late_redemptions_are_refused() {
    let server = TestServer::start(
        Some(&campaign_toml("promo", &[], "2s", &["a", "b"])),
        &["--sweep-interval", "100ms"],
    );
    let mut client = server.offers().await;
    let mut admin = server.admin().await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(
            client
                .select_offer(select("promo", &[]))
                .await
                .expect("select")
                .into_inner()
                .decision_id,
        );
    }
    client
        .record_redemption(redeem(&ids[0]))
        .await
        .expect("in-window redemption");
    assert_eq!(
        totals(&campaign_stats(&mut admin, "promo").await),
        (20, 19, 1, 0)
    );
    // Wait for the window to close and a sweep to finalize (polled, so a
    // slow machine only makes the test slower).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let after = loop {
        let s = campaign_stats(&mut admin, "promo").await;
        if totals(&s).1 == 0 || std::time::Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        totals(&after),
        (20, 0, 1, 19),
        "every unredeemed decision expired exactly once"
    );
    let late = client
        .record_redemption(redeem(&ids[1]))
        .await
        .expect_err("late redemption");
    assert_eq!(late.code(), Code::FailedPrecondition, "{late:?}");
    assert!(
        late.message().contains("reward window"),
        "{}",
        late.message()
    );
    // The redeemed one stays redeemed and is still reported as a duplicate.
    assert!(
        client
            .record_redemption(redeem(&ids[0]))
            .await
            .expect("dup")
            .into_inner()
            .already_recorded
    );
    // More sweeps change nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = campaign_stats(&mut admin, "promo").await;
    assert_eq!(totals(&later), (20, 0, 1, 19));
    assert_eq!(later.model_version, after.model_version);
}

#[tokio::test]
async fn late_redemption_before_the_sweep_is_refused_and_counted_once() {
    // A sweep interval far longer than the window: the redemption finds the decision still pending.
    let server = TestServer::start(
        Some(&campaign_toml("promo", &[], "300ms", &["a"])),
        &["--sweep-interval", "1h"],
    );
    let mut client = server.offers().await;
    let mut admin = server.admin().await;
    let d = client
        .select_offer(select("promo", &[]))
        .await
        .expect("select")
        .into_inner();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..2 {
        let late = client
            .record_redemption(redeem(&d.decision_id))
            .await
            .expect_err("late");
        assert_eq!(late.code(), Code::FailedPrecondition);
    }
    assert_eq!(
        totals(&campaign_stats(&mut admin, "promo").await),
        (1, 0, 0, 1)
    );
}

#[tokio::test]
async fn request_id_retry_returns_the_same_decision() {
    let server = TestServer::start(
        Some(&campaign_toml("promo", &[], "1h", &["a", "b", "c"])),
        &[],
    );
    let mut client = server.offers().await;
    let mut admin = server.admin().await;
    let mut req = select("promo", &[]);
    req.request_id = "checkout-42".into();
    let first = client
        .select_offer(req.clone())
        .await
        .expect("select")
        .into_inner();
    assert!(!first.replayed);
    // Concurrent retries too.
    let mut calls = Vec::new();
    for _ in 0..8 {
        let mut c = client.clone();
        let r = req.clone();
        calls.push(tokio::spawn(async move {
            c.select_offer(r).await.expect("retry").into_inner()
        }));
    }
    for call in calls {
        let again = call.await.expect("join");
        assert!(again.replayed);
        assert_eq!(
            (&again.decision_id, &again.offer_id),
            (&first.decision_id, &first.offer_id)
        );
        assert_eq!(again.propensity, first.propensity);
    }
    let mut other = req.clone();
    other.request_id = "checkout-43".into();
    let second = client
        .select_offer(other)
        .await
        .expect("select")
        .into_inner();
    assert_ne!(second.decision_id, first.decision_id);
    assert_eq!(
        totals(&campaign_stats(&mut admin, "promo").await).0,
        2,
        "retries are not new trials"
    );
}
