//! Every malformed request gets a specific status and a message, and the
//! server keeps serving.

use offer_bandit::proto::{
    ExportDecisionsRequest, FeatureValue, ForgetCustomerRequest, GetCampaignStatsRequest,
    RecordRedemptionRequest, SelectOfferRequest,
};
use tonic::Code;

use crate::support::{TestServer, category, number, select};

enum Bad {
    Select(SelectOfferRequest),
    Redeem(RecordRedemptionRequest),
    Stats(GetCampaignStatsRequest),
    Export(ExportDecisionsRequest),
    Forget(ForgetCustomerRequest),
}

fn with(mut r: SelectOfferRequest, f: impl FnOnce(&mut SelectOfferRequest)) -> Bad {
    f(&mut r);
    Bad::Select(r)
}

#[tokio::test]
async fn bad_inputs_get_specific_statuses() {
    let server = TestServer::start(None, &[]);
    let mut client = server.offers().await;
    let mut admin = server.admin().await;
    let good = || {
        select(
            "coffee",
            &[("lifecycle", "active"), ("daypart", "afternoon")],
        )
    };
    let decision = client
        .select_offer(good())
        .await
        .expect("select")
        .into_inner();
    let redeem = |id: &str| RecordRedemptionRequest {
        decision_id: id.into(),
        ..Default::default()
    };
    let unknown_id = "0".repeat(32);

    let cases: Vec<(&str, Bad, Code, &str)> = vec![
        (
            "empty campaign",
            with(good(), |r| r.campaign.clear()),
            Code::InvalidArgument,
            "campaign is required",
        ),
        (
            "unknown campaign",
            with(good(), |r| r.campaign = "tea".into()),
            Code::NotFound,
            "unknown campaign 'tea'",
        ),
        (
            "campaign with bad characters",
            with(good(), |r| r.campaign = "cof fee".into()),
            Code::InvalidArgument,
            "letters",
        ),
        (
            "unknown candidate",
            with(good(), |r| r.candidate_offer_ids = vec!["free_car".into()]),
            Code::NotFound,
            "unknown offer 'free_car'",
        ),
        (
            "malformed candidate",
            with(good(), |r| r.candidate_offer_ids = vec!["".into()]),
            Code::InvalidArgument,
            "not an offer id",
        ),
        (
            "NaN feature",
            with(good(), |r| {
                r.context.insert("spend".into(), number(f64::NAN));
            }),
            Code::InvalidArgument,
            "must be finite",
        ),
        (
            "infinite feature",
            with(good(), |r| {
                r.context.insert("spend".into(), number(f64::INFINITY));
            }),
            Code::InvalidArgument,
            "must be finite",
        ),
        (
            "feature without a value",
            with(good(), |r| {
                r.context
                    .insert("spend".into(), FeatureValue { kind: None });
            }),
            Code::InvalidArgument,
            "has no value",
        ),
        (
            "numeric segment feature",
            with(good(), |r| {
                r.context.insert("lifecycle".into(), number(3.0));
            }),
            Code::InvalidArgument,
            "segment feature",
        ),
        (
            "separator in segment value",
            with(good(), |r| {
                r.context.insert("lifecycle".into(), category("a|b"));
            }),
            Code::InvalidArgument,
            "must not contain '|'",
        ),
        (
            "oversized category",
            with(good(), |r| {
                r.context.insert("note".into(), category(&"x".repeat(300)));
            }),
            Code::InvalidArgument,
            "at most 256 bytes",
        ),
        (
            "oversized feature name",
            with(good(), |r| {
                r.context.insert("n".repeat(65), category("x"));
            }),
            Code::InvalidArgument,
            "feature names",
        ),
        (
            "too many features",
            with(good(), |r| {
                for i in 0..70 {
                    r.context.insert(format!("f{i}"), number(1.0));
                }
            }),
            Code::InvalidArgument,
            "at most 64",
        ),
        (
            "too many candidates",
            with(good(), |r| {
                r.candidate_offer_ids = (0..300).map(|i| format!("o{i}")).collect()
            }),
            Code::InvalidArgument,
            "at most 256",
        ),
        (
            "oversized request id",
            with(good(), |r| r.request_id = "r".repeat(200)),
            Code::InvalidArgument,
            "request_id",
        ),
        (
            "oversized customer id",
            with(good(), |r| r.customer_id = "c".repeat(200)),
            Code::InvalidArgument,
            "customer_id",
        ),
        (
            "empty decision id",
            Bad::Redeem(redeem("")),
            Code::InvalidArgument,
            "decision_id is required",
        ),
        (
            "malformed decision id",
            Bad::Redeem(redeem("not-a-decision")),
            Code::InvalidArgument,
            "56 hex digits",
        ),
        (
            "unknown decision id",
            Bad::Redeem(redeem(&unknown_id)),
            Code::NotFound,
            "no such decision",
        ),
        (
            "negative value",
            Bad::Redeem(RecordRedemptionRequest {
                value: Some(-1.0),
                ..redeem(&decision.decision_id)
            }),
            Code::InvalidArgument,
            "must be a number from 0 to",
        ),
        (
            "absurd value",
            Bad::Redeem(RecordRedemptionRequest {
                value: Some(1e200),
                ..redeem(&decision.decision_id)
            }),
            Code::InvalidArgument,
            "must be a number from 0 to 1000000000",
        ),
        (
            "NaN value",
            Bad::Redeem(RecordRedemptionRequest {
                value: Some(f64::NAN),
                ..redeem(&decision.decision_id)
            }),
            Code::InvalidArgument,
            "must be a number from 0 to",
        ),
        (
            "wrong offer for the decision",
            Bad::Redeem(RecordRedemptionRequest {
                offer_id: "not_this_one".into(),
                ..redeem(&decision.decision_id)
            }),
            Code::InvalidArgument,
            "is not the offer this decision chose",
        ),
        (
            "stats without campaign",
            Bad::Stats(GetCampaignStatsRequest {
                campaign: String::new(),
            }),
            Code::InvalidArgument,
            "campaign is required",
        ),
        (
            "stats of unknown campaign",
            Bad::Stats(GetCampaignStatsRequest {
                campaign: "tea".into(),
            }),
            Code::NotFound,
            "unknown campaign",
        ),
        (
            "contextual campaign: number where a category is declared",
            with(select("coffee-personal", &[("lifecycle", "active")]), |r| {
                r.context.insert("spend_tier".into(), number(3.0));
            }),
            Code::InvalidArgument,
            "feature 'spend_tier' must be a category",
        ),
        (
            "contextual campaign: category where a number is declared",
            with(select("coffee-personal", &[("hour", "afternoon")]), |_| {}),
            Code::InvalidArgument,
            "feature 'hour' must be a number",
        ),
        (
            "export without campaign",
            Bad::Export(ExportDecisionsRequest::default()),
            Code::InvalidArgument,
            "campaign is required",
        ),
        (
            "export of unknown campaign",
            Bad::Export(ExportDecisionsRequest {
                campaign: "tea".into(),
                ..Default::default()
            }),
            Code::NotFound,
            "unknown campaign",
        ),
        (
            "export with negative time",
            Bad::Export(ExportDecisionsRequest {
                campaign: "coffee".into(),
                since_unix_ms: -5,
                ..Default::default()
            }),
            Code::InvalidArgument,
            "must be >= 0",
        ),
        (
            "export with an empty time range",
            Bad::Export(ExportDecisionsRequest {
                campaign: "coffee".into(),
                since_unix_ms: 2_000,
                until_unix_ms: 1_000,
            }),
            Code::InvalidArgument,
            "until_unix_ms must be after",
        ),
        (
            "forget without a customer id",
            Bad::Forget(ForgetCustomerRequest::default()),
            Code::InvalidArgument,
            "customer_id is required",
        ),
        (
            "forget with an oversized customer id",
            Bad::Forget(ForgetCustomerRequest {
                customer_id: "c".repeat(129),
            }),
            Code::InvalidArgument,
            "customer_id is at most 128 bytes",
        ),
        (
            "stats of a campaign with bad characters",
            Bad::Stats(GetCampaignStatsRequest {
                campaign: "no spaces".into(),
            }),
            Code::NotFound,
            "unknown campaign",
        ),
    ];
    assert!(cases.len() >= 30, "{} cases", cases.len());
    for (name, case, code, needle) in cases {
        let status = match case {
            Bad::Select(r) => client.select_offer(r).await.map(|_| ()),
            Bad::Redeem(r) => client.record_redemption(r).await.map(|_| ()),
            Bad::Stats(r) => admin.get_campaign_stats(r).await.map(|_| ()),
            Bad::Export(r) => admin.export_decisions(r).await.map(|_| ()),
            Bad::Forget(r) => admin.forget_customer(r).await.map(|_| ()),
        }
        .expect_err(name);
        assert_eq!(status.code(), code, "{name}: {status:?}");
        assert!(
            status.message().contains(needle),
            "{name}: message {:?} lacks {needle:?}",
            status.message()
        );
        // The server still serves a good request.
        client
            .select_offer(good())
            .await
            .unwrap_or_else(|e| panic!("after {name}: {e:?}"));
    }
    // The decision used above was never redeemed by the bad requests.
    let ok = client
        .record_redemption(redeem(&decision.decision_id))
        .await
        .expect("redeem")
        .into_inner();
    assert!(!ok.already_recorded);
}
