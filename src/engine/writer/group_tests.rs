//! The writer's groups, driven by hand (no thread, no binary): a group
//! commits all or nothing, and what a command staged is what later
//! commands of the same group read.

use std::sync::Arc;

use tokio::sync::oneshot::{self, error::TryRecvError};

use super::*;
use crate::error::Reason;
use crate::{
    clock::ManualClock,
    engine::tests::{T0, WINDOW_MS, campaigns, options, sources, visit},
    store::{DecisionLog, MemoryStore},
};

/// An engine and its writer, not started.
fn assembled(store: &MemoryStore) -> (Engine, Writer) {
    assembled_with(store, campaigns())
}

/// The same over `campaigns`.
fn assembled_with(
    store: &MemoryStore,
    campaigns: Vec<crate::config::FileCampaign>,
) -> (Engine, Writer) {
    let (engine, writer, _inbox) = assembled_with_inbox(store, campaigns);
    (engine, writer)
}

/// The same, with the writer's inbox, for tests that feed the writer what
/// the engine queued.
fn assembled_with_inbox(
    store: &MemoryStore,
    campaigns: Vec<crate::config::FileCampaign>,
) -> (Engine, Writer, WriterInbox) {
    let clock = Arc::new(ManualClock::new(T0));
    let built = Engine::assemble(
        Arc::new(store.clone()),
        campaigns,
        options(),
        CustomerKey::from_bytes([1; 32]),
        IdKeys::derived(&[2; 32]),
        sources(&clock, 3),
    );
    match built {
        Ok(assembled) => assembled,
        Err(e) => panic!("assembling: {e}"),
    }
}

/// The test campaigns with a budget of one decision on offer x.
fn x_budget_of_one() -> Vec<crate::config::FileCampaign> {
    let mut limited = campaigns();
    for c in &mut limited {
        for o in &mut c.config.offers {
            if o.id == "x" {
                o.max_decisions = Some(1);
            }
        }
    }
    limited
}

