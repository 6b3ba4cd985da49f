//! The report's intervals on the real server: computed on decisions whose
//! reward window has closed, clustered by customer (repeat customers widen
//! them as they should), valid at any look, and the same in the CLI.

use std::{collections::HashMap, time::Duration};

use offer_bandit::{
    proto::{self, GetCampaignReportRequest},
    uplift::{Arm, ArmCounts, ClusterSums, compare_sequential, sequential_multiplier, summary},
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::support::{Admin, TestServer, offer_bandit_cli, redeem, select};

/// The campaign's report once every decision made so far has had its
/// window closed and swept (at most 20 s).
pub(crate) async fn report_when_closed(admin: &mut Admin, campaign: &str) -> proto::CampaignReport {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = admin
            .get_campaign_report(GetCampaignReportRequest {
                campaign: campaign.into(),
            })
            .await
            .expect("report")
            .into_inner();
        let closed = [&r.bandit, &r.control, &r.fallback, &r.non_personalized]
            .into_iter()
            .flatten()
            .all(|a| a.closed_decisions == a.decisions);
        if closed {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "windows still open after 20 s: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// 60 customers, 12 visits each, a third redeeming almost always and the
/// rest almost never (an intraclass correlation near 0.7): the report's
/// interval is the clustered one, several times wider in standard errors
/// than the interval that treats visits as independent (what the report
/// showed before), and exactly what the per-customer sums give.
#[tokio::test]
async fn repeat_customers_widen_the_reports_intervals() {
    let toml = "[[campaigns]]\nid = \"rc\"\npolicy = \"segment-ts\"\nreward_window = \"2s\"\n\
        control_share = 0.5\n[[campaigns.offers]]\nid = \"only\"\nvalue = 2.0\n";
    let server = TestServer::start(Some(toml), &["--sweep-interval", "100ms"]);
    let mut offers = server.offers().await;
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    // (arm, customer) -> (visits, redemptions), counted here.
    let mut seen: HashMap<(String, usize), (f64, f64)> = HashMap::new();
    for visit in 0..12 {
        for c in 0..60usize {
            let mut req = select("rc", &[]);
            req.customer_id = format!("repeat-{c}");
            let d = offers.select_offer(req).await.expect("select").into_inner();
            let p = if c % 3 == 0 { 0.9 } else { 0.05 };
            let redeemed = rng.random::<f64>() < p;
            if redeemed {
                offers
                    .record_redemption(redeem(&d.decision_id))
                    .await
                    .expect("redeem");
            }
            let e = seen.entry((d.arm.clone(), c)).or_default();
            e.0 += 1.0;
            e.1 += f64::from(u8::from(redeemed));
            assert_eq!(e.0, f64::from(visit + 1), "a customer stays in one arm");
        }
    }
    let mut admin = server.admin().await;
    let r = report_when_closed(&mut admin, "rc").await;
    let sums = |seen: &HashMap<(String, usize), (f64, f64)>, arm: &str| {
        let mut s = ClusterSums::default();
        let mut customers: Vec<_> = seen.iter().filter(|((a, _), _)| a == arm).collect();
        customers.sort_by_key(|((_, c), _)| *c);
        for (_, &(n, y)) in customers {
            s.add_customer(n, y, 2.0 * y);
        }
        s
    };
    let (bandit, control) = (sums(&seen, "bandit"), sums(&seen, "control"));
    for (report, arm, s) in [
        (r.bandit.as_ref().expect("bandit"), Arm::Bandit, bandit),
        (r.control.as_ref().expect("control"), Arm::Control, control),
    ] {
        assert_eq!(report.customers, s.clusters, "{arm:?}");
        assert_eq!(report.closed_decisions as f64, s.decisions, "{arm:?}");
        assert_eq!(report.closed_redemptions as f64, s.redemptions, "{arm:?}");
        let want = summary(arm, ArmCounts::default(), &s);
        let got = report.redemption_rate.expect("rate");
        assert!(
            (got.low - want.rate.low).abs() < 1e-12 && (got.high - want.rate.high).abs() < 1e-12,
            "{arm:?}: {got:?} vs {want:?}"
        );
        let value = report.value_per_1000.expect("value");
        assert!(
            (value.high - want.value_per_1000.high).abs() < 1e-9,
            "{arm:?}"
        );
        // Clipped to the possible range.
        assert!(got.low >= 0.0 && got.high <= 1.0, "{got:?}");
    }
    let uplift = r.uplift.expect("uplift");
    let diff = uplift.rate_difference.expect("difference");
    let want = compare_sequential(&bandit, &control)
        .expect("both")
        .rate_difference;
    assert!(
        (diff.low - want.low).abs() < 1e-12 && (diff.high - want.high).abs() < 1e-12,
        "{diff:?} vs {want:?}"
    );
    // In standard errors: the clustered one against the independent one.
    let (nb, nc) = (bandit.decisions, control.decisions);
    let (pb, pc) = (bandit.redemptions / nb, control.redemptions / nc);
    let independent = (pb * (1.0 - pb) / nb + pc * (1.0 - pc) / nc).sqrt();
    let clustered = (diff.high - diff.low)
        / 2.0
        / sequential_multiplier((bandit.clusters + control.clusters) as f64);
    assert!(
        clustered > 2.0 * independent,
        "clustered se {clustered} vs independent {independent}"
    );
    let old_width = 2.0 * 1.959_964 * independent;
    println!(
        "rate difference {:.4} [{:.4}, {:.4}]: clustered se {clustered:.4}, independent se {independent:.4}; width {:.4} against {old_width:.4} for the one-look independent interval",
        diff.value,
        diff.low,
        diff.high,
        diff.high - diff.low
    );
    assert!(
        diff.high - diff.low > 2.0 * old_width,
        "the interval that ignored repeat customers was {old_width} wide; this one {}",
        diff.high - diff.low
    );

    // Erasing a customer takes their whole cluster out of the sums, exactly.
    let gone = 3usize;
    let arm_of_gone = seen
        .keys()
        .find(|(_, c)| *c == gone)
        .map(|(a, _)| a.clone())
        .expect("customer seen");
    admin
        .forget_customer(proto::ForgetCustomerRequest {
            customer_id: format!("repeat-{gone}"),
        })
        .await
        .expect("forget");
    seen.retain(|(_, c), _| *c != gone);
    let after = report_when_closed(&mut admin, "rc").await;
    let arm_report = match arm_of_gone.as_str() {
        "bandit" => after.bandit.as_ref(),
        _ => after.control.as_ref(),
    }
    .expect("arm");
    let remaining = sums(&seen, &arm_of_gone);
    assert_eq!(arm_report.customers, remaining.clusters);
    assert_eq!(arm_report.closed_decisions as f64, remaining.decisions);
    let arm = if arm_of_gone == "bandit" {
        Arm::Bandit
    } else {
        Arm::Control
    };
    let want = summary(arm, ArmCounts::default(), &remaining).rate;
    let got = arm_report.redemption_rate.expect("rate");
    assert!(
        (got.low - want.low).abs() < 1e-12 && (got.high - want.high).abs() < 1e-12,
        "after erasure: {got:?} vs {want:?}"
    );

    // The CLI prints the same figures, and says what they count.
    let url = server.url();
    let out = offer_bandit_cli(&["report", "--server", &url, "--campaign", "rc", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    let (bandit, control) = (sums(&seen, "bandit"), sums(&seen, "control"));
    assert_eq!(json["bandit"]["customers"], bandit.clusters);
    assert_eq!(
        json["control"]["closed_decisions"],
        control.decisions as u64
    );
    let text = offer_bandit_cli(&["report", "--server", &url, "--campaign", "rc"]);
    assert!(
        text.contains("clustered by customer, valid at any look"),
        "{text}"
    );
}
