//! The error contract (docs/errors.md): every refusal the real server sends
//! carries a `google.rpc.ErrorInfo` whose reason is stable and whose code
//! is the table's.

use std::time::Duration;

use offer_bandit::proto::{self, RecordRedemptionRequest};
use tonic::Code;
use tonic_types::StatusExt;

use crate::support::{Offers, TestServer, number, redeem, select};

const TOKEN: &str = "error-contract-token-0123456789abcdef";

/// The ErrorInfo reason of `status`, checking its domain.
pub fn reason_of(status: &tonic::Status) -> String {
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "offer-bandit", "{status:?}");
    info.reason
}

fn assert_refused(status: &tonic::Status, code: Code, reason: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason_of(status), reason, "{status:?}");
}

fn config() -> String {
    "[[campaigns]]\nid = \"e\"\npolicy = \"segment-ts\"\nreward_window = \"1s\"\n\
     [[campaigns.offers]]\nid = \"a\"\nmax_decisions = 1\n\
     [[campaigns.offers]]\nid = \"b\"\n"
        .to_owned()
}

fn with_token<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {TOKEN}").parse().expect("ascii"),
    );
    r
}

async fn decide(
    offers: &mut Offers,
    f: impl FnOnce(&mut proto::SelectOfferRequest),
) -> tonic::Status {
    let mut req = select("e", &[]);
    f(&mut req);
    offers.select_offer(req).await.expect_err("refused")
}

#[tokio::test]
async fn every_refusal_carries_its_reason() {
    let tmp = tempfile::tempdir().expect("tmp");
    let token = tmp.path().join("token");
    std::fs::write(&token, TOKEN).expect("token");
    let server = TestServer::start(
        Some(&config()),
        &[
            "--max-stream",
            "2",
            "--auth-token-file",
            &token.display().to_string(),
        ],
    );
    let mut offers = server.offers().await;
    let mut admin = server.admin().await;

    let s = decide(&mut offers, |r| r.campaign.clear()).await;
    assert_refused(&s, Code::InvalidArgument, "INVALID_ARGUMENT");
    let s = decide(&mut offers, |r| {
        r.context.insert("spend".into(), number(f64::NAN));
    })
    .await;
    assert_refused(&s, Code::InvalidArgument, "INVALID_CONTEXT");
    let s = decide(&mut offers, |r| r.campaign = "tea".into()).await;
    assert_refused(&s, Code::NotFound, "UNKNOWN_CAMPAIGN");
    let s = decide(&mut offers, |r| {
        r.candidate_offer_ids = vec!["free_car".into()]
    })
    .await;
    assert_refused(&s, Code::NotFound, "UNKNOWN_OFFER");

    // Offer a's budget is one decision: the second is BUDGET_EXHAUSTED,
    // a code no standard retry policy retries.
    let mut only_a = select("e", &[]);
    only_a.candidate_offer_ids = vec!["a".into()];
    let first = offers
        .select_offer(only_a.clone())
        .await
        .expect("within budget")
        .into_inner();
    let s = offers.select_offer(only_a).await.expect_err("spent");
    assert_refused(&s, Code::FailedPrecondition, "BUDGET_EXHAUSTED");

    let mut reused = select("e", &[]);
    reused.request_id = "r-1".into();
    reused.customer_id = "kim".into();
    offers
        .select_offer(reused.clone())
        .await
        .expect("first use");
    reused.customer_id = "lee".into();
    let s = offers.select_offer(reused).await.expect_err("reused");
    assert_refused(&s, Code::AlreadyExists, "REQUEST_ID_REUSED");

    // An id whose MAC does not check out is as unknown as one never made.
    let mut forged = first.decision_id.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).expect("hex");
    let s = offers
        .record_redemption(redeem(&forged))
        .await
        .expect_err("unknown");
    assert_refused(&s, Code::NotFound, "DECISION_NOT_FOUND");

    // A stream item's reason is in its result.
    let batch = offers
        .record_redemptions(tokio_stream::iter(vec![redeem(&forged)]))
        .await
        .expect("stream")
        .into_inner();
    assert_eq!(batch.results[0].reason, "DECISION_NOT_FOUND");
    assert_eq!(batch.results[0].code, Code::NotFound as i32);
    let s = offers
        .record_redemptions(tokio_stream::iter(vec![
            RecordRedemptionRequest::default(),
            RecordRedemptionRequest::default(),
            RecordRedemptionRequest::default(),
        ]))
        .await
        .expect_err("over --max-stream");
    assert_refused(&s, Code::InvalidArgument, "STREAM_TOO_LONG");

    // The reward window is 1 s.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let s = offers
        .record_redemption(redeem(&first.decision_id))
        .await
        .expect_err("late");
    assert_refused(&s, Code::FailedPrecondition, "REDEMPTION_LATE");

    let s = admin
        .list_campaigns(proto::ListCampaignsRequest {})
        .await
        .expect_err("no token");
    assert_refused(&s, Code::Unauthenticated, "UNAUTHENTICATED");

    let current = admin
        .get_campaign_config(with_token(proto::GetCampaignConfigRequest {
            campaign: "e".into(),
        }))
        .await
        .expect("config")
        .into_inner();
    let s = admin
        .put_campaign(with_token(proto::PutCampaignRequest {
            config_toml: current.config_toml,
            expected_revision: Some(current.revision + 5),
        }))
        .await
        .expect_err("stale revision");
    assert_refused(&s, Code::Aborted, "REVISION_CONFLICT");

    admin
        .set_campaign_status(with_token(proto::SetCampaignStatusRequest {
            campaign: "e".into(),
            status: "paused".into(),
        }))
        .await
        .expect("pause");
    let s = decide(&mut offers, |_| {}).await;
    assert_refused(&s, Code::FailedPrecondition, "CAMPAIGN_NOT_SERVING");
}
