//! One conformance suite for every [`Storage`]: each check runs against
//! sled (in a temporary directory) and [`MemoryStore`], and a backend that
//! plugs in later (PostgreSQL) adds itself to [`backends`].

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use super::*;
use crate::{
    budget::DailyCounts,
    decision::IdGenerator,
    policy::contextual::{ContextualConfig, Likelihood},
    revisions::{Revision, StoredCampaign},
    status::{CampaignStatus, OfferStatus},
    uplift::{Arm, ArmCounts, ClusterSums, CustomerTotals},
};

type Result<T = ()> = std::result::Result<T, StoreError>;

/// A backend by name, with what keeps it alive (sled's directory).
type Backend = (&'static str, Arc<dyn Storage>, Option<tempfile::TempDir>);

/// Every backend, fresh and empty.
fn backends() -> Result<Vec<Backend>> {
    let dir = tempfile::tempdir().map_err(StoreError::backend)?;
    let sled: Arc<dyn Storage> = Arc::new(Store::open(dir.path())?);
    Ok(vec![
        ("sled", sled, Some(dir)),
        ("memory", Arc::new(MemoryStore::new()), None),
    ])
}

/// Runs `check` against every backend, naming the one that fails.
fn on_each(check: impl Fn(&dyn Storage) -> Result) {
    let backends = match backends() {
        Ok(b) => b,
        Err(e) => panic!("opening the backends: {e}"),
    };
    for (name, store, _dir) in backends {
        if let Err(e) = check(&*store) {
            panic!("{name}: {e}");
        }
    }
}

fn record(campaign: &str, offer: &str, created_ms: i64, customer: Option<u8>) -> DecisionRecord {
    DecisionRecord {
        campaign: campaign.into(),
        offer: offer.into(),
        segment: "gold".into(),
        propensity: 0.5,
        created_ms,
        expires_ms: created_ms + 1_000,
        request_id: None,
        model_version: 1,
        state: DecisionState::Pending,
        features: vec![(0, 1.0), (3, 0.5)],
        context: Vec::new(),
        candidates: ["a".into(), "b".into()].into(),
        customer: customer.map(|c| CustomerHash([c; 32])),
        learned_seq: 0,
        redeemed_seq: 0,
        arm: Arm::Bandit,
    }
}

#[test]
fn a_write_set_is_seen_whole_or_not_at_all() {
    on_each(|store| {
        // A reader racing the commits never sees a request key without its
        // decision or the customer index entry committed with it.
        let ids = IdGenerator::new(0);
        let sets: Vec<(DecisionId, String)> = (0..300)
            .map(|i| (ids.next(1_000 + i), format!("r{i}")))
            .collect();
        let done = AtomicBool::new(false);
        let writing = AtomicUsize::new(0);
        std::thread::scope(|s| -> Result {
            let reader = s.spawn(|| -> Result<usize> {
                let mut seen = 0;
                let customer = CustomerHash([7; 32]);
                while !done.load(Ordering::Acquire) {
                    // The set being committed now, and the one before.
                    let i = writing.load(Ordering::Acquire);
                    for (id, rid) in &sets[i.saturating_sub(1)..=i] {
                        if store.request("c", rid)? == Some(*id) {
                            seen += 1;
                            assert!(store.decision(id)?.is_some(), "request before decision");
                            assert!(store.customer_decisions(&customer)?.contains(id));
                        }
                    }
                }
                Ok(seen)
            });
            for (i, (id, rid)) in sets.iter().enumerate() {
                writing.store(i, Ordering::Release);
                let mut w = WriteSet::default();
                w.put_request("c", rid, id);
                // Other writes between the request and its decision.
                for b in 0..32u8 {
                    w.put_customer(&CustomerHash([b; 32]), id);
                }
                w.put_decision(id, &record("c", "a", 1_000 + i as i64, Some(7)));
                w.put_cell(
                    &CellKey {
                        campaign: "c".into(),
                        segment: "gold".into(),
                        offer: "a".into(),
                    },
                    &CellCounts {
                        trials: i as u64 + 1,
                        ..CellCounts::default()
                    },
                );
                store.commit(w)?;
            }
            done.store(true, Ordering::Release);
            match reader.join() {
                Ok(r) => {
                    r?;
                }
                Err(p) => std::panic::resume_unwind(p),
            }
            Ok(())
        })?;
        let cells = store.load_cells()?;
        assert_eq!(cells.len(), 1);
        assert_eq!(cells[0].1.trials, 300, "the last write of a cell wins");
        Ok(())
    });
}

#[test]
fn lookups_and_the_last_write_of_a_set_wins() {
    on_each(|store| {
        let (a, b) = (DecisionId([1; 16]), DecisionId([2; 16]));
        assert_eq!(store.decision(&a)?, None);
        assert_eq!(store.request("c", "r")?, None);
        let mut w = WriteSet::default();
        w.put_decision(&a, &record("c", "x", 10, None));
        w.put_decision(&a, &record("c", "y", 10, None));
        w.put_decision(&b, &record("c", "x", 10, None));
        w.remove_decision(&b);
        w.put_request("c", "r", &a);
        w.put_request("d", "r", &b);
        assert_eq!(
            w.staged_decision(&a).flatten().map(|r| r.offer.as_str()),
            Some("y")
        );
        assert_eq!(w.staged_decision(&b), Some(None));
        store.commit(w)?;
        assert_eq!(store.decision(&a)?.map(|r| r.offer), Some("y".into()));
        assert_eq!(store.decision(&b)?, None);
        assert_eq!(store.request("c", "r")?, Some(a));
        assert_eq!(store.request("d", "r")?, Some(b));
        assert_eq!(store.request("c", "other")?, None);
        let mut w = WriteSet::default();
        w.remove_request("c", "r");
        store.commit(w)?;
        assert_eq!(store.request("c", "r")?, None);
        assert_eq!(store.request("d", "r")?, Some(b));
        assert!(WriteSet::default().is_empty());
        Ok(())
    });
}

#[test]
fn expiries_come_due_in_time_order_and_whole() {
    on_each(|store| {
        let id = |b: u8| DecisionId([b; 16]);
        let mut w = WriteSet::default();
        // Written out of order; two entries share a time.
        w.put_expiries(300, &[id(9)]);
        w.put_expiries(100, &[id(5), id(6), id(7)]);
        w.put_expiries(200, &[id(4)]);
        w.put_expiries(200, &[id(2), id(3)]);
        w.put_expiries(50, &[]);
        store.commit(w)?;
        let times = |due: &[ExpiryEntry]| -> Vec<(i64, u8)> {
            due.iter().map(|e| (e.expires_ms, e.first.0[0])).collect()
        };
        assert_eq!(store.due_expiries(99, 10)?, vec![]);
        let first = store.due_expiries(100, 10)?;
        assert_eq!(times(&first), vec![(100, 5)]);
        assert_eq!(first[0].ids, vec![id(5), id(6), id(7)]);
        assert_eq!(
            times(&store.due_expiries(1_000, 10)?),
            vec![(100, 5), (200, 2), (200, 4), (300, 9)]
        );
        // `limit` counts decisions; entries are never split.
        assert_eq!(times(&store.due_expiries(1_000, 1)?), vec![(100, 5)]);
        assert_eq!(
            times(&store.due_expiries(1_000, 4)?),
            vec![(100, 5), (200, 2)]
        );
        let mut w = WriteSet::default();
        w.remove_expiries(&first[0]);
        store.commit(w)?;
        assert_eq!(
            times(&store.due_expiries(1_000, 10)?),
            vec![(200, 2), (200, 4), (300, 9)]
        );
        Ok(())
    });
}

#[test]
fn customer_scans_find_their_decisions_in_order() {
    on_each(|store| {
        let (c1, c2) = (CustomerHash([1; 32]), CustomerHash([2; 32]));
        let mut w = WriteSet::default();
        for b in [9u8, 3, 5] {
            w.put_customer(&c1, &DecisionId([b; 16]));
        }
        w.put_customer(&c2, &DecisionId([4; 16]));
        store.commit(w)?;
        let ids = |c| -> Result<Vec<u8>> {
            Ok(store
                .customer_decisions(c)?
                .iter()
                .map(|d| d.0[0])
                .collect())
        };
        assert_eq!(ids(&c1)?, vec![3, 5, 9]);
        assert_eq!(ids(&c2)?, vec![4]);
        assert_eq!(ids(&CustomerHash([3; 32]))?, Vec::<u8>::new());
        let mut w = WriteSet::default();
        w.remove_customer(&c1, &DecisionId([5; 16]));
        store.commit(w)?;
        assert_eq!(ids(&c1)?, vec![3, 9]);
        Ok(())
    });
}

#[test]
fn customer_totals_are_kept_by_campaign_and_arm_and_removed() {
    on_each(|store| {
        let (c1, c2) = (CustomerHash([1; 32]), CustomerHash([2; 32]));
        let t = |n| CustomerTotals {
            decisions: n,
            redemptions: 1,
            value: 0.5,
        };
        let mut w = WriteSet::default();
        w.put_customer_totals(&c1, "z", Arm::Bandit, Some(t(1)));
        w.put_customer_totals(&c1, "a", Arm::Control, Some(t(2)));
        w.put_customer_totals(&c1, "a", Arm::Bandit, Some(t(3)));
        w.put_customer_totals(&c2, "a", Arm::Bandit, Some(t(4)));
        // The last write of a set wins.
        w.put_customer_totals(&c2, "a", Arm::Bandit, Some(t(5)));
        store.commit(w)?;
        let arms = |c| -> Result<Vec<(String, Arm, u64)>> {
            Ok(store
                .customer_totals(c)?
                .into_iter()
                .map(|(campaign, arm, t)| (campaign, arm, t.decisions))
                .collect())
        };
        assert_eq!(
            arms(&c1)?,
            vec![
                ("a".to_owned(), Arm::Bandit, 3),
                ("a".to_owned(), Arm::Control, 2),
                ("z".to_owned(), Arm::Bandit, 1)
            ]
        );
        assert_eq!(arms(&c2)?, vec![("a".to_owned(), Arm::Bandit, 5)]);
        assert!(arms(&CustomerHash([3; 32]))?.is_empty());
        let mut w = WriteSet::default();
        w.put_customer_totals(&c1, "a", Arm::Control, None);
        w.put_customer_totals(&c1, "z", Arm::Bandit, None);
        store.commit(w)?;
        assert_eq!(arms(&c1)?, vec![("a".to_owned(), Arm::Bandit, 3)]);
        Ok(())
    });
}

#[test]
fn decision_scans_are_in_time_order_and_bounded() {
    on_each(|store| {
        let ids = IdGenerator::new(0);
        let mut w = WriteSet::default();
        let mut made = Vec::new();
        for ms in [5_000i64, 1_000, 3_000, 2_000, 4_000] {
            let id = ids.next(ms);
            let mut rec = record("c", "a", ms, None);
            if ms <= 2_000 {
                rec.state = DecisionState::Expired;
            }
            w.put_decision(&id, &rec);
            made.push((ms, id));
        }
        // A version-0 locator (8 bytes of ms first) sorts before them all.
        let mut legacy = [0u8; 16];
        legacy[..8].copy_from_slice(&500i64.to_be_bytes());
        w.put_decision(&DecisionId(legacy), &record("c", "a", 500, None));
        store.commit(w)?;
        let scan = |since, until| -> Result<Vec<i64>> {
            let mut out = Vec::new();
            store.scan_decisions(since, until, &mut |_, r| {
                out.push(r.created_ms);
                true
            })?;
            Ok(out)
        };
        assert_eq!(
            scan(0, i64::MAX)?,
            vec![500, 1_000, 2_000, 3_000, 4_000, 5_000]
        );
        assert_eq!(scan(2_000, 4_000)?, vec![2_000, 3_000]);
        let mut first_two = Vec::new();
        store.scan_decisions(0, i64::MAX, &mut |id, _| {
            first_two.push(id);
            first_two.len() < 2
        })?;
        assert_eq!(first_two.len(), 2, "visit stops the scan");
        assert_eq!(store.check_decisions()?, 6);
        // Resolved, closed before 10 000, made before 10 000: the two expired.
        let prunable = store.prunable(10_000, 10_000, 10)?;
        let got: Vec<i64> = prunable.iter().map(|(_, r)| r.created_ms).collect();
        assert_eq!(got, vec![1_000, 2_000]);
        assert_eq!(store.prunable(10_000, 10_000, 1)?.len(), 1);
        Ok(())
    });
}

#[test]
fn decisions_made_in_groups_are_found_changed_and_removed_exactly() {
    on_each(|store| {
        // Two streams (two processes), their times overlapping; groups of
        // more than a block.
        let (a, b) = (IdGenerator::new(0), IdGenerator::new(0));
        let mut all: Vec<(DecisionId, DecisionRecord)> = Vec::new();
        let group = |ids: &IdGenerator, from_ms: i64, n: i64, all: &mut Vec<_>| {
            let mut w = WriteSet::default();
            for ms in from_ms..from_ms + n {
                let id = ids.next(ms);
                let rec = record("c", "a", ms, Some((ms % 7) as u8));
                w.add_decision(id, rec.clone());
                all.push((id, rec));
            }
            w
        };
        store.commit(group(&a, 1_000, 100, &mut all))?;
        store.commit(group(&b, 1_050, 30, &mut all))?;
        store.commit(group(&a, 1_100, 10, &mut all))?;
        for (id, rec) in &all {
            assert_eq!(store.decision(id)?.as_ref(), Some(rec), "{id:?}");
        }
        assert_eq!(store.decision(&a.next(1_050))?, None, "never stored");
        assert_eq!(store.check_decisions()?, 140);
        // A change: read back, scanned once, with its new state.
        let (changed, mut rec) = all[70].clone();
        rec.state = DecisionState::Expired;
        let mut w = WriteSet::default();
        w.put_decision(&changed, &rec);
        store.commit(w)?;
        assert_eq!(store.decision(&changed)?, Some(rec.clone()));
        let mut seen = Vec::new();
        store.scan_decisions(0, i64::MAX, &mut |id, r| {
            seen.push((id, r));
            true
        })?;
        assert_eq!(seen.len(), 140);
        assert_eq!(seen.iter().filter(|(id, _)| *id == changed).count(), 1);
        assert!(seen.contains(&(changed, rec)));
        // Removals: a block's first decision, two more of it, one of the
        // other stream, and every decision of the last group.
        let gone: Vec<DecisionId> = [0usize, 5, 63, 110]
            .iter()
            .map(|&i| all[i].0)
            .chain(all[130..].iter().map(|(id, _)| *id))
            .collect();
        let mut w = WriteSet::default();
        for id in &gone {
            w.remove_decision(id);
        }
        store.commit(w)?;
        for (id, rec) in &all {
            let got = store.decision(id)?;
            if gone.contains(id) {
                assert_eq!(got, None, "{id:?} removed");
            } else if *id != changed {
                assert_eq!(got.as_ref(), Some(rec), "{id:?} kept");
            }
        }
        assert_eq!(store.check_decisions()?, 140 - gone.len());
        let mut n = 0;
        store.scan_decisions(0, i64::MAX, &mut |id, _| {
            assert!(!gone.contains(&id));
            n += 1;
            true
        })?;
        assert_eq!(n, 140 - gone.len());
        // A range scan starting inside a block.
        let mut times = Vec::new();
        store.scan_decisions(1_020, 1_030, &mut |_, r| {
            times.push(r.created_ms);
            true
        })?;
        assert_eq!(times, (1_020..1_030).collect::<Vec<_>>());
        // Inside a block of one stream that another stream's block began
        // after: both streams' decisions of the range.
        let mut times = Vec::new();
        store.scan_decisions(1_055, 1_060, &mut |_, r| {
            times.push(r.created_ms);
            true
        })?;
        times.sort();
        let want: Vec<i64> = (1_055..1_060).flat_map(|t| [t, t]).collect();
        assert_eq!(times, want);
        // One group whose decisions span more than a block may: each is
        // still found, and removed exactly.
        let far = 1_000 + 2 * MAX_GROUP_SPAN_MS;
        let (early, late) = (a.next(1_200), a.next(far));
        let mut w = WriteSet::default();
        w.add_decision(early, record("c", "a", 1_200, None));
        w.add_decision(late, record("c", "a", far, None));
        store.commit(w)?;
        assert_eq!(store.decision(&late)?.map(|r| r.created_ms), Some(far));
        let mut w = WriteSet::default();
        w.remove_decision(&late);
        store.commit(w)?;
        assert_eq!(store.decision(&late)?, None);
        assert_eq!(store.decision(&early)?.map(|r| r.created_ms), Some(1_200));
        assert_eq!(store.check_decisions()?, 140 - gone.len() + 1);
        Ok(())
    });
}

/// Checkpoints of every kind, as one write set.
fn checkpoint_writes() -> WriteSet {
    let config = ContextualConfig::new(Likelihood::Logistic);
    let mut w = WriteSet::default();
    for (segment, offer, trials) in [("b", "x", 3), ("a|b\0c", "x", 2), ("a", "y", 1)] {
        w.put_cell(
            &CellKey {
                campaign: "c".into(),
                segment: segment.into(),
                offer: offer.into(),
            },
            &CellCounts {
                trials,
                successes: 1,
                expired: 0,
                value_sum: 2.5,
            },
        );
    }
    let mut posterior = GaussianPosterior::prior(3, &config);
    posterior.mean[1] = 0.25;
    w.put_model("c", "y", &posterior);
    w.put_model("c", "x", &GaussianPosterior::prior(3, &config));
    w.put_model("b", "x", &GaussianPosterior::prior(3, &config));
    w.put_prior("c", &SharedPrior::new(3, 0, &config));
    w.put_model_seq(42);
    w.put_arm(
        "c",
        Arm::Control,
        &ArmCounts {
            decisions: 4,
            ..ArmCounts::default()
        },
    );
    w.put_arm("c", Arm::Bandit, &ArmCounts::default());
    let mut sums = ClusterSums::default();
    sums.add_customer(3.0, 1.0, 2.5);
    w.put_clusters("c", Arm::Control, &sums);
    w.put_clusters("c", Arm::Bandit, &ClusterSums::default());
    w.put_clusters("b", Arm::Bandit, &sums);
    w.put_daily(
        "c",
        "x",
        &DailyCounts {
            decisions: 2,
            ..DailyCounts::default()
        },
    );
    let mut traffic = crate::budget::TrafficProfile::new("America/New_York");
    traffic.today[9] = 3;
    traffic.past[18] = 2.5;
    w.put_traffic("c", &traffic);
    w.put_config(
        "c",
        &crate::config::demo()
            .ok()
            .and_then(|d| StoredCampaign::new(&d[0], Revision::unknown(), Vec::new()).ok())
            .expect("the demo campaign has a TOML form"),
    );
    w.put_status(
        "c",
        &CampaignStatus {
            paused: true,
            offers: vec![("x".into(), OfferStatus::Paused)],
        },
    );
    w
}

/// Everything the checkpoint traits load, as text to compare backends by.
fn loaded(store: &dyn Storage) -> Result<String> {
    Ok(format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{}\n{:?}\n{:?}",
        store.load_cells()?,
        store.load_models()?,
        store.load_priors()?,
        store.load_arms()?,
        store.load_clusters()?,
        store.load_daily()?,
        store.load_traffic()?,
        store.model_seq()?,
        store.load_configs()?,
        store.load_statuses()?,
    ))
}

