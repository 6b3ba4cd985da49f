//! Control groups: a stable share of customers gets the control policy, and
//! the report's bandit-versus-control uplift agrees with what happened.

use std::collections::HashMap;

use offer_bandit::proto::{self, GetCampaignReportRequest};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::support::{TestServer, offer_bandit_cli, redeem, select};

fn campaign(id: &str, share: f64, control_offer: Option<&str>) -> String {
    let mut t = format!(
        "[[campaigns]]\nid = \"{id}\"\npolicy = \"segment-ts\"\nreward_window = \"2s\"\ncontrol_share = {share}\n"
    );
    if let Some(o) = control_offer {
        t.push_str(&format!("control_offer = \"{o}\"\n"));
    }
    for o in ["good", "bad1", "bad2", "bad3"] {
        t.push_str(&format!(
            "[[campaigns.offers]]\nid = \"{o}\"\nvalue = 2.0\n"
        ));
    }
    t
}

fn truth(offer: &str) -> f64 {
    if offer == "good" { 0.3 } else { 0.03 }
}

#[tokio::test]
async fn the_report_measures_bandit_against_control() {
    let server = TestServer::start(
        Some(&campaign("c", 0.3, None)),
        &["--sweep-interval", "100ms"],
    );
    let mut offers = server.offers().await;
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    // (decisions, redemptions) per arm, counted here.
    let mut seen: HashMap<String, (u64, u64)> = HashMap::new();
    for i in 0..2000 {
        let mut req = select("c", &[]);
        req.customer_id = format!("member-{i}");
        let d = offers.select_offer(req).await.expect("select").into_inner();
        let e = seen.entry(d.arm.clone()).or_default();
        e.0 += 1;
        if d.arm == "control" {
            assert!((d.propensity - 0.25).abs() < 1e-12, "uniform over 4 offers");
        }
        if rng.random::<f64>() < truth(&d.offer_id) {
            offers
                .record_redemption(redeem(&d.decision_id))
                .await
                .expect("redeem");
            e.1 += 1;
        }
    }
    let mut admin = server.admin().await;
    // Rates and the uplift count closed windows: every one, once swept.
    let r = crate::uplift::report_when_closed(&mut admin, "c").await;
    let bandit = r.bandit.expect("bandit");
    let control = r.control.expect("control");
    assert_eq!((bandit.decisions, bandit.redemptions), seen["bandit"]);
    assert_eq!((control.decisions, control.redemptions), seen["control"]);
    // Binomial(2000, 0.3): the share's sd is 0.010.
    let share = control.decisions as f64 / 2000.0;
    assert!((share - 0.3).abs() < 0.04, "control share {share}");
    let rate = |a: &proto::ArmReport| a.redemption_rate.expect("rate").value;
    assert!((rate(&control) - control.redemptions as f64 / control.decisions as f64).abs() < 1e-12);
    // The bandit finds the good offer; uniform control does not.
    let uplift = r.uplift.expect("uplift");
    let diff = uplift.rate_difference.expect("difference");
    assert!(diff.low > 0.05, "uplift {diff:?}");
    assert!(diff.low < diff.value && diff.value < diff.high);
    let value = uplift.value_per_1000_difference.expect("value");
    assert!(
        (value.value - 2000.0 * diff.value).abs() < 1e-6,
        "value is 2 per redemption"
    );
    let good = r
        .offers
        .iter()
        .find(|o| o.offer_id == "good")
        .expect("good");
    assert!(
        good.traffic_share > 0.5,
        "good offer share {}",
        good.traffic_share
    );
    let post = good.posterior.expect("posterior");
    // Within 4 posterior sds of the truth (a 95% interval alone would miss
    // one run in twenty); the interval is about 3.92 sds wide.
    let sd = (post.high - post.low) / 3.92;
    assert!(post.low < post.value && post.value < post.high, "{post:?}");
    assert!((post.value - 0.3).abs() < 4.0 * sd, "{post:?}");

    // A customer stays in one arm; anonymous visits are drawn each time.
    let arms: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..10 {
            let mut req = select("c", &[]);
            req.customer_id = "member-5".into();
            v.push(
                offers
                    .select_offer(req)
                    .await
                    .expect("select")
                    .into_inner()
                    .arm,
            );
        }
        v
    };
    assert!(arms.iter().all(|a| *a == arms[0]), "{arms:?}");
    let mut anonymous = HashMap::<String, u32>::new();
    for _ in 0..100 {
        let a = offers.select_offer(select("c", &[])).await.expect("select");
        *anonymous.entry(a.into_inner().arm).or_default() += 1;
    }
    assert_eq!(anonymous.len(), 2, "{anonymous:?}");

    // The CLI prints the same report.
    let url = server.url();
    let out = offer_bandit_cli(&["report", "--server", &url, "--campaign", "c", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(json["control"]["redemptions"], control.redemptions);
}

#[tokio::test]
async fn a_control_offer_is_served_to_the_control_group() {
    let server = TestServer::start(Some(&campaign("f", 0.5, Some("bad2"))), &[]);
    let mut offers = server.offers().await;
    let mut control = 0;
    for i in 0..200 {
        let mut req = select("f", &[]);
        req.customer_id = format!("m{i}");
        let d = offers.select_offer(req).await.expect("select").into_inner();
        if d.arm == "control" {
            control += 1;
            assert_eq!(d.offer_id, "bad2");
            assert_eq!(d.propensity, 1.0);
        }
    }
    assert!(control > 60, "{control} of 200 in control");
    // Not a candidate: the control group gets a random candidate instead.
    for i in 0..50 {
        let mut req = select("f", &[]);
        req.customer_id = format!("m{i}");
        req.candidate_offer_ids = vec!["good".into(), "bad1".into()];
        let d = offers.select_offer(req).await.expect("select").into_inner();
        assert!(d.offer_id == "good" || d.offer_id == "bad1");
    }
}

/// `control_rules` serves today's rule to the control group, with
/// `control_share = 1` every visit: personalization off, measurement kept.
#[tokio::test]
async fn the_control_group_can_get_the_marketers_rule() {
    let toml = "[[campaigns]]\nid = \"r\"\npolicy = \"segment-ts\"\nsegment_by = [\"lifecycle\"]\n\
        reward_window = \"1h\"\ncontrol_share = 1.0\ncontrol_rules = \"\"\"\n\
        # today's rule\nif hour >= 14 then bogo\nif lifecycle in (lapsing, inactive) then winback\n\
        otherwise points\n\"\"\"\n\
        [[campaigns.offers]]\nid = \"points\"\n[[campaigns.offers]]\nid = \"bogo\"\n\
        [[campaigns.offers]]\nid = \"winback\"\n";
    let server = TestServer::start(Some(toml), &[]);
    let mut offers = server.offers().await;
    let cases = [
        (15.0, "active", "bogo"),
        (15.0, "lapsing", "bogo"),
        (9.0, "lapsing", "winback"),
        (9.0, "inactive", "winback"),
        (9.0, "active", "points"),
    ];
    for (i, (hour, lifecycle, want)) in cases.iter().enumerate() {
        for j in 0..4 {
            let mut req = select("r", &[("lifecycle", lifecycle)]);
            req.context
                .insert("hour".into(), crate::support::number(*hour));
            req.customer_id = format!("m-{i}-{j}");
            req.explain = j == 0;
            let d = offers.select_offer(req).await.expect("select").into_inner();
            assert_eq!(d.arm, "control", "control_share = 1");
            assert_eq!(&d.offer_id, want, "hour {hour}, {lifecycle}");
            assert_eq!(d.propensity, 1.0, "a rule is deterministic");
            for e in &d.explanation {
                let p = if e.offer_id == *want { 1.0 } else { 0.0 };
                assert_eq!(e.probability, p, "{e:?}");
            }
        }
    }
    // A paused bogo: the afternoon lapsing visitor falls to the next line.
    let mut admin = server.admin().await;
    admin
        .set_offer_status(proto::SetOfferStatusRequest {
            campaign: "r".into(),
            offer_id: "bogo".into(),
            status: "paused".into(),
        })
        .await
        .expect("pause");
    let mut req = select("r", &[("lifecycle", "lapsing")]);
    req.context
        .insert("hour".into(), crate::support::number(15.0));
    let d = offers.select_offer(req).await.expect("select").into_inner();
    assert_eq!(d.offer_id, "winback");
    let r = admin
        .get_campaign_report(GetCampaignReportRequest {
            campaign: "r".into(),
        })
        .await
        .expect("report")
        .into_inner();
    assert_eq!(r.control.expect("control").decisions, 21);
    assert_eq!(r.bandit.map_or(0, |b| b.decisions), 0);
}

/// `check-config` echoes what changes behaviour: the control group and its
/// rule, the frequency cap, each offer's value and budget.
#[test]
fn check_config_echoes_control_group_caps_and_budgets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.toml");
    let toml = "[[campaigns]]\nid = \"r\"\npolicy = \"segment-ts\"\nreward_window = \"1h\"\n\
        control_share = 0.25\ncontrol_rules = \"\"\"\nif hour >= 14 then bogo # afternoons\n\
        otherwise points\n\"\"\"\nfrequency_cap = { max = 2, period = \"7d\" }\n\
        [[campaigns.offers]]\nid = \"points\"\nvalue = 1.5\n\
        [[campaigns.offers]]\nid = \"bogo\"\nvalue = 3.5\nmax_decisions_per_day = 200\n";
    std::fs::write(&path, toml).expect("write");
    let out = offer_bandit_cli(&["check-config", path.to_str().expect("path")]);
    for want in [
        "control group: 25% of customers get the rule: if hour >= 14 then bogo; otherwise points",
        "frequency cap: the same offer at most 2 times per 7days per customer",
        "offer points \"points\": value 1.5, no budget",
        "offer bogo \"bogo\": value 3.5, budget at most 200 decisions a day",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}
