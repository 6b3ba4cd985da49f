//! Customer erasure (ForgetCustomer) and retention: records go, posteriors
//! lose exactly the erased evidence, raw customer ids never reach the disk.

use std::time::Duration;

use offer_bandit::proto::{self, GetCampaignStatsResponse};
use tonic::Code;

use crate::support::{Offers, TestServer, campaign_stats, campaign_toml, redeem, select};

/// (decisions, redeemed) summed over offers.
fn totals(s: &GetCampaignStatsResponse) -> (u64, u64) {
    s.offers
        .iter()
        .fold((0, 0), |(d, r), o| (d + o.decisions, r + o.redeemed))
}

/// Makes `n` decisions for `customer`, redeems every other one; returns the ids.
async fn visits(offers: &mut Offers, campaign: &str, customer: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let mut req = select(
            campaign,
            &[(
                "tier",
                if i.is_multiple_of(2) {
                    "gold"
                } else {
                    "silver"
                },
            )],
        );
        req.customer_id = customer.to_owned();
        let d = offers.select_offer(req).await.expect("select").into_inner();
        if i.is_multiple_of(2) {
            offers
                .record_redemption(redeem(&d.decision_id))
                .await
                .expect("redeem");
        }
        ids.push(d.decision_id);
    }
    ids
}

fn export_lines(server: &TestServer, campaign: &str) -> Vec<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_offer-bandit"))
        .args(["export", "--server", &server.url(), "--campaign", campaign])
        .output()
        .expect("export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn dir_contains(dir: &std::path::Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            dir_contains(&p, needle)
        } else {
            std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
        }
    })
}

#[tokio::test]
async fn forgetting_a_customer_erases_records_and_subtracts_exactly() {
    let config = campaign_toml("c", &["tier"], "1h", &["a", "b", "c"]);
    let mut server = TestServer::start(Some(&config), &[]);
    let mut offers = server.offers().await;
    let mut admin = server.admin().await;
    let alice = "alice-7f3a9c-member-number";
    let bob = "bob-22e1-member-number";
    let before = campaign_stats(&mut admin, "c").await;
    let alice_ids = visits(&mut offers, "c", alice, 12).await;
    let after_alice = campaign_stats(&mut admin, "c").await;
    let bob_ids = visits(&mut offers, "c", bob, 8).await;
    let with_both = campaign_stats(&mut admin, "c").await;
    assert_eq!(totals(&with_both), (20, 10));

    let r = admin
        .forget_customer(proto::ForgetCustomerRequest {
            customer_id: alice.to_owned(),
        })
        .await
        .expect("forget")
        .into_inner();
    assert_eq!(r.decisions_erased, 12);
    assert!(r.posteriors_exact);
    let without = campaign_stats(&mut admin, "c").await;
    // Exactly Bob's evidence is left: per cell, as if Alice never came.
    assert_eq!(totals(&without), (8, 4));
    let bob_only: Vec<_> = with_both
        .cells
        .iter()
        .map(|c| {
            let a = after_alice
                .cells
                .iter()
                .find(|x| x.segment == c.segment && x.offer_id == c.offer_id);
            let (d, r) = a.map_or((0, 0), |a| (a.trials, a.successes));
            (
                c.segment.clone(),
                c.offer_id.clone(),
                c.trials - d,
                c.successes - r,
            )
        })
        .filter(|x| x.2 > 0)
        .collect();
    let mut left: Vec<_> = without
        .cells
        .iter()
        .map(|c| (c.segment.clone(), c.offer_id.clone(), c.trials, c.successes))
        .filter(|x| x.2 > 0)
        .collect();
    left.sort();
    let mut want = bob_only;
    want.sort();
    assert_eq!(left, want);
    assert_eq!(totals(&before), (0, 0));

    // Alice's decisions are gone: redemptions are NOT_FOUND, the log lacks them.
    let late = offers.record_redemption(redeem(&alice_ids[1])).await;
    assert_eq!(late.expect_err("erased").code(), Code::NotFound);
    let log = export_lines(&server, "c");
    assert_eq!(log.len(), 8);
    assert!(
        log.iter()
            .all(|l| alice_ids.iter().all(|id| !l.contains(id)))
    );
    assert!(bob_ids.iter().all(|id| log.iter().any(|l| l.contains(id))));
    // Erasing again finds nothing; the erasure survives a restart.
    let again = admin
        .forget_customer(proto::ForgetCustomerRequest {
            customer_id: alice.to_owned(),
        })
        .await
        .expect("forget")
        .into_inner();
    assert_eq!(again.decisions_erased, 0);
    server.restart();
    let mut admin = server.admin().await;
    assert_eq!(totals(&campaign_stats(&mut admin, "c").await), (8, 4));
    server.stop();
    // Neither id was ever written raw.
    assert!(!dir_contains(server.data_dir(), alice.as_bytes()));
    assert!(!dir_contains(server.data_dir(), bob.as_bytes()));
}

/// A contextual campaign with a 30-day window: no non-redemption is
/// revealed while a test runs (the first tick is 11 hours), so only
/// redemptions are learned.
fn contextual_toml(policy: &str) -> String {
    format!(
        "[[campaigns]]\nid = \"k\"\npolicy = \"{policy}\"\nreward_window = \"30d\"\n\
         [[campaigns.features]]\nkind = \"categorical\"\nname = \"tier\"\nvalues = [\"gold\", \"silver\"]\n\
         [[campaigns.offers]]\nid = \"a\"\n[[campaigns.offers]]\nid = \"b\"\n"
    )
}

