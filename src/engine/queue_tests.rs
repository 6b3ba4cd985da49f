//! When the writer wakes: decisions SelectOffer answered are collected on
//! the writer's interval with nobody waking it; a command someone waits on
//! wakes it at once, whatever the interval.

use std::time::Instant;

use super::tests::{T0, campaigns, open_campaigns, options};
use super::*;
use crate::{
    clock::ManualClock,
    context::FeatureValue,
    store::{DecisionLog, MemoryStore},
};

fn visit() -> SelectRequest {
    let mut context = Context::new();
    context.insert("type".into(), FeatureValue::Category("a".into()));
    SelectRequest {
        campaign: "p".into(),
        context,
        ..SelectRequest::default()
    }
}

/// Gives the writer's thread time to find its queue empty and sleep, so
/// that what follows must wake it (or wait for its interval).
async fn settle_into_waiting() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

fn engine(store: &MemoryStore, learn_interval: Duration) -> Engine {
    let clock = Arc::new(ManualClock::new(T0));
    open_campaigns(
        store,
        &clock,
        campaigns(),
        EngineOptions {
            await_decisions: false,
            learn_interval,
            ..options()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_answered_decision_is_collected_on_the_interval_without_a_wake() -> Result<(), Error> {
    let store = MemoryStore::new();
    let engine = engine(&store, Duration::from_millis(20));
    settle_into_waiting().await;
    let s = engine.select(visit()).await?;
    // Nothing waits on it and nothing else is sent: the writer's own
    // interval brings it to the store.
    let started = Instant::now();
    while store.decision(&s.decision_id)?.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the decision was never collected"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_command_someone_waits_on_wakes_the_writer_at_once() -> Result<(), Error> {
    let store = MemoryStore::new();
    // An interval no test would wait for.
    let engine = engine(&store, Duration::from_secs(600));
    settle_into_waiting().await;
    let s = engine.select(visit()).await?;
    match tokio::time::timeout(Duration::from_secs(10), engine.settled()).await {
        Ok(settled) => settled?,
        Err(_) => panic!("the barrier waited for the writer's interval"),
    }
    // And it took the decision queued before it.
    assert!(store.decision(&s.decision_id)?.is_some());
    Ok(())
}
