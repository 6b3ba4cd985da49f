//! Fallback that is measured: SelectOffer carries what checkout shows, and
//! a fallback impression logged with RecordFallback counts in an arm of its
//! own, never in the control group.

use offer_bandit::proto::{self, RecordFallbackRequest};
use tonic::Code;

use crate::{
    error_contract::reason_of,
    support::{TestServer, redeem, select},
};

const CONFIG: &str = "[[campaigns]]\nid = \"f\"\npolicy = \"segment-ts\"\nreward_window = \"1h\"\n\
    segment_by = [\"tier\"]\ncontrol_share = 0.3\n\
    [[campaigns.offers]]\nid = \"muffin\"\nname = \"Free muffin\"\nmax_decisions = 1\n\
    display = { headline = \"A muffin on us\", image = \"https://cdn.example/muffin.png\" }\n\
    [[campaigns.offers]]\nid = \"latte\"\n";

fn fallback(offer: &str, request_id: &str) -> RecordFallbackRequest {
    let mut context = select("f", &[("tier", "gold")]).context;
    context.insert("undeclared".into(), crate::support::category("x"));
    RecordFallbackRequest {
        campaign: "f".into(),
        offer_id: offer.into(),
        context,
        customer_id: "kim".into(),
        request_id: request_id.into(),
        personalization_consent: None,
    }
}

#[tokio::test]
async fn replies_carry_the_display_and_fallbacks_count_in_their_own_arm() {
    let server = TestServer::start(Some(CONFIG), &[]);
    let mut offers = server.offers().await;
    let mut admin = server.admin().await;

    // The reply carries the name and display attributes: no second lookup.
    let mut muffin = select("f", &[("tier", "gold")]);
    muffin.candidate_offer_ids = vec!["muffin".into()];
    let r = offers
        .select_offer(muffin.clone())
        .await
        .expect("select")
        .into_inner();
    assert_eq!(r.offer_name, "Free muffin");
    assert_eq!(r.display["headline"], "A muffin on us");
    assert_eq!(r.display["image"], "https://cdn.example/muffin.png");
    let mut latte = select("f", &[("tier", "gold")]);
    latte.candidate_offer_ids = vec!["latte".into()];
    let r = offers
        .select_offer(latte)
        .await
        .expect("select")
        .into_inner();
    assert_eq!(r.offer_name, "latte", "the name defaults to the id");
    assert!(r.display.is_empty());
    let listed = admin
        .list_campaigns(proto::ListCampaignsRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        listed.campaigns[0].offers[0].display["headline"],
        "A muffin on us"
    );

    // The muffin's one-decision budget is spent, but a fallback that showed
    // it already happened: it is recorded, and a retry replays it.
    let err = offers.select_offer(muffin).await.expect_err("spent");
    assert_eq!(reason_of(&err), "BUDGET_EXHAUSTED");
    let logged = offers
        .record_fallback(fallback("muffin", "visit-9"))
        .await
        .expect("fallback")
        .into_inner();
    assert!(!logged.replayed);
    let again = offers
        .record_fallback(fallback("muffin", "visit-9"))
        .await
        .expect("retry")
        .into_inner();
    assert!(again.replayed);
    assert_eq!(again.decision_id, logged.decision_id);
    // Its redemption counts.
    offers
        .record_redemption(redeem(&logged.decision_id))
        .await
        .expect("redeem the fallback");

    let report = admin
        .get_campaign_report(proto::GetCampaignReportRequest {
            campaign: "f".into(),
        })
        .await
        .expect("report")
        .into_inner();
    let arm = |a: Option<&proto::ArmReport>| a.map(|a| (a.decisions, a.redemptions));
    assert_eq!(arm(report.fallback.as_ref()), Some((1, 1)));
    let bandit = arm(report.bandit.as_ref()).expect("bandit");
    let control = arm(report.control.as_ref()).expect("control");
    assert_eq!(
        bandit.0 + control.0,
        2,
        "only the two SelectOffers: {report:?}"
    );
    assert_eq!(
        bandit.1 + control.1,
        0,
        "the fallback's redemption is its own"
    );

    // Stored like a decision: propensity 1, the declared context only.
    let export =
        crate::support::offer_bandit_cli(&["export", "--server", &server.url(), "--campaign", "f"]);
    let line: serde_json::Value = export
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .find(|d| d["arm"] == "fallback")
        .expect("the fallback is in the log");
    assert_eq!(line["propensity"], 1.0);
    assert_eq!(line["offer_id"], "muffin");
    assert_eq!(line["context"], serde_json::json!({ "tier": "gold" }));

    // A fallback offer must be one of the campaign's.
    let err = offers
        .record_fallback(fallback("free_car", ""))
        .await
        .expect_err("unknown offer");
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(reason_of(&err), "UNKNOWN_OFFER");
}

/// A fallback's request id and a SelectOffer's live apart: a SelectOffer
/// may not use the fallbacks' prefix, so neither can replay the other.
#[tokio::test]
async fn a_select_never_replays_a_fallback() {
    let server = TestServer::start(Some(CONFIG), &[]);
    let mut offers = server.offers().await;
    let logged = offers
        .record_fallback(fallback("latte", "r1"))
        .await
        .expect("fallback")
        .into_inner();
    let mut req = select("f", &[("tier", "gold")]);
    req.customer_id = "kim".into();
    req.request_id = "fallback:r1".into();
    let err = offers.select_offer(req).await.expect_err("reserved prefix");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("reserved for RecordFallback"),
        "{err:?}"
    );
    // The same id for a SelectOffer is its own decision.
    let mut req = select("f", &[("tier", "gold")]);
    req.customer_id = "kim".into();
    req.request_id = "r1".into();
    let d = offers.select_offer(req).await.expect("select").into_inner();
    assert!(!d.replayed);
    assert_ne!(d.decision_id, logged.decision_id);
    assert_ne!(d.arm, "fallback");
}