#[tokio::test]
async fn contextual_posteriors_are_downdated_exactly_for_linear_ts() {
    for (policy, exact) in [("linear-ts", true), ("logistic-ts", false)] {
        let server = TestServer::start(Some(&contextual_toml(policy)), &[]);
        let mut offers = server.offers().await;
        let mut admin = server.admin().await;
        visits(&mut offers, "k", "carol", 6).await;
        visits(&mut offers, "k", "dave", 4).await;
        let obs = |s: &GetCampaignStatsResponse| -> u64 {
            s.offers.iter().map(|o| o.model_observations).sum()
        };
        let before = campaign_stats(&mut admin, "k").await;
        // 5 redeemed decisions learned, each counted as a decision and a
        // redemption; the 5 others wait for their reveal.
        assert_eq!(obs(&before), 10, "{policy}");
        let r = admin
            .forget_customer(proto::ForgetCustomerRequest {
                customer_id: "carol".into(),
            })
            .await
            .expect("forget")
            .into_inner();
        assert_eq!((r.decisions_erased, r.model_updates), (6, 3), "{policy}");
        assert_eq!(r.posteriors_exact, exact, "{policy}");
        let after = campaign_stats(&mut admin, "k").await;
        assert_eq!(
            obs(&after),
            10 - 6,
            "{policy}: carol's 3 redeemed decisions out"
        );
    }
}

#[tokio::test]
async fn resolved_records_are_pruned_after_retention_but_keep_their_evidence() {
    let config = campaign_toml("r", &[], "1s", &["a", "b"]);
    let server = TestServer::start(
        Some(&config),
        &["--retention", "1s", "--sweep-interval", "100ms"],
    );
    let mut offers = server.offers().await;
    let mut admin = server.admin().await;
    let ids = visits(&mut offers, "r", "erin", 6).await;
    assert_eq!(export_lines(&server, "r").len(), 6);
    // Window 1 s + retention 1 s, swept every 100 ms.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !export_lines(&server, "r").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "records were not pruned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s = campaign_stats(&mut admin, "r").await;
    assert_eq!(totals(&s), (6, 3), "the posterior keeps pruned decisions");
    // A pruned decision's redemption is refused as unknown.
    let r = offers.record_redemption(redeem(&ids[1])).await;
    assert_eq!(r.expect_err("pruned").code(), Code::NotFound);
    // And nothing is left to erase.
    let f = admin
        .forget_customer(proto::ForgetCustomerRequest {
            customer_id: "erin".into(),
        })
        .await
        .expect("forget")
        .into_inner();
    assert_eq!(f.decisions_erased, 0);
}

#[tokio::test]
async fn retention_keeps_what_a_frequency_cap_still_counts() {
    // Retention 1 s, but a cap over an hour: the decision must stay, or the
    // customer would get the offer again after the sweep.
    let config = campaign_toml("q", &[], "1s", &["a"]).replace(
        "reward_window",
        "frequency_cap = { max = 1, period = \"1h\" }\nreward_window",
    );
    let server = TestServer::start(
        Some(&config),
        &["--retention", "1s", "--sweep-interval", "100ms"],
    );
    let mut offers = server.offers().await;
    let mut req = crate::support::select("q", &[]);
    req.customer_id = "kim".into();
    offers.select_offer(req.clone()).await.expect("first visit");
    // Window 1 s + retention 1 s, swept every 100 ms: well past both.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(
        export_lines(&server, "q").len(),
        1,
        "the capped decision is kept"
    );
    let again = offers.select_offer(req).await.expect_err("capped");
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
}

#[tokio::test]
async fn an_offer_whose_every_decision_is_erased_is_its_prior_again() {
    // Only erin ever got offer a (logistic-ts: the subtraction itself is
    // approximate). Once she is forgotten, a has learned nothing and is
    // its prior again, as a restart would build it: the same posterior as
    // offer c, which was never shown.
    let toml = format!(
        "{}[[campaigns.offers]]\nid = \"c\"\n",
        contextual_toml("logistic-ts")
    );
    let server = TestServer::start(Some(&toml), &[]);
    let mut offers = server.offers().await;
    let mut admin = server.admin().await;
    for i in 0..6 {
        let tier = if i % 2 == 0 { "gold" } else { "silver" };
        let mut req = select("k", &[("tier", tier)]);
        req.customer_id = "erin".into();
        req.candidate_offer_ids = vec!["a".into()];
        let d = offers.select_offer(req).await.expect("select").into_inner();
        if i % 3 == 0 {
            offers
                .record_redemption(redeem(&d.decision_id))
                .await
                .expect("redeem");
        }
    }
    admin
        .forget_customer(proto::ForgetCustomerRequest {
            customer_id: "erin".into(),
        })
        .await
        .expect("forget");
    let stats = campaign_stats(&mut admin, "k").await;
    let a = stats.offers.iter().find(|o| o.offer_id == "a").expect("a");
    assert_eq!((a.decisions, a.model_observations), (0, 0), "{a:?}");
    // One read: the explained decision is learned after it.
    let mut req = select("k", &[("tier", "gold")]);
    req.explain = true;
    req.candidate_offer_ids = vec!["a".into(), "c".into()];
    let d = offers.select_offer(req).await.expect("select").into_inner();
    let rate = |id: &str| {
        d.explanation
            .iter()
            .find(|e| e.offer_id == id)
            .and_then(|e| e.redemption_rate)
            .expect("a candidate's rate")
    };
    assert_eq!(rate("a"), rate("c"));
}
