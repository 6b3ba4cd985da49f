//! The engine without the binary: over a [`MemoryStore`], on a manual
//! clock and a seeded generator. Expiry at the right virtual time, the
//! checkpoint an erasure forces, and recovery to exactly the state before.

use std::sync::Arc;

use super::*;
use crate::error::Reason;
use crate::{
    clock::ManualClock,
    context::FeatureValue,
    store::{Checkpoints, DecisionLog, MemoryStore},
};

/// A Unix time to start from (2025-06-15).
pub(super) const T0: i64 = 1_750_000_000_000;
/// The test campaign's reward window.
pub(super) const WINDOW_MS: i64 = 3_600_000;

/// A logistic-ts campaign "p" (learned prior on, by default) with a
/// one-hour window and three offers.
pub(super) fn campaigns() -> Vec<FileCampaign> {
    let text = "[[campaigns]]\nid = \"p\"\npolicy = \"logistic-ts\"\nreward_window = \"1h\"\n\
                [[campaigns.features]]\nkind = \"categorical\"\nname = \"type\"\nvalues = [\"a\", \"b\", \"c\"]\n\
                [[campaigns.offers]]\nid = \"x\"\nvalue = 1.0\n\
                [[campaigns.offers]]\nid = \"y\"\nvalue = 2.0\n\
                [[campaigns.offers]]\nid = \"z\"\nvalue = 1.5\n";
    match crate::config::parse_file(text, "test") {
        Ok(c) => c,
        Err(e) => panic!("test campaign: {e}"),
    }
}

/// Options that never checkpoint on time: only flushes, erasures and
/// config changes do, so that restarts replay.
pub(super) fn options() -> EngineOptions {
    EngineOptions {
        checkpoint_interval: Duration::from_secs(86_400),
        await_decisions: true,
        ..EngineOptions::default()
    }
}

pub(super) fn sources(clock: &Arc<ManualClock>, seed: u64) -> Sources {
    Sources {
        clock: clock.clone(),
        rng: RngSource::seeded(seed),
    }
}

pub(super) fn open(store: &MemoryStore, clock: &Arc<ManualClock>) -> Engine {
    open_with_options(store, clock, options())
}

fn open_with_options(
    store: &MemoryStore,
    clock: &Arc<ManualClock>,
    options: EngineOptions,
) -> Engine {
    open_campaigns(store, clock, campaigns(), options)
}

/// An engine over `store` serving `campaigns`, on `clock` with seed 7 (the
/// engine tests' common keys).
pub(super) fn open_campaigns(
    store: &MemoryStore,
    clock: &Arc<ManualClock>,
    campaigns: Vec<FileCampaign>,
    options: EngineOptions,
) -> Engine {
    let opened = Engine::open_with(
        Arc::new(store.clone()),
        campaigns,
        options,
        CustomerKey::from_bytes([1; 32]),
        IdKeys::derived(&[2; 32]),
        sources(clock, 7),
    );
    match opened {
        Ok(e) => e,
        Err(e) => panic!("opening the engine: {e}"),
    }
}

pub(super) fn visit(kind: &str, customer: Option<String>) -> SelectRequest {
    let mut context = Context::new();
    context.insert("type".into(), FeatureValue::Category(kind.into()));
    SelectRequest {
        campaign: "p".into(),
        context,
        customer_id: customer,
        ..SelectRequest::default()
    }
}

/// A decision by `select_among` in `campaign`'s loaded `sampled` snapshot,
/// with `spent` (offer, why) refused since a first draw among offers 0-2:
/// the snapshot tests drive one request's steps by hand this way.
pub(super) async fn decide_in(
    engine: &Engine,
    campaign: &Arc<Campaign>,
    sampled: &super::snapshot::Sampled<'_>,
    req: &SelectRequest,
    spent: Vec<(String, String)>,
) -> Result<Selection, Error> {
    let first = std::sync::OnceLock::new();
    let _ = first.set(vec![0, 1, 2]);
    // select_among moves the kept context into the record.
    let mut req = req.clone();
    match engine
        .select_among(
            campaign,
            sampled,
            &mut req,
            &spent,
            &std::sync::OnceLock::new(),
            &first,
        )
        .await?
    {
        Decided::Made(s) => Ok(s),
        Decided::Spent { offer, .. } => Err(Error::FailedPrecondition(format!("{offer} refused"))),
    }
}

