//! The learning loop. Campaign posteriors live in memory for reads; every
//! change goes through one writer thread that commits it to the store (any
//! [`Storage`]) with its posterior change in one atomic write set, and
//! answers only after it is durable when durability is asked for (group
//! commit: one flush serves every request that arrived while the previous
//! one ran).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use parking_lot::RwLock;
use tokio::sync::oneshot;

use crate::{
    budget::DailyCounts,
    clock::{Clock, SystemClock},
    config::{CampaignConfig, FileCampaign, OfferConfig, PolicyKind},
    context::Context,
    customer::{CustomerHash, CustomerKey},
    decision::{DecisionId, DecisionRecord, DecisionState, IdGenerator},
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
    rng::RngSource,
    store::{CellKey, ExpiryEntry, Storage, StoreError, WriteSet},
    uplift::{Arm, ArmCounts, ArmSummary, ClusterSums, CustomerTotals, Uplift},
};

mod campaign;
mod caps;
mod explain;
mod fallback;
mod queue;
pub(crate) use fallback::FALLBACK_REQUEST_PREFIX;
mod race;
mod recovery;
mod reports;
mod segment_snapshot;
mod select;
mod snapshot;
mod writer;

use self::{
    campaign::*, caps::*, queue::*, segment_snapshot::*, select::*, snapshot::*, writer::*,
};
pub(crate) use self::{
    campaign::{Campaign, Offer},
    reports::{
        CampaignReport, CampaignStats, FeaturePrior, LearnedPrior, OfferReport, PacingReport,
    },
};
pub(crate) use crate::status::{CampaignStatus, OfferStatus};

/// How often contextual posteriors are written to the store. Between
/// checkpoints each learning event is durable through its decision record
/// (and replayed from it at startup), so a posterior of d² numbers is not
/// rewritten with every decision.
/// Default of [`EngineOptions::checkpoint_interval`].
pub(crate) const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Default of [`EngineOptions::learn_interval`].
pub(crate) const DEFAULT_LEARN_INTERVAL: Duration = Duration::from_millis(5);

/// Most commands the writer applies in one batch.
const MAX_GROUP: usize = 4096;
/// Commands waiting for the writer before callers wait for room.
const QUEUE: usize = 16_384;

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
    /// The customer has not consented to personalization: the control
    /// policy's offer, in the `non_personalized` arm, with no context and
    /// no customer kept (the edge clears both).
    pub non_personalized: bool,
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
    /// Context keys the campaign does not declare, sorted.
    pub ignored_features: Vec<String>,
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
            ignored_features: Vec::new(),
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

/// Engine options.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Flush every decision to disk before SelectOffer answers.
    pub durable_decisions: bool,
    /// SelectOffer waits for its decision to be committed even when no
    /// budget, cap or request id needs the writer's word (the simulator
    /// sets it, so that each decision is learned before the next).
    pub await_decisions: bool,
    /// How often changed contextual posteriors are written; what was learned
    /// after the last checkpoint is replayed from the decision records at
    /// startup. Flushes, backups, erasures and config changes checkpoint at once.
    pub checkpoint_interval: Duration,
    /// Most offers a campaign may have after a live change (PutCampaign,
    /// AddOffer); decided by the writer, so concurrent changes cannot pass
    /// it together.
    pub max_offers: usize,
    /// Refuse SelectOffer contexts with keys the campaign does not declare
    /// (INVALID_ARGUMENT) instead of reporting them in `ignored_features`.
    pub strict_context: bool,
    /// How long a decision SelectOffer answered already may wait before
    /// the writer collects it (stores it and learns from it): the writer
    /// wakes once per interval for all of them rather than once per
    /// decision. Zero: at once. Redemptions, and decisions someone waits
    /// on, are taken at once whatever this is.
    pub learn_interval: Duration,
    /// Added to the writer thread's nice value (Linux; 0 leaves it as it
    /// is): on a busy core, requests then preempt a group's commit instead
    /// of queueing behind it, and the writer catches up when they pause.
    /// 0 here (the library, the simulator); `serve --writer-nice` defaults
    /// to 5.
    pub writer_niceness: i32,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            durable_decisions: false,
            await_decisions: false,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            max_offers: 1000,
            strict_context: false,
            learn_interval: DEFAULT_LEARN_INTERVAL,
            writer_niceness: 0,
        }
    }
}

