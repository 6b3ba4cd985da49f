//! Budgets, daily pacing and frequency caps: an exhausted offer is no longer
//! chosen, the reason is explained, and nothing left is FAILED_PRECONDITION (BUDGET_EXHAUSTED).

use tonic::Code;

use crate::support::{Offers, TestServer, redeem, select};

fn campaign(extra: &str, a: &str) -> String {
    format!(
        "[[campaigns]]\nid = \"b\"\npolicy = \"segment-ts\"\nreward_window = \"1h\"\n{extra}\n\
         [[campaigns.offers]]\nid = \"a\"\n{a}\n[[campaigns.offers]]\nid = \"other\"\n"
    )
}

/// SelectOffer with candidates `ids`, for `customer` if given.
async fn pick(
    offers: &mut Offers,
    ids: &[&str],
    customer: Option<&str>,
) -> Result<String, tonic::Status> {
    let mut req = select("b", &[]);
    req.candidate_offer_ids = ids.iter().map(|s| s.to_string()).collect();
    req.customer_id = customer.unwrap_or_default().to_owned();
    offers
        .select_offer(req)
        .await
        .map(|r| r.into_inner().decision_id)
}

#[tokio::test]
async fn lifetime_decision_and_redemption_budgets() {
    let server = TestServer::start(Some(&campaign("", "max_decisions = 5")), &[]);
    let mut offers = server.offers().await;
    for _ in 0..5 {
        pick(&mut offers, &["a"], None)
            .await
            .expect("within budget");
    }
    let err = pick(&mut offers, &["a"], None).await.expect_err("spent");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("decision budget spent: 5 of 5"),
        "{}",
        err.message()
    );
    // With another candidate, the other one is chosen, and explain says why.
    let mut req = select("b", &[]);
    req.explain = true;
    let d = offers.select_offer(req).await.expect("select").into_inner();
    assert_eq!(d.offer_id, "other");
    let a = d.explanation.iter().find(|e| e.offer_id == "a").expect("a");
    assert!(a.excluded_reason.contains("decision budget"), "{a:?}");
    assert_eq!(a.probability, 0.0);
    let report = server
        .admin()
        .await
        .get_campaign_report(offer_bandit::proto::GetCampaignReportRequest {
            campaign: "b".into(),
        })
        .await
        .expect("report")
        .into_inner();
    let left = |id: &str| {
        let o = report
            .offers
            .iter()
            .find(|o| o.offer_id == id)
            .expect("offer");
        (o.decisions_left, o.redemptions_left)
    };
    assert_eq!(
        left("a"),
        (Some(0), None),
        "the report shows the budget left"
    );
    assert_eq!(left("other"), (None, None));
    drop(server);

    let server = TestServer::start(Some(&campaign("", "max_redemptions = 3")), &[]);
    let mut offers = server.offers().await;
    for _ in 0..3 {
        let id = pick(&mut offers, &["a"], None)
            .await
            .expect("within budget");
        offers.record_redemption(redeem(&id)).await.expect("redeem");
    }
    let err = pick(&mut offers, &["a"], None).await.expect_err("spent");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message()
            .contains("redemption budget spent: 3 redeemed"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn daily_budgets_are_paced_and_survive_a_restart() {
    let cap = 40;
    let mut server = TestServer::start(
        Some(&campaign("", &format!("max_decisions_per_day = {cap}"))),
        &[],
    );
    let mut offers = server.offers().await;
    let allowed_now = || {
        let pace = offer_bandit::Pace::flat_utc(offer_bandit::now_ms());
        offer_bandit::paced_allowance(cap, &pace)
    };
    let before = allowed_now();
    let mut made = 0;
    while pick(&mut offers, &["a"], None).await.is_ok() {
        made += 1;
        assert!(made <= cap, "the daily cap must hold");
    }
    let after = allowed_now();
    // Paced: what this time of day allows (it may tick up during the test).
    assert!(
        (before..=after).contains(&made),
        "{made} made, {before}..{after} allowed"
    );
    drop(offers);
    server.restart();
    let mut offers = server.offers().await;
    let err = pick(&mut offers, &["a"], None)
        .await
        .expect_err("still spent after a restart");
    assert!(
        err.message().contains("daily decision budget paced"),
        "{}",
        err.message()
    );
}

/// A campaign in New York is paced over New York's day: at any hour, as
/// many decisions as that share of New York's day allows (not the UTC
/// day's, four or five hours further on), and the report and check-config
/// say so in local time.
#[tokio::test]
async fn daily_budgets_are_paced_over_the_campaigns_local_day() {
    use offer_bandit::budget::{LocalTime, Pace, TrafficProfile, paced_allowance};
    let cap = 240;
    let zone = "America/New_York";
    let config = campaign(
        &format!("time_zone = \"{zone}\""),
        &format!("max_decisions_per_day = {cap}"),
    );
    let server = TestServer::start(Some(&config), &[]);
    let mut offers = server.offers().await;
    let ny = LocalTime::parse(zone).expect("zone");
    let allowed = |local: &LocalTime| {
        let now = offer_bandit::now_ms();
        paced_allowance(
            cap,
            &Pace::at(now, local, &TrafficProfile::new(local.name())),
        )
    };
    let (before, utc_before) = (allowed(&ny), allowed(&LocalTime::utc()));
    let mut made = 0;
    while pick(&mut offers, &["a"], None).await.is_ok() {
        made += 1;
        assert!(made <= cap, "the daily cap must hold");
    }
    let (after, utc_after) = (allowed(&ny), allowed(&LocalTime::utc()));
    assert!(
        (before..=after).contains(&made),
        "{made} made, {before}..{after} allowed by New York's day"
    );
    // New York's day is 4 or 5 hours behind UTC's: 40 or 50 of 240 apart
    // (less only when the UTC allowance is already the whole cap).
    assert!(
        !(utc_before..=utc_after).contains(&made) || utc_before == cap,
        "{made} made, as the UTC day ({utc_before}..{utc_after}) would allow"
    );
    let report = server
        .admin()
        .await
        .get_campaign_report(offer_bandit::proto::GetCampaignReportRequest {
            campaign: "b".into(),
        })
        .await
        .expect("report")
        .into_inner();
    let pacing = report.pacing.expect("pacing");
    assert_eq!(pacing.time_zone, zone);
    assert!(
        pacing.local_time.ends_with(" EST") || pacing.local_time.ends_with(" EDT"),
        "{pacing:?}"
    );
    assert!(
        !pacing.learned && pacing.profile.contains("flat"),
        "{pacing:?}"
    );
    let a = report.offers.iter().find(|o| o.offer_id == "a").expect("a");
    assert_eq!(a.budget_status, "paced", "{a:?}");
    assert!(
        a.decisions_allowed_by_now
            .is_some_and(|n| (before..=after + 1).contains(&n)),
        "{a:?}"
    );
    drop(offers);
    drop(server);

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, &config).expect("write");
    let out = crate::support::offer_bandit_cli(&["check-config", path.to_str().expect("path")]);
    assert!(out.contains("time zone: America/New_York"), "{out}");
    std::fs::write(&path, campaign("time_zone = \"Mars/Olympus\"", "")).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_offer-bandit"))
        .args(["check-config", path.to_str().expect("path")])
        .output()
        .expect("check-config");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("time_zone") && err.contains("Mars/Olympus"),
        "{err}"
    );
}

