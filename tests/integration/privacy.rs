//! Privacy operations: a customer's right of access (`offer-bandit access`)
//! and consent on SelectOffer (no consent: the non-personalized offer and no
//! customer-linked record).

use serde_json::Value;

use crate::support::{TestServer, offer_bandit_cli, redeem, select};

fn access(server: &TestServer, customer: &str) -> Value {
    let out = offer_bandit_cli(&[
        "access",
        "--server",
        &server.url(),
        "--customer-id",
        customer,
    ]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn export(server: &TestServer) -> Vec<Value> {
    offer_bandit_cli(&["export", "--server", &server.url(), "--campaign", "coffee"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test]
async fn access_shows_everything_stored_about_a_customer_and_forget_empties_it() {
    let server = TestServer::start(None, &[]);
    let mut offers = server.offers().await;
    let mut kim = select("coffee", &[("lifecycle", "lapsing")]);
    kim.customer_id = "kim".into();
    kim.request_id = "visit-1".into();
    let first = offers
        .select_offer(kim.clone())
        .await
        .expect("select")
        .into_inner();
    kim.request_id = "visit-2".into();
    offers.select_offer(kim).await.expect("select");
    let mut lee = select("coffee", &[("lifecycle", "new")]);
    lee.customer_id = "lee".into();
    offers.select_offer(lee).await.expect("select");
    offers
        .record_redemption(redeem(&first.decision_id))
        .await
        .expect("redeem");

    let doc = access(&server, "kim");
    assert_eq!(doc["customer_id"], "kim");
    let hash = doc["stored_as"]["customer_hash"].as_str().expect("hash");
    assert_eq!(hash.len(), 64, "{doc}");
    let decisions = doc["decisions"].as_array().expect("decisions");
    assert_eq!(decisions.len(), 2, "kim's two decisions, not lee's: {doc}");
    assert_eq!(decisions[0]["decision_id"], first.decision_id.as_str());
    assert_eq!(decisions[0]["outcome"], "redeemed");
    assert_eq!(decisions[0]["request_id"], "visit-1");
    assert_eq!(decisions[0]["context"]["lifecycle"], "lapsing");
    assert_eq!(decisions[1]["outcome"], "pending");
    assert_eq!(access(&server, "nobody")["decisions"], Value::Array(vec![]));

    offer_bandit_cli(&["forget", "--server", &server.url(), "--customer-id", "kim"]);
    assert_eq!(access(&server, "kim")["decisions"], Value::Array(vec![]));
    assert_eq!(
        access(&server, "lee")["decisions"].as_array().map(Vec::len),
        Some(1)
    );
}

#[tokio::test]
async fn without_consent_the_offer_is_not_personalized_and_nothing_is_linked() {
    let server = TestServer::start(None, &[]);
    let mut offers = server.offers().await;
    let mut req = select("coffee", &[("lifecycle", "lapsing")]);
    req.customer_id = "kim".into();

    // Unset (an old client) and true: personalized, as before.
    for consent in [None, Some(true)] {
        req.personalization_consent = consent;
        let r = offers
            .select_offer(req.clone())
            .await
            .expect("select")
            .into_inner();
        // Personalized as before: kim's group (bandit, or control for one
        // customer in ten, by the server's random customer key).
        assert!(
            r.arm == "bandit" || r.arm == "control",
            "consent {consent:?}: {}",
            r.arm
        );
    }
    assert_eq!(
        access(&server, "kim")["decisions"].as_array().map(Vec::len),
        Some(2)
    );

    req.personalization_consent = Some(false);
    let r = offers.select_offer(req).await.expect("select").into_inner();
    assert_eq!(r.arm, "non_personalized");
    assert!(
        r.segment.is_empty() || !r.segment.contains("lapsing"),
        "{r:?}"
    );
    // Its redemption still counts...
    let redeemed = offers
        .record_redemption(redeem(&r.decision_id))
        .await
        .expect("redeem")
        .into_inner();
    assert!(!redeemed.already_recorded);
    // ...but nothing links it to kim: access finds only the two consented
    // decisions, and the stored record has no context.
    assert_eq!(
        access(&server, "kim")["decisions"].as_array().map(Vec::len),
        Some(2)
    );
    let log = export(&server);
    let stored = log
        .iter()
        .find(|d| d["decision_id"] == r.decision_id.as_str())
        .expect("the decision is in the log");
    assert_eq!(stored["arm"], "non_personalized");
    assert_eq!(
        stored["context"],
        Value::Object(Default::default()),
        "{stored}"
    );
    assert_eq!(stored["outcome"], "redeemed");
    // Erasing kim leaves it: it was never kim's.
    offer_bandit_cli(&["forget", "--server", &server.url(), "--customer-id", "kim"]);
    assert!(
        export(&server)
            .iter()
            .any(|d| d["decision_id"] == r.decision_id.as_str())
    );
}

/// A decision made without consent teaches the model nothing about the
/// context it did not keep: segment-ts counts it (for budgets) in a segment
/// of its own that no visit samples, and a contextual campaign's posteriors
/// do not move; the offer's decision count still includes it.
#[tokio::test]
async fn without_consent_nothing_is_learned_about_an_empty_context() {
    let server = TestServer::start(None, &[]);
    let mut offers = server.offers().await;
    for campaign in ["coffee", "coffee-personal"] {
        let before = server.stats(campaign).await;
        let mut req = select(campaign, &[("lifecycle", "lapsing")]);
        req.personalization_consent = Some(false);
        let d = offers.select_offer(req).await.expect("select").into_inner();
        offers
            .record_redemption(redeem(&d.decision_id))
            .await
            .expect("redeem");
        let after = server.stats(campaign).await;
        let decisions = |s: &offer_bandit::proto::GetCampaignStatsResponse| -> u64 {
            s.offers.iter().map(|o| o.decisions).sum()
        };
        assert_eq!(decisions(&after), decisions(&before) + 1, "{campaign}");
        let observations = |s: &offer_bandit::proto::GetCampaignStatsResponse| -> u64 {
            s.offers.iter().map(|o| o.model_observations).sum()
        };
        assert_eq!(observations(&after), observations(&before), "{campaign}");
        if campaign == "coffee" {
            let trials = |s: &offer_bandit::proto::GetCampaignStatsResponse, seg: &str| -> u64 {
                s.cells
                    .iter()
                    .filter(|c| c.segment == seg)
                    .map(|c| c.trials)
                    .sum()
            };
            assert_eq!(trials(&after, "(non-personalized)"), 1, "{:?}", after.cells);
            let learned: u64 = after
                .cells
                .iter()
                .filter(|c| c.segment != "(non-personalized)")
                .map(|c| c.trials)
                .sum();
            assert_eq!(
                learned, 0,
                "no visit's segment learned it: {:?}",
                after.cells
            );
        }
    }
}
