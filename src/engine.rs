//! The learning loop. Campaign posteriors live in memory for reads; every
//! change goes through one writer thread that applies it to sled together
//! with its posterior change in one atomic batch, and answers only after the
//! batch is durable when durability is asked for (group commit: one fsync
//! serves every request that arrived while the previous one ran).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use parking_lot::RwLock;
use tokio::sync::{mpsc, oneshot};

use crate::{
    budget::DailyCounts,
    config::{CampaignConfig, FileCampaign, OfferConfig, PolicyKind},
    context::Context,
    customer::{CustomerHash, CustomerKey},
    decision::{DecisionId, DecisionRecord, DecisionState, IdGenerator, now_ms},
    decision_id::IdKeys,
    error::Error,
    features::Encoder,
    policy::{
        Objective,
        contextual::{ContextualConfig, GaussianPosterior, gaussian_arms},
        segment::{CellCounts, OVERFLOW_SEGMENT, SegmentModel, SnapshotCache, segment_key},
        shared_prior::SharedPrior,
        thompson,
    },
    revisions::{Revision, Source, StoredCampaign},
    store::{CellKey, ExpiryEntry, Store, StoreError, WriteSet},
    uplift::{Arm, ArmCounts, ArmSummary, Uplift},
};

/// How often contextual posteriors are written to sled. Between
/// checkpoints each learning event is durable through its decision record
/// (and replayed from it at startup), so a posterior of d² numbers is not
/// rewritten with every decision.
/// Default of [`EngineOptions::checkpoint_interval`].
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Most commands the writer applies in one batch.
const MAX_GROUP: usize = 4096;
/// Commands waiting for the writer before callers wait for room.
const QUEUE: usize = 16_384;

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
}

impl Offer {
    fn configured(o: &crate::config::OfferConfig, encoder: Option<&Encoder>) -> Offer {
        Offer {
            id: o.id.clone(),
            name: o.name.clone(),
            value: o.value,
            category: o.category.clone(),
            active: true,
            features: crate::config::encode_offer(encoder, o),
        }
    }
}

/// Whether any offer has a budget or the campaign a frequency cap.
fn limited(config: &CampaignConfig) -> bool {
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
    retired: Vec<OfferConfig>,
    /// False for campaigns found in storage but no longer configured.
    pub active: bool,
    /// Every offer the campaign ever had, in the order they were added:
    /// offers no longer in the config are kept as retired.
    pub offers: Vec<Offer>,
    offer_index: HashMap<String, usize>,
    /// Per (segment, offer) counts: the posterior of segment-ts, and the
    /// decision ledger (single segment "") of contextual campaigns.
    model: Arc<RwLock<SegmentModel>>,
    /// segment-ts: the posterior snapshots decisions sample from (a cache,
    /// so each revision starts its own).
    snapshots: SnapshotCache,
    /// Counts of the bandit and the control group (see [`Arm::index`]).
    arms: Arc<RwLock<[ArmCounts; 2]>>,
    /// Per offer: today's counts, for daily budgets.
    daily: Arc<RwLock<Vec<DailyCounts>>>,
    /// What operators paused or retired.
    status: Arc<RwLock<CampaignStatus>>,
    /// Whether any offer has a budget or the campaign a frequency cap (if
    /// not, SelectOffer skips the budget checks).
    limited: bool,
    contextual: Option<Contextual>,
}

/// The regression posteriors of a contextual campaign.
#[derive(Debug)]
struct Contextual {
    encoder: Encoder,
    config: ContextualConfig,
    models: Arc<RwLock<Vec<GaussianPosterior>>>,
    /// The prior learned across the offers (used when
    /// `config.adaptive_prior`), shared by every revision like the models.
    prior: Arc<RwLock<SharedPrior>>,
}

/// Every offer's encoded offer features, by offer index (as the models).
fn offer_features(offers: &[Offer]) -> Vec<Vec<(u32, f64)>> {
    offers.iter().map(|o| o.features.clone()).collect()
}

impl Contextual {
    /// The posterior a new offer with these encoded features starts from.
    fn offer_prior(&self, features: &[(u32, f64)]) -> GaussianPosterior {
        Self::prior_under(
            &self.prior.read(),
            self.encoder.dim(),
            &self.config,
            features,
        )
    }

    fn prior_under(
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
    fn prior_is_learned(&self) -> bool {
        self.prior.read().events > 0
    }

    /// Back to the configured prior of `next`, exactly: every posterior is
    /// re-based on it (the intercept keeps its own), and the learned prior
    /// starts over should it be switched on again. The O(K d^3) work is done
    /// on copies, so SelectOffer is not held up meanwhile.
    fn switch_prior_off(&self, next: &ContextualConfig, offers: &[Offer]) {
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
        let mut models = self.models.read().clone();
        let mut skipped = 0;
        for (k, m) in models.iter_mut().enumerate() {
            if m.learned_nothing() {
                // As a restart builds it.
                *m = GaussianPosterior::prior(self.encoder.dim(), next);
            } else {
                let features = offers.get(k).map_or(&[][..], |o| o.features.as_slice());
                let from = prior.prior_mean(features, &self.config);
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
        *self.models.write() = models;
        *prior = prior.restarted(next);
    }

    /// Sets every offer that has learned nothing to the prior under `next`.
    fn reset_untrained(&self, next: &ContextualConfig, offers: &[Offer]) {
        let prior = self.prior.read();
        for (k, m) in self.models.write().iter_mut().enumerate() {
            if m.learned_nothing() {
                let z = offers.get(k).map_or(&[][..], |o| o.features.as_slice());
                *m = Self::prior_under(&prior, self.encoder.dim(), next, z);
            }
        }
    }
}

impl Campaign {
    fn new(config: CampaignConfig, revision: Revision, active: bool) -> Self {
        // The config was validated at load, so the encoder builds.
        let contextual = match (config.contextual(), config.encoder()) {
            (Some(cfg), Ok(encoder)) => Some(Contextual {
                models: Arc::default(),
                prior: Arc::new(RwLock::new(SharedPrior::new(
                    encoder.dim(),
                    config.offer_columns(),
                    &cfg,
                ))),
                encoder,
                config: cfg,
            }),
            _ => None,
        };
        let mut campaign = Campaign {
            snapshots: SnapshotCache::new(config.snapshot_tolerance),
            limited: limited(&config),
            arms: Arc::new(RwLock::new([ArmCounts::default(); 2])),
            daily: Arc::default(),
            status: Arc::default(),
            revision,
            retired: Vec::new(),
            active,
            offers: Vec::new(),
            offer_index: HashMap::new(),
            model: Arc::new(RwLock::new(SegmentModel::new(0))),
            contextual,
            config,
        };
        let offer_encoder = campaign.config.offer_encoder();
        for o in campaign.config.offers.clone() {
            campaign.push_offer(Offer::configured(&o, offer_encoder.as_ref()));
        }
        campaign
    }

    /// The next revision: `config` over this revision's learned state.
    /// Offers new to the campaign start at the prior; offers the config no
    /// longer lists are kept as retired. The caller checked
    /// [`CampaignConfig::update_conflict`].
    fn revised(&self, config: CampaignConfig, revision: Revision) -> Campaign {
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
                    .read()
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
            })
        });
        let retired = crate::revisions::dropped_offers(&self.config, &self.retired, &config);
        let mut next = Campaign {
            snapshots: SnapshotCache::new(config.snapshot_tolerance),
            limited: limited(&config),
            arms: self.arms.clone(),
            daily: self.daily.clone(),
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
        next
    }

    /// Appends an offer, with a prior in every per-offer table of the
    /// shared state; returns its index.
    fn push_offer(&mut self, offer: Offer) -> usize {
        let idx = self.model.write().push_offer();
        self.daily.write().push(DailyCounts::default());
        if let Some(c) = &self.contextual {
            let prior = c.offer_prior(&offer.features);
            c.models.write().push(prior);
        }
        self.offer_index.insert(offer.id.clone(), idx);
        self.offers.push(offer);
        idx
    }

    fn add_retired_offer(&mut self, id: &str) -> usize {
        self.push_offer(Offer {
            id: id.to_owned(),
            name: id.to_owned(),
            value: 0.0,
            category: String::new(),
            active: false,
            features: Vec::new(),
        })
    }

    /// The operator-set status of an offer.
    pub fn offer_status(&self, id: &str) -> OfferStatus {
        self.status
            .read()
            .offers
            .iter()
            .find(|(o, _)| o == id)
            .map_or(OfferStatus::Active, |(_, s)| *s)
    }

    /// Whether an operator paused the campaign.
    pub fn paused(&self) -> bool {
        self.status.read().paused
    }

    /// Why offer `i` cannot be chosen, or None when it can.
    fn unavailable(&self, i: usize) -> Option<String> {
        let o = self.offers.get(i)?;
        if !o.active {
            return Some("retired: no longer in the campaign's configuration".into());
        }
        match self.offer_status(&o.id) {
            OfferStatus::Active => None,
            OfferStatus::Paused => Some("paused by an operator".into()),
            OfferStatus::Retired => Some("retired by an operator".into()),
        }
    }

    /// Index of an offer id.
    pub fn offer_index(&self, id: &str) -> Option<usize> {
        self.offer_index.get(id).copied()
    }

    fn reward_window_ms(&self) -> i64 {
        i64::try_from(self.config.reward_window.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A visit asking for an offer (validated at the edge).
#[derive(Debug, Clone, Default)]
pub struct SelectRequest {
    /// Campaign id.
    pub campaign: String,
    /// Customer context.
    pub context: Context,
    /// Allowed offers; empty for all active ones.
    pub candidates: Vec<String>,
    /// Idempotency key.
    pub request_id: Option<String>,
    /// The customer, if the caller named one (stored only as a keyed hash).
    pub customer_id: Option<String>,
    /// Explain the decision: every offer's estimate, and why any was excluded.
    pub explain: bool,
}

/// The outcome of a select.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// Decision id.
    pub decision_id: DecisionId,
    /// Chosen offer.
    pub offer_id: String,
    /// Its propensity.
    pub propensity: f64,
    /// End of the reward window (Unix ms).
    pub expires_ms: i64,
    /// Model version used.
    pub model_version: u64,
    /// Segment key.
    pub segment: String,
    /// True when an earlier decision was returned for the same request id.
    pub replayed: bool,
    /// Who chose the offer.
    pub arm: Arm,
    /// With `explain`: one entry per offer of the campaign.
    pub explanation: Vec<Explanation>,
}

/// Why an offer was or was not chosen, as `SelectOffer { explain }` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// Offer id.
    pub offer_id: String,
    /// Why it could not be chosen (None: it was a candidate).
    pub excluded: Option<String>,
    /// Posterior redemption rate for this visit: mean and 95% interval.
    pub rate: Option<crate::uplift::Estimate>,
    /// The same times the offer's value.
    pub value: Option<crate::uplift::Estimate>,
    /// Probability that the visit's arm picks it under the current
    /// posterior (0 when excluded).
    pub probability: f64,
}

impl Selection {
    fn from_record(id: DecisionId, rec: &DecisionRecord, replayed: bool) -> Self {
        Selection {
            decision_id: id,
            offer_id: rec.offer.clone(),
            propensity: rec.propensity,
            expires_ms: rec.expires_ms,
            model_version: rec.model_version,
            segment: rec.segment.clone(),
            replayed,
            arm: rec.arm,
            explanation: Vec::new(),
        }
    }
}

/// A redemption (validated at the edge).
#[derive(Debug, Clone, PartialEq)]
pub struct Redemption {
    /// The decision.
    pub decision_id: DecisionId,
    /// Expected offer, if the caller wants it checked.
    pub offer_id: Option<String>,
    /// Realized value; defaults to the offer's value.
    pub value: Option<f64>,
}

/// The outcome of a redemption.
#[derive(Debug, Clone, PartialEq)]
pub struct Redeemed {
    /// True when it had been recorded before (counted once).
    pub already_recorded: bool,
    /// The decision's offer.
    pub offer_id: String,
    /// The decision's campaign.
    pub campaign: String,
}

/// Lifetime counts of one offer.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferStats {
    /// Offer id.
    pub offer_id: String,
    /// Counts summed over segments.
    pub counts: CellCounts,
    /// Contextual campaigns: observations absorbed by the offer's model.
    pub model_observations: u64,
    /// Contextual campaigns: mean predicted redemption rate over the
    /// contexts the model learned from (0 before any).
    pub mean_predicted_rate: f64,
}

/// Posterior of one (segment, offer) cell.
#[derive(Debug, Clone, PartialEq)]
pub struct CellStats {
    /// Segment key.
    pub segment: String,
    /// Offer id.
    pub offer_id: String,
    /// Beta alpha.
    pub alpha: f64,
    /// Beta beta.
    pub beta: f64,
    /// Counts.
    pub counts: CellCounts,
}

/// A campaign's counts and posteriors.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignStats {
    /// Campaign id.
    pub campaign: String,
    /// Per offer, in offer-id order.
    pub offers: Vec<OfferStats>,
    /// Per cell with evidence, by segment then offer.
    pub cells: Vec<CellStats>,
    /// Model version.
    pub model_version: u64,
    /// Contextual campaigns with `adaptive_prior`: what the learned prior
    /// holds (empty otherwise).
    pub learned_prior: LearnedPrior,
}

