//! Daily budgets through the engine, on a manual clock: paced over the
//! campaign's local day, reset at its midnight across daylight saving
//! changes, and paced by the traffic profile it learns and keeps across a
//! restart.

use std::sync::Arc;

use super::tests::options;
use super::*;
use crate::{
    budget::{DAY_MS, HOUR_MS, paced_allowance},
    clock::ManualClock,
    store::MemoryStore,
};

/// A segment-ts campaign "n" in `zone` whose offer "a" may be chosen
/// `cap` times a day.
fn campaign(zone: &str, cap: u64) -> Vec<FileCampaign> {
    let text = format!(
        "[[campaigns]]\nid = \"n\"\npolicy = \"segment-ts\"\nreward_window = \"1h\"\n\
         time_zone = \"{zone}\"\n[[campaigns.offers]]\nid = \"a\"\nmax_decisions_per_day = {cap}\n"
    );
    match crate::config::parse_file(&text, "test") {
        Ok(c) => c,
        Err(e) => panic!("test campaign: {e}"),
    }
}

fn open(store: &MemoryStore, clock: &Arc<ManualClock>, zone: &str, cap: u64) -> Engine {
    super::tests::open_campaigns(store, clock, campaign(zone, cap), options())
}

fn visit() -> SelectRequest {
    SelectRequest {
        campaign: "n".into(),
        ..SelectRequest::default()
    }
}

/// Decisions made before pacing refuses the next one.
async fn until_paced(engine: &Engine) -> u64 {
    let mut made = 0;
    loop {
        match engine.select(visit()).await {
            Ok(_) => made += 1,
            Err(e) => {
                assert!(e.to_string().contains("paced"), "{e}");
                return made;
            }
        }
        assert!(made <= 10_000, "pacing never refused");
    }
}

/// Unix ms of a UTC date and hour ("2026-03-08", 4.5).
fn utc(date: &str, hour: f64) -> i64 {
    let day = match date {
        "2026-01-15" => 1_768_435_200_000,
        "2026-03-08" => 1_772_928_000_000,
        "2026-03-09" => 1_772_928_000_000 + DAY_MS,
        "2026-11-01" => 1_793_491_200_000,
        "2026-11-02" => 1_793_491_200_000 + DAY_MS,
        other => panic!("no date {other}"),
    };
    day + (hour * HOUR_MS as f64) as i64
}

#[tokio::test]
async fn a_new_york_morning_is_paced_as_morning_and_days_end_at_its_midnight() {
    let store = MemoryStore::new();
    // 09:00 in New York, 14:00 UTC: 9/24 of the day plus 5%, of 100.
    let clock = Arc::new(ManualClock::new(utc("2026-01-15", 14.0)));
    let engine = open(&store, &clock, "America/New_York", 100);
    assert_eq!(
        until_paced(&engine).await,
        43,
        "the UTC afternoon allowed 64"
    );

    // The evening before the clocks go forward, 23:30 EST (04:30 UTC):
    // the whole day's budget.
    clock.set(utc("2026-03-08", 4.5));
    assert_eq!(until_paced(&engine).await, 100);
    // 00:30 EST, the same UTC day: a new local day, paced from its start
    // (half an hour of its 23, plus 5%).
    clock.set(utc("2026-03-08", 5.5));
    let campaign = engine.campaign("n").unwrap_or_else(|e| panic!("{e}"));
    let pace = campaign.pace(engine.now_ms());
    assert!((pace.gone - 0.5 / 23.0).abs() < 1e-9, "{pace:?}");
    assert_eq!(until_paced(&engine).await, 8);
    // 23:30 EDT on that 23-hour day (03:30 UTC the next): still that day.
    clock.set(utc("2026-03-09", 3.5));
    assert_eq!(until_paced(&engine).await, 92);
    // 00:30 EDT: the next day, which now follows the traffic learned over
    // January 15, March 7 and March 8.
    clock.set(utc("2026-03-09", 4.5));
    let pace = campaign.pace(engine.now_ms());
    assert!(pace.learned, "three days of traffic seen");
    let made = until_paced(&engine).await;
    assert!(made > 0);
    assert_eq!(made, paced_allowance(100, &pace));

    // The day the clocks go back is 25 hours long: 23:30 EST on it is
    // 04:30 UTC the next day, still that day, and 00:30 EST a new one.
    let allowed_now = || paced_allowance(100, &campaign.pace(engine.now_ms()));
    clock.set(utc("2026-11-01", 4.5)); // 00:30 EDT
    let made = until_paced(&engine).await;
    assert_eq!(made, allowed_now());
    clock.set(utc("2026-11-02", 4.5)); // 23:30 EST, November 1
    assert_eq!(until_paced(&engine).await, allowed_now() - made);
    clock.set(utc("2026-11-02", 5.5)); // 00:30 EST, November 2
    assert_eq!(until_paced(&engine).await, allowed_now(), "a new day");
}

