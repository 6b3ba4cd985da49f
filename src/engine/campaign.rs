//! A campaign as served: its offers, its config revision, and the learned
//! state (posteriors, arms, daily counts) its revisions share.

use super::*;
use crate::budget::{LocalTime, Pace, TrafficProfile};
use crate::context::Context;
use crate::fast_map::FastMap;
use crate::policy::{
    Policy,
    rules::{RulePolicy, Rules},
};

/// An offer of a served campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// Offer id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Value of one redemption.
    pub value: f64,
    /// Category.
    pub category: String,
    /// False for offers found in storage but no longer configured: they keep
    /// their history and accept redemptions but are never chosen.
    pub active: bool,
    /// Its offer features, encoded (empty without offer features).
    pub features: Vec<(u32, f64)>,
    /// Its `offer_bandit_decisions_total` series.
    pub(crate) decisions: KeptCounter,
}

/// A counter series registered at its first use (the server installs its
/// recorder before serving) and kept: counting costs no label lookup. An
/// offer's `offer_bandit_decisions_total{campaign, offer}`, a campaign's
/// `offer_bandit_ignored_features_total{campaign}`.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeptCounter(std::sync::OnceLock<metrics::Counter>);

impl KeptCounter {
    /// Adds `n`, registering the series with `register` the first time.
    pub(crate) fn increment(&self, n: u64, register: impl FnOnce() -> metrics::Counter) {
        self.0.get_or_init(register).increment(n);
    }
}

