//! A campaign's published per-(segment, offer) counts: immutable snapshots
//! of its [`SegmentModel`] that SelectOffer reads without a lock on them (the
//! draw's `SnapshotCache` of sampled arms keeps its own short mutex), and the
//! writer's working copy they are published from.
//!
//! Plan (issue 19, "Decide from a snapshot", for segment-ts):
//!
//! - Readers (SelectOffer's segment choice, draw and propensity, budget
//!   totals, the minimum propensity's and the budget race's probabilities,
//!   `explain`; fallbacks, reports) load one `Arc<SegmentModel>` per
//!   request ([`PublishedSegments::load`], an `ArcSwap`: no lock) and pass
//!   it along ([`super::snapshot::Sampled`]); nothing on the request path
//!   reads the counts again.
//! - The writer thread is the only mutator. It changes its working copy
//!   (behind a mutex readers never take) and, once a group is stored,
//!   publishes [`SegmentModel::snapshot`] of it in one swap
//!   ([`PublishedSegments::change`]): the group's cells, each with its
//!   pending decisions' moves in their order, then the redemption delays
//!   (only queued until a reweighing), then the sweep's reweighing, with
//!   the counts the in-place model had, so that a reader sees a whole
//!   group or none of it. Recovery changes the working copy record by
//!   record ([`PublishedSegments::working`]) and publishes once.
//! - Copy-on-write per segment: the model keeps its segments in a
//!   persistent map (`imbl`) of `Arc` rows, so a snapshot costs O(offers)
//!   whatever the number of segments (`max_segments` defaults to 10,000),
//!   and the next change copies only the rows (and map paths) it touches;
//!   every other segment stays the same allocation in both.
//! - The simulator's `SegmentTs` keeps changing its one model in place:
//!   the counting, the delayed feedback and the posterior stay in
//!   [`SegmentModel`], one place each.

use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::{Mutex, MutexGuard};

use crate::policy::segment::SegmentModel;

/// Where a campaign's current counts are published; shared by every
/// revision of the campaign.
#[derive(Debug)]
pub(super) struct PublishedSegments {
    current: ArcSwap<SegmentModel>,
    /// The writer's copy (recovery's before it), which snapshots are taken
    /// of. Readers never take this lock.
    working: Mutex<SegmentModel>,
}

impl PublishedSegments {
    /// Publishes `model` as it is and keeps it as the working copy.
    pub(super) fn new(model: SegmentModel) -> Self {
        PublishedSegments {
            current: ArcSwap::from_pointee(model.snapshot()),
            working: Mutex::new(model),
        }
    }

    /// The current snapshot: what a request reads, whatever is published
    /// meanwhile.
    pub(super) fn load(&self) -> Arc<SegmentModel> {
        self.current.load_full()
    }

    /// Changes the working copy with `change` and, when it says it changed
    /// anything, publishes a snapshot of it in one swap.
    pub(super) fn change(&self, change: impl FnOnce(&mut SegmentModel) -> bool) -> bool {
        let mut working = self.working.lock();
        let changed = change(&mut working);
        if changed {
            self.current.store(Arc::new(working.snapshot()));
        }
        changed
    }