/// The probability `explain` gave offer `id` in `sel` (NaN if none).
pub(super) fn explained(sel: &Selection, id: &str) -> f64 {
    sel.explanation
        .iter()
        .find(|e| e.offer_id == id)
        .map_or(f64::NAN, |e| e.probability)
}

pub(super) fn redemption(id: DecisionId) -> Redemption {
    Redemption {
        decision_id: id,
        offer_id: None,
        value: None,
    }
}

/// Everything the engine has learned and counted, as text (f64s print
/// exactly, so equal text is bit-equal state).
pub(super) fn learned(engine: &Engine) -> String {
    let mut out = String::new();
    for c in engine.campaigns() {
        let offers: Vec<&str> = c.offers.iter().map(|o| o.id.as_str()).collect();
        let mut cells: Vec<(String, usize, CellCounts)> = c
            .model
            .load()
            .iter_cells()
            .map(|(s, o, n)| (s.to_owned(), o, n))
            .collect();
        cells.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        out += &format!(
            "{} {offers:?}\ncells {cells:?}\narms {:?}\nclosed {:?}\ndaily {:?}\ntraffic {:?}\nstatus {:?}\n",
            c.config.id,
            *c.arms.read(),
            *c.clusters.read(),
            *c.daily.read(),
            *c.traffic.read(),
            *c.status.read()
        );
        if let Some(ctx) = &c.contextual {
            let snapshot = ctx.models.load();
            out += &format!(
                "models {:?} version {}\nprior {:?}\n",
                snapshot.to_vec(),
                snapshot.version,
                *ctx.prior.read()
            );
        }
    }
    out
}

