//! A contextual campaign's published posteriors: immutable, versioned
//! snapshots that SelectOffer samples without taking a lock, and the one
//! place that publishes the next one.
//!
//! A snapshot is never changed once published. Publishing builds the next
//! one from the current one (cloning the `Arc` of every offer whose
//! posterior did not change: O(K) pointer copies plus the changed
//! posteriors) and swaps it in atomically, so a reader sees a whole
//! write group's change or none of it. A request loads the snapshot once
//! and uses it for its draw, its logged `model_version` and propensity,
//! and its explanation ([`SampledModels`]).

use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::{Campaign, Contextual};
use crate::policy::{
    contextual::GaussianPosterior,
    segment::{SampledArms, SegmentModel},
};

/// Every offer's posterior of a contextual campaign at one version.
#[derive(Debug, Default)]
pub(super) struct ModelSnapshot {
    /// The learning sequence number of the last event in the posteriors
    /// (0: none), what a decision sampling them logs as `model_version`: a
    /// log position, the same after a restart replays the log.
    pub(super) version: u64,
    /// By offer index (offers are only ever appended).
    pub(super) posteriors: Vec<Arc<GaussianPosterior>>,
}

impl ModelSnapshot {
    /// Offer `offer`'s posterior.
    pub(super) fn get(&self, offer: usize) -> Option<&GaussianPosterior> {
        self.posteriors.get(offer).map(Arc::as_ref)
    }

    /// Every posterior, by offer index.
    pub(super) fn iter(&self) -> impl Iterator<Item = &GaussianPosterior> {
        self.posteriors.iter().map(Arc::as_ref)
    }

    /// Owned copies of every posterior, to work on before publishing.
    pub(super) fn to_vec(&self) -> Vec<GaussianPosterior> {
        self.iter().cloned().collect()
    }
}

/// Where a contextual campaign's current snapshot is published; shared by
/// every revision of the campaign.
#[derive(Debug, Default)]
pub(super) struct PublishedModels {
    current: ArcSwap<ModelSnapshot>,
    /// Held by a publisher from reading the current snapshot to swapping in
    /// the next, so that two publishers never lose each other's change.
    /// Readers never take it.
    publishing: Mutex<()>,
}

impl PublishedModels {
    /// The current snapshot: what a request samples, whatever is published
    /// meanwhile.
    pub(super) fn load(&self) -> Arc<ModelSnapshot> {
        self.current.load_full()
    }

    /// Publishes, in one swap, the `changed` posteriors (by offer index;
    /// an index past the last offer is ignored) with `version` (None: the
    /// version stays, as for a change that learned no event).
    pub(super) fn publish(
        &self,
        changed: impl IntoIterator<Item = (usize, GaussianPosterior)>,
        version: Option<u64>,
    ) {
        self.next(|posteriors, v| {
            for (offer, posterior) in changed {
                if let Some(slot) = posteriors.get_mut(offer) {
                    *slot = Arc::new(posterior);
                }
            }
            if let Some(version) = version {
                *v = version;
            }
        });
    }

    /// Publishes every offer's posterior at once (`all`, by offer index,
    /// one per offer), with `version` (None: the version stays).
    pub(super) fn publish_all(&self, all: Vec<GaussianPosterior>, version: Option<u64>) {
        self.next(|posteriors, v| {
            *posteriors = all.into_iter().map(Arc::new).collect();
            if let Some(version) = version {
                *v = version;
            }
        });
    }

    /// Publishes a new offer's posterior after the last offer's.
    pub(super) fn push(&self, posterior: GaussianPosterior) {
        self.next(|posteriors, _| posteriors.push(Arc::new(posterior)));
    }

    /// Builds the next snapshot from the current one with `change` and
    /// swaps it in.
    fn next(&self, change: impl FnOnce(&mut Vec<Arc<GaussianPosterior>>, &mut u64)) {
        let _publishing = self.publishing.lock();
        let current = self.current.load();
        let mut posteriors = current.posteriors.clone();
        let mut version = current.version;
        change(&mut posteriors, &mut version);
        self.current.store(Arc::new(ModelSnapshot {
            version,
            posteriors,
        }));
    }
}

/// A contextual campaign as one request samples it: its encoder and
/// hyperparameters, and the snapshot loaded once for the whole request
/// (retries after a refused offer included).
pub(super) struct SampledModels<'a> {
    pub(super) ctx: &'a Contextual,
    pub(super) snapshot: Arc<ModelSnapshot>,
}

/// The learned state one request reads, each part loaded once for the
/// whole request (retries after a refused offer included): whatever is
/// published meanwhile, its draws, logged version and propensity, budget
/// totals and explanation come from these.
pub(super) struct Sampled<'a> {
    /// The campaign's counts ([`super::segment_snapshot`]): segment-ts's
    /// posterior, and every campaign's budget totals.
    pub(super) segments: Arc<SegmentModel>,
    /// A contextual campaign's posteriors.
    pub(super) contextual: Option<SampledModels<'a>>,
}