    /// The working copy, to change without publishing (recovery, before
    /// the campaign serves); [`PublishedSegments::publish`] after.
    pub(super) fn working(&self) -> MutexGuard<'_, SegmentModel> {
        self.working.lock()
    }

    /// Publishes the working copy as it is.
    pub(super) fn publish(&self) {
        self.change(|_| true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::segment::CellCounts;

    fn counts(trials: u64) -> CellCounts {
        CellCounts {
            trials,
            ..CellCounts::default()
        }
    }

    #[test]
    fn a_publish_shares_the_segments_it_did_not_change() {
        let published = PublishedSegments::new(SegmentModel::new(2).with_delayed_feedback(1_000));
        published.change(|m| {
            for s in ["a", "b", "c"] {
                m.set_cell(s, 0, counts(5));
                m.move_pending(s, 0, 0, 5);
            }
            true
        });
        let before = published.load();
        published.change(|m| {
            m.set_cell("b", 1, counts(3));
            m.set_cell("d", 0, counts(1));
            true
        });
        let after = published.load();
        // The loaded snapshot never changes.
        assert_eq!((before.version(), before.cell("b", 1).trials), (15, 0));
        assert!(!before.has_segment("d"));
        assert_eq!((after.version(), after.cell("b", 1).trials), (19, 3));
        assert_eq!(after.totals(0).trials, 16);
        for s in ["a", "c"] {
            assert!(after.shares_segment(&before, s), "{s} is shared");
        }
        assert!(!after.shares_segment(&before, "b"), "b was copied");
        assert_eq!(after.pending_weight("a", 0), before.pending_weight("a", 0));
        // Nothing changed, nothing published.
        assert!(!published.change(|_| false));
        assert!(Arc::ptr_eq(&after, &published.load()));
    }

    /// A segment-ts request reads the counts it loaded, whatever is
    /// published after: here a publish lands after the request's snapshot
    /// is loaded and before its draw, one under which offer x all but
    /// always wins and the visit's segment no longer fits `max_segments`,
    /// so any step that read the current counts instead (the segment, the
    /// draw, the logged version and propensity, the minimum propensity's
    /// probability, the race path after a refused offer, `explain`) would
    /// show it. Mirrors the contextual
    /// `a_decision_logs_and_explains_the_snapshot_it_sampled`.
    #[tokio::test]
    async fn a_segment_ts_decision_logs_and_explains_the_counts_it_loaded()
    -> Result<(), crate::error::Error> {
        use crate::clock::ManualClock;
        use crate::config::PolicyKind;
        use crate::engine::tests::{
            T0, WINDOW_MS, campaigns, decide_in, explained, open_campaigns, options, redemption,
            visit,
        };
        use crate::engine::{Engine, SelectRequest, race, thompson};
        use crate::error::Error;
        use crate::store::{DecisionLog, MemoryStore};

        let mut files = campaigns();
        for f in &mut files {
            f.config.policy = PolicyKind::SegmentTs;
            f.config.features.clear();
            f.config.segment_by = vec!["type".into()];
            f.config.min_propensity = 0.1;
            f.config.max_segments = 2;
            // Segment "c" borrows all it knows from the other segments.
            f.config.prior_strength = 1_000.0;
            // Every draw samples the counts it is given (no cached arms).
            f.config.snapshot_tolerance = 0.0;
        }
        let store = MemoryStore::new();
        let clock = Arc::new(ManualClock::new(T0));
        let engine: Engine = open_campaigns(&store, &clock, files, options());
        // Something learned in segment "a" only: y redeems, x and z do not.
        for _ in 0..30 {
            let s = engine.select(visit("a", None)).await?;
            if s.offer_id == "y" {
                engine.redeem(redemption(s.decision_id)).await?;
            }
        }
        engine
            .sweep(clock.advance(2 * WINDOW_MS), usize::MAX)
            .await?;
        engine.flush().await?;
        let campaign = engine.campaign("p")?;
        let weights: Vec<f64> = campaign
            .offers
            .iter()
            .map(|o| campaign.config.objective.weight(o.value))
            .collect();
        let floor = campaign.floor();
        let prior = campaign.config.prior_strength;
        // One draw's floored probability of `offer` among `set` in
        // segment `s` of `m`.
        let win = |m: &SegmentModel, s: &str, set: &[usize], offer: usize| {
            let k = set.iter().position(|&o| o == offer).unwrap_or(usize::MAX);
            let w: Vec<f64> = set.iter().map(|&o| weights[o]).collect();
            let arms = m.arms(s, set, &w, prior);
            floor.propensity(set.len(), thompson::win_probability(&arms, k))
        };

        let sampled = campaign.sample();
        let loaded = sampled.segments.clone();
        assert!(loaded.version() > 0, "the learning above has a version");
        assert_eq!(loaded.segments(), 1);
        // The publish: x redeems nine times in ten in a second segment,
        // which fills max_segments.
        campaign.model.change(|m| {
            let hot = CellCounts {
                trials: 1_000,
                successes: 900,
                expired: 100,
                value_sum: 900.0,
            };
            m.set_cell("b", 0, hot);
            true
        });
        let current = campaign.model.load();
        let now_segment = campaign.tracked_segment(&current, "c".to_owned());
        assert_eq!(now_segment, crate::policy::segment::OVERFLOW_SEGMENT);
        let all = [0, 1, 2];
        assert!(
            win(&current, &now_segment, &all, 0) > win(&loaded, "c", &all, 0) + 0.1,
            "the publish changes the probabilities: {} vs {}",
            win(&current, &now_segment, &all, 0),
            win(&loaded, "c", &all, 0)
        );

        let req = SelectRequest {
            explain: true,
            ..visit("c", None)
        };
        let ids = ["x", "y", "z"];

        // Every offer a candidate, over enough decisions that the minimum
        // propensity's exploring draw is among them.
        for _ in 0..24 {
            let sel = decide_in(&engine, &campaign, &sampled, &req, Vec::new()).await?;
            let chosen = campaign
                .offer_index(&sel.offer_id)
                .ok_or(Error::NotFound(sel.offer_id.clone()))?;
            assert_eq!(sel.model_version, loaded.version());
            assert!((sel.propensity - win(&loaded, "c", &all, chosen)).abs() < 1e-9);
            for (o, id) in ids.iter().enumerate() {
                let p = explained(&sel, id);
                assert!((p - win(&loaded, "c", &all, o)).abs() < 1e-9, "{id}: {p}");
            }
            let logged = store
                .decision(&sel.decision_id)?
                .ok_or(Error::NotFound("the decision".into()))?;
            assert_eq!(
                (
                    logged.segment.as_str(),
                    logged.model_version,
                    logged.propensity
                ),
                ("c", loaded.version(), sel.propensity),
                "the segment fits max_segments in the loaded counts"
            );
        }

        // x refused by a racing budget: the propensity sums the paths
        // through x, all under the loaded counts.
        let spent = vec![("x".to_owned(), "spent by a racing decision".to_owned())];
        let sel = decide_in(&engine, &campaign, &sampled, &req, spent).await?;
        let chosen = campaign
            .offer_index(&sel.offer_id)
            .ok_or(Error::NotFound(sel.offer_id.clone()))?;
        let after_refusal = |m: &SegmentModel, segment: &str, o| {
            race::propensity_after_refusals(&all, &[0], o, |set, c| win(m, segment, set, c))
        };
        assert_eq!(sel.model_version, loaded.version());
        assert!((sel.propensity - after_refusal(&loaded, "c", chosen)).abs() < 1e-9);
        assert!(
            (after_refusal(&loaded, "c", chosen) - after_refusal(&current, &now_segment, chosen))
                .abs()
                > 1e-3,
            "the published counts would log another propensity"
        );
        for (o, id) in ids.iter().enumerate().skip(1) {
            let p = explained(&sel, id);
            assert!(
                (p - after_refusal(&loaded, "c", o)).abs() < 1e-9,
                "{id}: {p}"
            );
        }
        Ok(())
    }
}
