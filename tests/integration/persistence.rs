//! A restart restores everything acknowledged.

use crate::support::{TestServer, logistic_campaign_toml, number, redeem_batch, select};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_survive_a_restart() {
    let mut server = TestServer::start(None, &[]);
    let campaign = "coffee";
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
    let before = server.stats(campaign).await;
    assert_eq!(before.offers.iter().map(|o| o.decisions).sum::<u64>(), 300);
    assert!(before.cells.len() >= 6);
    server.restart();
    let after = server.stats(campaign).await;
    assert_eq!(before, after);
    // Decisions survive too: redeeming again is a recognized duplicate.
    let mut client = server.offers().await;
    let again = redeem_batch(&mut client, &redeemed).await;
    assert_eq!(again.duplicates as usize, redeemed.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contextual_models_survive_a_restart_bit_for_bit() {
    // A 30-day window: no decision's non-redemption is revealed while the
    // test runs (its first tick is 11 hours), so only redemptions are
    // learned, and the counts are exact.
    let config = logistic_campaign_toml("promo", &["x", "y"], "30d", &["a", "b", "c"]);
    let mut server = TestServer::start(Some(&config), &[]);
    let campaign = "promo";
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
    let before = server.stats(campaign).await;
    let observations: u64 = before.offers.iter().map(|o| o.model_observations).sum();
    // Each redeemed decision learned once, as a redemption (counted as a
    // decision and a redemption); the rest wait for their reveal.
    assert_eq!(observations, 2 * redeemed.len() as u64);
    assert!(
        before
            .offers
            .iter()
            .all(|o| o.mean_predicted_rate > 0.0 || o.decisions == 0)
    );
    server.restart();
    let after = server.stats(campaign).await;
    // f64 fields compared exactly: the posteriors were restored bit for bit.
    assert_eq!(before, after);
}

#[tokio::test]
async fn contextual_models_survive_kill_9_between_checkpoints() {
    // Posteriors are checkpointed every --checkpoint-interval (here only
    // when the test forces it); what was learned after the last
    // checkpoint is replayed from the decision records.
    // A 30-day window: nothing is revealed while the test runs; every
    // decision is redeemed, so each is one learning event.
    let config = logistic_campaign_toml("promo", &["x", "y"], "30d", &["a", "b", "c"]);
    // Checkpoints only when the test asks for one.
    let mut server = TestServer::start(
        Some(&config),
        &["--durable-decisions", "--checkpoint-interval", "1h"],
    );
    let campaign = "promo";
    let mut client = server.offers().await;
    // 200 learning events before the checkpoint, 100 after it; the learned
    // prior is re-estimated at the 256th, which replay must redo.
    for (phase, visits) in [(0, 200), (1, 100)] {
        let mut redeemed = Vec::new();
        for i in 0..visits {
            let t = ["x", "y"][i % 2];
            let d = client.select_offer(select("promo", &[("type", t)])).await;
            let d = d.expect("select").into_inner();
            redeemed.push(d.decision_id);
        }
        let out = redeem_batch(&mut client, &redeemed).await;
        assert_eq!(out.applied as usize, redeemed.len());
        if phase == 0 {
            // A checkpoint, so that the kill falls after one.
            server.checkpoint().await;
        }
    }
    let before = server.stats(campaign).await;
    let observations: u64 = before.offers.iter().map(|o| o.model_observations).sum();
    assert_eq!(observations, 2 * 300);
    // The learned prior was re-estimated once (after 256 events, later than
    // the checkpoint): replay has to redo it at the same event.
    assert_eq!(before.prior_events, 300);
    assert_eq!(
        before.feature_priors.len(),
        1,
        "{:?}",
        before.feature_priors
    );
    let learned = before.feature_priors[0].prior_variance;
    assert!(
        (learned - 0.1).abs() > 1e-6,
        "the prior was not re-estimated: {learned}"
    );
    server.kill();
    {
        // The test means something only if the kill fell after events that
        // no checkpoint includes: those must come back by replay.
        let store = offer_bandit::store::Store::open(server.data_dir()).expect("open store");
        let records = store.check_decisions().expect("decisions");
        assert_eq!(records, 300);
        let checkpoint = store.model_seq().expect("model seq");
        drop(store);
        assert_eq!(checkpoint, 200, "the checkpoint after phase 0");
        assert!(
            checkpoint < 256,
            "the checkpoint ({checkpoint}) already held the prior's re-estimation; it was not replayed"
        );
    }
    server.relaunch();
    let after = server.stats(campaign).await;
    // Bit for bit: replay applies the same updates in the same order.
    assert_eq!(before, after);

    // What replay restored must not be lost by the next checkpoint, even
    // for offers that learn nothing more: learn on offer a only, let a
    // checkpoint happen, kill -9 again.
    let mut client = server.offers().await;
    for round in 0..2 {
        let mut redeemed = Vec::new();
        for i in 0..10 {
            let mut req = select("promo", &[("type", ["x", "y"][i % 2])]);
            req.candidate_offer_ids = vec!["a".into()];
            let d = client.select_offer(req).await.expect("select");
            redeemed.push(d.into_inner().decision_id);
        }
        redeem_batch(&mut client, &redeemed).await;
        if round == 0 {
            server.checkpoint().await;
        }
    }
    let again = server.stats(campaign).await;
    drop(client);
    server.kill();
    server.relaunch();
    let restored = server.stats(campaign).await;
    assert_eq!(again, restored);
}

#[tokio::test]
async fn a_store_from_before_step_buckets_keeps_its_one_hot_models() {
    // A campaign stored before bucket encodings existed: its stored config
    // says nothing of `buckets`, and its posteriors were learned one-hot.
    // Made here by storing it one-hot and then deleting the word from the
    // stored config, as the older server wrote it.
    let campaign = |buckets: &str| {
        format!(
            "[[campaigns]]\nid = \"h\"\npolicy = \"logistic-ts\"\nreward_window = \"20d\"\n\
             [[campaigns.features]]\nkind = \"numeric\"\nname = \"hour\"\nmin = 0\nmax = 24\n\
             bins = [6, 11, 14, 18, 22]\n{buckets}\
             [[campaigns.offers]]\nid = \"a\"\n[[campaigns.offers]]\nid = \"b\"\n"
        )
    };
    // A 20-day window: its delay model reveals non-redemptions on ticks of
    // 7.5 hours, so none is revealed while the test runs and the stats
    // compared below move only if the models were not kept (with a 1-hour
    // window, a tick passed during a slow run and the compared counts moved).
    let mut server = TestServer::start(Some(&campaign("buckets = \"one-hot\"\n")), &[]);
    let mut client = server.offers().await;
    let mut redeemed = Vec::new();
    for i in 0..200 {
        let mut req = select("h", &[]);
        req.context.insert("hour".into(), number(f64::from(i % 24)));
        let d = client.select_offer(req).await.expect("select").into_inner();
        if i % 5 == 0 {
            redeemed.push(d.decision_id);
        }
    }
    redeem_batch(&mut client, &redeemed).await;
    drop(client);
    let before = server.stats("h").await;
    assert!(before.offers.iter().all(|o| o.model_observations > 0));
    server.stop();
    {
        let store = offer_bandit::store::Store::open(server.data_dir()).expect("open store");
        let (_, mut stored) = store
            .load_configs()
            .expect("configs")
            .into_iter()
            .find(|(c, _)| c == "h")
            .expect("stored config");
        assert!(
            stored.toml.contains("buckets = \"one-hot\""),
            "{}",
            stored.toml
        );
        stored.toml = stored.toml.replace("buckets = \"one-hot\"\n", "");
        let mut writes = offer_bandit::store::WriteSet::default();
        writes.put_config("h", &stored);
        store.commit(writes).expect("commit");
        store.flush().expect("flush");
    }
    // The file as it was then, with nothing about buckets, edited so that
    // it is read as a new revision: the campaign keeps one-hot buckets and
    // every posterior (a steps encoding would not even have their dimension).
    server.rewrite_config(
        &campaign("").replace("reward_window = \"20d\"", "reward_window = \"21d\""),
    );
    server.relaunch();
    let after = server.stats("h").await;
    assert_eq!(before.offers, after.offers);
    let config = server
        .admin()
        .await
        .get_campaign_config(offer_bandit::proto::GetCampaignConfigRequest {
            campaign: "h".into(),
        })
        .await
        .expect("config")
        .into_inner();
    assert!(
        config.config_toml.contains("buckets = \"one-hot\""),
        "{}",
        config.config_toml
    );
    assert!(
        config.config_toml.contains("reward_window = \"21days\""),
        "{}",
        config.config_toml
    );

    // Older still: models stored before configs were (no stored config at
    // all). The file's campaign takes them over, one-hot too.
    server.stop();
    {
        let db = sled::open(server.data_dir()).expect("open sled");
        let tree = db.open_tree("offer-bandit").expect("tree");
        assert!(
            tree.remove(b"k/h").expect("remove").is_some(),
            "the stored config"
        );
        db.flush().expect("flush");
    }
    server.relaunch();
    assert_eq!(server.stats("h").await.offers, before.offers);
}