/// Where the engine takes time and randomness from: the system clock and
/// each thread's generator by default; a manual clock and a seeded source
/// for tests and the simulator.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Time: decisions' creation and expiry, daily budgets, late redemptions.
    pub clock: Arc<dyn Clock>,
    /// Thompson draws, the control arm's picks, anonymous visits' arms.
    pub rng: RngSource,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            clock: Arc::new(SystemClock),
            rng: RngSource::Thread,
        }
    }
}

/// The campaigns served, by id: each its current revision.
type Campaigns = BTreeMap<String, Arc<Campaign>>;

/// The decision engine shared by all request handlers.
#[derive(Debug)]
pub struct Engine {
    campaigns: Arc<RwLock<Campaigns>>,
    store: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    rng: RngSource,
    ids: IdGenerator,
    /// Held while a decision is numbered and handed to the writer (see
    /// [`Engine::send_decision`]); the last creation time numbered.
    numbering: parking_lot::Mutex<i64>,
    id_keys: IdKeys,
    writer: WriterQueue,
    failed: Arc<AtomicBool>,
    disk: Arc<DiskWatch>,
    options: EngineOptions,
    customer_key: CustomerKey,
}

/// What the server knows of its disk: free space under the watermark, and
/// a flush in progress (a flush that never returns wedged a full disk).
#[derive(Debug, Default)]
pub(crate) struct DiskWatch {
    /// Free bytes when last measured under the watermark (0: not under it).
    low_free: std::sync::atomic::AtomicU64,
    /// The watermark, bytes.
    min_free: std::sync::atomic::AtomicU64,
    /// Unix ms when the flush in progress started (0: none).
    flush_started_ms: std::sync::atomic::AtomicI64,
}

/// A flush running longer than this makes the server report itself unfit
/// (health NOT_SERVING) and log it; sled flushes in milliseconds normally.
pub(crate) const FLUSH_STUCK_MS: i64 = 30_000;

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

