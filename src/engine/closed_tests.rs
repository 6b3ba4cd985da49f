//! The report's per-customer sums of closed windows, through the writer:
//! counted once when a window closes (with its redemption), kept across
//! restarts, removed exactly by erasure, and rebuilt by the schema-9
//! migration to exactly what the live engine kept.

use std::{collections::BTreeMap, sync::Arc};

use super::tests::{T0, WINDOW_MS, options, sources};
use super::*;
use crate::{
    clock::ManualClock,
    store::{Checkpoints, DecisionLog, MemoryStore, Store},
};

/// A segment-ts campaign "u", half of its customers in the control group,
/// with a one-hour window.
fn campaigns() -> Vec<FileCampaign> {
    let text = "[[campaigns]]\nid = \"u\"\npolicy = \"segment-ts\"\nreward_window = \"1h\"\n\
                control_share = 0.5\n\
                [[campaigns.offers]]\nid = \"x\"\nvalue = 1.0\n\
                [[campaigns.offers]]\nid = \"y\"\nvalue = 2.0\n";
    match crate::config::parse_file(text, "test") {
        Ok(c) => c,
        Err(e) => panic!("test campaign: {e}"),
    }
}

const KEY: [u8; 32] = [1; 32];

fn open(store: Arc<dyn Storage>, clock: &Arc<ManualClock>) -> Engine {
    let opened = Engine::open_with(
        store,
        campaigns(),
        options(),
        CustomerKey::from_bytes(KEY),
        IdKeys::derived(&[2; 32]),
        sources(clock, 11),
    );
    match opened {
        Ok(e) => e,
        Err(e) => panic!("opening the engine: {e}"),
    }
}

fn visit(customer: Option<&str>) -> SelectRequest {
    SelectRequest {
        campaign: "u".into(),
        customer_id: customer.map(str::to_owned),
        ..SelectRequest::default()
    }
}

fn sums(engine: &Engine) -> [ClusterSums; Arm::ALL.len()] {
    match engine.campaign("u") {
        Ok(c) => *c.clusters.read(),
        Err(e) => panic!("{e}"),
    }
}

/// What the sums should be, built from scratch: per arm, each customer's
/// totals added once, each anonymous decision a customer of its own.
#[derive(Default)]
struct Expected {
    /// (arm index, customer) -> totals.
    customers: BTreeMap<(usize, String), CustomerTotals>,
    /// Per arm, the anonymous decisions' values (None: not redeemed).
    anonymous: [Vec<Option<f64>>; Arm::ALL.len()],
}

impl Expected {
    fn close(&mut self, arm: Arm, customer: Option<&str>, value: Option<f64>) {
        match customer {
            Some(c) => {
                let t = self
                    .customers
                    .entry((arm.index(), c.to_owned()))
                    .or_default();
                *t = t.with_decision(value);
            }
            None => self.anonymous[arm.index()].push(value),
        }
    }

    fn sums(&self) -> [ClusterSums; Arm::ALL.len()] {
        let mut out = [ClusterSums::default(); Arm::ALL.len()];
        for ((arm, _), t) in &self.customers {
            out[*arm].change_customer(CustomerTotals::default(), *t);
        }
        for (arm, values) in self.anonymous.iter().enumerate() {
            for v in values {
                out[arm].change_customer(
                    CustomerTotals::default(),
                    CustomerTotals::default().with_decision(*v),
                );
            }
        }
        out
    }
}

/// Visits by repeat customers and anonymous ones; some redeemed (values
/// exact in binary, so sums in any order are bit-equal).
async fn traffic(
    engine: &Engine,
    expected: &mut Expected,
    at: i64,
) -> Result<Vec<(Selection, Option<&'static str>, Option<f64>)>, Error> {
    let mut out = Vec::new();
    let customers = [
        Some("alice"),
        Some("bob"),
        Some("carol"),
        Some("dan"),
        Some("erin"),
        None,
    ];
    for i in 0..60usize {
        let who = customers[i % customers.len()];
        let d = engine.select(visit(who)).await?;
        let value = [Some(2.0), None, Some(0.5), None, None][(i * 7) % 5];
        if let Some(v) = value {
            engine
                .redeem(Redemption {
                    decision_id: d.decision_id,
                    offer_id: None,
                    value: Some(v),
                })
                .await?;
        }
        assert_eq!(d.expires_ms, at + WINDOW_MS);
        expected.close(d.arm, who, value);
        out.push((d, who, value));
    }
    Ok(out)
}