/// The learned prior variance of one feature group.
#[derive(Debug, Clone, PartialEq)]
pub struct FeaturePrior {
    /// Context feature.
    pub feature: String,
    /// `values`, `scaled` or `buckets` (see [`crate::features::FeatureGroup`]).
    pub part: String,
    /// Prior variance of each of its weights.
    pub prior_variance: f64,
}

/// A contextual campaign's learned prior, as [`CampaignStats`] shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LearnedPrior {
    /// The prior variance of each feature group, in encoding order.
    pub groups: Vec<FeaturePrior>,
    /// Learning events counted.
    pub events: u64,
    /// The redemption rate per decision new offers start at, once learned.
    pub rate: Option<f64>,
    /// With offer features, once estimated: the largest effects of offer
    /// features on context weights, largest magnitude first.
    pub offer_effects: Vec<OfferEffect>,
}

/// A learned effect of an offer feature's column on a context column's
/// prior mean (see [`SharedPrior::offer_effects`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OfferEffect {
    /// The offer feature's column label.
    pub offer_feature: String,
    /// The context column label.
    pub context: String,
    /// On the model's scale.
    pub effect: f64,
}

/// Most offer effects [`LearnedPrior`] lists.
pub const SHOWN_OFFER_EFFECTS: usize = 20;

/// The learned prior of `campaign`; empty unless it is contextual with
/// `adaptive_prior`.
fn learned_prior(campaign: &Campaign) -> LearnedPrior {
    let Some(c) = campaign
        .contextual
        .as_ref()
        .filter(|c| c.config.adaptive_prior)
    else {
        return LearnedPrior::default();
    };
    let prior = c.prior.read();
    let groups = c
        .encoder
        .groups()
        .into_iter()
        .filter_map(|g| {
            Some(FeaturePrior {
                prior_variance: *prior.variance.get(g.columns.start)?,
                feature: g.feature,
                part: g.part.to_owned(),
            })
        })
        .collect();
    let offer_effects = match campaign.config.offer_encoder() {
        Some(offers)
            if prior.has_estimated()
                && offers.dim() > 1
                && prior.offer_effects.len() == c.encoder.dim() * (offers.dim() - 1) =>
        {
            let contexts = c.encoder.column_labels();
            let offer_labels = offers.column_labels();
            let p = offer_labels.len() - 1;
            let mut effects: Vec<OfferEffect> = prior
                .offer_effects
                .iter()
                .enumerate()
                .filter(|(_, e)| **e != 0.0)
                .filter_map(|(k, e)| {
                    Some(OfferEffect {
                        offer_feature: offer_labels.get(1 + k % p)?.clone(),
                        context: contexts.get(k / p)?.clone(),
                        effect: *e,
                    })
                })
                .collect();
            effects.sort_by(|a, b| b.effect.abs().total_cmp(&a.effect.abs()));
            effects.truncate(SHOWN_OFFER_EFFECTS);
            effects
        }
        _ => Vec::new(),
    };
    LearnedPrior {
        offer_effects,
        groups,
        events: prior.events,
        // Redemptions per decision, as the offers' rates are shown.
        rate: prior
            .intercept
            .map(|mu| GaussianPosterior::rate(mu, c.config.likelihood)),
    }
}

/// What an operator set for an offer (`SetOfferStatus`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OfferStatus {
    /// Chosen as usual.
    #[default]
    Active,
    /// Not chosen until resumed; its decisions still accept redemptions.
    Paused,
    /// Never chosen again; its decisions still accept redemptions.
    Retired,
}

impl OfferStatus {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            OfferStatus::Active => "active",
            OfferStatus::Paused => "paused",
            OfferStatus::Retired => "retired",
        }
    }

    /// Parses the API name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            OfferStatus::Active,
            OfferStatus::Paused,
            OfferStatus::Retired,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// The operator-set state of a campaign, stored as one record.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CampaignStatus {
    /// Paused: no decisions until resumed; redemptions still accepted.
    pub paused: bool,
    /// Offers whose status is not `Active`.
    pub offers: Vec<(String, OfferStatus)>,
}

/// One offer in a report.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferReport {
    /// Offer id.
    pub offer_id: String,
    /// Its counts over every segment and both arms.
    pub counts: CellCounts,
    /// Its share of the campaign's decisions.
    pub share: f64,
    /// Posterior mean of its redemption rate over the whole campaign
    /// (Beta(1 + redemptions, 1 + other decisions)).
    pub posterior_mean: f64,
    /// 2.5% quantile of that posterior.
    pub posterior_low: f64,
    /// 97.5% quantile of that posterior.
    pub posterior_high: f64,
    /// Lifetime decisions left under `max_decisions` (None: no budget).
    pub decisions_left: Option<u64>,
    /// Lifetime redemptions left under `max_redemptions`, not counting
    /// those expected from pending decisions (None: no budget).
    pub redemptions_left: Option<u64>,
    /// Decisions left today under `max_decisions_per_day`.
    pub decisions_left_today: Option<u64>,
    /// Redemptions left today under `max_redemptions_per_day`.
    pub redemptions_left_today: Option<u64>,
}

/// What `GetCampaignReport` answers.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignReport {
    /// Campaign id.
    pub campaign: String,
    /// Configured control share.
    pub control_share: f64,
    /// The bandit arm.
    pub bandit: ArmSummary,
    /// The control arm.
    pub control: ArmSummary,
    /// Bandit minus control, once both arms have decisions.
    pub uplift: Option<Uplift>,
    /// Per offer, in offer-id order.
    pub offers: Vec<OfferReport>,
    /// Per segment x offer, as in the stats.
    pub cells: Vec<CellStats>,
}

/// The control policy's pick: the campaign's control offer when it is a
/// candidate (propensity 1), else a uniformly random candidate.
fn control_choice(campaign: &Campaign, candidates: &[usize]) -> thompson::Choice {
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
                index: rand::rng().random_range(0..n),
                propensity: 1.0 / n as f64,
            }
        }
    }
}

/// Engine options.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Flush every decision to disk before SelectOffer answers.
    pub durable_decisions: bool,
    /// How often changed contextual posteriors are written; what was learned
    /// after the last checkpoint is replayed from the decision records at
    /// startup. Flushes, backups, erasures and config changes checkpoint at once.
    pub checkpoint_interval: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            durable_decisions: false,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
        }
    }
}

/// The campaigns served, by id: each its current revision.
type Campaigns = BTreeMap<String, Arc<Campaign>>;

/// The decision engine shared by all request handlers.
#[derive(Debug)]
pub struct Engine {
    campaigns: Arc<RwLock<Campaigns>>,
    store: Store,
    ids: IdGenerator,
    id_keys: IdKeys,
    writer: mpsc::Sender<Command>,
    failed: Arc<AtomicBool>,
    disk: Arc<DiskWatch>,
    options: EngineOptions,
    customer_key: CustomerKey,
}

/// What the server knows of its disk: free space under the watermark, and
/// a flush in progress (a flush that never returns wedged a full disk).
#[derive(Debug, Default)]
pub struct DiskWatch {
    /// Free bytes when last measured under the watermark (0: not under it).
    low_free: std::sync::atomic::AtomicU64,
    /// The watermark, bytes.
    min_free: std::sync::atomic::AtomicU64,
    /// Unix ms when the flush in progress started (0: none).
    flush_started_ms: std::sync::atomic::AtomicI64,
}

/// A flush running longer than this makes the server report itself unfit
/// (health NOT_SERVING) and log it; sled flushes in milliseconds normally.
pub const FLUSH_STUCK_MS: i64 = 30_000;

/// What erasing a customer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Forgotten {
    /// Decision records erased.
    pub decisions: u64,
    /// Of those, decisions subtracted from a regression posterior.
    pub model_updates: u64,
    /// Whether every subtraction was exact.
    pub exact: bool,
}