/// Counters do not tell offers (or campaigns) apart.
impl PartialEq for KeptCounter {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Offer {
    pub(super) fn configured(o: &crate::config::OfferConfig, encoder: Option<&Encoder>) -> Offer {
        Offer {
            id: o.id.clone(),
            name: o.name.clone(),
            value: o.value,
            category: o.category.clone(),
            active: true,
            features: crate::config::encode_offer(encoder, o),
            decisions: KeptCounter::default(),
        }
    }
}

/// Whether any offer has a budget or the campaign a frequency cap.
pub(super) fn limited(config: &CampaignConfig) -> bool {
    config.frequency_cap.is_some()
        || config.offers.iter().any(|o| {
            o.max_decisions.is_some()
                || o.max_redemptions.is_some()
                || o.max_decisions_per_day.is_some()
                || o.max_redemptions_per_day.is_some()
        })
}

/// One revision of a campaign being served. A config change makes a new
/// revision that shares the learned state of the one before (posteriors,
/// counts, statuses): requests in flight keep the revision they started
/// with, and offers only ever get appended, so an offer's index means the
/// same in every revision.
#[derive(Debug)]
pub struct Campaign {
    /// Its configuration.
    pub config: CampaignConfig,
    /// Which revision of the config this is.
    pub revision: Revision,
    /// Offers earlier revisions had and this one dropped, as they were
    /// last configured (their values price late redemptions).
    pub(super) retired: Vec<OfferConfig>,
    /// False for campaigns found in storage but no longer configured.
    pub active: bool,
    /// Every offer the campaign ever had, in the order they were added:
    /// offers no longer in the config are kept as retired.
    pub offers: Vec<Offer>,
    pub(super) offer_index: FastMap<String, usize>,
    /// Per (segment, offer) counts: the posterior of segment-ts, and the
    /// decision ledger (single segment "") of contextual campaigns, as
    /// published snapshots ([`super::segment_snapshot`]).
    pub(super) model: Arc<PublishedSegments>,
    /// segment-ts: the posterior snapshots decisions sample from (a cache,
    /// so each revision starts its own).
    pub(super) snapshots: SnapshotCache,
    /// The offer ids of the candidate set decided among last, which the
    /// decision records of that set share.
    pub(super) candidate_ids: CandidateIds,
    /// Counts of the bandit and the control group (see [`Arm::index`]).
    pub(super) arms: Arc<RwLock<[ArmCounts; Arm::ALL.len()]>>,
    /// Per arm: the per-customer sums over decisions whose window closed,
    /// which the report's intervals are computed from.
    pub(super) clusters: Arc<RwLock<[ClusterSums; Arm::ALL.len()]>>,
    /// Per offer: today's counts, for daily budgets.
    pub(super) daily: Arc<RwLock<Vec<DailyCounts>>>,
    /// The campaign's time zone (`time_zone`): its days and clock hours.
    pub(super) local_time: LocalTime,
    /// Its decisions per local hour, learned over past days: what daily
    /// budgets are paced by.
    pub(super) traffic: Arc<RwLock<TrafficProfile>>,
    /// What operators paused or retired.
    pub(super) status: Arc<RwLock<CampaignStatus>>,
    /// Whether any offer has a budget or the campaign a frequency cap (if
    /// not, SelectOffer skips the budget checks).
    pub(super) limited: bool,
    pub(super) contextual: Option<Contextual>,
    /// The control group's rule (`control_rules`), bound to [`Self::offers`].
    pub(super) control_rules: Option<RulePolicy>,
    /// Its `offer_bandit_ignored_features_total` series.
    pub(super) ignored_features: KeptCounter,
    /// The context keys it reads (see [`Campaign::declared`]), sorted.
    declared: Vec<String>,
}

/// The ids of the offers a decision chose among, as its record holds them:
/// one list shared by the decisions of one candidate set, so that a
/// decision neither allocates nor copies a name per offer (nor the writer
/// frees them). Holds the last set asked for: callers that send no
/// candidate list (the campaign's available offers, the common case) or
/// the same list each time always find it; alternating sets build their
/// lists as before.
#[derive(Debug, Default)]
pub(super) struct CandidateIds {
    last: arc_swap::ArcSwapOption<IdsOfSet>,
}

/// A candidate set (indexes into the campaign's offers) and its offer ids.
type IdsOfSet = (Box<[usize]>, Arc<[String]>);

impl CandidateIds {
    /// The ids of `candidates` (indexes into `offers`, whose ids never
    /// change for a campaign revision, and a revision has its own cache).
    pub(super) fn of(&self, offers: &[Offer], candidates: &[usize]) -> Arc<[String]> {
        if let Some(last) = &*self.last.load()
            && *last.0 == *candidates
        {
            return last.1.clone();
        }
        let ids: Arc<[String]> = candidates.iter().map(|&i| offers[i].id.clone()).collect();
        self.last
            .store(Some(Arc::new((candidates.into(), ids.clone()))));
        ids
    }
}

/// The regression posteriors of a contextual campaign.
#[derive(Debug)]
pub(super) struct Contextual {
    pub(super) encoder: Encoder,
    pub(super) config: ContextualConfig,
    /// The posteriors decisions sample, as versioned snapshots
    /// ([`super::snapshot`]); shared by every revision.
    pub(super) models: Arc<PublishedModels>,
    /// The prior learned across the offers (used when
    /// `config.adaptive_prior`), shared by every revision like the models.
    pub(super) prior: Arc<RwLock<SharedPrior>>,
    /// Delayed feedback ([`crate::policy::delay`]): the campaign's delay
    /// model and the pending decisions whose non-redemption the sweep
    /// reveals, shared by every revision (a new reward window takes effect
    /// at the next restart, as segment-ts's does). Derived state: recovery
    /// rebuilds both from the decision records.
    pub(super) delays: Arc<RwLock<Delays>>,
}

/// A contextual campaign's delay model and its non-redemptions to reveal.
#[derive(Debug)]
pub(super) struct Delays {
    pub(super) learner: crate::policy::delay::DelayLearner,
    pub(super) reveals: crate::policy::delay::Reveals<DecisionId>,
}

impl Delays {
    fn new(config: &CampaignConfig) -> Self {
        let window_ms = i64::try_from(config.reward_window.as_millis()).unwrap_or(i64::MAX);
        Delays {
            learner: crate::policy::delay::DelayLearner::new(window_ms),
            reveals: crate::policy::delay::Reveals::default(),
        }
    }

    /// A pending decision waits for its non-redemption to be revealed.
    pub(super) fn add(&mut self, id: DecisionId, decided_ms: i64) {
        // The locator's bytes but its stream (random per process), folded
        // (FNV-1a) and then mixed by the draw: its time, key and sequence
        // number, so that a run of the same decisions (the simulator's
        // in-process engine) draws the same, and a restart draws from the
        // stored ids what the process that stopped drew.
        let bits =
            id.0.iter()
                .enumerate()
                .filter(|(i, _)| !(8..12).contains(i))
                .fold(0xcbf2_9ce4_8422_2325u64, |h, (_, &b)| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                });
        let draw = crate::policy::delay::reveal_draw(bits);
        self.reveals.add(self.learner.model(), decided_ms, draw, id);
    }
}

