//! Pausing, resuming and retiring offers and campaigns on a running server:
//! validated, durable, and seen by the next SelectOffer.

use offer_bandit::proto::{ListCampaignsRequest, SetCampaignStatusRequest, SetOfferStatusRequest};
use tonic::Code;

use crate::support::{Admin, TestServer, campaign_toml, redeem, select};

async fn set_offer(admin: &mut Admin, offer: &str, status: &str) -> Result<(), tonic::Status> {
    admin
        .set_offer_status(SetOfferStatusRequest {
            campaign: "l".into(),
            offer_id: offer.into(),
            status: status.into(),
        })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn offers_and_campaigns_are_paused_resumed_and_retired_live() {
    let mut server = TestServer::start(Some(&campaign_toml("l", &[], "1h", &["a", "b", "c"])), &[]);
    let mut offers = server.offers().await;
    let mut admin = server.admin().await;
    let pending = offers
        .select_offer(select("l", &[]))
        .await
        .expect("select")
        .into_inner();

    set_offer(&mut admin, "a", "paused").await.expect("pause a");
    set_offer(&mut admin, "b", "retired")
        .await
        .expect("retire b");
    for _ in 0..40 {
        let d = offers
            .select_offer(select("l", &[]))
            .await
            .expect("select")
            .into_inner();
        assert_eq!(d.offer_id, "c", "only c is left");
    }
    let mut req = select("l", &[]);
    req.candidate_offer_ids = vec!["a".into()];
    let err = offers.select_offer(req).await.expect_err("paused");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("paused by an operator"),
        "{}",
        err.message()
    );
    let mut req = select("l", &[]);
    req.explain = true;
    let d = offers.select_offer(req).await.expect("select").into_inner();
    let b = d.explanation.iter().find(|e| e.offer_id == "b").expect("b");
    assert!(
        b.excluded_reason.contains("retired by an operator"),
        "{b:?}"
    );
    // Decisions made before still accept redemptions.
    offers
        .record_redemption(redeem(&pending.decision_id))
        .await
        .expect("redeem");

    // Validated.
    let bad = set_offer(&mut admin, "b", "active")
        .await
        .expect_err("retired is final");
    assert_eq!(bad.code(), Code::FailedPrecondition);
    let bad = set_offer(&mut admin, "zz", "paused")
        .await
        .expect_err("unknown");
    assert_eq!(bad.code(), Code::NotFound);
    let bad = set_offer(&mut admin, "a", "sleeping")
        .await
        .expect_err("bad status");
    assert_eq!(bad.code(), Code::InvalidArgument);

    // Durable across a restart, and visible in ListCampaigns.
    drop((offers, admin));
    server.restart();
    let mut offers = server.offers().await;
    let mut admin = server.admin().await;
    let list = admin
        .list_campaigns(ListCampaignsRequest {})
        .await
        .expect("list")
        .into_inner();
    let c = list
        .campaigns
        .iter()
        .find(|c| c.id == "l")
        .expect("campaign");
    let status: Vec<(&str, &str)> = c
        .offers
        .iter()
        .map(|o| (o.id.as_str(), o.status.as_str()))
        .collect();
    assert_eq!(status, [("a", "paused"), ("b", "retired"), ("c", "active")]);

    // Resume a; pause the whole campaign.
    set_offer(&mut admin, "a", "active")
        .await
        .expect("resume a");
    let mut req = select("l", &[]);
    req.candidate_offer_ids = vec!["a".into()];
    assert_eq!(
        offers
            .select_offer(req)
            .await
            .expect("a is back")
            .into_inner()
            .offer_id,
        "a"
    );
    admin
        .set_campaign_status(SetCampaignStatusRequest {
            campaign: "l".into(),
            status: "paused".into(),
        })
        .await
        .expect("pause campaign");
    let err = offers
        .select_offer(select("l", &[]))
        .await
        .expect_err("paused campaign");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("paused by an operator"));
    // The CLI resumes it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_offer-bandit"))
        .args([
            "campaign-status",
            "--server",
            &server.url(),
            "--campaign",
            "l",
            "--status",
            "active",
        ])
        .output()
        .expect("cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    offers
        .select_offer(select("l", &[]))
        .await
        .expect("resumed");
}