impl Engine {
    /// Builds the engine from configured campaigns and the store's contents,
    /// and starts the writer thread. Fails on unreadable stored records.
    pub fn open(
        store: Store,
        configs: Vec<FileCampaign>,
        options: EngineOptions,
        customer_key: CustomerKey,
        id_keys: IdKeys,
    ) -> Result<Engine, StoreError> {
        let mut campaigns: BTreeMap<String, Campaign> = BTreeMap::new();
        let mut revisions = WriteSet::default();
        let stored = store.load_configs()?;
        let models = store.load_models()?;
        // A campaign with models but no stored config was stored before
        // configs were, and so before step buckets: its numbers are one-hot
        // unless the file says otherwise.
        let configs = configs
            .into_iter()
            .map(|mut f| {
                let id = f.config.id.as_str();
                if !stored.iter().any(|(c, _)| c == id) && models.iter().any(|(c, _, _)| c == id) {
                    crate::features::settle_stored_buckets(&mut f.config.features);
                }
                f
            })
            .collect();
        for r in crate::revisions::resolve(configs, stored, now_ms())? {
            if let Some(note) = &r.note {
                tracing::warn!(campaign = %r.config.id, "{note}");
            }
            if r.changed {
                revisions.put_config(
                    &r.config.id,
                    &StoredCampaign::new(&r.config, r.revision.clone(), r.retired.clone())?,
                );
            }
            if !r.served && !r.revision.retired {
                tracing::warn!(campaign = %r.config.id, "campaign in storage is no longer in the campaign file: kept for redemptions and reports, not served");
            }
            let mut campaign = Campaign::new(r.config, r.revision, r.served);
            let offer_encoder = campaign.config.offer_encoder();
            for o in &r.retired {
                campaign.push_offer(Offer {
                    active: false,
                    ..Offer::configured(o, offer_encoder.as_ref())
                });
            }
            campaign.retired = r.retired;
            campaigns.insert(campaign.config.id.clone(), campaign);
        }
        let cells = store.load_cells()?;
        for (key, counts) in &cells {
            let campaign = campaigns.entry(key.campaign.clone()).or_insert_with(|| {
                tracing::warn!(campaign = %key.campaign, "campaign in storage is not configured: kept for redemptions and stats, not served");
                Campaign::new(retired_config(&key.campaign), Revision::unknown(), false)
            });
            let idx = match campaign.offer_index(&key.offer) {
                Some(i) => i,
                None => {
                    tracing::warn!(campaign = %key.campaign, offer = %key.offer, "offer in storage is not configured: kept as retired");
                    campaign.add_retired_offer(&key.offer)
                }
            };
            campaign.model.write().set_cell(&key.segment, idx, *counts);
        }
        for (campaign_id, prior) in store.load_priors()? {
            let Some(campaign) = campaigns.get_mut(&campaign_id) else {
                continue;
            };
            let offer_columns = campaign.config.offer_columns();
            let Some(c) = campaign.contextual.as_mut() else {
                continue;
            };
            if !prior.is_well_formed(c.encoder.dim(), offer_columns) {
                return Err(StoreError::Corrupt {
                    key: format!("prior {campaign_id}"),
                    reason: format!(
                        "stored prior has {} columns and {} offer effects, but the configured features encode to {} and {} offer columns",
                        prior.variance.len(),
                        prior.offer_effects.len(),
                        c.encoder.dim(),
                        offer_columns
                    ),
                });
            }
            // Offers that learned nothing are set to it below.
            *c.prior.write() = prior;
        }
        for (campaign_id, offer, posterior) in models {
            let Some(campaign) = campaigns.get_mut(&campaign_id) else {
                tracing::warn!(campaign = %campaign_id, "stored model of an unknown campaign: ignored");
                continue;
            };
            let idx = match campaign.offer_index(&offer) {
                Some(i) => i,
                None => campaign.add_retired_offer(&offer),
            };
            match &mut campaign.contextual {
                Some(c) if posterior.mean.len() == c.encoder.dim() => {
                    c.models.write()[idx] = posterior
                }
                Some(c) => {
                    return Err(StoreError::Corrupt {
                        key: format!("model {campaign_id}/{offer}"),
                        reason: format!(
                            "stored model has {} dimensions but the configured features encode to {}; \
                             changing a contextual campaign's features needs a new campaign id",
                            posterior.mean.len(),
                            c.encoder.dim()
                        ),
                    });
                }
                None => {
                    tracing::warn!(campaign = %campaign_id, "stored regression model but the campaign is not contextual: ignored")
                }
            }
        }
        for (campaign_id, arm, counts) in store.load_arms()? {
            let Some(campaign) = campaigns.get_mut(&campaign_id) else {
                continue;
            };
            match Arm::ALL.into_iter().find(|a| a.as_str() == arm) {
                Some(a) => campaign.arms.write()[a.index()] = counts,
                None => {
                    return Err(StoreError::Corrupt {
                        key: format!("a/{campaign_id}/{arm}"),
                        reason: "unknown arm".into(),
                    });
                }
            }
        }
        for (campaign_id, status) in store.load_statuses()? {
            if let Some(campaign) = campaigns.get_mut(&campaign_id) {
                *campaign.status.write() = status;
            }
        }
        for (campaign_id, offer, counts) in store.load_daily()? {
            let Some(campaign) = campaigns.get_mut(&campaign_id) else {
                continue;
            };
            if let Some(i) = campaign.offer_index(&offer)
                && let Some(slot) = campaign.daily.write().get_mut(i)
            {
                *slot = counts;
            }
        }
        // The stored state as the config now says: a learned prior switched
        // off (by the campaign file, or by a revision whose second write a
        // crash interrupted) is undone, and offers that learned nothing are
        // the current prior.
        let mut settled = false;
        for campaign in campaigns.values() {
            let Some(c) = &campaign.contextual else {
                continue;
            };
            if !c.config.adaptive_prior && c.prior_is_learned() {
                c.switch_prior_off(&c.config, &campaign.offers);
                settled = true;
            }
            c.reset_untrained(&c.config, &campaign.offers);
        }
        let checkpoint = store.model_seq()?;
        let (decisions, last_seq) = replay_learning(&store, &mut campaigns, checkpoint)?;
        tracing::info!(
            cells = cells.len(),
            decisions,
            replayed = last_seq.saturating_sub(checkpoint),
            "store loaded"
        );
        // One batch: the revisions of this start and, when replay (or
        // settling) changed posteriors, a checkpoint of them. The writer
        // starts with nothing dirty, so without it a later checkpoint would
        // move the model sequence past posteriors it does not write.
        let mut writes = revisions;
        if last_seq > checkpoint || settled {
            for (id, c) in &campaigns {
                let Some(ctx) = &c.contextual else { continue };
                for (o, m) in c.offers.iter().zip(ctx.models.read().iter()) {
                    writes.put_model(id, &o.id, m);
                }
                writes.put_prior(id, &ctx.prior.read());
            }
            writes.put_model_seq(last_seq);
        }
        if !writes.is_empty() {
            store.commit(writes)?;
            store.flush()?;
        }
        let campaigns: Campaigns = campaigns
            .into_iter()
            .map(|(id, c)| (id, Arc::new(c)))
            .collect();
        let campaigns = Arc::new(RwLock::new(campaigns));
        let failed = Arc::new(AtomicBool::new(false));
        let disk = Arc::new(DiskWatch::default());
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = Writer {
            store: store.clone(),
            campaigns: campaigns.clone(),
            failed: failed.clone(),
            disk: disk.clone(),
            options,
            seq: std::cell::Cell::new(last_seq),
            dirty: std::cell::RefCell::new(std::collections::HashSet::new()),
            last_checkpoint: std::cell::Cell::new(std::time::Instant::now()),
        };
        std::thread::Builder::new()
            .name("offer-bandit-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Sled(e.into()))?;
        Ok(Engine {
            campaigns,
            store,
            ids: IdGenerator::new(id_keys.signing_id()),
            id_keys,
            writer: tx,
            failed,
            disk,
            options,
            customer_key,
        })
    }

    /// The keys decision ids are signed and verified with.
    pub fn id_keys(&self) -> &IdKeys {
        &self.id_keys
    }

    /// Served and retired campaigns, by id: the current revision of each.
    pub fn campaigns(&self) -> Vec<Arc<Campaign>> {
        self.campaigns.read().values().cloned().collect()
    }

    /// The current revision of a campaign; NOT_FOUND names the served ones.
    pub fn campaign(&self, id: &str) -> Result<Arc<Campaign>, Error> {
        let campaigns = self.campaigns.read();
        campaigns.get(id).cloned().ok_or_else(|| {
            let known: Vec<&str> = campaigns
                .values()
                .filter(|c| c.active)
                .map(|c| c.config.id.as_str())
                .collect();
            Error::NotFound(format!(
                "unknown campaign '{id}'; this server serves: {}",
                known.join(", ")
            ))
        })
    }

    fn check_healthy(&self) -> Result<(), Error> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(Error::Unavailable(
                "storage failed earlier; restart the server (see its log)".into(),
            ));
        }
        let free = self.disk.low_free.load(Ordering::Relaxed);
        if free > 0 {
            return Err(Error::Unavailable(format!(
                "the data directory's disk is nearly full ({} MiB free, below --min-free-mb {}); nothing was recorded, and writes resume once space is freed",
                free >> 20,
                self.disk.min_free.load(Ordering::Relaxed) >> 20
            )));
        }
        Ok(())
    }

    /// Records a measurement of the data directory's free space against the
    /// watermark `min_free` (bytes); under it, writes are refused.
    pub fn set_free_space(&self, free: u64, min_free: u64) {
        self.disk.min_free.store(min_free, Ordering::Relaxed);
        let low = if free < min_free { free.max(1) } else { 0 };
        let was = self.disk.low_free.swap(low, Ordering::Relaxed);
        match (was > 0, low > 0) {
            (false, true) => tracing::error!(
                free_mib = free >> 20,
                min_free_mib = min_free >> 20,
                "the data directory's disk is nearly full: refusing writes until space is freed"
            ),
            (true, false) => {
                tracing::warn!(
                    free_mib = free >> 20,
                    "disk space is back: accepting writes"
                )
            }
            _ => {}
        }
    }

    /// Why the server cannot serve now (storage failed, disk under the
    /// watermark, a flush stuck), or None: what health checks report.
    pub fn storage_problem(&self) -> Option<String> {
        if let Err(e) = self.check_healthy() {
            return Some(e.to_string());
        }
        let started = self.disk.flush_started_ms.load(Ordering::Relaxed);
        let running = now_ms().saturating_sub(started);
        (started > 0 && running > FLUSH_STUCK_MS).then(|| {
            format!(
                "a storage flush has been running for {} s (disk full or failing?)",
                running / 1000
            )
        })
    }

    /// Chooses an offer by Thompson sampling and records the decision.
    pub async fn select(&self, req: SelectRequest) -> Result<Selection, Error> {
        // A decision budget another request spent while this one chose:
        // choose again without that offer (each time one offer fewer, so
        // this ends), in the same arm.
        let mut spent: Vec<(String, String)> = Vec::new();
        let anonymous_draw = rand::random::<f64>();
        loop {
            match self.select_among(&req, &spent, anonymous_draw).await {
                Err(Error::Spent { offer, why }) => {
                    tracing::debug!(offer = %offer, "{why}: choosing again");
                    if spent.iter().any(|(o, _)| *o == offer) {
                        return Err(Error::ResourceExhausted(format!("{offer}: {why}")));
                    }
                    spent.push((offer, why));
                }
                other => return other,
            }
        }
    }

    /// [`Engine::select`] without the offers in `spent` (offer, why), with
    /// `anonymous_draw` deciding the arm of a visit without a customer id.
    async fn select_among(
        &self,
        req: &SelectRequest,
        spent: &[(String, String)],
        anonymous_draw: f64,
    ) -> Result<Selection, Error> {
        self.check_healthy()?;
        let campaign = self.campaign(&req.campaign)?;
        if !campaign.active {
            return Err(Error::FailedPrecondition(format!(
                "campaign '{}' {}; it accepts redemptions but makes no decisions",
                req.campaign,
                if campaign.revision.retired {
                    "was retired by an operator"
                } else {
                    "is no longer configured"
                }
            )));
        }
        if campaign.paused() {
            return Err(Error::FailedPrecondition(format!(
                "campaign '{}' is paused by an operator; it accepts redemptions but makes no decisions",
                req.campaign
            )));
        }
        if let Some(rid) = &req.request_id {
            // Fast path for retries, before budgets and statuses: a retry
            // gets its decision even if that decision spent the last of a
            // budget. The writer re-checks under its lock.
            if let Some(id) = self.store.request(&req.campaign, rid)?
                && let Some(rec) = self.store.decision(&id)?
                && rec.expires_ms > now_ms()
            {
                let customer = req
                    .customer_id
                    .as_deref()
                    .map(|c| self.customer_key.hash(c));
                replay_for(rec.customer.as_ref(), customer.as_ref())?;
                return Ok(Selection::from_record(id, &rec, true));
            }
        }
        let candidates = self.candidates(&campaign, &req.candidates)?;
        let (candidates, excluded) =
            self.within_budget(&campaign, candidates, req.customer_id.as_deref(), spent)?;
        let objective = campaign.config.objective;
        let (segment, features, choice, model_version) = match &campaign.contextual {
            Some(ctx) => {
                let x = ctx
                    .encoder
                    .encode(&req.context)
                    .map_err(|e| Error::InvalidArgument(format!("context: {e}")))?;
                let weights: Vec<f64> = campaign
                    .offers
                    .iter()
                    .map(|o| objective.weight(o.value))
                    .collect();
                let arms = {
                    let models = ctx.models.read();
                    gaussian_arms(&models, &ctx.config, &weights, &x, &candidates)
                };
                let choice = thompson::choose(&arms, &mut rand::rng())
                    .ok_or_else(|| Error::FailedPrecondition("no candidate offers".into()))?;
                (String::new(), x, choice, campaign.model.read().version())
            }
            None => {
                let segment = segment_key(&campaign.config.segment_by, &req.context)
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?;
                let weights: Vec<f64> = candidates
                    .iter()
                    .map(|&i| objective.weight(campaign.offers[i].value))
                    .collect();
                let (segment, choice, model_version) = {
                    let model = campaign.model.read();
                    let segment = if model.has_segment(&segment)
                        || model.segments() < campaign.config.max_segments
                    {
                        segment
                    } else {
                        OVERFLOW_SEGMENT.to_owned()
                    };
                    let choice = campaign.snapshots.choose(
                        &model,
                        &segment,
                        &candidates,
                        &weights,
                        campaign.config.prior_strength,
                        &mut rand::rng(),
                    );
                    (segment, choice, model.version())
                };
                let choice = choice
                    .ok_or_else(|| Error::FailedPrecondition("no candidate offers".into()))?;
                (segment, Vec::new(), choice, model_version)
            }
        };
        let arm = self.arm_of(&campaign, req.customer_id.as_deref(), anonymous_draw);
        let choice = match arm {
            Arm::Bandit => choice,
            Arm::Control => control_choice(&campaign, &candidates),
        };
        let explanation = if req.explain {
            self.explain(&campaign, &segment, &features, &candidates, &excluded, arm)?
        } else {
            Vec::new()
        };
        let offer = &campaign.offers[candidates[choice.index]];
        let now = now_ms();
        let id = self.ids.next(now);
        let rec = DecisionRecord {
            campaign: req.campaign.clone(),
            offer: offer.id.clone(),
            segment,
            propensity: choice.propensity,
            created_ms: now,
            expires_ms: now.saturating_add(campaign.reward_window_ms()),
            request_id: req.request_id.clone(),
            model_version,
            state: DecisionState::Pending,
            features,
            // Only the features the campaign declares (its model's and its
            // segments'): what it never reads is not the store's to keep, and
            // undeclared keys let a caller grow every record (21 KB each
            // filled a disk).
            context: {
                let cfg = &campaign.config;
                let mut c: Vec<_> = req
                    .context
                    .iter()
                    .filter(|(k, _)| {
                        cfg.segment_by.iter().any(|s| s == *k)
                            || cfg.features.iter().any(|f| f.name() == k.as_str())
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                c.sort_by(|a, b| a.0.cmp(&b.0));
                c
            },
            candidates: candidates
                .iter()
                .map(|&i| campaign.offers[i].id.clone())
                .collect(),
            customer: req
                .customer_id
                .as_deref()
                .map(|c| self.customer_key.hash(c)),
            learned_seq: 0,
            redeemed_seq: 0,
            arm,
        };
        let campaign_id = rec.campaign.clone();
        let (reply, rx) = oneshot::channel();
        self.send(Command::Decide {
            id,
            rec: Box::new(rec),
            reply,
        })
        .await?;
        let mut selection = rx.await.map_err(|_| writer_gone())??;
        selection.explanation = explanation;
        if !selection.replayed {
            metrics::counter!("offer_bandit_decisions_total", "campaign" => campaign_id, "offer" => selection.offer_id.clone())
                .increment(1);
        }
        Ok(selection)
    }

    /// The arm of a visit: stable per customer (a keyed hash of campaign and
    /// customer), `anonymous_draw` (uniform, drawn per request) for
    /// anonymous visits.
    fn arm_of(&self, campaign: &Campaign, customer_id: Option<&str>, anonymous_draw: f64) -> Arm {
        let share = campaign.config.control_share;
        if share <= 0.0 {
            return Arm::Bandit;
        }
        let u = match customer_id {
            Some(c) => crate::uplift::stable_draw(
                &self
                    .customer_key
                    .hash(&format!("arm\0{}\0{c}", campaign.config.id))
                    .0,
            ),
            None => anonymous_draw,
        };
        Arm::of(u, share)
    }

    /// Drops the candidates whose budget is spent, whose daily pacing is
    /// ahead, or that the customer has had too often; returns the rest and
    /// the reasons. RESOURCE_EXHAUSTED when nothing is left.
    #[allow(clippy::type_complexity)]
    fn within_budget(
        &self,
        campaign: &Campaign,
        candidates: Vec<usize>,
        customer_id: Option<&str>,
        spent: &[(String, String)],
    ) -> Result<(Vec<usize>, Vec<(usize, String)>), Error> {
        if !campaign.limited && spent.is_empty() {
            // The common case on the hot path: nothing to check.
            return Ok((candidates, Vec::new()));
        }
        let now = now_ms();
        let mut excluded = Vec::new();
        // Offers the writer found spent by concurrent decisions.
        let candidates: Vec<usize> = candidates
            .into_iter()
            .filter(
                |&i| match spent.iter().find(|(o, _)| *o == campaign.offers[i].id) {
                    Some((_, why)) => {
                        excluded.push((i, why.clone()));
                        false
                    }
                    None => true,
                },
            )
            .collect();
        let seen = match (&campaign.config.frequency_cap, customer_id) {
            (Some(cap), Some(c)) => {
                let ids = self.store.customer_decisions(&self.customer_key.hash(c))?;
                let seen = offers_seen(ids, &campaign.config.id, cap_start(cap, now), |id| {
                    Ok(self.store.decision(id)?)
                })?;
                Some((cap, seen))
            }
            _ => None,
        };
        let model = campaign.model.read();
        let daily = campaign.daily.read();
        let kept: Vec<usize> = candidates
            .into_iter()
            .filter(|&i| {
                let offer = &campaign.offers[i];
                let why = campaign
                    .config
                    .offers
                    .iter()
                    .find(|o| o.id == offer.id)
                    .and_then(|cfg| {
                        crate::budget::exhausted(
                            cfg,
                            model.totals(i),
                            daily.get(i).copied().unwrap_or_default(),
                            now,
                        )
                    })
                    .or_else(|| {
                        let (cap, seen) = seen.as_ref()?;
                        cap_reached(cap, seen.get(&offer.id).copied().unwrap_or(0))
                    });
                match why {
                    Some(w) => {
                        excluded.push((i, w));
                        false
                    }
                    None => true,
                }
            })
            .collect();
        if kept.is_empty() {
            let reasons: Vec<String> = excluded
                .iter()
                .map(|(i, w)| format!("{}: {w}", campaign.offers[*i].id))
                .collect();
            return Err(Error::ResourceExhausted(format!(
                "no candidate offer can be chosen now: {}",
                reasons.join("; ")
            )));
        }
        Ok((kept, excluded))
    }

    /// Every offer's estimate for this visit (see [`Explanation`]).
    fn explain(
        &self,
        campaign: &Campaign,
        segment: &str,
        x: &[(u32, f64)],
        candidates: &[usize],
        excluded: &[(usize, String)],
        arm: Arm,
    ) -> Result<Vec<Explanation>, Error> {
        use crate::policy::special::beta_quantile;
        use crate::uplift::Estimate;
        let objective = campaign.config.objective;
        // (mean, low, high) of the redemption rate, per candidate.
        let (rates, probabilities): (Vec<(f64, f64, f64)>, Vec<f64>) = match &campaign.contextual {
            Some(ctx) => {
                let models = ctx.models.read();
                let weights: Vec<f64> = campaign
                    .offers
                    .iter()
                    .map(|o| objective.weight(o.value))
                    .collect();
                let arms = gaussian_arms(&models, &ctx.config, &weights, x, candidates);
                let rate = |z: f64| GaussianPosterior::rate(z, ctx.config.likelihood);
                let rates = candidates
                    .iter()
                    .map(|&c| {
                        let (m, v) = models.get(c).map_or((0.0, 1.0), |p| p.predictive(x));
                        let sd = v.sqrt();
                        (rate(m), rate(m - 1.96 * sd), rate(m + 1.96 * sd))
                    })
                    .collect();
                let probs = within_budget(arms.len(), |i| thompson::win_probability(&arms, i))?;
                (rates, probs)
            }
            None => {
                let weights: Vec<f64> = candidates
                    .iter()
                    .map(|&i| objective.weight(campaign.offers[i].value))
                    .collect();
                let model = campaign.model.read();
                let arms = model.arms(
                    segment,
                    candidates,
                    &weights,
                    campaign.config.prior_strength,
                );
                let rates = arms
                    .iter()
                    .map(|a| {
                        (
                            a.mean(),
                            beta_quantile(0.025, a.alpha, a.beta),
                            beta_quantile(0.975, a.alpha, a.beta),
                        )
                    })
                    .collect();
                let probs = within_budget(arms.len(), |i| thompson::win_probability(&arms, i))?;
                (rates, probs)
            }
        };
        let probabilities = match arm {
            Arm::Bandit => probabilities,
            Arm::Control => {
                let fixed = control_choice(campaign, candidates);
                (0..candidates.len())
                    .map(|i| {
                        if fixed.propensity == 1.0 {
                            if i == fixed.index { 1.0 } else { 0.0 }
                        } else {
                            1.0 / candidates.len() as f64
                        }
                    })
                    .collect()
            }
        };
        let mut out: Vec<Explanation> = campaign
            .offers
            .iter()
            .enumerate()
            .map(|(i, o)| match candidates.iter().position(|&c| c == i) {
                Some(k) => {
                    let (m, lo, hi) = rates[k];
                    Explanation {
                        offer_id: o.id.clone(),
                        excluded: None,
                        rate: Some(Estimate {
                            value: m,
                            low: lo,
                            high: hi,
                        }),
                        value: Some(Estimate {
                            value: m * o.value,
                            low: lo * o.value,
                            high: hi * o.value,
                        }),
                        probability: probabilities[k],
                    }
                }
                None => Explanation {
                    offer_id: o.id.clone(),
                    excluded: Some(
                        if let Some((_, why)) = excluded.iter().find(|(j, _)| *j == i) {
                            why.clone()
                        } else if let Some(why) = campaign.unavailable(i) {
                            why
                        } else {
                            "not among this request's candidate_offer_ids".into()
                        },
                    ),
                    rate: None,
                    value: None,
                    probability: 0.0,
                },
            })
            .collect();
        out.sort_by(|a, b| a.offer_id.cmp(&b.offer_id));
        Ok(out)
    }

    /// The bandit and control arms of a campaign, their uplift, and per-offer
    /// traffic and posteriors.
    pub fn report(&self, campaign_id: &str) -> Result<CampaignReport, Error> {
        let campaign = self.campaign(campaign_id)?;
        let arms = *campaign.arms.read();
        let (bandit, control, uplift) = crate::uplift::compare(arms[0], arms[1]);
        let stats = self.stats(campaign_id)?;
        let total: u64 = stats.offers.iter().map(|o| o.counts.trials).sum();
        let now = now_ms();
        let daily = campaign.daily.read().clone();
        let offers = stats
            .offers
            .iter()
            .map(|o| {
                let c = o.counts;
                let (alpha, beta) = (
                    1.0 + c.successes as f64,
                    1.0 + c.trials.saturating_sub(c.successes) as f64,
                );
                let cfg = campaign.config.offers.iter().find(|x| x.id == o.offer_id);
                let today = campaign
                    .offer_index(&o.offer_id)
                    .and_then(|i| daily.get(i).copied())
                    .unwrap_or_default()
                    .on(now);
                let left = |cap: Option<u64>, used: u64| cap.map(|c| c.saturating_sub(used));
                OfferReport {
                    decisions_left: left(cfg.and_then(|x| x.max_decisions), c.trials),
                    redemptions_left: left(cfg.and_then(|x| x.max_redemptions), c.successes),
                    decisions_left_today: left(
                        cfg.and_then(|x| x.max_decisions_per_day),
                        today.decisions,
                    ),
                    redemptions_left_today: left(
                        cfg.and_then(|x| x.max_redemptions_per_day),
                        today.redemptions,
                    ),
                    offer_id: o.offer_id.clone(),
                    counts: c,
                    share: if total > 0 {
                        c.trials as f64 / total as f64
                    } else {
                        0.0
                    },
                    posterior_mean: alpha / (alpha + beta),
                    posterior_low: crate::policy::special::beta_quantile(0.025, alpha, beta),
                    posterior_high: crate::policy::special::beta_quantile(0.975, alpha, beta),
                }
            })
            .collect();
        Ok(CampaignReport {
            campaign: campaign_id.to_owned(),
            control_share: campaign.config.control_share,
            bandit,
            control,
            uplift,
            offers,
            cells: stats.cells,
        })
    }

    fn candidates(&self, campaign: &Campaign, ids: &[String]) -> Result<Vec<usize>, Error> {
        if ids.is_empty() {
            let all: Vec<usize> = (0..campaign.offers.len())
                .filter(|&i| campaign.unavailable(i).is_none())
                .collect();
            return if all.is_empty() {
                Err(Error::FailedPrecondition(format!(
                    "campaign '{}' has no active offers",
                    campaign.config.id
                )))
            } else {
                Ok(all)
            };
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let idx = campaign.offer_index(id).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "candidate_offer_ids: unknown offer '{id}' in campaign '{}' (ListCampaigns shows its offers)",
                    campaign.config.id
                ))
            })?;
            if let Some(why) = campaign.unavailable(idx) {
                return Err(Error::FailedPrecondition(format!(
                    "offer '{id}' cannot be chosen: {why}"
                )));
            }
            if !out.contains(&idx) {
                out.push(idx);
            }
        }
        Ok(out)
    }

    /// Records a redemption; answers once it is durable.
    pub async fn redeem(&self, redemption: Redemption) -> Result<Redeemed, Error> {
        self.check_healthy()?;
        let (reply, rx) = oneshot::channel();
        self.send(Command::Redeem {
            redemption,
            now_ms: now_ms(),
            reply,
        })
        .await?;
        let result = rx.await.map_err(|_| writer_gone())?;
        count_redemption(&result);
        result
    }

    /// Records many redemptions in one group commit; one result each, in order.
    pub async fn redeem_many(
        &self,
        redemptions: Vec<Redemption>,
    ) -> Result<Vec<Result<Redeemed, Error>>, Error> {
        self.check_healthy()?;
        let now = now_ms();
        let mut waits = Vec::with_capacity(redemptions.len());
        for redemption in redemptions {
            let (reply, rx) = oneshot::channel();
            self.send(Command::Redeem {
                redemption,
                now_ms: now,
                reply,
            })
            .await?;
            waits.push(rx);
        }
        let mut out = Vec::with_capacity(waits.len());
        for rx in waits {
            let result = rx.await.map_err(|_| writer_gone())?;
            count_redemption(&result);
            out.push(result);
        }
        Ok(out)
    }

    /// Finalizes decisions whose window has closed; returns how many were handled.
    pub async fn sweep(&self, now_ms: i64, limit: usize) -> Result<usize, Error> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Sweep {
            now_ms,
            limit,
            reply,
        })
        .await?;
        rx.await.map_err(|_| writer_gone())?
    }

    /// Erases every decision of a customer and subtracts them from the
    /// posteriors; answers once that is durable.
    pub async fn forget(&self, customer_id: &str) -> Result<Forgotten, Error> {
        self.check_healthy()?;
        let customer = self.customer_key.hash(customer_id);
        let (reply, rx) = oneshot::channel();
        self.send(Command::Forget { customer, reply }).await?;
        rx.await.map_err(|_| writer_gone())?
    }

    /// Deletes up to `limit` resolved decision records whose reward window
    /// closed before `before_ms` (their evidence stays in the posteriors);
    /// returns how many.
    pub async fn prune(&self, before_ms: i64, limit: usize) -> Result<usize, Error> {
        // Only records made a full reward window before the cut can be past
        // it; scanning no further keeps each pass to prunable records.
        let (longest, longest_cap) = {
            let campaigns = self.campaigns.read();
            let longest = campaigns
                .values()
                .map(|c| c.reward_window_ms())
                .max()
                .unwrap_or(0);
            // A frequency cap counts a customer's decisions over its
            // period: retention never takes those (whichever campaign).
            let longest_cap = campaigns
                .values()
                .filter_map(|c| c.config.frequency_cap.as_ref())
                .map(|cap| i64::try_from(cap.period.as_millis()).unwrap_or(i64::MAX))
                .max()
                .unwrap_or(0);
            (longest, longest_cap)
        };
        let created_before = before_ms
            .saturating_sub(longest)
            .min(now_ms().saturating_sub(longest_cap));
        let (reply, rx) = oneshot::channel();
        self.send(Command::Prune {
            before_ms,
            created_before,
            limit,
            reply,
        })
        .await?;
        rx.await.map_err(|_| writer_gone())?
    }

    /// Pauses, resumes or retires an offer; durable when it answers, and
    /// seen by the next SelectOffer.
    pub async fn set_offer_status(
        &self,
        campaign_id: &str,
        offer_id: &str,
        status: OfferStatus,
    ) -> Result<(), Error> {
        let campaign = self.campaign(campaign_id)?;
        if campaign.revision.retired {
            return Err(retired_error(campaign_id));
        }
        let Some(i) = campaign.offer_index(offer_id) else {
            return Err(Error::NotFound(format!(
                "no offer '{offer_id}' in campaign '{campaign_id}'"
            )));
        };
        if !campaign.offers[i].active {
            return Err(Error::FailedPrecondition(format!(
                "offer '{offer_id}' is no longer in the campaign's configuration"
            )));
        }
        self.put_status(
            campaign_id,
            StatusChange::Offer(offer_id.to_owned(), status),
        )
        .await
    }

    /// Pauses or resumes a campaign; durable when it answers.
    pub async fn set_campaign_paused(&self, campaign_id: &str, paused: bool) -> Result<(), Error> {
        let campaign = self.campaign(campaign_id)?;
        if campaign.revision.retired {
            return Err(retired_error(campaign_id));
        }
        if !campaign.active {
            return Err(Error::FailedPrecondition(format!(
                "campaign '{campaign_id}' is no longer configured"
            )));
        }
        self.put_status(campaign_id, StatusChange::Paused(paused))
            .await
    }

    async fn put_status(&self, campaign: &str, change: StatusChange) -> Result<(), Error> {
        self.check_healthy()?;
        let (reply, rx) = oneshot::channel();
        self.send(Command::SetStatus {
            campaign: campaign.to_owned(),
            change,
            reply,
        })
        .await?;
        rx.await.map_err(|_| writer_gone())?
    }

    /// Applies a config change (see [`ConfigChange`]) on top of the current
    /// revision, or of `expected_revision` only (ABORTED if the campaign is
    /// at another; 0: the campaign must not exist yet). Durable when it
    /// answers, and seen by the next SelectOffer.
    pub async fn revise(
        &self,
        campaign: &str,
        change: ConfigChange,
        expected_revision: Option<u64>,
    ) -> Result<Arc<Campaign>, Error> {
        self.check_healthy()?;
        let (reply, rx) = oneshot::channel();
        self.send(Command::Revise {
            campaign: campaign.to_owned(),
            change,
            expected_revision,
            reply,
        })
        .await?;
        rx.await.map_err(|_| writer_gone())?
    }

    /// Writes a consistent backup of the whole store to `path`; returns the
    /// entries written. Writes wait meanwhile (the writer thread makes it).
    pub async fn backup(&self, path: std::path::PathBuf) -> Result<u64, Error> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Backup { path, reply }).await?;
        rx.await.map_err(|_| writer_gone())?
    }

    /// Makes everything applied so far durable.
    pub async fn flush(&self) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Flush { reply }).await?;
        rx.await.map_err(|_| writer_gone())?
    }

    /// A campaign's learned prior (empty for one without).
    pub fn learned_prior(&self, campaign_id: &str) -> Result<LearnedPrior, Error> {
        Ok(learned_prior(&*self.campaign(campaign_id)?))
    }

    /// Counts and posteriors of a campaign.
    pub fn stats(&self, campaign_id: &str) -> Result<CampaignStats, Error> {
        let campaign = self.campaign(campaign_id)?;
        let model = campaign.model.read();
        let mut offers: Vec<OfferStats> = campaign
            .offers
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let posterior = campaign
                    .contextual
                    .as_ref()
                    .and_then(|c| c.models.read().get(i).cloned());
                let (model_observations, mean_predicted_rate) = match posterior {
                    Some(p) if p.decisions > 0 => {
                        (p.observations, p.predicted_sum / p.decisions as f64)
                    }
                    _ => (0, 0.0),
                };
                OfferStats {
                    offer_id: o.id.clone(),
                    counts: model.totals(i),
                    model_observations,
                    mean_predicted_rate,
                }
            })
            .collect();
        offers.sort_by(|a, b| a.offer_id.cmp(&b.offer_id));
        let mut cells: Vec<CellStats> = model
            .iter_cells()
            .filter_map(|(segment, o, counts)| {
                // The shared model may already hold an offer that a newer
                // revision than this one added.
                let offer = campaign.offers.get(o)?;
                let (alpha, beta) = model.posterior(segment, o, campaign.config.prior_strength);
                Some(CellStats {
                    segment: segment.to_owned(),
                    offer_id: offer.id.clone(),
                    alpha,
                    beta,
                    counts,
                })
            })
            .collect();
        cells.sort_by(|a, b| (&a.segment, &a.offer_id).cmp(&(&b.segment, &b.offer_id)));
        Ok(CampaignStats {
            learned_prior: learned_prior(&campaign),
            campaign: campaign_id.to_owned(),
            offers,
            cells,
            model_version: model.version(),
        })
    }

    /// Streams the decisions of `campaign` made in `[since_ms, until_ms)` to
    /// `sink` from a blocking thread, in time order; stops when `sink`
    /// returns false (the client went away).
    pub fn export(
        &self,
        campaign: &str,
        since_ms: i64,
        until_ms: i64,
        mut sink: impl FnMut(DecisionId, DecisionRecord) -> bool,
    ) -> Result<(), Error> {
        self.campaign(campaign)?;
        self.store.scan_decisions(since_ms, until_ms, |id, rec| {
            if rec.campaign == campaign {
                sink(id, rec)
            } else {
                true
            }
        })?;
        Ok(())
    }

    /// The engine's options.
    pub fn options(&self) -> EngineOptions {
        self.options
    }

    async fn send(&self, cmd: Command) -> Result<(), Error> {
        self.writer.send(cmd).await.map_err(|_| writer_gone())
    }
}