/// Every offer's encoded offer features, by offer index (as the models).
pub(super) fn offer_features(offers: &[Offer]) -> Vec<Vec<(u32, f64)>> {
    offers.iter().map(|o| o.features.clone()).collect()
}

impl Contextual {
    /// The posterior a new offer with these encoded features starts from.
    pub(super) fn offer_prior(&self, features: &[(u32, f64)]) -> GaussianPosterior {
        Self::prior_under(
            &self.prior.read(),
            self.encoder.dim(),
            &self.config,
            features,
        )
    }

    pub(super) fn prior_under(
        prior: &SharedPrior,
        dim: usize,
        config: &ContextualConfig,
        features: &[(u32, f64)],
    ) -> GaussianPosterior {
        if config.adaptive_prior {
            prior.posterior(features, config)
        } else {
            GaussianPosterior::prior(dim, config)
        }
    }

    /// Whether the prior has counted learning events, which only a learned
    /// prior does (switching it off resets it).
    pub(super) fn prior_is_learned(&self) -> bool {
        self.prior.read().events > 0
    }

    /// Back to the configured prior of `next`, exactly: every posterior is
    /// re-based on it (the intercept keeps its own), and the learned prior
    /// starts over should it be switched on again. The O(K d^3) work is done
    /// on copies, so SelectOffer is not held up meanwhile.
    pub(super) fn switch_prior_off(&self, next: &ContextualConfig, offers: &[Offer]) {
        let mut prior = self.prior.write();
        let mut target = vec![next.prior_variance; self.encoder.dim()];
        if let (Some(t), Some(v)) = (target.first_mut(), prior.variance.first()) {
            *t = *v;
        }
        // The intercept's mean moves under the variance the learned prior
        // gave it.
        let mut variances = target.clone();
        if let Some(v) = variances.first_mut() {
            *v = self.config.prior_variance;
        }
        let configured = GaussianPosterior::prior(self.encoder.dim(), next).mean;
        let mut models = self.models.load().to_vec();
        let mut skipped = 0;
        for (k, m) in models.iter_mut().enumerate() {
            if m.learned_nothing() {
                // As a restart builds it.
                *m = GaussianPosterior::prior(self.encoder.dim(), next);
            } else {
                let features = offers.get(k).map_or(&[][..], |o| o.features.as_slice());
                let from = prior.mean_of(m, features, &self.config);
                skipped += m.rebase_prior(&prior.variance, &target, &from);
                let mut to = configured.clone();
                if let (None, Some(t), Some(f)) = (prior.intercept, to.first_mut(), from.first()) {
                    // The intercept's mean moves only if it was learned.
                    *t = *f;
                }
                m.move_prior_mean(&from, &to, &variances);
            }
        }
        if skipped > 0 {
            tracing::warn!(
                columns = skipped,
                "learned prior switched off: columns whose covariance exceeded the learned prior kept it"
            );
        }
        self.models.publish_all(models, None);
        *prior = prior.restarted(next);
    }

    /// Sets every offer that has learned nothing to the prior under `next`.
    pub(super) fn reset_untrained(&self, next: &ContextualConfig, offers: &[Offer]) {
        let prior = self.prior.read();
        let snapshot = self.models.load();
        let reset = snapshot
            .iter()
            .enumerate()
            .filter(|(_, m)| m.learned_nothing())
            .map(|(k, _)| {
                let z = offers.get(k).map_or(&[][..], |o| o.features.as_slice());
                (k, Self::prior_under(&prior, self.encoder.dim(), next, z))
            });
        self.models.publish(reset, None);
    }
}

/// A new campaign's counts: segment-ts weighs its pending decisions by the
/// delay model over its reward window ([`crate::policy::delay`]).
fn segment_model(config: &CampaignConfig) -> SegmentModel {
    let model = SegmentModel::new(0);
    if config.contextual().is_some() {
        return model;
    }
    let window_ms = i64::try_from(config.reward_window.as_millis()).unwrap_or(i64::MAX);
    model.with_delayed_feedback(window_ms)
}

/// The context keys a campaign reads: its segment features and its model's
/// features, sorted (each key once): [`Campaign::declared`].
fn declared(config: &CampaignConfig) -> Vec<String> {
    let mut names: Vec<String> = config
        .segment_by
        .iter()
        .cloned()
        .chain(config.features.iter().map(|f| f.name().to_owned()))
        .collect();
    names.sort();
    names.dedup();
    names
}