#[tokio::test]
async fn frequency_caps_limit_each_customer() {
    let config = campaign("frequency_cap = { max = 2, period = \"1h\" }", "");
    let server = TestServer::start(Some(&config), &[]);
    let mut offers = server.offers().await;
    for _ in 0..2 {
        pick(&mut offers, &["a"], Some("ann"))
            .await
            .expect("under the cap");
    }
    let err = pick(&mut offers, &["a"], Some("ann"))
        .await
        .expect_err("capped");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message()
            .contains("frequency cap: this customer got it 2 times"),
        "{}",
        err.message()
    );
    // Others, and anonymous visits, are not affected.
    pick(&mut offers, &["a"], Some("ben"))
        .await
        .expect("another customer");
    for _ in 0..3 {
        pick(&mut offers, &["a"], None).await.expect("anonymous");
    }
}

#[tokio::test]
async fn concurrent_requests_cannot_overshoot_a_decision_budget() {
    // 8 callers at once; without the writer's re-check, every request in
    // flight when the 25th decision commits could choose "a" too.
    let server = TestServer::start(Some(&campaign("", "max_decisions = 25")), &[]);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut offers = server.offers().await;
        tasks.push(tokio::spawn(async move {
            let mut chosen = Vec::new();
            for _ in 0..40 {
                let d = offers
                    .select_offer(select("b", &[]))
                    .await
                    .expect("\"other\" is always left")
                    .into_inner();
                chosen.push(d.offer_id);
            }
            chosen
        }));
    }
    let mut a = 0;
    for t in tasks {
        a += t.await.expect("task").iter().filter(|o| *o == "a").count();
    }
    assert_eq!(a, 25, "exactly the budget");
    let stats = server
        .admin()
        .await
        .get_campaign_stats(offer_bandit::proto::GetCampaignStatsRequest {
            campaign: "b".into(),
        })
        .await
        .expect("stats")
        .into_inner();
    let sa = stats.offers.iter().find(|o| o.offer_id == "a").expect("a");
    assert_eq!(sa.decisions, 25);
}

#[tokio::test]
async fn simultaneous_visits_of_one_customer_respect_the_frequency_cap() {
    // One customer, eight requests at once, each offer at most once: two
    // decisions in all, whatever the timing.
    let server = TestServer::start(
        Some(&campaign(
            "frequency_cap = { max = 1, period = \"7d\" }",
            "",
        )),
        &[],
    );
    for round in 0..3 {
        let customer = format!("c{round}");
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let mut offers = server.offers().await;
            let customer = customer.clone();
            tasks.push(tokio::spawn(async move {
                let mut req = select("b", &[]);
                req.customer_id = customer;
                offers
                    .select_offer(req)
                    .await
                    .map(|r| r.into_inner().offer_id)
            }));
        }
        let mut chosen = Vec::new();
        for t in tasks {
            match t.await.expect("task") {
                Ok(offer) => chosen.push(offer),
                Err(e) => assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}"),
            }
        }
        chosen.sort();
        assert_eq!(chosen, ["a", "other"], "round {round}");
    }
}