#[test]
fn checkpoints_round_trip_in_the_same_order_everywhere() -> Result {
    let mut seen = Vec::new();
    for (name, store, _dir) in backends()? {
        assert_eq!(store.model_seq()?, 0, "{name}");
        assert!(store.load_cells()?.is_empty(), "{name}");
        store.commit(checkpoint_writes())?;
        store.flush()?;
        let cells = store.load_cells()?;
        let order: Vec<(&str, &str)> = cells
            .iter()
            .map(|(k, _)| (k.segment.as_str(), k.offer.as_str()))
            .collect();
        assert_eq!(
            order,
            vec![("a", "y"), ("a|b\0c", "x"), ("b", "x")],
            "{name}"
        );
        assert_eq!(store.model_seq()?, 42, "{name}");
        assert_eq!(store.load_models()?[2].2.mean[1], 0.25, "{name}");
        assert_eq!(store.load_arms()?[0].1, "bandit", "{name}");
        let clusters = store.load_clusters()?;
        let order: Vec<(&str, &str)> = clusters
            .iter()
            .map(|(c, a, _)| (c.as_str(), a.as_str()))
            .collect();
        assert_eq!(
            order,
            vec![("b", "bandit"), ("c", "bandit"), ("c", "control")],
            "{name}"
        );
        assert_eq!(clusters[2].2.decisions_sq, 9.0, "{name}");
        assert!(store.load_statuses()?[0].1.paused, "{name}");
        let traffic = store.load_traffic()?;
        assert_eq!(traffic.len(), 1, "{name}");
        assert_eq!(traffic[0].1.time_zone, "America/New_York", "{name}");
        assert_eq!(
            (traffic[0].1.today[9], traffic[0].1.past[18]),
            (3, 2.5),
            "{name}"
        );
        seen.push((name, loaded(&*store)?));
    }
    assert_eq!(
        seen[0].1, seen[1].1,
        "{} and {} differ",
        seen[0].0, seen[1].0
    );
    Ok(())
}