/// A campaign's arm counts.
fn arms(engine: &Engine) -> [ArmCounts; Arm::ALL.len()] {
    match engine.campaign("p") {
        Ok(c) => *c.arms.read(),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn a_decision_expires_at_its_virtual_window_end() -> Result<(), Error> {
    let store = MemoryStore::new();
    let clock = Arc::new(ManualClock::new(T0));
    let engine = open(&store, &clock);
    let a = engine.select(visit("a", None)).await?;
    let b = engine.select(visit("b", None)).await?;
    assert_eq!(a.expires_ms, T0 + WINDOW_MS);
    // A millisecond before the window closes: nothing is due.
    clock.set(T0 + WINDOW_MS - 1);
    assert_eq!(engine.sweep(engine.now_ms(), 100).await?, 0);
    // At its close, a redemption still counts...
    clock.set(T0 + WINDOW_MS);
    assert!(
        !engine
            .redeem(redemption(a.decision_id))
            .await?
            .already_recorded
    );
    // ...and the sweep finalizes the other.
    assert_eq!(engine.sweep(engine.now_ms(), 100).await?, 2);
    let counts = arms(&engine)[Arm::Bandit.index()];
    assert_eq!(
        (counts.decisions, counts.redemptions, counts.expired),
        (2, 1, 1)
    );
    assert_eq!(
        store.decision(&b.decision_id)?.map(|r| r.state),
        Some(DecisionState::Expired)
    );
    assert!(store.due_expiries(i64::MAX, 10)?.is_empty());
    // A millisecond after: late, not counted.
    let c = engine.select(visit("c", None)).await?;
    clock.set(c.expires_ms + 1);
    match engine.redeem(redemption(c.decision_id)).await {
        Err(Error::Refused {
            reason: Reason::RedemptionLate,
            message,
        }) => assert!(message.contains("past its reward window"), "{message}"),
        other => panic!("a late redemption answered {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn erasure_checkpoints_the_models_at_once() -> Result<(), Error> {
    let store = MemoryStore::new();
    let clock = Arc::new(ManualClock::new(T0));
    let engine = open(&store, &clock);
    for i in 0..30 {
        clock.advance(1_000);
        let customer = Some(["alice", "bob", "carol"][i % 3].to_owned());
        let s = engine.select(visit(["a", "b"][i % 2], customer)).await?;
        if i % 4 == 0 {
            engine.redeem(redemption(s.decision_id)).await?;
        }
    }
    assert_eq!(
        store.model_seq()?,
        0,
        "no checkpoint yet: events live in their records"
    );
    let forgotten = engine.forget("alice").await?;
    assert_eq!(forgotten.decisions, 10);
    // Learned so far: the 8 redemptions (3 of them alice's); the other
    // decisions wait for their reveal or their window's close.
    assert_eq!(forgotten.model_updates, 3);
    // The models stored are the ones in memory, as of every event.
    assert_eq!(store.model_seq()?, 8);
    let campaign = engine.campaign("p")?;
    let stored: Vec<GaussianPosterior> = store.load_models()?.into_iter().map(|m| m.2).collect();
    let ctx = campaign
        .contextual
        .as_ref()
        .ok_or(Error::NotFound("ctx".into()))?;
    assert_eq!(stored, ctx.models.load().to_vec());
    assert_eq!(store.load_priors()?[0].1, *ctx.prior.read());
    let alice = CustomerKey::from_bytes([1; 32]).hash("alice");
    assert!(store.customer_decisions(&alice)?.is_empty());
    assert_eq!(arms(&engine)[0].decisions, 20);
    Ok(())
}

/// Count-based forgetting (`half_life`) has discounted an observation by
/// 2^(-n / half_life) once n later observations of its offer were learned,
/// so erasure removes it with that weight: a redeemed decision's one
/// observation, with the later ones counted over everything the writer
/// learned for the offer since (redemptions, an earlier decision's late
/// redemption, non-redemptions learned at the windows' close), not other
/// offers'.
#[tokio::test]
async fn erasure_under_half_life_removes_the_weight_later_observations_left() -> Result<(), Error> {
    let half_life = 40.0;
    let text = format!(
        "[[campaigns]]\nid = \"h\"\npolicy = \"linear-ts\"\nreward_window = \"1h\"\n\
         half_life = {half_life}\ntime_half_life_days = 0\nadaptive_prior = false\n\
         [[campaigns.features]]\nkind = \"categorical\"\nname = \"type\"\nvalues = [\"a\", \"b\"]\n\
         [[campaigns.offers]]\nid = \"x\"\n[[campaigns.offers]]\nid = \"y\"\n"
    );
    let campaigns = crate::config::parse_file(&text, "test")
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let store = MemoryStore::new();
    let clock = Arc::new(ManualClock::new(T0));
    let engine = Engine::open_with(
        Arc::new(store.clone()),
        campaigns,
        options(),
        CustomerKey::from_bytes([1; 32]),
        IdKeys::derived(&[2; 32]),
        sources(&clock, 7),
    )?;
    let visit = |offer: &str, kind: &str, customer: &str| {
        let mut context = Context::new();
        context.insert("type".into(), FeatureValue::Category(kind.into()));
        SelectRequest {
            campaign: "h".into(),
            context,
            candidates: vec![offer.into()],
            customer_id: Some(customer.into()),
            ..SelectRequest::default()
        }
    };
    // Learning events of offer x, in order; "D redeemed" is the erased
    // decision's one observation (redeemed before its non-redemption was
    // revealed).
    let mut events: Vec<&str> = Vec::new();
    clock.advance(1_000);
    let early = engine.select(visit("x", "b", "bob")).await?;
    clock.advance(1_000);
    let erased = engine.select(visit("x", "a", "alice")).await?;
    for i in 0..7 {
        clock.advance(1_000);
        let s = engine
            .select(visit("x", ["a", "b"][i % 2], "carol"))
            .await?;
        if i % 3 == 0 {
            engine.redeem(redemption(s.decision_id)).await?;
            events.push("carol redeemed");
        }
        // Offer y's events do not discount offer x's observations.
        engine.select(visit("y", "a", "dave")).await?;
    }
    engine.redeem(redemption(erased.decision_id)).await?;
    events.push("D redeemed");
    // An earlier decision's redemption, learned after both.
    engine.redeem(redemption(early.decision_id)).await?;
    events.push("bob redeemed");
    for _ in 0..5 {
        clock.advance(1_000);
        engine.select(visit("x", "b", "erin")).await?;
    }
    // The windows close: the non-redemptions are learned (carol's 4 and
    // erin's 5; offer y's do not count).
    let now = clock.advance(2 * 3_600_000);
    engine.sweep(now, usize::MAX).await?;
    events.extend(["closed"; 9]);
    let later = |what: &str| -> f64 {
        let at = events
            .iter()
            .position(|e| *e == what)
            .unwrap_or(events.len());
        (events.len() - at - 1) as f64
    };
    let after_redemption = later("D redeemed");
    assert_eq!(after_redemption, 10.0);
    let campaign = engine.campaign("h")?;
    let ctx = campaign
        .contextual
        .as_ref()
        .ok_or(Error::NotFound("ctx".into()))?;
    let x = ctx
        .encoder
        .encode(&visit("x", "a", "alice").context)
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let before = ctx
        .models
        .load()
        .get(0)
        .cloned()
        .ok_or(Error::NotFound("offer 0".into()))?;
    // The closed form: each observation removed with 2^(-n / half_life).
    let removed_with = |decision_weight: f64, redemption_weight: f64| {
        let variances = vec![ctx.config.prior_variance; ctx.encoder.dim()];
        let removal = crate::policy::contextual::Removal {
            decision_weight,
            redemption_weight,
            weights_are_exact: false,
            prior_variance: &variances,
        };
        let mut m = before.clone();
        // The noise linear-ts learns with (at the configured rate: no
        // learned prior here).
        let config = crate::policy::shared_prior::learning_config(&ctx.config, None);
        m.unlearn_decision(&x, true, &removal, &config);
        m
    };
    let weight = |n: f64| 0.5f64.powf(n / half_life);
    let expected = removed_with(1.0, weight(after_redemption));
    let at_full_weight = removed_with(1.0, 1.0);
    let forgotten = engine.forget("alice").await?;
    assert_eq!((forgotten.decisions, forgotten.model_updates), (1, 1));
    let after = engine
        .campaign("h")?
        .contextual
        .as_ref()
        .and_then(|c| c.models.load().get(0).cloned());
    let after = after.ok_or(Error::NotFound("ctx".into()))?;
    for (i, (a, e)) in after.mean.iter().zip(&expected.mean).enumerate() {
        assert!(
            (a - e).abs() < 1e-12,
            "mean {i}: {a} removed, {e} by the closed form"
        );
    }
    assert!(
        after
            .mean
            .iter()
            .zip(&at_full_weight.mean)
            .any(|(a, f)| (a - f).abs() > 1e-6),
        "the weights matter here: full weight removes another mean"
    );
    assert_eq!(after.decisions, before.decisions - 1);
    Ok(())
}

/// The checkpoint interval runs on the engine's clock, not the wall clock:
/// under a manual clock nothing is checkpointed until virtual time passes
/// the interval, then the next group writes every model, and the interval
/// starts again from that time.
#[tokio::test]
async fn the_checkpoint_interval_runs_on_the_engine_clock() -> Result<(), Error> {
    let store = MemoryStore::new();
    let clock = Arc::new(ManualClock::new(T0));
    let options = EngineOptions {
        checkpoint_interval: Duration::from_secs(60),
        await_decisions: true,
        ..EngineOptions::default()
    };
    let engine = open_with_options(&store, &clock, options);
    // Every decision redeemed: one learning event each.
    for i in 0..5 {
        clock.advance(1_000);
        let s = engine.select(visit(["a", "b"][i % 2], None)).await?;
        engine.redeem(redemption(s.decision_id)).await?;
    }
    assert_eq!(store.model_seq()?, 0, "5 s of virtual time: no checkpoint");
    clock.set(T0 + 60_000);
    let s = engine.select(visit("c", None)).await?;
    assert_eq!(
        store.model_seq()?,
        5,
        "60 s of virtual time: the sixth decision's group checkpoints"
    );
    engine.redeem(redemption(s.decision_id)).await?;
    clock.advance(59_999);
    engine.select(visit("a", None)).await?;
    assert_eq!(store.model_seq()?, 5, "the interval starts again");
    clock.advance(1);
    engine.select(visit("b", None)).await?;
    assert_eq!(store.model_seq()?, 6);
    Ok(())
}

/// Drive an engine, then restart over the same store two ways: after a
/// flush (no replay) and from a copy taken without one (a crash: the
/// models are rebuilt from the checkpoint plus the events since). Both
/// equal the state before, exactly.
#[tokio::test]
async fn recovery_rebuilds_exactly_the_state_before() -> Result<(), Error> {
    let store = MemoryStore::new();
    let clock = Arc::new(ManualClock::new(T0));
    let engine = open(&store, &clock);
    let mut open_decision = None;
    for i in 0..120usize {
        clock.advance(20_000);
        let customer = (i % 5 != 0).then(|| format!("m{}", i % 13));
        let s = engine
            .select(visit(["a", "b", "c"][i % 3], customer))
            .await?;
        if i % 3 == 1 || i % 7 == 0 {
            engine.redeem(redemption(s.decision_id)).await?;
        } else {
            open_decision = Some(s.decision_id);
        }
        if i == 60 {
            // A checkpoint in the middle: replay starts after it.
            engine.forget("m4").await?;
        }
        if i % 40 == 39 {
            engine.sweep(engine.now_ms(), 1_000).await?;
        }
    }
    let before = learned(&engine);
    let crashed = store.fork();
    assert!(crashed.model_seq()? > 0, "the erasure checkpointed");
    let replayed = {
        let (_, last) = recovery::recover(&crashed.fork(), Vec::new(), T0)?;
        last - crashed.model_seq()?
    };
    assert!(replayed > 50, "a restart replays {replayed} events");
    engine.flush().await?;
    drop(engine);
    let after_crash = open(&crashed, &clock);
    assert_eq!(learned(&after_crash), before, "after a crash");
    let after_flush = open(&store, &clock);
    assert_eq!(learned(&after_flush), before, "after a flush");
    // And the restarted engine goes on from there: a redemption of a
    // decision made before the restart counts once.
    let open_decision = open_decision.ok_or(Error::NotFound("no open decision".into()))?;
    let first = after_crash.redeem(redemption(open_decision)).await?;
    let again = after_crash.redeem(redemption(open_decision)).await?;
    assert!(!first.already_recorded && again.already_recorded);
    Ok(())
}

/// `min_propensity = 0.1` on the test campaign: every candidate gets at
/// least 0.1, each logged propensity is min + (1 - K min) x p_policy (the
/// explanation's probability of the chosen offer), and over many seeded
/// selects each offer's count matches the sum of its probabilities.
#[tokio::test]
async fn a_minimum_propensity_floors_every_candidate_and_is_logged_exactly() -> Result<(), Error> {
    floored_selects(PolicyKind::LogisticTs).await?;
    floored_selects(PolicyKind::SegmentTs).await
}

async fn floored_selects(policy: PolicyKind) -> Result<(), Error> {
    let mut files = campaigns();
    for f in &mut files {
        f.config.min_propensity = 0.1;
        if policy == PolicyKind::SegmentTs {
            f.config.policy = policy;
            f.config.features.clear();
            f.config.segment_by = vec!["type".into()];
        }
    }
    let store = MemoryStore::new();
    let clock = Arc::new(ManualClock::new(T0));
    let engine = match Engine::open_with(
        Arc::new(store.clone()),
        files,
        options(),
        CustomerKey::from_bytes([1; 32]),
        IdKeys::derived(&[2; 32]),
        sources(&clock, 11),
    ) {
        Ok(e) => e,
        Err(e) => panic!("opening the engine: {e}"),
    };
    // x redeems every time: the policy alone soon nearly never picks y or z
    // (once their decisions have aged: segment-ts weighs a pending decision
    // by the chance its redemption would have come by now).
    for _ in 0..150 {
        clock.advance(30_000);
        let s = engine.select(visit("a", None)).await?;
        if s.offer_id == "x" {
            engine.redeem(redemption(s.decision_id)).await?;
        }
        engine.sweep(engine.now_ms(), 1_000).await?;
    }
    let n = 1500;
    let mut counts: HashMap<String, f64> = HashMap::new();
    let mut expected: HashMap<String, (f64, f64)> = HashMap::new();
    let mut smallest_policy = 1.0_f64;
    for _ in 0..n {
        let s = engine
            .select(SelectRequest {
                explain: true,
                ..visit("a", None)
            })
            .await?;
        let mut total = 0.0;
        for e in &s.explanation {
            assert!(e.probability >= 0.1 - 1e-12, "{e:?}");
            total += e.probability;
            let (sum, var) = expected.entry(e.offer_id.clone()).or_default();
            *sum += e.probability;
            *var += e.probability * (1.0 - e.probability);
            // p_policy = (p - min) / (1 - K min)
            smallest_policy = smallest_policy.min((e.probability - 0.1) / 0.7);
            if e.offer_id == s.offer_id {
                assert!(
                    (s.propensity - e.probability).abs() < 1e-9,
                    "logged {} vs {}",
                    s.propensity,
                    e.probability
                );
            }
        }
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        *counts.entry(s.offer_id.clone()).or_default() += 1.0;
        if s.offer_id == "x" {
            engine.redeem(redemption(s.decision_id)).await?;
        }
    }
    // The floor matters here: the policy alone gives some offer almost nothing.
    assert!(smallest_policy < 0.01, "{smallest_policy}");
    for (offer, (sum, var)) in &expected {
        let c = counts.get(offer).copied().unwrap_or(0.0);
        assert!(
            (c - sum).abs() < 4.0 * var.sqrt() + 1.0,
            "{offer}: chosen {c} times, probabilities sum to {sum}"
        );
        assert!(c >= 0.1 * n as f64 * 0.8, "{offer}: {c}");
    }
    Ok(())
}

/// The reply names the context keys the campaign does not declare, alike
/// for a decision made now (its record took the declared keys) and for its
/// replay by request id found before any record was built (the declared
/// keys still in its context).
#[tokio::test]
async fn undeclared_keys_are_reported_alike_for_a_decision_and_its_replay() -> Result<(), Error> {
    let store = MemoryStore::new();
    let clock = Arc::new(ManualClock::new(T0));
    let engine = open(&store, &clock);
    let mut req = visit("a", Some("c1".into()));
    req.context.insert("zeta".into(), FeatureValue::Flag(true));
    req.context
        .insert("alpha".into(), FeatureValue::Number(1.0));
    req.request_id = Some("r-1".into());
    let made = engine.select(req.clone()).await?;
    assert!(!made.replayed);
    assert_eq!(made.ignored_features, ["alpha", "zeta"]);
    let again = engine.select(req).await?;
    assert!(again.replayed);
    assert_eq!(again.decision_id, made.decision_id);
    assert_eq!(again.ignored_features, ["alpha", "zeta"]);
    Ok(())
}