fn count_redemption(result: &Result<Redeemed, Error>) {
    match result {
        Ok(r) if !r.already_recorded => {
            metrics::counter!("offer_bandit_redemptions_applied_total", "campaign" => r.campaign.clone())
                .increment(1);
        }
        Err(Error::FailedPrecondition(m)) if m.contains("past its reward window") => {
            metrics::counter!("offer_bandit_late_redemptions_total").increment(1);
        }
        _ => {}
    }
}

fn writer_gone() -> Error {
    Error::Unavailable(
        "the storage writer has stopped; the server is shutting down or failed".into(),
    )
}

fn retired_config(id: &str) -> CampaignConfig {
    CampaignConfig {
        id: id.to_owned(),
        policy: PolicyKind::SegmentTs,
        segment_by: Vec::new(),
        reward_window: Duration::from_secs(1),
        objective: Objective::Redemptions,
        prior_strength: 0.0,
        max_segments: usize::MAX,
        snapshot_tolerance: 0.0,
        control_share: 0.0,
        control_offer: None,
        frequency_cap: None,
        offers: Vec::new(),
        features: Vec::new(),
        hash_bits: 0,
        offer_features: Vec::new(),
        exploration: None,
        prior_variance: None,
        prior_rate: None,
        noise_variance: None,
        half_life: None,
        adaptive_prior: None,
    }
}