#[test]
fn customer_keys_are_kept_and_a_changed_key_is_refused() {
    on_each(|store| {
        let generated = store.customer_key(None)?;
        assert_eq!(store.customer_key(None)?, generated);
        assert_eq!(store.customer_key(Some(generated.clone()))?, generated);
        let other = CustomerKey::from_bytes([9; 32]);
        assert!(matches!(
            store.customer_key(Some(other)),
            Err(StoreError::CustomerKeyMismatch { .. })
        ));
        Ok(())
    });
}

/// A backup of any backend restores into sled and reads back the same.
#[test]
fn backups_of_every_backend_restore_into_sled() -> Result {
    let io = |e: std::io::Error| StoreError::backend(e);
    for (name, store, _dir) in backends()? {
        store.commit(checkpoint_writes())?;
        let id = DecisionId([3; 16]);
        let mut w = WriteSet::default();
        w.put_decision(&id, &record("c", "x", 10, Some(1)));
        w.put_customer(&CustomerHash([1; 32]), &id);
        w.put_request("c", "r", &id);
        w.put_expiries(1_010, &[id]);
        let totals = CustomerTotals {
            decisions: 2,
            redemptions: 1,
            value: 1.5,
        };
        w.put_customer_totals(&CustomerHash([1; 32]), "c", Arm::Control, Some(totals));
        store.commit(w)?;
        let key = store.customer_key(None)?;
        let dir = tempfile::tempdir().map_err(io)?;
        let file = dir.path().join("backup");
        let mut out = std::fs::File::create(&file).map_err(io)?;
        let n = store.write_snapshot(&mut out)?;
        assert_eq!(restore_snapshot(&file, &dir.path().join("r"))?, n, "{name}");
        // The restore's sled handle is dropped, but its I/O threads close
        // the file a moment later (an open at once failed on the lock twice
        // in two days of full test runs).
        let restored = super::tests::reopen(&dir.path().join("r"))?;
        assert_eq!(loaded(&restored)?, loaded(&*store)?, "{name}");
        assert_eq!(DecisionLog::decision(&restored, &id)?, store.decision(&id)?);
        assert_eq!(DecisionLog::request(&restored, "c", "r")?, Some(id));
        assert_eq!(restored.due_expiries(2_000, 10)?.len(), 1, "{name}");
        assert_eq!(
            DecisionLog::customer_totals(&restored, &CustomerHash([1; 32]))?,
            vec![("c".to_owned(), Arm::Control, totals)],
            "{name}"
        );
        assert_eq!(restored.customer_key(None)?, key, "{name}");
    }
    Ok(())
}

#[test]
fn a_failed_commit_of_the_memory_store_applies_nothing() -> Result {
    let store = MemoryStore::new();
    store.fail_commits(true);
    let mut w = WriteSet::default();
    w.put_decision(&DecisionId([1; 16]), &record("c", "x", 1, None));
    assert!(store.commit(w).is_err());
    store.fail_commits(false);
    assert_eq!(store.decision(&DecisionId([1; 16]))?, None);
    // A fork is a copy: later commits to either do not reach the other.
    let fork = store.fork();
    let mut w = WriteSet::default();
    w.put_model_seq(3);
    store.commit(w)?;
    assert_eq!((store.model_seq()?, fork.model_seq()?), (3, 0));
    Ok(())
}