impl Campaign {
    pub(super) fn new(config: CampaignConfig, revision: Revision, active: bool) -> Self {
        // The config was validated at load, so the encoder builds.
        let contextual = match (config.contextual(), config.encoder()) {
            (Some(cfg), Ok(encoder)) => Some(Contextual {
                models: Arc::default(),
                prior: Arc::new(RwLock::new(SharedPrior::new(
                    encoder.dim(),
                    config.offer_columns(),
                    &cfg,
                ))),
                delays: Arc::new(RwLock::new(Delays::new(&config))),
                encoder,
                config: cfg,
            }),
            _ => None,
        };
        let mut campaign = Campaign {
            snapshots: SnapshotCache::new(config.snapshot_tolerance),
            candidate_ids: CandidateIds::default(),
            limited: limited(&config),
            arms: Arc::new(RwLock::new([ArmCounts::default(); Arm::ALL.len()])),
            clusters: Arc::new(RwLock::new([ClusterSums::default(); Arm::ALL.len()])),
            daily: Arc::default(),
            local_time: config.local_time(),
            traffic: Arc::new(RwLock::new(TrafficProfile::new(&config.time_zone))),
            status: Arc::default(),
            revision,
            retired: Vec::new(),
            active,
            offers: Vec::new(),
            offer_index: FastMap::default(),
            model: Arc::new(PublishedSegments::new(segment_model(&config))),
            contextual,
            control_rules: None,
            ignored_features: KeptCounter::default(),
            declared: declared(&config),
            config,
        };
        let offer_encoder = campaign.config.offer_encoder();
        for o in campaign.config.offers.clone() {
            campaign.push_offer(Offer::configured(&o, offer_encoder.as_ref()));
        }
        campaign.control_rules = campaign.bind_control_rules();
        campaign
    }