#[tokio::test]
async fn a_learned_evening_profile_paces_noon_below_the_flat_day_and_survives_a_restart() {
    let store = MemoryStore::new();
    let day0 = utc("2026-01-15", 5.0); // 00:00 in New York
    let clock = Arc::new(ManualClock::new(day0));
    let engine = open(&store, &clock, "America/New_York", 1000);
    let allowed_at_noon = |engine: &Engine| {
        let r = engine.report("n").unwrap_or_else(|e| panic!("{e}"));
        (
            r.offers[0].decisions_allowed_by_now,
            r.pacing.learned,
            r.pacing.local_time,
        )
    };
    for d in 0..4 {
        // 10 visits over the day, one an hour from 08:00, then 90 from
        // 18:00 to 21:00 local.
        for i in 0..10 {
            clock.set(day0 + d * DAY_MS + (8 + i) * HOUR_MS);
            engine
                .select(visit())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        for i in 0..90 {
            clock.set(day0 + d * DAY_MS + 18 * HOUR_MS + i * 120_000);
            engine
                .select(visit())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    clock.set(day0 + 4 * DAY_MS + 12 * HOUR_MS);
    // Flat, noon would allow half the day plus 5%: 550. The learned day
    // has 4% of its visits by noon: 0.9 x 4% + 10% x 12/24 + 5% = 13.6%.
    let (allowed, learned, local) = allowed_at_noon(&engine);
    assert_eq!((allowed, learned), (Some(136), true));
    assert_eq!(local, "2026-01-19 12:00 EST");
    engine.flush().await.unwrap_or_else(|e| panic!("{e}"));
    let before = engine
        .campaign("n")
        .map(|c| c.traffic.read().clone())
        .unwrap_or_else(|e| panic!("{e}"));
    drop(engine);
    let restarted = open(&store, &clock, "America/New_York", 1000);
    let after = restarted
        .campaign("n")
        .map(|c| c.traffic.read().clone())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after, before, "the profile is stored with the decisions");
    assert_eq!(allowed_at_noon(&restarted).0, Some(136));
}

#[tokio::test]
async fn a_new_time_zone_moves_the_days_at_once_and_starts_the_profile_over() {
    let store = MemoryStore::new();
    let day0 = utc("2026-01-15", 5.0); // 00:00 in New York
    let clock = Arc::new(ManualClock::new(day0));
    let engine = open(&store, &clock, "America/New_York", 1000);
    for d in 0..4 {
        clock.set(day0 + d * DAY_MS + 19 * HOUR_MS);
        engine
            .select(visit())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    clock.set(day0 + 4 * DAY_MS + 12 * HOUR_MS); // 12:00 EST, 17:00 UTC
    assert!(engine.report("n").is_ok_and(|r| r.pacing.learned));
    let mut config = engine
        .campaign("n")
        .map(|c| c.config.clone())
        .unwrap_or_else(|e| panic!("{e}"));
    config.time_zone = "Europe/Berlin".into();
    engine
        .revise("n", ConfigChange::Put(Box::new(config)), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let r = engine.report("n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.pacing.time_zone, "Europe/Berlin");
    assert_eq!(r.pacing.local_time, "2026-01-19 18:00 CET");
    assert!(
        !r.pacing.learned,
        "hours of New York say nothing of Berlin's"
    );
    assert!(
        (r.pacing.day_gone - 0.75).abs() < 1e-9,
        "{}",
        r.pacing.day_gone
    );
    // The next decision starts the profile over, in Berlin's hours.
    engine
        .select(visit())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let traffic = engine
        .campaign("n")
        .map(|c| c.traffic.read().clone())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(traffic.time_zone, "Europe/Berlin");
    assert_eq!((traffic.days, traffic.today[18]), (0, 1));
}
