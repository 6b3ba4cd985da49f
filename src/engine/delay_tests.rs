//! Delayed feedback in the engine: segment-ts weighs its pending decisions
//! by their age under the campaign's delay model, reweighed on the sweep,
//! and a restart (after a flush or a crash) rebuilds exactly the same
//! weights and delay model from the decision records.

use std::sync::Arc;

use super::tests::{T0, options, redemption, visit};
use super::*;
use crate::{clock::ManualClock, policy::delay::DelayModel, store::MemoryStore};

/// A segment-ts campaign "p" over the segment `type`, one-hour window.
fn segment_campaign() -> Vec<FileCampaign> {
    let text = "[[campaigns]]\nid = \"p\"\npolicy = \"segment-ts\"\nreward_window = \"1h\"\n\
                segment_by = [\"type\"]\n\
                [[campaigns.offers]]\nid = \"x\"\n\
                [[campaigns.offers]]\nid = \"y\"\n";
    match crate::config::parse_file(text, "test") {
        Ok(c) => c,
        Err(e) => panic!("test campaign: {e}"),
    }
}

fn open(store: &MemoryStore, clock: &Arc<ManualClock>) -> Engine {
    super::tests::open_campaigns(store, clock, segment_campaign(), options())
}

/// Per (segment, offer): the posterior and what its pending decisions
/// weigh, as text (bit-exact); and the delay model.
fn weighed(engine: &Engine) -> Result<(String, DelayModel), Error> {
    let c = engine.campaign("p")?;
    let model = c.model.read();
    let mut out = String::new();
    for segment in ["a", "b"] {
        for offer in 0..2 {
            out += &format!(
                "{segment}/{offer}: {:?} {:?} pending {}\n",
                model.posterior(segment, offer, c.config.prior_strength),
                model.pending_weight(segment, offer),
                model.cell(segment, offer).pending(),
            );
        }
    }
    let delay = model
        .delay_model()
        .cloned()
        .ok_or(Error::NotFound("no delay model".into()))?;
    Ok((out, delay))
}

#[tokio::test]
async fn pending_decisions_weigh_by_age_and_survive_a_restart() -> Result<(), Error> {
    let store = MemoryStore::new();
    let clock = Arc::new(ManualClock::new(T0));
    let engine = open(&store, &clock);
    // Four hours of a decision every 20 s; every fourth is redeemed 5
    // minutes later (the window is an hour); a sweep every minute.
    let mut to_redeem = std::collections::VecDeque::new();
    for i in 0..720usize {
        clock.advance(20_000);
        let s = engine.select(visit(["a", "b"][i % 2], None)).await?;
        if i % 4 == 0 {
            to_redeem.push_back((engine.now_ms() + 300_000, s.decision_id));
        }
        while let Some(&(due, id)) = to_redeem.front()
            && due <= engine.now_ms()
        {
            engine.redeem(redemption(id)).await?;
            to_redeem.pop_front();
        }
        if i % 3 == 2 {
            engine.sweep(engine.now_ms(), 10_000).await?;
        }
    }
    let (before, delay) = weighed(&engine)?;
    // Three hours of closed windows: the model learned the 5-minute delays
    // (the prior, a mean of 15 minutes, says F(330 s) = 0.31; 50
    // pseudo-redemptions of it remain).
    let (early, late) = (delay.cdf(200_000.0), delay.cdf(330_000.0));
    assert!(delay.observed() > 100, "{}", delay.observed());
    assert!(
        early < 0.1 && late > 0.7,
        "F(200 s) {early}, F(330 s) {late}"
    );
    // An hour of decisions is pending, and weighs less than its count:
    // those younger than 5 minutes weigh almost nothing.
    let c = engine.campaign("p")?;
    let (weight, count) = {
        let m = c.model.read();
        let mut w = 0.0;
        let mut n = 0;
        for s in ["a", "b"] {
            for o in 0..2 {
                w += m.pending_weight(s, o);
                n += m.cell(s, o).pending();
            }
        }
        (w, n as f64)
    };
    assert!(count > 100.0, "{count} pending");
    assert!(
        weight < count - 10.0 && weight > 0.5 * count,
        "pending weigh {weight} of {count}"
    );
    let crashed = store.fork();
    engine.flush().await?;
    drop(engine);
    for (how, restarted) in [
        ("after a crash", open(&crashed, &clock)),
        ("after a flush", open(&store, &clock)),
    ] {
        let (after, delay_after) = weighed(&restarted)?;
        assert_eq!(after, before, "{how}");
        assert_eq!(delay_after, delay, "{how}");
    }
    Ok(())
}