#[tokio::test]
async fn closed_windows_are_counted_once_kept_and_erased_exactly() -> Result<(), Error> {
    let store = MemoryStore::new();
    let clock = Arc::new(ManualClock::new(T0));
    let engine = open(Arc::new(store.clone()), &clock);
    let mut expected = Expected::default();
    let made = traffic(&engine, &mut expected, T0).await?;
    let arms_used: std::collections::HashSet<Arm> = made.iter().map(|(d, ..)| d.arm).collect();
    assert_eq!(arms_used.len(), 2, "both the bandit and control");
    // Redeemed but still inside the window: not counted yet, and the
    // report has no uplift yet.
    assert_eq!(sums(&engine), [ClusterSums::default(); Arm::ALL.len()]);
    let report = engine.report("u")?;
    assert!(report.uplift.is_none());
    assert_eq!(report.bandit.closed.decisions, 0.0);
    // A redemption after the window closes finalizes its decision as
    // expired before the sweep does: still counted once, by the sweep.
    clock.set(T0 + WINDOW_MS + 1);
    let unredeemed = made
        .iter()
        .find(|(_, _, v)| v.is_none())
        .map(|(d, ..)| d.decision_id);
    if let Some(id) = unredeemed {
        let late = engine.redeem(super::tests::redemption(id)).await;
        assert!(late.is_err(), "late redemptions are refused");
    }
    assert_eq!(sums(&engine), [ClusterSums::default(); Arm::ALL.len()]);
    assert_eq!(engine.sweep(engine.now_ms(), 1_000).await?, 60);
    assert_eq!(sums(&engine), expected.sums());
    // Sweeping again counts nothing twice.
    engine.sweep(engine.now_ms(), 1_000).await?;
    assert_eq!(sums(&engine), expected.sums());
    let report = engine.report("u")?;
    let bandit = expected.sums()[Arm::Bandit.index()];
    assert_eq!(report.bandit.closed, bandit);
    assert_eq!(
        report.bandit.rate.value,
        bandit.redemptions / bandit.decisions
    );
    assert!(report.uplift.is_some());
    // Kept across a restart.
    engine.flush().await?;
    drop(engine);
    let engine = open(Arc::new(store.clone()), &clock);
    assert_eq!(sums(&engine), expected.sums());

    // Erasure removes alice's cluster exactly: the sums are those of
    // everyone else, and her totals are gone.
    let alice = CustomerKey::from_bytes(KEY).hash("alice");
    assert!(!store.customer_totals(&alice)?.is_empty());
    let before = sums(&engine);
    engine.forget("alice").await?;
    expected.customers.retain(|(_, c), _| c != "alice");
    let after = sums(&engine);
    assert_ne!(after, before);
    assert_eq!(after, expected.sums());
    assert!(store.customer_totals(&alice)?.is_empty());
    let loaded: Vec<ClusterSums> = store
        .load_clusters()?
        .into_iter()
        .map(|(_, _, s)| s)
        .collect();
    assert!(loaded.contains(&after[Arm::Bandit.index()]));
    // Forgetting again changes nothing.
    engine.forget("alice").await?;
    assert_eq!(sums(&engine), expected.sums());
    Ok(())
}

/// Counting the closed windows of a store whose expiry entries are half
/// swept: a decision counts once its entry is gone.
#[tokio::test]
async fn the_migration_rebuilds_exactly_the_live_sums() -> Result<(), Box<dyn std::error::Error>> {
    let store = MemoryStore::new();
    let clock = Arc::new(ManualClock::new(T0));
    let engine = open(Arc::new(store.clone()), &clock);
    let mut closed = Expected::default();
    traffic(&engine, &mut closed, T0).await?;
    clock.set(T0 + WINDOW_MS + 1);
    engine.sweep(engine.now_ms(), 1_000).await?;
    // A second round whose windows are still open (some redeemed): not in
    // the sums, live or rebuilt.
    traffic(&engine, &mut Expected::default(), engine.now_ms()).await?;
    engine.forget("bob").await?;
    closed.customers.retain(|(_, c), _| c != "bob");
    engine.flush().await?;
    assert_eq!(sums(&engine), closed.sums());

    // The same store as schema 8 kept it: no sums, no customer totals.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("backup");
    store.write_snapshot(&mut std::fs::File::create(&file)?)?;
    let data = dir.path().join("data");
    crate::store::restore_snapshot(&file, &data)?;
    {
        let db = once_unlocked(|| sled::open(&data))?;
        let tree = db.open_tree("offer-bandit")?;
        for prefix in [&b"g/"[..], b"t/"] {
            for item in tree.scan_prefix(prefix) {
                tree.remove(item?.0)?;
            }
        }
        tree.insert("meta/schema", &8u32.to_be_bytes())?;
        db.flush()?;
    }
    let plan = crate::store::plan_migration(&data)?;
    assert_eq!(plan.migration, crate::store::Migration::RebuildFrom(8));
    assert_eq!(
        (plan.decisions, plan.campaigns),
        (store.check_decisions()?, 1)
    );
    let migrated = once_unlocked(|| Store::open(&data))?;
    assert_eq!(migrated.load_clusters()?, store.load_clusters()?);
    for who in ["alice", "bob", "carol", "dan", "erin"] {
        let hash = CustomerKey::from_bytes(KEY).hash(who);
        assert_eq!(
            DecisionLog::customer_totals(&migrated, &hash)?,
            store.customer_totals(&hash)?,
            "{who}"
        );
    }
    // And an engine opened on it reports what the live one did.
    let reopened = open(Arc::new(migrated), &clock);
    assert_eq!(sums(&reopened), closed.sums());
    Ok(())
}

/// `open` once it succeeds: sled lets go of a directory's lock a moment
/// after its last handle is dropped (on a loaded machine, seconds), so a
/// reopen right after retries for up to 10 s.
fn once_unlocked<T, E>(open: impl Fn() -> Result<T, E>) -> Result<T, E> {
    let mut opened = open();
    for _ in 0..200 {
        if opened.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        opened = open();
    }
    opened
}
