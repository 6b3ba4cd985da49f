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
    let model = c.model.load();
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
        let m = c.model.load();
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

/// Redeems, on `engines` alike, every decision in `due` whose redemption
/// time has come.
async fn redeem_due(
    engines: &[&Engine],
    due: &mut std::collections::BTreeMap<(i64, usize), DecisionId>,
    now_ms: i64,
) -> Result<(), Error> {
    while let Some((&(at, k), &id)) = due.first_key_value()
        && at <= now_ms
    {
        for e in engines {
            e.redeem(redemption(id)).await?;
        }
        due.remove(&(at, k));
    }
    Ok(())
}

/// Contextual campaigns learn each decision once: a pending decision's
/// non-redemption is revealed by the sweep at an age drawn from the delay
/// model, and taken back when its redemption comes later. A restart from a
/// crash rebuilds the reveals and the delay model from the decision
/// records, so the engine that kept running and the restarted one learn
/// the same from the same redemptions and sweeps, bit for bit.
#[tokio::test]
async fn contextual_reveals_agree_live_and_after_a_restart() -> Result<(), Error> {
    use crate::store::DecisionLog;
    let store = MemoryStore::new();
    let clock = Arc::new(ManualClock::new(T0));
    let live = super::tests::open(&store, &clock);
    // Three hours of a decision every 20 s; every fourth is redeemed 1 to
    // 40 minutes later (the window is an hour); a sweep every minute.
    let mut due = std::collections::BTreeMap::new();
    for i in 0..540usize {
        clock.advance(20_000);
        let s = live.select(visit(["a", "b", "c"][i % 3], None)).await?;
        if i % 4 == 0 {
            let delay = 60_000 * (1 + (i as i64 * 7) % 40);
            due.insert((live.now_ms() + delay, i), s.decision_id);
        }
        redeem_due(&[&live], &mut due, live.now_ms()).await?;
        if i % 3 == 2 {
            live.sweep(live.now_ms(), 10_000).await?;
        }
    }
    let (mut pending, mut revealed, mut retracted) = (0, 0, 0);
    store.scan_decisions(0, i64::MAX, &mut |_, rec| {
        match rec.state {
            DecisionState::Pending => {
                pending += 1;
                revealed += usize::from(rec.learned_seq != 0);
            }
            DecisionState::Redeemed { .. } => {
                retracted += usize::from(rec.learned_seq != 0);
            }
            DecisionState::Expired => {}
        }
        true
    })?;
    assert!(
        revealed > 0 && revealed < pending,
        "{revealed} of {pending} pending decisions revealed"
    );
    assert!(retracted > 0, "no redemption came after its reveal");
    let restarted = super::tests::open(&store.fork(), &clock);
    assert_eq!(
        super::tests::learned(&restarted),
        super::tests::learned(&live),
        "replayed from the records"
    );
    // Two more hours: redemptions and sweeps only, the same on both.
    for _ in 0..360 {
        clock.advance(20_000);
        let now = live.now_ms();
        redeem_due(&[&live, &restarted], &mut due, now).await?;
        live.sweep(now, 10_000).await?;
        restarted.sweep(now, 10_000).await?;
    }
    assert!(due.is_empty());
    assert_eq!(
        super::tests::learned(&restarted),
        super::tests::learned(&live),
        "learned alike after the restart"
    );
    Ok(())
}

/// Erasing a customer whose decisions are partly redeemed (learned) and
/// partly waiting for their reveal (learned nothing yet) takes out exactly
/// what was learned: the offer has learned nothing after. (The first
/// version lost the staged posterior at a decision that held nothing, and
/// left two of its redemptions in.)
#[tokio::test]
async fn erasing_decisions_still_waiting_for_their_reveal_removes_what_was_learned()
-> Result<(), Error> {
    let store = MemoryStore::new();
    let clock = Arc::new(ManualClock::new(T0));
    let engine = super::tests::open(&store, &clock);
    for i in 0..6 {
        clock.advance(1_000);
        let mut req = visit(["a", "b"][i % 2], Some("erin".into()));
        req.candidates = vec!["x".into()];
        let s = engine.select(req).await?;
        if i % 3 == 0 {
            engine.redeem(redemption(s.decision_id)).await?;
        }
    }
    let counts = |e: &Engine| -> Result<(u64, u64), Error> {
        let c = e.campaign("p")?;
        let ctx = c.contextual.as_ref().ok_or(Error::NotFound("ctx".into()))?;
        let snapshot = ctx.models.load();
        let m = snapshot.get(0).ok_or(Error::NotFound("offer 0".into()))?;
        Ok((m.decisions, m.observations))
    };
    assert_eq!(counts(&engine)?, (2, 4), "two redemptions learned");
    let forgotten = engine.forget("erin").await?;
    assert_eq!((forgotten.decisions, forgotten.model_updates), (6, 2));
    assert_eq!(counts(&engine)?, (0, 0));
    Ok(())
}

/// A contextual decision logs the version of the posteriors it sampled: the
/// learning sequence number of the campaign's last event in them. Two
/// decisions with no learning between them log the same version (the
/// segment counts' event count, logged before, moved with every decision);
/// a redemption and a reveal move it; a restart rebuilds it from the
/// records.
#[tokio::test]
async fn a_contextual_decision_logs_the_version_of_the_posteriors_it_sampled() -> Result<(), Error>
{
    use crate::store::DecisionLog;
    let store = MemoryStore::new();
    let clock = Arc::new(ManualClock::new(T0));
    let live = super::tests::open(&store, &clock);
    let first = live.select(visit("a", None)).await?;
    clock.advance(1_000);
    let second = live.select(visit("b", None)).await?;
    assert_eq!(first.model_version, 0, "nothing learned yet");
    assert_eq!(
        second.model_version, first.model_version,
        "nothing learned between them"
    );
    live.redeem(redemption(first.decision_id)).await?;
    let third = live.select(visit("c", None)).await?;
    let redeemed = store
        .decision(&first.decision_id)?
        .ok_or(Error::NotFound("the first decision".into()))?;
    assert!(redeemed.redeemed_seq > 0);
    assert_eq!(third.model_version, redeemed.redeemed_seq);
    // The window (an hour) closes: the other decisions' non-redemptions
    // are learned, each an event of its own.
    clock.advance(2 * 3_600_000);
    live.sweep(live.now_ms(), 10_000).await?;
    let fourth = live.select(visit("a", None)).await?;
    assert!(
        fourth.model_version > third.model_version,
        "{} after {}",
        fourth.model_version,
        third.model_version
    );
    let restarted = super::tests::open(&store.fork(), &clock);
    let fifth = restarted.select(visit("a", None)).await?;
    assert_eq!(fifth.model_version, fourth.model_version, "after a restart");
    Ok(())
}