enum Command {
    Decide {
        id: DecisionId,
        rec: Box<DecisionRecord>,
        reply: oneshot::Sender<Result<Selection, Error>>,
    },
    Redeem {
        redemption: Redemption,
        now_ms: i64,
        reply: oneshot::Sender<Result<Redeemed, Error>>,
    },
    Sweep {
        now_ms: i64,
        limit: usize,
        reply: oneshot::Sender<Result<usize, Error>>,
    },
    Flush {
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Forget {
        customer: CustomerHash,
        reply: oneshot::Sender<Result<Forgotten, Error>>,
    },
    Prune {
        before_ms: i64,
        created_before: i64,
        limit: usize,
        reply: oneshot::Sender<Result<usize, Error>>,
    },
    Backup {
        path: std::path::PathBuf,
        reply: oneshot::Sender<Result<u64, Error>>,
    },
    SetStatus {
        campaign: String,
        change: StatusChange,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Revise {
        campaign: String,
        change: ConfigChange,
        expected_revision: Option<u64>,
        reply: oneshot::Sender<Result<Arc<Campaign>, Error>>,
    },
}

/// A change to a campaign's config, applied by the writer to the revision
/// current when it runs (so concurrent changes do not overwrite each other).
#[derive(Debug, Clone)]
pub enum ConfigChange {
    /// Create the campaign, or replace its config.
    Put(Box<CampaignConfig>),
    /// Add one offer to the campaign's current config.
    AddOffer(Box<OfferConfig>),
    /// Stop serving the campaign for good (its decisions still take
    /// redemptions and it stays in reports).
    Retire,
}

/// One operator change, merged by the writer into the campaign's status so
/// that concurrent changes do not overwrite each other.
#[derive(Debug, Clone)]
enum StatusChange {
    Offer(String, OfferStatus),
    Paused(bool),
}

impl CampaignStatus {
    /// This status with `change` applied; an error when it would undo a
    /// retirement.
    fn with(&self, change: &StatusChange) -> Result<CampaignStatus, Error> {
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

enum Reply {
    Select(
        oneshot::Sender<Result<Selection, Error>>,
        Result<Selection, Error>,
    ),
    Redeem(
        oneshot::Sender<Result<Redeemed, Error>>,
        Result<Redeemed, Error>,
    ),
    Sweep(oneshot::Sender<Result<usize, Error>>, Result<usize, Error>),
    Flush(oneshot::Sender<Result<(), Error>>),
    Forget(
        oneshot::Sender<Result<Forgotten, Error>>,
        Result<Forgotten, Error>,
    ),
}

impl Reply {
    fn send(self, failure: Option<&str>) {
        let fail = |m: &str| {
            Error::Unavailable(format!("storage write failed, nothing was recorded: {m}"))
        };
        // A caller that gave up (deadline, disconnect) dropped its receiver; that is fine.
        match (self, failure) {
            (Reply::Select(tx, r), None) => drop(tx.send(r)),
            (Reply::Select(tx, _), Some(m)) => drop(tx.send(Err(fail(m)))),
            (Reply::Redeem(tx, r), None) => drop(tx.send(r)),
            (Reply::Redeem(tx, _), Some(m)) => drop(tx.send(Err(fail(m)))),
            (Reply::Sweep(tx, r), None) => drop(tx.send(r)),
            (Reply::Sweep(tx, _), Some(m)) => drop(tx.send(Err(fail(m)))),
            (Reply::Flush(tx), None) => drop(tx.send(Ok(()))),
            (Reply::Flush(tx), Some(m)) => drop(tx.send(Err(fail(m)))),
            (Reply::Forget(tx, r), None) => drop(tx.send(r)),
            (Reply::Forget(tx, _), Some(m)) => drop(tx.send(Err(fail(m)))),
        }
    }
}

/// The single mutator of stored and in-memory state.
struct Writer {
    store: Store,
    campaigns: Arc<RwLock<Campaigns>>,
    failed: Arc<AtomicBool>,
    disk: Arc<DiskWatch>,
    options: EngineOptions,
    /// The last learning sequence number handed out.
    seq: std::cell::Cell<u64>,
    /// Contextual posteriors changed since the last checkpoint.
    dirty: std::cell::RefCell<std::collections::HashSet<(String, usize)>>,
    last_checkpoint: std::cell::Cell<std::time::Instant>,
}

/// Changes staged by one group, visible to later commands of the same group.
#[derive(Default)]
struct Group {
    writes: WriteSet,
    cells: HashMap<(String, String, usize), CellCounts>,
    arms: HashMap<(String, Arm), ArmCounts>,
    daily: HashMap<(String, usize), DailyCounts>,
    statuses: HashMap<String, CampaignStatus>,
    models: HashMap<(String, usize), GaussianPosterior>,
    /// Learned priors this group changed, by campaign.
    priors: HashMap<String, SharedPrior>,
    /// Decisions this group added per offer (erasures in the same group
    /// are not subtracted: budget checks err on the safe side).
    trials: HashMap<(String, usize), u64>,
    /// The decisions staged in this group, by customer.
    by_customer: HashMap<CustomerHash, Vec<DecisionId>>,
    decisions: HashMap<DecisionId, DecisionRecord>,
    requests: HashMap<(String, String), DecisionId>,
    /// Decisions deleted in this group (erased or pruned): gone for later
    /// commands of the group although the store still has them.
    erased: std::collections::HashSet<DecisionId>,
    /// New decisions per campaign: when the last window closes, and the ids.
    expiries: HashMap<String, (i64, Vec<DecisionId>)>,
    replies: Vec<Reply>,
    durable: bool,
    /// Write every changed posterior with this group (erasure, pruning,
    /// flush, backup) instead of waiting for the next checkpoint.
    checkpoint: bool,
    expired: u64,
}

impl Writer {
    fn campaign(&self, id: &str) -> Option<Arc<Campaign>> {
        self.campaigns.read().get(id).cloned()
    }

    fn run(self, mut rx: mpsc::Receiver<Command>) {
        let mut next: Option<Command> = None;
        loop {
            let first = match next.take() {
                Some(cmd) => cmd,
                None => match rx.blocking_recv() {
                    Some(cmd) => cmd,
                    None => break,
                },
            };
            // A backup runs alone, between groups: everything before it is
            // committed and nothing writes while it runs.
            if let Command::Backup { path, reply } = first {
                // Posteriors as of now, so the backup needs no replay.
                self.finish(Group {
                    checkpoint: true,
                    ..Group::default()
                });
                let _ = reply.send(self.backup(&path));
                continue;
            }
            // So does a config change: every learning event before it is
            // checkpointed under the old config, every later one is learned
            // (and replayed at startup) under the new one.
            if let Command::Revise {
                campaign,
                change,
                expected_revision,
                reply,
            } = first
            {
                let checkpointed = self.finish(Group {
                    checkpoint: true,
                    ..Group::default()
                });
                let result = if checkpointed {
                    self.revise(&campaign, change, expected_revision)
                } else {
                    Err(Error::Unavailable(
                        "the models could not be checkpointed before the change (see the server log); nothing was changed"
                            .into(),
                    ))
                };
                let _ = reply.send(result);
                continue;
            }
            let mut group = Group::default();
            self.apply(&mut group, first);
            while group.replies.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(cmd @ (Command::Backup { .. } | Command::Revise { .. })) => {
                        next = Some(cmd);
                        break;
                    }
                    Ok(cmd) => self.apply(&mut group, cmd),
                    Err(_) => break,
                }
            }
            self.finish(group);
        }
        self.finish(Group {
            checkpoint: true,
            ..Group::default()
        });
        if let Err(e) = self.watched_flush() {
            tracing::error!(error = %e, "final flush failed");
        }
    }

    /// Flushes the store, with its start time visible to the health watch.
    fn watched_flush(&self) -> Result<(), StoreError> {
        self.disk
            .flush_started_ms
            .store(now_ms().max(1), Ordering::Relaxed);
        let r = self.store.flush();
        self.disk.flush_started_ms.store(0, Ordering::Relaxed);
        r
    }

    /// Commits a group, publishes its state and answers its commands;
    /// returns whether its writes are stored.
    fn finish(&self, mut group: Group) -> bool {
        for (expires_ms, ids) in group.expiries.values() {
            group.writes.put_expiries(*expires_ms, ids);
        }
        let checkpoint = (group.checkpoint
            || self.last_checkpoint.get().elapsed() >= self.options.checkpoint_interval)
            && !self.dirty.borrow().is_empty();
        if checkpoint {
            let mut priors_written = std::collections::HashSet::new();
            for (campaign, offer) in self.dirty.borrow().iter() {
                let Some(c) = self.campaign(campaign) else {
                    continue;
                };
                let (Some(o), Some(ctx)) = (c.offers.get(*offer), &c.contextual) else {
                    continue;
                };
                let key = (campaign.clone(), *offer);
                match group.models.get(&key) {
                    Some(p) => group.writes.put_model(campaign, &o.id, p),
                    None => {
                        if let Some(p) = ctx.models.read().get(*offer) {
                            group.writes.put_model(campaign, &o.id, p);
                        }
                    }
                }
                if ctx.config.adaptive_prior && !priors_written.contains(campaign) {
                    match group.priors.get(campaign) {
                        Some(p) => group.writes.put_prior(campaign, p),
                        None => group.writes.put_prior(campaign, &ctx.prior.read()),
                    }
                    priors_written.insert(campaign.clone());
                }
            }
            group.writes.put_model_seq(self.seq.get());
        }
        let mut failure = None;
        if self.failed.load(Ordering::Relaxed) {
            failure = Some("an earlier storage failure".to_owned());
        } else if !group.writes.is_empty()
            && let Err(e) = self.store.commit(group.writes)
        {
            failure = Some(e.to_string());
        }
        let flush_started = std::time::Instant::now();
        if failure.is_none()
            && group.durable
            && let Err(e) = self.watched_flush()
        {
            // The batch is applied in sled but may not be on disk; memory no
            // longer knows which. Refuse further work rather than diverge.
            self.failed.store(true, Ordering::Relaxed);
            failure = Some(e.to_string());
        }
        if group.durable {
            metrics::histogram!("offer_bandit_flush_duration_seconds")
                .record(flush_started.elapsed().as_secs_f64());
        }
        if let Some(f) = &failure {
            tracing::error!(error = %f, "storage write failed");
        } else {
            if checkpoint {
                self.dirty.borrow_mut().clear();
                self.last_checkpoint.set(std::time::Instant::now());
            }
            metrics::counter!("offer_bandit_expiries_total").increment(group.expired);
            for (campaign, status) in group.statuses {
                if let Some(c) = self.campaign(&campaign) {
                    *c.status.write() = status;
                }
            }
            for ((campaign, offer), counts) in group.daily {
                if let Some(c) = self.campaign(&campaign)
                    && let Some(slot) = c.daily.write().get_mut(offer)
                {
                    *slot = counts;
                }
            }
            for ((campaign, arm), counts) in group.arms {
                if let Some(c) = self.campaign(&campaign) {
                    c.arms.write()[arm.index()] = counts;
                }
            }
            for ((campaign, segment, offer), counts) in group.cells {
                if let Some(c) = self.campaign(&campaign) {
                    c.model.write().set_cell(&segment, offer, counts);
                }
            }
            for ((campaign, offer), posterior) in group.models {
                if let Some(c) = self.campaign(&campaign)
                    && let Some(ctx) = &c.contextual
                    && let Some(slot) = ctx.models.write().get_mut(offer)
                {
                    *slot = posterior;
                }
            }
            for (campaign, prior) in group.priors {
                if let Some(c) = self.campaign(&campaign)
                    && let Some(ctx) = &c.contextual
                {
                    *ctx.prior.write() = prior;
                }
            }
        }
        for reply in group.replies {
            reply.send(failure.as_deref());
        }
        failure.is_none()
    }

    fn apply(&self, g: &mut Group, cmd: Command) {
        match cmd {
            Command::Decide { id, rec, reply } => {
                let r = self.decide(g, id, *rec);
                g.replies.push(Reply::Select(reply, r));
            }
            Command::Redeem {
                redemption,
                now_ms,
                reply,
            } => {
                let r = self.redeem(g, &redemption, now_ms);
                g.durable = true;
                g.replies.push(Reply::Redeem(reply, r));
            }
            Command::Sweep {
                now_ms,
                limit,
                reply,
            } => {
                let r = self.sweep(g, now_ms, limit);
                g.replies.push(Reply::Sweep(reply, r));
            }
            Command::Flush { reply } => {
                g.durable = true;
                g.checkpoint = true;
                g.replies.push(Reply::Flush(reply));
            }
            Command::Forget { customer, reply } => {
                let r = self.forget(g, &customer);
                g.durable = true;
                g.replies.push(Reply::Forget(reply, r));
            }
            Command::Prune {
                before_ms,
                created_before,
                limit,
                reply,
            } => {
                let r = self.prune(g, before_ms, created_before, limit);
                g.replies.push(Reply::Sweep(reply, r));
            }
            Command::SetStatus {
                campaign,
                change,
                reply,
            } => {
                let current = match g.statuses.get(&campaign) {
                    Some(st) => Some(st.clone()),
                    None => self.campaign(&campaign).map(|c| c.status.read().clone()),
                };
                let retired = self.campaign(&campaign).is_some_and(|c| c.revision.retired);
                let next = match current {
                    // Checked here too: a retirement may have landed since
                    // the caller looked.
                    Some(_) if retired => Err(retired_error(&campaign)),
                    Some(c) => c.with(&change),
                    None => Err(Error::NotFound(format!("unknown campaign '{campaign}'"))),
                };
                match next {
                    Ok(next) => {
                        g.writes.put_status(&campaign, &next);
                        g.statuses.insert(campaign, next);
                        g.durable = true;
                        g.replies.push(Reply::Flush(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Backup { reply, .. } => {
                // `run` never hands a backup to a group.
                let _ = reply.send(Err(Error::Unavailable("backup misrouted; retry".into())));
            }
            Command::Revise { reply, .. } => {
                // Nor a config change.
                let _ = reply.send(Err(Error::Unavailable(
                    "config change misrouted; retry".into(),
                )));
            }
        }
    }

    fn decision(&self, g: &Group, id: &DecisionId) -> Result<Option<DecisionRecord>, Error> {
        if g.erased.contains(id) {
            return Ok(None);
        }
        match g.decisions.get(id) {
            Some(r) => Ok(Some(r.clone())),
            None => Ok(self.store.decision(id)?),
        }
    }

    /// A customer's decisions: those in the store's index and those of
    /// this group (not indexed yet), sorted, each once.
    fn customer_decisions(
        &self,
        g: &Group,
        customer: &CustomerHash,
    ) -> Result<Vec<DecisionId>, Error> {
        let mut ids = self.store.customer_decisions(customer)?;
        ids.extend(g.by_customer.get(customer).into_iter().flatten().copied());
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    fn put_decision(&self, g: &mut Group, id: DecisionId, rec: DecisionRecord) {
        if let Some(c) = &rec.customer {
            g.by_customer.entry(*c).or_default().push(id);
        }
        g.writes.put_decision(&id, &rec);
        g.decisions.insert(id, rec);
    }

    /// Applies `change` to today's counts (as of `at_ms`) of a decision's
    /// offer, staging the result.
    fn change_daily(
        &self,
        g: &mut Group,
        rec: &DecisionRecord,
        at_ms: i64,
        change: impl FnOnce(&mut DailyCounts),
    ) {
        let Some(campaign) = self.campaign(&rec.campaign) else {
            return;
        };
        let Some(offer) = campaign.offer_index(&rec.offer) else {
            return;
        };
        let key = (rec.campaign.clone(), offer);
        let current = match g.daily.get(&key) {
            Some(c) => *c,
            None => campaign
                .daily
                .read()
                .get(offer)
                .copied()
                .unwrap_or_default(),
        };
        let mut counts = current.on(at_ms);
        change(&mut counts);
        g.writes.put_daily(&rec.campaign, &rec.offer, &counts);
        g.daily.insert(key, counts);
    }

    /// Applies `change` to the arm counts of a decision, staging the result.
    fn change_arm(&self, g: &mut Group, rec: &DecisionRecord, change: impl FnOnce(&mut ArmCounts)) {
        let Some(campaign) = self.campaign(&rec.campaign) else {
            return;
        };
        let key = (rec.campaign.clone(), rec.arm);
        let mut counts = match g.arms.get(&key) {
            Some(c) => *c,
            None => campaign.arms.read()[rec.arm.index()],
        };
        change(&mut counts);
        g.writes.put_arm(&rec.campaign, rec.arm, &counts);
        g.arms.insert(key, counts);
    }

    /// Applies `change` to the cell of a decision, staging the result.
    fn change_cell(
        &self,
        g: &mut Group,
        rec: &DecisionRecord,
        change: impl FnOnce(&mut CellCounts),
    ) {
        let Some(campaign) = self.campaign(&rec.campaign) else {
            tracing::warn!(campaign = %rec.campaign, "decision of an unknown campaign: posterior not updated");
            return;
        };
        let Some(offer) = campaign.offer_index(&rec.offer) else {
            tracing::warn!(campaign = %rec.campaign, offer = %rec.offer, "decision of an unknown offer: posterior not updated");
            return;
        };
        let key = (rec.campaign.clone(), rec.segment.clone(), offer);
        let mut counts = match g.cells.get(&key) {
            Some(c) => *c,
            None => campaign.model.read().cell(&rec.segment, offer),
        };
        change(&mut counts);
        let cell = CellKey {
            campaign: rec.campaign.clone(),
            segment: rec.segment.clone(),
            offer: rec.offer.clone(),
        };
        g.writes.put_cell(&cell, &counts);
        g.cells.insert(key, counts);
    }

    /// Teaches a contextual campaign's model a new decision (`redeemed`
    /// false) or its redemption (true), staging the new posterior. Expiry
    /// teaches nothing: the decision was learned as a non-redemption when
    /// it was made (see `GaussianPosterior::learn_decision`).
    /// Returns the event's learning sequence number (0: nothing learned).
    fn learn(&self, g: &mut Group, rec: &DecisionRecord, redeemed: bool) -> u64 {
        let Some(campaign) = self.campaign(&rec.campaign) else {
            return 0;
        };
        let Some(ctx) = &campaign.contextual else {
            return 0;
        };
        let Some(offer) = campaign.offer_index(&rec.offer) else {
            return 0;
        };
        if rec
            .features
            .iter()
            .any(|(i, _)| *i as usize >= ctx.encoder.dim())
        {
            // Encoded under another feature spec (the config changed): its
            // columns mean something else now, so it teaches nothing.
            tracing::warn!(campaign = %rec.campaign, "decision encoded under other features: model not updated");
            return 0;
        }
        let key = (rec.campaign.clone(), offer);
        let mut posterior = match g.models.remove(&key) {
            Some(p) => p,
            None => match ctx.models.read().get(offer) {
                Some(p) => p.clone(),
                None => return 0,
            },
        };
        {
            // The learned prior bounds forgetting (only then is it needed).
            let published;
            let bound = match g.priors.get(&rec.campaign) {
                _ if !(ctx.config.adaptive_prior && ctx.config.half_life.is_some()) => None,
                Some(p) => Some(p.variance.as_slice()),
                None => {
                    published = ctx.prior.read();
                    Some(published.variance.as_slice())
                }
            };
            posterior.learn(&rec.features, redeemed, &ctx.config, bound);
        }
        self.dirty.borrow_mut().insert(key.clone());
        g.models.insert(key, posterior);
        if ctx.config.adaptive_prior {
            self.count_for_prior(g, &campaign, ctx);
        }
        // Written at the next checkpoint (`finish`); until then the event is
        // durable as this sequence number in its decision record.
        self.seq.set(self.seq.get() + 1);
        self.seq.get()
    }

    /// Counts a learning event for the campaign's learned prior and, when a
    /// re-estimation is due, re-bases every offer's posterior on the new
    /// prior (all staged in the group, all written at the next checkpoint).
    fn count_for_prior(&self, g: &mut Group, c: &Campaign, ctx: &Contextual) {
        let campaign = c.config.id.as_str();
        if !g.priors.contains_key(campaign) {
            g.priors
                .insert(campaign.to_owned(), ctx.prior.read().clone());
        }
        let Some(prior) = g.priors.get_mut(campaign) else {
            return;
        };
        if !prior.count() {
            return;
        }
        let n = ctx.models.read().len();
        let mut models: Vec<GaussianPosterior> = (0..n)
            .map(|i| match g.models.get(&(campaign.to_owned(), i)) {
                Some(p) => p.clone(),
                None => ctx.models.read()[i].clone(),
            })
            .collect();
        let features = offer_features(&c.offers);
        if !prior.reestimate(&ctx.encoder, &mut models, &features, &ctx.config) {
            return; // no variance moved: every posterior is as it was
        }
        let mut dirty = self.dirty.borrow_mut();
        for (i, m) in models.into_iter().enumerate() {
            let key = (campaign.to_owned(), i);
            dirty.insert(key.clone());
            g.models.insert(key, m);
        }
    }

    /// Why a decision's offer has no decision budget left, counting the
    /// decisions staged in this group, or None.
    fn decision_budget_spent(
        &self,
        g: &mut Group,
        campaign: &Campaign,
        rec: &DecisionRecord,
    ) -> Result<Option<String>, Error> {
        if !campaign.limited {
            return Ok(None);
        }
        if let (Some(cap), Some(customer)) = (&campaign.config.frequency_cap, &rec.customer) {
            let ids = self.customer_decisions(g, customer)?;
            let seen = offers_seen(ids, &rec.campaign, cap_start(cap, rec.created_ms), |id| {
                self.decision(g, id)
            })?;
            if let Some(why) = cap_reached(cap, seen.get(&rec.offer).copied().unwrap_or(0)) {
                return Ok(Some(why));
            }
        }
        Ok(self.decision_count_spent(g, campaign, rec))
    }

    /// The decision-budget part of [`Writer::decision_budget_spent`];
    /// counts the decision in the group's staged trials when it passes.
    fn decision_count_spent(
        &self,
        g: &mut Group,
        campaign: &Campaign,
        rec: &DecisionRecord,
    ) -> Option<String> {
        let cfg = campaign.config.offers.iter().find(|o| o.id == rec.offer)?;
        if cfg.max_decisions.is_none() && cfg.max_decisions_per_day.is_none() {
            return None;
        }
        let i = campaign.offer_index(&rec.offer)?;
        let staged = g.trials.entry((rec.campaign.clone(), i)).or_insert(0);
        let trials = campaign.model.read().totals(i).trials + *staged;
        let today = match g.daily.get(&(rec.campaign.clone(), i)) {
            Some(d) => *d,
            None => campaign.daily.read().get(i).copied().unwrap_or_default(),
        };
        let why = crate::budget::decisions_exhausted(cfg, trials, today, rec.created_ms);
        if why.is_none() {
            *staged += 1;
        }
        why
    }

    fn decide(
        &self,
        g: &mut Group,
        id: DecisionId,
        rec: DecisionRecord,
    ) -> Result<Selection, Error> {
        if let Some(rid) = &rec.request_id {
            let staged = g
                .requests
                .get(&(rec.campaign.clone(), rid.clone()))
                .copied();
            let existing = match staged {
                Some(e) => Some(e),
                None => self.store.request(&rec.campaign, rid)?,
            };
            if let Some(eid) = existing
                && let Some(erec) = self.decision(g, &eid)?
                && erec.expires_ms > rec.created_ms
            {
                replay_for(erec.customer.as_ref(), rec.customer.as_ref())?;
                return Ok(Selection::from_record(eid, &erec, true));
            }
        }
        if let Some(campaign) = self.campaign(&rec.campaign) {
            // A request that read the campaign before its retirement landed.
            if campaign.revision.retired {
                return Err(retired_error(&rec.campaign));
            }
            // SelectOffer checked the budgets against committed counts;
            // decisions made meanwhile are only known here.
            if let Some(why) = self.decision_budget_spent(g, &campaign, &rec)? {
                return Err(Error::Spent {
                    offer: rec.offer.clone(),
                    why,
                });
            }
        }
        if let Some(rid) = &rec.request_id {
            g.writes.put_request(&rec.campaign, rid, &id);
            g.requests.insert((rec.campaign.clone(), rid.clone()), id);
        }
        self.change_cell(g, &rec, |c| c.trials += 1);
        self.change_arm(g, &rec, |a| a.decisions += 1);
        self.change_daily(g, &rec, rec.created_ms, |d| d.decisions += 1);
        let mut rec = rec;
        rec.learned_seq = self.learn(g, &rec, false);
        if let Some(c) = &rec.customer {
            g.writes.put_customer(c, &id);
        }
        let (last, ids) = g
            .expiries
            .entry(rec.campaign.clone())
            .or_insert((rec.expires_ms, Vec::new()));
        *last = (*last).max(rec.expires_ms);
        ids.push(id);
        let selection = Selection::from_record(id, &rec, false);
        self.put_decision(g, id, rec);
        g.durable |= self.options.durable_decisions;
        Ok(selection)
    }

    fn redeem(&self, g: &mut Group, r: &Redemption, now_ms: i64) -> Result<Redeemed, Error> {
        let id = r.decision_id;
        let Some(mut rec) = self.decision(g, &id)? else {
            return Err(Error::unknown_decision());
        };
        if let Some(offer) = &r.offer_id
            && *offer != rec.offer
        {
            // The message does not name the decision's offer: an id is a
            // bearer handle, and its offer is the holder's business only.
            return Err(Error::InvalidArgument(format!(
                "offer_id '{offer}' is not the offer this decision chose"
            )));
        }
        let outcome = |already_recorded| Redeemed {
            already_recorded,
            offer_id: rec.offer.clone(),
            campaign: rec.campaign.clone(),
        };
        match rec.state {
            DecisionState::Redeemed { .. } => Ok(outcome(true)),
            DecisionState::Expired => Err(late(&id, rec.expires_ms)),
            DecisionState::Pending if now_ms > rec.expires_ms => {
                let expires_ms = rec.expires_ms;
                self.expire(g, id, rec);
                Err(late(&id, expires_ms))
            }
            DecisionState::Pending => {
                let value = match r.value {
                    Some(v) => v,
                    None => self.offer_value(&rec),
                };
                if let Some(max) = self.offer_max_value(&rec)
                    && value > max
                {
                    return Err(Error::InvalidArgument(format!(
                        "value {value} is above this offer's max_value ({max}); nothing was recorded"
                    )));
                }
                let result = outcome(false);
                self.change_cell(g, &rec, |c| {
                    c.successes += 1;
                    c.value_sum += value;
                });
                self.change_daily(g, &rec, now_ms, |d| d.redemptions += 1);
                self.change_arm(g, &rec, |a| {
                    a.redemptions += 1;
                    a.value_sum += value;
                    a.value_sq_sum += value * value;
                });
                rec.redeemed_seq = self.learn(g, &rec, true);
                rec.state = DecisionState::Redeemed {
                    value,
                    at_ms: now_ms,
                };
                self.put_decision(g, id, rec);
                Ok(result)
            }
        }
    }

    /// The offer's configured cap on one redemption's value, if any.
    fn offer_max_value(&self, rec: &DecisionRecord) -> Option<f64> {
        let campaign = self.campaign(&rec.campaign)?;
        let offer = campaign.config.offers.iter().find(|o| o.id == rec.offer)?;
        offer.max_value
    }

    fn offer_value(&self, rec: &DecisionRecord) -> f64 {
        self.campaign(&rec.campaign)
            .and_then(|c| c.offer_index(&rec.offer).map(|i| c.offers[i].value))
            .unwrap_or(0.0)
    }

    /// Finalizes a pending decision as not redeemed and drops its request
    /// key. Its expiry entry goes when the sweep has handled the whole entry.
    fn expire(&self, g: &mut Group, id: DecisionId, mut rec: DecisionRecord) {
        self.change_cell(g, &rec, |c| c.expired += 1);
        self.change_arm(g, &rec, |a| a.expired += 1);
        g.expired += 1;
        self.drop_request(g, id, &rec);
        rec.state = DecisionState::Expired;
        self.put_decision(g, id, rec);
    }

    fn drop_request(&self, g: &mut Group, id: DecisionId, rec: &DecisionRecord) {
        if let Some(rid) = &rec.request_id {
            let key = (rec.campaign.clone(), rid.clone());
            // Only if the key still points at this decision.
            let current = match g.requests.get(&key) {
                Some(c) => Some(*c),
                None => self.store.request(&rec.campaign, rid).ok().flatten(),
            };
            if current == Some(id) {
                g.writes.remove_request(&rec.campaign, rid);
                g.requests.remove(&key);
            }
        }
    }

    /// Erases a customer's decisions: subtracts each from its cell (and
    /// regression posterior), then deletes the record and its indexes.
    fn forget(&self, g: &mut Group, customer: &CustomerHash) -> Result<Forgotten, Error> {
        let ids = self.customer_decisions(g, customer)?;
        let mut out = Forgotten {
            exact: true,
            ..Forgotten::default()
        };
        // Read everything first: a failed read must not leave half an
        // erasure staged in this group.
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            let rec = self.decision(g, &id)?;
            records.push((id, rec));
        }
        for (id, rec) in records {
            g.writes.remove_customer(customer, &id);
            let Some(rec) = rec else {
                continue; // pruned or erased before: only the index was left
            };
            if rec.customer.as_ref() != Some(customer) {
                continue;
            }
            self.change_cell(g, &rec, |c| {
                c.trials = c.trials.saturating_sub(1);
                match rec.state {
                    DecisionState::Pending => {}
                    DecisionState::Redeemed { value, .. } => {
                        c.successes = c.successes.saturating_sub(1);
                        c.value_sum -= value;
                    }
                    DecisionState::Expired => c.expired = c.expired.saturating_sub(1),
                }
            });
            self.change_arm(g, &rec, |a| {
                a.decisions = a.decisions.saturating_sub(1);
                match rec.state {
                    DecisionState::Pending => {}
                    DecisionState::Redeemed { value, .. } => {
                        a.redemptions = a.redemptions.saturating_sub(1);
                        a.value_sum -= value;
                        a.value_sq_sum -= value * value;
                    }
                    DecisionState::Expired => a.expired = a.expired.saturating_sub(1),
                }
            });
            if let Some(exact) = self.unlearn(g, &rec) {
                out.model_updates += 1;
                out.exact &= exact;
            }
            self.drop_request(g, id, &rec);
            g.writes.remove_decision(&id);
            g.decisions.remove(&id);
            g.erased.insert(id);
            out.decisions += 1;
        }
        Ok(out)
    }

    /// Subtracts a decision from its contextual posterior: `None` when the
    /// campaign is not contextual, else whether the subtraction was exact.
    fn unlearn(&self, g: &mut Group, rec: &DecisionRecord) -> Option<bool> {
        let campaign = self.campaign(&rec.campaign)?;
        let ctx = campaign.contextual.as_ref()?;
        let offer = campaign.offer_index(&rec.offer)?;
        if rec
            .features
            .iter()
            .any(|(i, _)| *i as usize >= ctx.encoder.dim())
        {
            return Some(false); // never learned (encoded under other features)
        }
        let key = (rec.campaign.clone(), offer);
        let mut posterior = match g.models.remove(&key) {
            Some(p) => p,
            None => ctx.models.read().get(offer)?.clone(),
        };
        let redeemed = matches!(rec.state, DecisionState::Redeemed { .. });
        let mut exact = posterior.unlearn_decision(&rec.features, redeemed, &ctx.config);
        if posterior.learned_nothing() {
            // Everything it learned is erased: it is its prior again, as a
            // restart would build it.
            let features = &campaign.offers[offer].features;
            let dim = ctx.encoder.dim();
            posterior = match g.priors.get(&rec.campaign) {
                Some(p) => Contextual::prior_under(p, dim, &ctx.config, features),
                None => Contextual::prior_under(&ctx.prior.read(), dim, &ctx.config, features),
            };
        }
        if ctx.config.adaptive_prior {
            // Once the prior has been re-estimated, the decision also
            // shaped the learned variances, and through them every offer.
            let estimated = match g.priors.get(&rec.campaign) {
                Some(p) => p.has_estimated(),
                None => ctx.prior.read().has_estimated(),
            };
            exact &= !estimated;
        }
        self.dirty.borrow_mut().insert(key.clone());
        g.models.insert(key, posterior);
        // The erased record can no longer be replayed: checkpoint now.
        g.checkpoint = true;
        Some(exact)
    }

    /// Makes the next revision of a campaign's config durable, then serves
    /// it: from the next SelectOffer on, decisions use it.
    fn revise(
        &self,
        campaign: &str,
        change: ConfigChange,
        expected_revision: Option<u64>,
    ) -> Result<Arc<Campaign>, Error> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(Error::Unavailable(
                "storage failed earlier; restart the server (see its log)".into(),
            ));
        }
        let current = self.campaign(campaign);
        let at = current.as_ref().map_or(0, |c| c.revision.number);
        if let Some(expected) = expected_revision
            && expected != at
        {
            return Err(if current.is_none() {
                Error::Aborted(format!(
                    "campaign '{campaign}' does not exist (expected revision {expected})"
                ))
            } else if expected == 0 {
                Error::AlreadyExists(format!(
                    "campaign '{campaign}' exists already (at revision {at}); expected_revision 0 only creates"
                ))
            } else {
                Error::Aborted(format!(
                    "campaign '{campaign}' is at revision {at}, not {expected}: it changed since you read it; read it again and retry"
                ))
            });
        }
        if let Some(c) = &current
            && c.revision.retired
        {
            if matches!(change, ConfigChange::Retire) {
                return Ok(c.clone());
            }
            return Err(retired_error(campaign));
        }
        let retiring = matches!(change, ConfigChange::Retire);
        let config = match (change, &current) {
            (ConfigChange::Put(config), current) => {
                let mut config = *config;
                // Numbers keep the bucket encoding they were learned under.
                crate::features::settle_buckets(
                    &mut config.features,
                    current.as_ref().map(|c| c.config.features.as_slice()),
                );
                config
            }
            (ConfigChange::Retire, Some(c)) => c.config.clone(),
            (ConfigChange::Retire, None) => {
                return Err(Error::NotFound(format!("unknown campaign '{campaign}'")));
            }
            (ConfigChange::AddOffer(offer), Some(c)) => {
                if !c.active {
                    return Err(Error::FailedPrecondition(format!(
                        "campaign '{campaign}' is not served (it left the campaign file); PutCampaign its config to serve it again"
                    )));
                }
                if c.config.offers.iter().any(|o| o.id == offer.id) {
                    return Err(Error::AlreadyExists(format!(
                        "campaign '{campaign}' already has an offer '{}'",
                        offer.id
                    )));
                }
                let mut config = c.config.clone();
                config.offers.push(*offer);
                crate::config::validate(config, "the new offer")
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?
            }
            (ConfigChange::AddOffer(_), None) => {
                return Err(Error::NotFound(format!("unknown campaign '{campaign}'")));
            }
        };
        if config.id != campaign {
            return Err(Error::InvalidArgument(format!(
                "the config is for campaign '{}', not '{campaign}'",
                config.id
            )));
        }
        if let Some(c) = &current {
            if c.revision.number == 0 {
                return Err(Error::FailedPrecondition(if retiring {
                    format!(
                        "campaign '{campaign}' has history from before stored configs and is not served; it stays unserved unless the campaign file declares it"
                    )
                } else {
                    format!(
                        "campaign '{campaign}' has history from before stored configs; declare it in the campaign file (or use a new id)"
                    )
                }));
            }
            if let Some(why) = c.config.update_conflict(&c.retired, &config) {
                return Err(Error::FailedPrecondition(format!(
                    "campaign '{campaign}': {why}"
                )));
            }
            // Back into the config after an operator retired it: it would
            // never be chosen.
            if let Some(o) = config.offers.iter().find(|o| {
                c.offer_status(&o.id) == OfferStatus::Retired
                    && !c.config.offers.iter().any(|x| x.id == o.id)
            }) {
                return Err(Error::FailedPrecondition(format!(
                    "offer '{}' was retired by an operator and retirement is final; use a new offer id",
                    o.id
                )));
            }
            if c.config == config && c.active && !retiring {
                return Ok(c.clone()); // nothing changes
            }
        }
        let revision = Revision {
            number: at + 1,
            source: Source::Api,
            // Kept while the campaign is served: an unchanged file then
            // leaves live changes alone. A campaign that left the file and
            // is served again through the API belongs to the API now.
            file_fingerprint: current
                .as_ref()
                .filter(|c| c.active)
                .and_then(|c| c.revision.file_fingerprint.clone()),
            updated_ms: now_ms(),
            retired: retiring,
        };
        let retired = match &current {
            Some(c) => crate::revisions::dropped_offers(&c.config, &c.retired, &config),
            None => Vec::new(),
        };
        let stored = StoredCampaign::new(&config, revision.clone(), retired)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let mut writes = WriteSet::default();
        writes.put_config(campaign, &stored);
        self.store.commit(writes)?;
        if let Err(e) = self.store.flush() {
            // As in `finish`: memory no longer knows what is on disk.
            self.failed.store(true, Ordering::Relaxed);
            tracing::error!(error = %e, "storage write failed");
            return Err(Error::Unavailable(format!(
                "storage write failed, the change may not be recorded: {e}"
            )));
        }
        // Only now does the shared state grow (new offers' priors), so a
        // failed write leaves it as it was.
        let next = Arc::new(match &current {
            Some(c) => c.revised(config, revision),
            None => Campaign::new(config, revision, true),
        });
        // A revision may re-base posteriors (the learned prior switched off)
        // or reset the untrained ones (a new prior): store them all, with
        // the prior, at the learning event the forced checkpoint reached.
        if let Some(ctx) = &next.contextual {
            let mut writes = WriteSet::default();
            for (o, m) in next.offers.iter().zip(ctx.models.read().iter()) {
                writes.put_model(campaign, &o.id, m);
            }
            writes.put_prior(campaign, &ctx.prior.read());
            // The model sequence stays: the forced checkpoint before this
            // left nothing dirty, so it already says `self.seq`.
            let stored = self
                .store
                .commit(writes)
                .and_then(|()| self.watched_flush());
            if let Err(e) = stored {
                self.failed.store(true, Ordering::Relaxed);
                tracing::error!(error = %e, "storage write failed");
                return Err(Error::Unavailable(format!(
                    "storage write failed after the change was recorded: {e}"
                )));
            }
        }
        self.campaigns
            .write()
            .insert(campaign.to_owned(), next.clone());
        metrics::counter!("offer_bandit_config_revisions_total").increment(1);
        Ok(next)
    }

    fn backup(&self, path: &std::path::Path) -> Result<u64, Error> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(Error::Unavailable(
                "storage failed earlier; restart the server (see its log)".into(),
            ));
        }
        let file = std::fs::File::create(path).map_err(|e| {
            Error::Unavailable(format!(
                "cannot create the backup file {}: {e}",
                path.display()
            ))
        })?;
        let mut out = std::io::BufWriter::new(file);
        let n = self.store.write_snapshot(&mut out)?;
        out.into_inner()
            .map_err(|e| Error::Unavailable(format!("writing the backup: {e}")))?
            .sync_all()
            .map_err(|e| Error::Unavailable(format!("writing the backup: {e}")))?;
        Ok(n)
    }

    /// Deletes resolved records past retention (see [`Engine::prune`]).
    fn prune(
        &self,
        g: &mut Group,
        before_ms: i64,
        created_before: i64,
        limit: usize,
    ) -> Result<usize, Error> {
        let old = self.store.prunable(before_ms, created_before, limit)?;
        let n = old.len();
        for (id, rec) in old {
            if g.decisions.contains_key(&id) {
                continue; // changed in this group; next time
            }
            if let Some(c) = &rec.customer {
                g.writes.remove_customer(c, &id);
            }
            g.writes.remove_decision(&id);
            g.erased.insert(id);
            // A pruned record can no longer be replayed: checkpoint now.
            g.checkpoint = true;
        }
        Ok(n)
    }

    /// Finalizes the decisions of due expiry entries (at least `limit` of
    /// them when that many are due) and drops the entries; returns how many
    /// decisions it looked at.
    fn sweep(&self, g: &mut Group, now_ms: i64, limit: usize) -> Result<usize, Error> {
        let due: Vec<ExpiryEntry> = self.store.due_expiries(now_ms, limit)?;
        let mut n = 0;
        for entry in due {
            for &id in &entry.ids {
                n += 1;
                match self.decision(g, &id)? {
                    Some(rec) if rec.state == DecisionState::Pending => self.expire(g, id, rec),
                    Some(rec) => self.drop_request(g, id, &rec),
                    None => {}
                }
            }
            g.writes.remove_expiries(&entry);
        }
        Ok(n)
    }
}

/// Reads every decision record (failing on an unreadable one) and re-applies
/// the learning events after the model checkpoint `checkpoint` to the
/// contextual posteriors, in their original order, so that the models are
/// exactly what they were when the process stopped. Returns the number of
/// decisions and the last sequence number seen.
fn replay_learning(
    store: &Store,
    campaigns: &mut BTreeMap<String, Campaign>,
    checkpoint: u64,
) -> Result<(usize, u64), StoreError> {
    /// A learning event: (seq, campaign, offer, features, redemption?).
    type Event = (u64, String, String, Vec<(u32, f64)>, bool);
    let mut events: Vec<Event> = Vec::new();
    let mut n = 0usize;
    store.scan_decisions(0, i64::MAX, |_, rec| {
        n += 1;
        for (seq, redeemed) in [(rec.learned_seq, false), (rec.redeemed_seq, true)] {
            if seq > checkpoint {
                events.push((
                    seq,
                    rec.campaign.clone(),
                    rec.offer.clone(),
                    rec.features.clone(),
                    redeemed,
                ));
            }
        }
        true
    })?;
    events.sort_by_key(|e| e.0);
    let mut last = checkpoint;
    for (seq, campaign, offer, x, redeemed) in events {
        last = last.max(seq);
        let Some(c) = campaigns.get_mut(&campaign) else {
            continue;
        };
        let Some(i) = c.offer_index(&offer) else {
            continue;
        };
        let Some(ctx) = &c.contextual else {
            continue;
        };
        if x.iter().any(|(j, _)| *j as usize >= ctx.encoder.dim()) {
            continue;
        }
        let mut prior = ctx.prior.write();
        let mut models = ctx.models.write();
        if let Some(p) = models.get_mut(i) {
            let bound = ctx
                .config
                .adaptive_prior
                .then_some(prior.variance.as_slice());
            p.learn(&x, redeemed, &ctx.config, bound);
            if ctx.config.adaptive_prior && prior.count() {
                let features = offer_features(&c.offers);
                prior.reestimate(&ctx.encoder, &mut models, &features, &ctx.config);
            }
        }
    }
    Ok((n, last))
}

fn retired_error(campaign: &str) -> Error {
    Error::FailedPrecondition(format!(
        "campaign '{campaign}' was retired by an operator and retirement is final; use a new campaign id"
    ))
}

/// When the frequency-cap window ending at `now_ms` starts.
fn cap_start(cap: &crate::config::FrequencyCap, now_ms: i64) -> i64 {
    now_ms.saturating_sub(i64::try_from(cap.period.as_millis()).unwrap_or(i64::MAX))
}

/// How often each offer of `campaign` went to a customer since `since_ms`,
/// among the customer's decisions `ids`, read with `read`.
fn offers_seen(
    ids: Vec<DecisionId>,
    campaign: &str,
    since_ms: i64,
    mut read: impl FnMut(&DecisionId) -> Result<Option<DecisionRecord>, Error>,
) -> Result<HashMap<String, u32>, Error> {
    let mut seen: HashMap<String, u32> = HashMap::new();
    for id in ids {
        if id.created_ms() < since_ms {
            continue;
        }
        if let Some(rec) = read(&id)?
            && rec.campaign == campaign
            && rec.created_ms >= since_ms
        {
            *seen.entry(rec.offer).or_default() += 1;
        }
    }
    Ok(seen)
}

/// Why a customer who got an offer `n` times in the cap's period may not
/// get it again, or None.
fn cap_reached(cap: &crate::config::FrequencyCap, n: u32) -> Option<String> {
    (n >= cap.max).then(|| {
        format!(
            "frequency cap: this customer got it {n} times in the last {}",
            humantime::format_duration(cap.period)
        )
    })
}

/// A replay (a request_id seen before in the campaign) answers with the
/// earlier decision only for the same customer (or for an anonymous request
/// replaying an anonymous one): a request_id is an idempotency key, not a
/// way to read another customer's decision.
fn replay_for(stored: Option<&CustomerHash>, asking: Option<&CustomerHash>) -> Result<(), Error> {
    if stored == asking {
        Ok(())
    } else {
        Err(Error::AlreadyExists(
            "request_id was already used by a request for another customer; send a fresh request_id with every new request (retries reuse theirs)".into(),
        ))
    }
}

/// Longest an explanation's win probabilities may compute (each is an
/// integral over every candidate: the cost grows with the square of their
/// number). Past it the request fails before anything is recorded, rather
/// than run on past its deadline.
const EXPLAIN_BUDGET: Duration = Duration::from_secs(2);

/// `f(0..n)`, or an error once [`EXPLAIN_BUDGET`] is spent.
fn within_budget(n: usize, mut f: impl FnMut(usize) -> f64) -> Result<Vec<f64>, Error> {
    let started = std::time::Instant::now();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if started.elapsed() > EXPLAIN_BUDGET {
            return Err(Error::ResourceExhausted(format!(
                "explain over {n} candidate offers did not finish within {EXPLAIN_BUDGET:?}; nothing was recorded: ask for an explanation with fewer candidate_offer_ids"
            )));
        }
        out.push(f(i));
    }
    Ok(out)
}

fn late(id: &DecisionId, expires_ms: i64) -> Error {
    Error::FailedPrecondition(format!(
        "decision {id} is past its reward window (closed at unix ms {expires_ms}); late redemptions are not counted"
    ))
}