/// What a request's draw sampled, which its logged propensity, the minimum
/// propensity's probabilities and its explanation are computed from.
#[derive(Clone, Copy)]
pub(super) enum Sample<'a> {
    /// A contextual campaign's snapshot, loaded once for the request.
    Contextual(&'a SampledModels<'a>),
    /// Segment-ts: the counts loaded for the request, and the arms the
    /// bandit's draw sampled from them (a cached snapshot of the segment;
    /// None: no draw, the control policy chose).
    Segment {
        /// The campaign's counts as the request loaded them (the published
        /// model, which the snapshot cache recognizes).
        model: &'a Arc<SegmentModel>,
        /// The arms the draw sampled.
        drawn: Option<&'a SampledArms>,
    },
}

impl Campaign {
    /// The campaign's current snapshots, for one request.
    pub(super) fn sample(&self) -> Sampled<'_> {
        Sampled {
            segments: self.model.load(),
            contextual: self.contextual.as_ref().map(Contextual::sample),
        }
    }
}

impl Contextual {
    /// The campaign's current snapshot, for one request.
    pub(super) fn sample(&self) -> SampledModels<'_> {
        SampledModels {
            ctx: self,
            snapshot: self.models.load(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::policy::contextual::{ContextualConfig, Likelihood, gaussian_arms};
    use crate::store::MemoryStore;

    fn prior(mean: f64) -> GaussianPosterior {
        let mut p = GaussianPosterior::prior(1, &ContextualConfig::new(Likelihood::Logistic));
        p.mean[0] = mean;
        p
    }

    #[test]
    fn a_loaded_snapshot_never_changes_and_unchanged_offers_are_shared() {
        let published = PublishedModels::default();
        published.publish_all(vec![prior(0.0), prior(1.0)], Some(3));
        let before = published.load();
        published.publish([(1, prior(5.0)), (7, prior(9.0))], Some(4));
        let after = published.load();
        assert_eq!((before.version, before.posteriors[1].mean[0]), (3, 1.0));
        assert_eq!((after.version, after.posteriors[1].mean[0]), (4, 5.0));
        assert_eq!(after.posteriors.len(), 2, "an unknown offer is ignored");
        assert!(
            Arc::ptr_eq(&before.posteriors[0], &after.posteriors[0]),
            "an unchanged posterior is the same allocation"
        );
        published.push(prior(2.0));
        published.publish([], None);
        let last = published.load();
        assert_eq!((last.version, last.posteriors.len()), (4, 3));
    }

    /// A request samples the snapshot it loaded, whatever is published
    /// after: here a publish lands after the request's snapshot is loaded
    /// and before its draw, so any step that read the current posteriors
    /// instead (the draw, the logged version, the minimum propensity's
    /// probability, the race path after a refused offer, `explain`) would
    /// see a campaign where offer x all but always wins.
    #[tokio::test]
    async fn a_decision_logs_and_explains_the_snapshot_it_sampled() -> Result<(), Error> {
        use crate::clock::ManualClock;
        use crate::engine::tests::{
            T0, WINDOW_MS, campaigns, decide_in, explained, open_campaigns, options, visit,
        };
        use crate::engine::{SelectRequest, race, thompson};
        use crate::store::DecisionLog;

        let mut files = campaigns();
        for f in &mut files {
            f.config.min_propensity = 0.1;
        }
        let store = MemoryStore::new();
        let clock = Arc::new(ManualClock::new(T0));
        let engine = open_campaigns(&store, &clock, files, options());
        // Something learned, so that the sampled snapshot has a version
        // and offers that differ: y redeems, x and z do not.
        for _ in 0..12 {
            let s = engine.select(visit("a", None)).await?;
            if s.offer_id == "y" {
                engine
                    .redeem(crate::engine::tests::redemption(s.decision_id))
                    .await?;
            }
        }
        engine
            .sweep(clock.advance(2 * WINDOW_MS), usize::MAX)
            .await?;
        engine.flush().await?;
        let campaign = engine.campaign("p")?;
        let ctx = campaign
            .contextual
            .as_ref()
            .ok_or(Error::FailedPrecondition("campaign p is contextual".into()))?;
        let req = SelectRequest {
            explain: true,
            ..visit("a", None)
        };
        let x = ctx
            .encoder
            .encode(&req.context)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let weights: Vec<f64> = campaign
            .offers
            .iter()
            .map(|o| campaign.config.objective.weight(o.value))
            .collect();
        let floor = campaign.floor();
        // One draw's floored probability of `offer` among `set` under `s`.
        let win = |s: &ModelSnapshot, set: &[usize], offer: usize| {
            let k = set.iter().position(|&o| o == offer).unwrap_or(usize::MAX);
            let arms = gaussian_arms(&s.posteriors, &ctx.config, &weights, &x, set);
            floor.propensity(set.len(), thompson::win_probability(&arms, k))
        };

        let sampled = campaign.sample();
        let loaded = sampled
            .contextual
            .as_ref()
            .map(|s| s.snapshot.clone())
            .ok_or(Error::FailedPrecondition("campaign p is contextual".into()))?;
        assert!(loaded.version > 0, "the learning above has a version");
        // The publish: x's posterior moved far up, at a later version.
        let mut moved = loaded.get(0).cloned().ok_or(Error::NotFound("x".into()))?;
        moved.mean.iter_mut().for_each(|m| *m += 4.0);
        ctx.models
            .publish([(0, moved)], Some(loaded.version + 1_000));
        let current = ctx.models.load();
        let all = [0, 1, 2];
        assert!(
            win(&current, &all, 0) > win(&loaded, &all, 0) + 0.2,
            "the publish changes the probabilities: {} vs {}",
            win(&current, &all, 0),
            win(&loaded, &all, 0)
        );

        let ids = ["x", "y", "z"];

        // Every offer a candidate: the floored one-draw probabilities, over
        // enough decisions that the minimum propensity's exploring draw
        // (which asks the policy's probability of another offer) is among
        // them.
        for _ in 0..24 {
            let sel = decide_in(&engine, &campaign, &sampled, &req, Vec::new()).await?;
            let chosen = campaign
                .offer_index(&sel.offer_id)
                .ok_or(Error::NotFound(sel.offer_id.clone()))?;
            assert_eq!(sel.model_version, loaded.version);
            assert!((sel.propensity - win(&loaded, &all, chosen)).abs() < 1e-9);
            for (o, id) in ids.iter().enumerate() {
                let p = explained(&sel, id);
                assert!((p - win(&loaded, &all, o)).abs() < 1e-9, "{id}: {p}");
            }
            let logged = store
                .decision(&sel.decision_id)?
                .ok_or(Error::NotFound("the decision".into()))?;
            assert_eq!(
                (logged.model_version, logged.propensity),
                (loaded.version, sel.propensity)
            );
        }

        // x refused by a racing budget: the propensity sums the paths
        // through x, all under the loaded snapshot.
        let spent = vec![("x".to_owned(), "spent by a racing decision".to_owned())];
        let sel = decide_in(&engine, &campaign, &sampled, &req, spent).await?;
        let chosen = campaign
            .offer_index(&sel.offer_id)
            .ok_or(Error::NotFound(sel.offer_id.clone()))?;
        let after_refusal = |s: &ModelSnapshot, o| {
            race::propensity_after_refusals(&all, &[0], o, |set, c| win(s, set, c))
        };
        assert_eq!(sel.model_version, loaded.version);
        assert!((sel.propensity - after_refusal(&loaded, chosen)).abs() < 1e-9);
        assert!(
            (after_refusal(&loaded, chosen) - after_refusal(&current, chosen)).abs() > 1e-3,
            "the published snapshot would log another propensity"
        );
        for (o, id) in ids.iter().enumerate().skip(1) {
            let p = explained(&sel, id);
            assert!((p - after_refusal(&loaded, o)).abs() < 1e-9, "{id}: {p}");
        }
        Ok(())
    }

    /// Segment-ts samples a cached snapshot of the segment's arms while the
    /// live posterior stays within `snapshot_tolerance` of it: the
    /// explanation shows that snapshot's probabilities, the ones the
    /// logged propensity is of (it used to show the live posterior's).
    #[tokio::test]
    async fn a_segment_ts_decision_explains_the_arms_it_sampled() -> Result<(), Error> {
        use crate::clock::ManualClock;
        use crate::config::PolicyKind;
        use crate::engine::SelectRequest;
        use crate::engine::tests::{T0, campaigns, open_campaigns, options, redemption, visit};

        let mut files = campaigns();
        for f in &mut files {
            f.config.policy = PolicyKind::SegmentTs;
            f.config.features.clear();
            f.config.segment_by = vec!["type".into()];
            f.config.min_propensity = 0.05;
        }
        let store = MemoryStore::new();
        let clock = Arc::new(ManualClock::new(T0));
        let engine = open_campaigns(&store, &clock, files, options());
        // Enough evidence that the segment's snapshot is reused while its
        // live posterior moves a little with every sweep.
        for i in 0..600 {
            clock.advance(10_000);
            let s = engine.select(visit("a", None)).await?;
            if i % 4 == 0 {
                engine.redeem(redemption(s.decision_id)).await?;
            }
            engine.sweep(engine.now_ms(), 1_000).await?;
        }
        for _ in 0..100 {
            clock.advance(10_000);
            engine.sweep(engine.now_ms(), 1_000).await?;
            let s = engine
                .select(SelectRequest {
                    explain: true,
                    ..visit("a", None)
                })
                .await?;
            let shown: Vec<f64> = s.explanation.iter().map(|e| e.probability).collect();
            let chosen = s
                .explanation
                .iter()
                .find(|e| e.offer_id == s.offer_id)
                .map_or(f64::NAN, |e| e.probability);
            assert!(
                (chosen - s.propensity).abs() < 1e-12,
                "explained {chosen}, logged {} ({shown:?})",
                s.propensity
            );
            assert!((shown.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{shown:?}");
        }
        Ok(())
    }
}
