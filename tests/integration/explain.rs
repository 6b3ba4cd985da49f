//! SelectOffer { explain: true }: every offer's estimate for the visit, and
//! why any offer was excluded.

use crate::support::{TestServer, campaign_toml, logistic_campaign_toml, redeem, select};

#[tokio::test]
async fn explanations_show_estimates_probabilities_and_exclusions() {
    let config = campaign_toml("e", &[], "1h", &["good", "bad1", "bad2", "bad3"]);
    let server = TestServer::start(Some(&config), &[]);
    let mut offers = server.offers().await;
    // Teach it: "good" redeems, the others do not.
    for _ in 0..300 {
        let d = offers
            .select_offer(select("e", &[]))
            .await
            .expect("select")
            .into_inner();
        if d.offer_id == "good" {
            offers
                .record_redemption(redeem(&d.decision_id))
                .await
                .expect("redeem");
        }
    }
    let plain = offers
        .select_offer(select("e", &[]))
        .await
        .expect("select")
        .into_inner();
    assert!(plain.explanation.is_empty(), "only on request");

    let mut req = select("e", &[]);
    req.explain = true;
    req.candidate_offer_ids = vec!["good".into(), "bad1".into()];
    let d = offers.select_offer(req).await.expect("select").into_inner();
    let ids: Vec<&str> = d.explanation.iter().map(|e| e.offer_id.as_str()).collect();
    assert_eq!(ids, ["bad1", "bad2", "bad3", "good"]);
    let by = |id: &str| {
        d.explanation
            .iter()
            .find(|e| e.offer_id == id)
            .expect("offer")
    };
    for id in ["bad2", "bad3"] {
        let e = by(id);
        assert!(e.excluded_reason.contains("candidate_offer_ids"), "{e:?}");
        assert_eq!(e.probability, 0.0);
        assert!(e.redemption_rate.is_none());
    }
    let (good, bad) = (by("good"), by("bad1"));
    assert!(good.excluded_reason.is_empty() && bad.excluded_reason.is_empty());
    let g = good.redemption_rate.expect("rate");
    let b = bad.redemption_rate.expect("rate");
    assert!(g.low < g.value && g.value < g.high && b.low < b.value && b.value < b.high);
    assert!(g.value > 0.5 && g.value > b.value, "good {g:?}, bad {b:?}");
    let v = good.value.expect("value");
    assert!((v.value - g.value).abs() < 1e-12, "value 1 per redemption");
    assert!((good.probability + bad.probability - 1.0).abs() < 0.01);
    assert!(good.probability > 0.9, "{}", good.probability);
}

#[tokio::test]
async fn contextual_explanations_are_rates_with_intervals() {
    let config = logistic_campaign_toml("k", &["x", "y"], "1h", &["a", "b", "c"]);
    let server = TestServer::start(Some(&config), &[]);
    let mut offers = server.offers().await;
    for i in 0..100 {
        let t = ["x", "y"][i % 2];
        let d = offers
            .select_offer(select("k", &[("type", t)]))
            .await
            .expect("select")
            .into_inner();
        if (t == "x") == (d.offer_id == "a") {
            offers
                .record_redemption(redeem(&d.decision_id))
                .await
                .expect("redeem");
        }
    }
    let mut req = select("k", &[("type", "x")]);
    req.explain = true;
    let d = offers.select_offer(req).await.expect("select").into_inner();
    assert_eq!(d.explanation.len(), 3);
    let mut total = 0.0;
    for e in &d.explanation {
        let r = e.redemption_rate.expect("rate");
        assert!(
            0.0 <= r.low && r.low <= r.value && r.value <= r.high,
            "{e:?}"
        );
        total += e.probability;
    }
    assert!((total - 1.0).abs() < 0.01, "probabilities sum to {total}");
}