/// A decision of campaign "p" for offer `offer` made at T0, as the select
/// path would hand it to the writer.
fn record(engine: &Engine, offer: &str, request_id: Option<&str>) -> DecisionRecord {
    let campaign = match engine.campaign("p") {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let features = match campaign
        .contextual
        .as_ref()
        .map(|c| c.encoder.encode(&visit("a", None).context))
    {
        Some(Ok(x)) => x,
        _ => panic!("encoding the test context"),
    };
    DecisionRecord {
        campaign: "p".into(),
        offer: offer.into(),
        segment: String::new(),
        propensity: 0.5,
        created_ms: T0,
        expires_ms: T0 + WINDOW_MS,
        request_id: request_id.map(str::to_owned),
        model_version: 0,
        state: DecisionState::Pending,
        features,
        context: Vec::new(),
        candidates: ["x".into(), "y".into(), "z".into()].into(),
        customer: None,
        learned_seq: 0,
        redeemed_seq: 0,
        arm: Arm::Bandit,
    }
}

type Answer<T> = oneshot::Receiver<Result<T, Error>>;

fn decide(
    writer: &mut Writer,
    g: &mut Group,
    id: DecisionId,
    rec: DecisionRecord,
) -> Answer<Decided> {
    let (reply, rx) = oneshot::channel();
    writer.apply(
        g,
        Command::Decide {
            id,
            rec: Box::new(rec),
            reply: Some(reply),
        },
    );
    rx
}

fn redeem(writer: &mut Writer, g: &mut Group, id: DecisionId) -> Answer<Redeemed> {
    let (reply, rx) = oneshot::channel();
    let redemption = Redemption {
        decision_id: id,
        offer_id: None,
        value: None,
    };
    writer.apply(
        g,
        Command::Redeem {
            redemption,
            now_ms: T0 + 1,
            reply,
        },
    );
    rx
}

fn answer<T: std::fmt::Debug>(rx: &mut Answer<T>) -> Result<T, Error> {
    match rx.try_recv() {
        Ok(r) => r,
        Err(TryRecvError::Empty) => panic!("no answer yet"),
        Err(TryRecvError::Closed) => panic!("answer dropped"),
    }
}

fn made(d: Result<Decided, Error>) -> Selection {
    match d {
        Ok(Decided::Made(s)) => s,
        other => panic!("not made: {other:?}"),
    }
}

/// The counts and models of campaign "p" as memory has them.
fn state(engine: &Engine) -> String {
    crate::engine::tests::learned(engine)
}

#[test]
fn a_failed_group_with_an_answered_decision_stops_the_engine() -> Result<(), Error> {
    // A failed group whose commands all wait for their answer is refused
    // and the engine goes on; one holding a decision SelectOffer already
    // answered (no reply to send) lost it, so the engine stops taking work.
    let store = MemoryStore::new();
    let (engine, mut writer) = assembled(&store);
    store.fail_commits(true);
    let mut g = Group::default();
    let mut awaited = decide(
        &mut writer,
        &mut g,
        DecisionId([1; 16]),
        record(&engine, "x", None),
    );
    assert!(!writer.finish(g));
    assert!(answer(&mut awaited).is_err());
    assert!(engine.check_healthy().is_ok(), "every caller was told");
    let mut g = Group::default();
    writer.apply(
        &mut g,
        Command::Decide {
            id: DecisionId([2; 16]),
            rec: Box::new(record(&engine, "x", None)),
            reply: None,
        },
    );
    assert!(!writer.finish(g));
    assert!(
        engine.check_healthy().is_err(),
        "an answered decision was lost: the engine must stop"
    );
    Ok(())
}

#[test]
fn a_group_commits_all_or_nothing() -> Result<(), Error> {
    let store = MemoryStore::new();
    let (engine, mut writer) = assembled(&store);
    let empty = state(&engine);
    let (a, b) = (DecisionId([1; 16]), DecisionId([2; 16]));
    // A group of two decisions and a redemption whose commit fails:
    // every command answers UNAVAILABLE, nothing is stored, memory is as
    // it was.
    store.fail_commits(true);
    let mut g = Group::default();
    let mut da = decide(&mut writer, &mut g, a, record(&engine, "x", Some("r1")));
    let mut db = decide(&mut writer, &mut g, b, record(&engine, "y", None));
    let mut ra = redeem(&mut writer, &mut g, a);
    assert!(
        matches!(da.try_recv(), Err(TryRecvError::Empty)),
        "answers come at the commit"
    );
    assert!(!writer.finish(g), "the commit failed");
    let results = [
        answer(&mut da).map(drop),
        answer(&mut db).map(drop),
        answer(&mut ra).map(drop),
    ];
    for result in results {
        assert!(
            matches!(
                result,
                Err(Error::Refused {
                    reason: Reason::StorageFailed,
                    ..
                })
            ),
            "{result:?}"
        );
    }
    assert_eq!(store.decision(&a)?, None);
    assert_eq!(store.decision(&b)?, None);
    assert_eq!(store.request("p", "r1")?, None);
    assert_eq!(state(&engine), empty, "memory changed by a failed group");
    // The same group again, stored this time: all of it.
    store.fail_commits(false);
    let mut g = Group::default();
    let mut da = decide(&mut writer, &mut g, a, record(&engine, "x", Some("r1")));
    let mut db = decide(&mut writer, &mut g, b, record(&engine, "y", None));
    let mut ra = redeem(&mut writer, &mut g, a);
    assert!(writer.finish(g));
    assert!(!made(answer(&mut da)).replayed);
    made(answer(&mut db));
    assert!(!answer(&mut ra)?.already_recorded);
    assert!(store.decision(&a)?.is_some() && store.decision(&b)?.is_some());
    assert_eq!(store.request("p", "r1")?, Some(a));
    let arms = engine.campaign("p")?.arms.read()[0];
    assert_eq!((arms.decisions, arms.redemptions), (2, 1));
    Ok(())
}

#[test]
fn later_commands_of_a_group_read_what_earlier_ones_staged() -> Result<(), Error> {
    let store = MemoryStore::new();
    let (engine, mut writer) = assembled(&store);
    let (a, b) = (DecisionId([1; 16]), DecisionId([2; 16]));
    let mut g = Group::default();
    let mut first = decide(&mut writer, &mut g, a, record(&engine, "x", Some("r")));
    // The same request id again, before anything is stored: the decision
    // staged above is the answer, not a second decision.
    let mut retry = decide(&mut writer, &mut g, b, record(&engine, "z", Some("r")));
    // A redemption of the staged decision counts; a second one is a duplicate.
    let mut once = redeem(&mut writer, &mut g, a);
    let mut twice = redeem(&mut writer, &mut g, a);
    assert_eq!(
        store.decision(&a)?,
        None,
        "nothing is stored before the commit"
    );
    assert!(writer.finish(g));
    let first = made(answer(&mut first));
    let retry = made(answer(&mut retry));
    assert!(retry.replayed);
    assert_eq!((retry.decision_id, retry.offer_id.as_str()), (a, "x"));
    assert_eq!(first.decision_id, a);
    assert!(!answer(&mut once)?.already_recorded);
    assert!(answer(&mut twice)?.already_recorded);
    assert_eq!(store.decision(&b)?, None);
    let stored = store.decision(&a)?.map(|r| r.state);
    assert!(
        matches!(stored, Some(DecisionState::Redeemed { .. })),
        "{stored:?}"
    );
    let campaign = engine.campaign("p")?;
    let totals = campaign.model.load().totals(0);
    assert_eq!((totals.trials, totals.successes), (1, 1));
    // Learned once: the decision, as its redemption.
    assert_eq!(writer.seq, 1);
    Ok(())
}

/// A fallback is counted against its offer's decision budget even in the
/// group that stages it: a SelectOffer of the same offer after it, in the
/// same group, finds the budget spent.
#[test]
fn a_fallback_counts_against_the_budget_within_its_group() -> Result<(), Error> {
    let store = MemoryStore::new();
    let (engine, mut writer) = assembled_with(&store, x_budget_of_one());
    let mut g = Group::default();
    let mut fallback = record(&engine, "x", None);
    fallback.arm = Arm::Fallback;
    let mut f = decide(&mut writer, &mut g, DecisionId([1; 16]), fallback);
    let mut s = decide(
        &mut writer,
        &mut g,
        DecisionId([2; 16]),
        record(&engine, "x", None),
    );
    assert!(writer.finish(g), "the commit succeeds");
    made(answer(&mut f));
    match answer(&mut s) {
        Ok(Decided::Spent { offer, .. }) => assert_eq!(offer, "x"),
        other => panic!("the budget of one was spent by the fallback: {other:?}"),
    }
    Ok(())
}

/// The budget race through `Engine::select`, made deterministic by driving
/// the writer by hand: 30 visits choose between x (a budget of one
/// decision) and y before the writer takes any, so one group refuses every
/// x after the first, and those visits choose again in a second group (the
/// chance that at most one of 30 draws x is about 3e-8). Every record,
/// chosen again or not, keeps the visit's declared context and its
/// features: the first draw moves them into its record, and the refused
/// record hands them back.
#[tokio::test]
async fn a_decision_chosen_again_after_a_refusal_keeps_its_context() -> Result<(), Error> {
    let store = MemoryStore::new();
    let (engine, mut writer, mut inbox) = assembled_with_inbox(&store, x_budget_of_one());
    let engine = Arc::new(engine);
    let mut visits = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let engine = engine.clone();
        visits.spawn(async move {
            let req = SelectRequest {
                candidates: vec!["x".into(), "y".into()],
                ..visit("a", None)
            };
            engine.select(req).await
        });
    }
    // One group per round: what the visits queued, applied and committed.
    let mut rounds = Vec::new();
    for _ in 0..2 {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        let mut g = Group::default();
        let mut commands = 0;
        while let Some(cmd) = inbox.try_next() {
            writer.apply(&mut g, cmd);
            commands += 1;
        }
        assert!(writer.finish(g), "the commit succeeds");
        rounds.push(commands);
    }
    let mut ids = Vec::new();
    while let Some(done) = visits.join_next().await {
        let sel = done.map_err(|e| Error::FailedPrecondition(e.to_string()))??;
        ids.push(sel.decision_id);
    }
    // Every visit in the first group; the refused ones chose again.
    assert_eq!(rounds[0], 30);
    assert!(rounds[1] >= 1, "no visit was refused: {rounds:?}");
    let want = visit("a", None).context;
    let mut xs = 0;
    for id in &ids {
        let rec = store
            .decision(id)?
            .ok_or_else(|| Error::FailedPrecondition("a decision was not stored".into()))?;
        xs += usize::from(rec.offer == "x");
        let kept: Context = rec.context.iter().cloned().collect();
        assert_eq!(
            kept, want,
            "the record of {} kept {:?}",
            rec.offer, rec.context
        );
        // The intercept and the visit's type: more than the intercept.
        assert!(rec.features.len() > 1, "features {:?}", rec.features);
    }
    assert_eq!((ids.len(), xs), (30, 1));
    Ok(())
}