    /// `control_rules` bound to the offers (validated at load, so it binds;
    /// should it not, the control group falls back to `control_offer`'s rule
    /// of a random candidate, and says so).
    fn bind_control_rules(&self) -> Option<RulePolicy> {
        let text = self.config.control_rules.as_deref()?;
        let ids: Vec<&str> = self.offers.iter().map(|o| o.id.as_str()).collect();
        match Rules::parse(text).and_then(|r| r.bind(&ids)) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!(campaign = %self.config.id, error = %e, "control_rules not used");
                None
            }
        }
    }

    /// The next revision: `config` over this revision's learned state.
    /// Offers new to the campaign start at the prior; offers the config no
    /// longer lists are kept as retired. The caller checked
    /// [`CampaignConfig::update_conflict`].
    pub(super) fn revised(&self, config: CampaignConfig, revision: Revision) -> Campaign {
        let active = !revision.retired;
        let contextual = self.contextual.as_ref().and_then(|c| {
            let next = config.contextual()?;
            if c.config.adaptive_prior && !next.adaptive_prior {
                c.switch_prior_off(&next, &self.offers);
            }
            let new_prior = (next.prior_variance, next.prior_rate)
                != (c.config.prior_variance, c.config.prior_rate);
            if new_prior
                && c.models
                    .load()
                    .iter()
                    .all(GaussianPosterior::learned_nothing)
            {
                let fresh = c.prior.read().restarted(&next);
                *c.prior.write() = fresh;
            }
            if new_prior || (next.adaptive_prior && !c.config.adaptive_prior) {
                // The offers that have learned nothing start from the prior
                // as it now is, as a restart builds them (the writer stores
                // them with the revision).
                c.reset_untrained(&next, &self.offers);
            }
            Some(Contextual {
                encoder: c.encoder.clone(),
                config: next,
                models: c.models.clone(),
                prior: c.prior.clone(),
                delays: c.delays.clone(),
            })
        });
        let retired = crate::revisions::dropped_offers(&self.config, &self.retired, &config);
        let mut next = Campaign {
            snapshots: SnapshotCache::new(config.snapshot_tolerance),
            candidate_ids: CandidateIds::default(),
            limited: limited(&config),
            arms: self.arms.clone(),
            clusters: self.clusters.clone(),
            daily: self.daily.clone(),
            local_time: config.local_time(),
            traffic: self.traffic.clone(),
            status: self.status.clone(),
            revision,
            retired,
            active,
            offers: self
                .offers
                .iter()
                .map(|o| Offer {
                    active: false,
                    ..o.clone()
                })
                .collect(),
            offer_index: self.offer_index.clone(),
            model: self.model.clone(),
            contextual,
            control_rules: None,
            ignored_features: self.ignored_features.clone(),
            declared: declared(&config),
            config,
        };
        let offer_encoder = next.config.offer_encoder();
        for o in next.config.offers.clone() {
            let offer = Offer::configured(&o, offer_encoder.as_ref());
            match next.offer_index(&o.id) {
                Some(i) => next.offers[i] = offer,
                None => {
                    next.push_offer(offer);
                }
            }
        }
        next.control_rules = next.bind_control_rules();
        next
    }

    /// Where the campaign's local day stands at `now_ms`, for pacing its
    /// daily budgets.
    pub(super) fn pace(&self, now_ms: i64) -> Pace {
        Pace::at(now_ms, &self.local_time, &self.traffic.read())
    }

    /// Appends an offer, with a prior in every per-offer table of the
    /// shared state; returns its index.
    pub(super) fn push_offer(&mut self, offer: Offer) -> usize {
        let mut idx = 0;
        self.model.change(|m| {
            idx = m.push_offer();
            true
        });
        self.daily.write().push(DailyCounts::default());
        if let Some(c) = &self.contextual {
            let prior = c.offer_prior(&offer.features);
            c.models.push(prior);
        }
        self.offer_index.insert(offer.id.clone(), idx);
        self.offers.push(offer);
        idx
    }

    pub(super) fn add_retired_offer(&mut self, id: &str) -> usize {
        self.push_offer(Offer {
            id: id.to_owned(),
            name: id.to_owned(),
            value: 0.0,
            category: String::new(),
            active: false,
            features: Vec::new(),
            decisions: KeptCounter::default(),
        })
    }

    /// The operator-set status of an offer.
    pub fn offer_status(&self, id: &str) -> OfferStatus {
        self.status.read().offer(id)
    }

    /// Whether an operator paused the campaign.
    pub fn paused(&self) -> bool {
        self.status.read().paused
    }

    /// The campaign's minimum propensity per candidate (`min_propensity`).
    pub(super) fn floor(&self) -> crate::policy::floor::PropensityFloor {
        crate::policy::floor::PropensityFloor::new(self.config.min_propensity)
    }

    /// Why offer `i` cannot be chosen, or None when it can.
    pub(super) fn unavailable(&self, i: usize) -> Option<String> {
        let o = self.offers.get(i)?;
        Self::why_unavailable(o, &self.status.read()).map(str::to_owned)
    }

    /// The offers that can be chosen now, in order: the campaign's status
    /// read once for all of them.
    pub(super) fn available_offers(&self) -> Vec<usize> {
        let status = self.status.read();
        (0..self.offers.len())
            .filter(|&i| Self::why_unavailable(&self.offers[i], &status).is_none())
            .collect()
    }

    /// Why `offer` cannot be chosen under `status`, or None when it can.
    fn why_unavailable(offer: &Offer, status: &CampaignStatus) -> Option<&'static str> {
        if !offer.active {
            return Some("retired: no longer in the campaign's configuration");
        }
        match status.offer(&offer.id) {
            OfferStatus::Active => None,
            OfferStatus::Paused => Some("paused by an operator"),
            OfferStatus::Retired => Some("retired by an operator"),
        }
    }

    /// The version a decision sampling `sampled` logs: a contextual
    /// campaign's snapshot's ([`ModelSnapshot::version`]), segment-ts's
    /// learning events.
    pub(super) fn model_version(sampled: &Sampled<'_>) -> u64 {
        match &sampled.contextual {
            Some(ctx) => ctx.snapshot.version,
            None => sampled.segments.version(),
        }
    }

    /// The context keys the campaign reads (the features of its model and
    /// of its segments), sorted; nothing else of a context is used or kept.
    pub fn declared(&self) -> &[String] {
        &self.declared
    }

    /// The segment a visit counts in: its own while the model tracks it or
    /// has room for it, else the shared overflow segment.
    pub(super) fn tracked_segment(&self, model: &SegmentModel, segment: String) -> String {
        if model.has_segment(&segment) || model.segments() < self.config.max_segments {
            segment
        } else {
            OVERFLOW_SEGMENT.to_owned()
        }
    }

    /// Index of an offer id.
    pub fn offer_index(&self, id: &str) -> Option<usize> {
        self.offer_index.get(id).copied()
    }

    pub(super) fn reward_window_ms(&self) -> i64 {
        i64::try_from(self.config.reward_window.as_millis()).unwrap_or(i64::MAX)
    }
}

