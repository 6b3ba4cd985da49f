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

use super::Contextual;
use crate::policy::contextual::GaussianPosterior;

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
    use crate::policy::contextual::{ContextualConfig, Likelihood};

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
}