fn count_redemption(result: &Result<Redeemed, Error>) {
    match result {
        Ok(r) if !r.already_recorded => {
            metrics::counter!("offer_bandit_redemptions_applied_total", "campaign" => r.campaign.clone())
                .increment(1);
        }
        Err(e) if e.reason() == crate::error::Reason::RedemptionLate => {
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

enum Command {
    /// A decision to record. Without `reply` it was shown already (the
    /// select path answered without waiting; see [`Engine::settled`]): it is
    /// recorded whatever changed meanwhile.
    Decide {
        id: DecisionId,
        rec: Box<DecisionRecord>,
        reply: Option<oneshot::Sender<Result<Decided, Error>>>,
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
    /// Answers once every command sent before it is committed.
    Barrier {
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

/// What the writer did with a decision.
#[derive(Debug)]
enum Decided {
    /// Recorded, or replayed for a repeated request_id.
    Made(Selection),
    /// A budget or cap of the chosen offer was spent by decisions made since
    /// the select path read the counts: choose again without that offer.
    Spent {
        /// The offer.
        offer: String,
        /// Which budget or cap.
        why: String,
        /// The context the refused record kept (moved there from the
        /// request, see [`Context::take_names_in`]), handed back for the
        /// next choice.
        kept: Vec<(String, crate::context::FeatureValue)>,
    },
}

/// One operator change, merged by the writer into the campaign's status so
/// that concurrent changes do not overwrite each other.
#[derive(Debug, Clone)]
enum StatusChange {
    Offer(String, OfferStatus),
    Paused(bool),
}

enum Reply {
    Select(
        Option<oneshot::Sender<Result<Decided, Error>>>,
        Result<Decided, Error>,
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
            Error::refused(
                crate::error::Reason::StorageFailed,
                format!("storage write failed, nothing was recorded: {m}"),
            )
        };
        // A caller that gave up (deadline, disconnect) dropped its receiver; that is fine.
        match (self, failure) {
            (Reply::Select(Some(tx), r), None) => drop(tx.send(r)),
            (Reply::Select(Some(tx), _), Some(m)) => drop(tx.send(Err(fail(m)))),
            (Reply::Select(None, Ok(_)), None) => {}
            // Shown already, not recorded: say so loudly (the writer has
            // also stopped taking work, so the server is unhealthy now).
            (Reply::Select(None, r), m) => {
                metrics::counter!("offer_bandit_decisions_unrecorded_total").increment(1);
                tracing::error!(
                    error = m
                        .map(str::to_owned)
                        .or_else(|| r.err().map(|e| e.to_string())),
                    "a decision already answered could not be recorded"
                );
            }
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

fn retired_error(campaign: &str) -> Error {
    Error::FailedPrecondition(format!(
        "campaign '{campaign}' was retired by an operator and retirement is final; use a new campaign id"
    ))
}

impl Engine {
    /// Now, by the engine's clock (Unix ms).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
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
            Error::refused(
                crate::error::Reason::UnknownCampaign,
                format!(
                    "unknown campaign '{id}'; this server serves: {}",
                    known.join(", ")
                ),
            )
        })
    }

    fn check_not_failed(&self) -> Result<(), Error> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(Error::refused(
                crate::error::Reason::StorageFailed,
                "storage failed earlier; restart the server (see its log)",
            ));
        }
        Ok(())
    }

    fn check_healthy(&self) -> Result<(), Error> {
        self.check_not_failed()?;
        let free = self.disk.low_free.load(Ordering::Relaxed);
        if free > 0 {
            return Err(Error::refused(
                crate::error::Reason::StoreFull,
                format!(
                    "the data directory's disk is nearly full ({} MiB free, below --min-free-mb {}); nothing was recorded, and writes resume once space is freed",
                    free >> 20,
                    self.disk.min_free.load(Ordering::Relaxed) >> 20
                ),
            ));
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
        let running = self.now_ms().saturating_sub(started);
        (started > 0 && running > FLUSH_STUCK_MS).then(|| {
            format!(
                "a storage flush has been running for {} s (disk full or failing?)",
                running / 1000
            )
        })
    }

    /// Records a redemption; answers once it is durable.
    pub async fn redeem(&self, redemption: Redemption) -> Result<Redeemed, Error> {
        self.check_healthy()?;
        let (reply, rx) = oneshot::channel();
        self.send(Command::Redeem {
            redemption,
            now_ms: self.now_ms(),
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
        let now = self.now_ms();
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
        // Erasure frees space and is owed to the customer: a full disk does
        // not refuse it (only a failed store does).
        self.check_not_failed()?;
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
            .min(self.now_ms().saturating_sub(longest_cap));
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
            return Err(Error::refused(
                crate::error::Reason::UnknownOffer,
                format!("no offer '{offer_id}' in campaign '{campaign_id}'"),
            ));
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
        // Pausing is how an operator stops writes: a full disk does not
        // refuse it (one small record).
        self.check_not_failed()?;
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

    /// Waits until every decision answered before this call is committed
    /// and counted: SelectOffer answers before its decision is written
    /// (unless it must check a budget, a cap or a request id, or decisions
    /// are durable), so reads that must see a caller's own decisions
    /// (stats, reports, exports, erasure) settle first.
    pub async fn settled(&self) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Barrier { reply }).await?;
        rx.await.map_err(|_| writer_gone())?
    }

    /// The engine's options.
    pub fn options(&self) -> EngineOptions {
        self.options
    }

    /// Sends a command someone waits on (the writer wakes for it).
    async fn send(&self, cmd: Command) -> Result<(), Error> {
        self.writer.send(cmd).await.map_err(|_| writer_gone())
    }

    /// Numbers a decision and hands it to the writer in one step, so that
    /// the writer receives decisions in the order of their ids (time, then
    /// sequence): the blocks it writes then hold disjoint ranges of one
    /// stream, which is how storage finds a decision from its id. Creation
    /// times never go back within the process (a clock stepping back is
    /// absorbed, the reward window moving with it). Returns the id and
    /// the window's end.
    async fn send_decision(
        &self,
        mut rec: Box<DecisionRecord>,
        reply: Option<oneshot::Sender<Result<Decided, Error>>>,
    ) -> Result<(DecisionId, i64), Error> {
        let permit = self.writer.reserve().await.map_err(|_| writer_gone())?;
        let urgent = reply.is_some();
        let mut last = self.numbering.lock();
        if rec.created_ms < *last {
            let behind = *last - rec.created_ms;
            rec.created_ms = *last;
            rec.expires_ms = rec.expires_ms.saturating_add(behind);
        }
        *last = rec.created_ms;
        let id = self.ids.next(rec.created_ms);
        let expires_ms = rec.expires_ms;
        self.writer
            .send_reserved(permit, Command::Decide { id, rec, reply }, urgent);
        Ok((id, expires_ms))
    }
}

#[cfg(test)]
mod closed_tests;
#[cfg(test)]
mod delay_tests;
#[cfg(test)]
mod pacing_tests;
#[cfg(test)]
mod queue_tests;
#[cfg(test)]
mod tests;