impl CampaignStatus {
    /// This status with `change` applied; an error when it would undo a
    /// retirement.
    pub(super) fn with(&self, change: &StatusChange) -> Result<CampaignStatus, Error> {
        let mut next = self.clone();
        match change {
            StatusChange::Paused(p) => next.paused = *p,
            StatusChange::Offer(offer, status) => {
                let current = next
                    .offers
                    .iter()
                    .find(|(o, _)| o == offer)
                    .map_or(OfferStatus::Active, |(_, s)| *s);
                if current == OfferStatus::Retired && *status != OfferStatus::Retired {
                    return Err(Error::FailedPrecondition(format!(
                        "offer '{offer}' was retired; retirement is final (add a new offer instead)"
                    )));
                }
                next.offers.retain(|(o, _)| o != offer);
                if *status != OfferStatus::Active {
                    next.offers.push((offer.clone(), *status));
                    next.offers.sort_by(|a, b| a.0.cmp(&b.0));
                }
            }
        }
        Ok(next)
    }
}

/// The control policy's pick: by the campaign's control rules when it has
/// them (propensity 1); else its control offer when it is a candidate
/// (propensity 1), else a uniformly random candidate.
pub(super) fn control_choice(
    campaign: &Campaign,
    candidates: &[usize],
    context: &Context,
    rng: &mut dyn rand::Rng,
) -> thompson::Choice {
    if let Some(rules) = &campaign.control_rules
        && let Ok(features) = rules.features(context)
    {
        let offer = rules.choose(&features, candidates, rng);
        if let Some(index) = candidates.iter().position(|&c| c == offer) {
            return thompson::Choice {
                index,
                propensity: 1.0,
            };
        }
    }
    let fixed = campaign
        .config
        .control_offer
        .as_deref()
        .and_then(|id| campaign.offer_index(id))
        .and_then(|i| candidates.iter().position(|&c| c == i));
    match fixed {
        Some(index) => thompson::Choice {
            index,
            propensity: 1.0,
        },
        None => {
            use rand::RngExt;
            let n = candidates.len().max(1);
            thompson::Choice {
                index: rng.random_range(0..n),
                propensity: 1.0 / n as f64,
            }
        }
    }
}

/// P([`control_choice`] picks `offer` among `candidates`): 1 or 0 for a
/// rule or a fixed offer, uniform otherwise.
pub(super) fn control_propensity(
    campaign: &Campaign,
    candidates: &[usize],
    context: &Context,
    offer: usize,
) -> f64 {
    if !candidates.contains(&offer) {
        return 0.0;
    }
    if let Some(rules) = &campaign.control_rules
        && let Ok(features) = rules.features(context)
    {
        // The rule picks a candidate whenever it has one (as control_choice relies on).
        return crate::policy::Policy::propensity(rules, &features, candidates, offer);
    }
    let fixed = campaign
        .config
        .control_offer
        .as_deref()
        .and_then(|id| campaign.offer_index(id))
        .filter(|i| candidates.contains(i));
    match fixed {
        Some(i) => f64::from(u8::from(i == offer)),
        None => 1.0 / candidates.len() as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offers(ids: &[&str]) -> Vec<Offer> {
        ids.iter()
            .map(|id| Offer {
                id: (*id).to_owned(),
                name: String::new(),
                value: 1.0,
                category: String::new(),
                active: true,
                features: Vec::new(),
                decisions: KeptCounter::default(),
            })
            .collect()
    }

    #[test]
    fn decisions_of_one_candidate_set_share_its_ids() {
        let offers = offers(&["a", "b", "c"]);
        let cache = CandidateIds::default();
        let all = cache.of(&offers, &[0, 1, 2]);
        assert_eq!(*all, ["a", "b", "c"].map(String::from));
        assert!(Arc::ptr_eq(&all, &cache.of(&offers, &[0, 1, 2])));
        // Another set has its own names, and then becomes the one kept.
        let some = cache.of(&offers, &[2, 0]);
        assert_eq!(*some, ["c", "a"].map(String::from));
        assert!(Arc::ptr_eq(&some, &cache.of(&offers, &[2, 0])));
        let again = cache.of(&offers, &[0, 1, 2]);
        assert_eq!(again, all);
        assert!(!Arc::ptr_eq(&again, &some));
    }
}
