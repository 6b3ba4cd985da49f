//! A restart restores everything acknowledged.

use offer_bandit::proto::GetCampaignStatsRequest;

use crate::support::{TestServer, logistic_campaign_toml, redeem_batch, select};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_survive_a_restart() {
    let mut server = TestServer::start(None, &[]);
    let ask = || GetCampaignStatsRequest {
        campaign: "coffee".into(),
    };
    let mut redeemed = Vec::new();
    {
        let mut client = server.offers().await;
        for i in 0..300 {
            let life = ["new", "active", "lapsing"][i % 3];
            let part = ["morning", "afternoon"][i % 2];
            let d = client
                .select_offer(select("coffee", &[("lifecycle", life), ("daypart", part)]))
                .await;
            let d = d.expect("select").into_inner();
            if i % 4 == 0 {
                redeemed.push(d.decision_id);
            }
        }
        let out = redeem_batch(&mut client, &redeemed).await;
        assert_eq!(out.applied as usize, redeemed.len());
    }
    let before = server
        .admin()
        .await
        .get_campaign_stats(ask())
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(before.offers.iter().map(|o| o.decisions).sum::<u64>(), 300);
    assert!(before.cells.len() >= 6);
    server.restart();
    let after = server
        .admin()
        .await
        .get_campaign_stats(ask())
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(before, after);
    // Decisions survive too: redeeming again is a recognized duplicate.
    let mut client = server.offers().await;
    let again = redeem_batch(&mut client, &redeemed).await;
    assert_eq!(again.duplicates as usize, redeemed.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contextual_models_survive_a_restart_bit_for_bit() {
    let config = logistic_campaign_toml("promo", &["x", "y"], "1h", &["a", "b", "c"]);
    let mut server = TestServer::start(Some(&config), &[]);
    let ask = || GetCampaignStatsRequest {
        campaign: "promo".into(),
    };
    let mut redeemed = Vec::new();
    {
        let mut client = server.offers().await;
        for i in 0..200 {
            let t = ["x", "y"][i % 2];
            let d = client.select_offer(select("promo", &[("type", t)])).await;
            let d = d.expect("select").into_inner();
            if i % 3 == 0 {
                redeemed.push(d.decision_id);
            }
        }
        let out = redeem_batch(&mut client, &redeemed).await;
        assert_eq!(out.applied as usize, redeemed.len());
    }
    let before = server
        .admin()
        .await
        .get_campaign_stats(ask())
        .await
        .expect("stats")
        .into_inner();
    let observations: u64 = before.offers.iter().map(|o| o.model_observations).sum();
    // One observation per decision plus one per redemption.
    assert_eq!(observations, 200 + redeemed.len() as u64);
    assert!(
        before
            .offers
            .iter()
            .all(|o| o.mean_predicted_rate > 0.0 || o.decisions == 0)
    );
    server.restart();
    let after = server
        .admin()
        .await
        .get_campaign_stats(ask())
        .await
        .expect("stats")
        .into_inner();
    // f64 fields compared exactly: the posteriors were restored bit for bit.
    assert_eq!(before, after);
}
