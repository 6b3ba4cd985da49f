//! Durable state: the traits the engine reads and commits through
//! ([`DecisionLog`], [`Checkpoints`], [`CampaignConfigs`], [`Storage`]),
//! the typed [`WriteSet`] a commit applies, and two backends: [`Store`]
//! (sled; this module is the only code that touches it) and
//! [`MemoryStore`]. One conformance suite runs against both.
//!
//! sled keeps one tree, keys prefixed by kind:
//! - `meta/schema`: schema version;
//! - `m/{campaign}\0{segment}\0{offer}`: [`CellCounts`] of a posterior cell;
//! - `b/{first decision's locator}`: a block, the decisions one write
//!   group made (see [`blocks`]); `o/{locator}`: the current record of a
//!   decision in a block that changed since (redeemed, expired);
//! - `d/{decision id}`: [`DecisionRecord`] of a decision written on its own
//!   (by schema 8 and before; their later changes stay there);
//! - `x/{expires ms, big-endian}{first decision id}`: the decisions of one
//!   campaign made in one write group, whose windows all close by that time
//!   (16-byte ids, concatenated; an empty value stands for the key's id
//!   alone). The expiry sweep walks them in time order and drops an entry
//!   once it has finalized its decisions, so a decision costs one write of
//!   its own plus a share of its group's entry;
//! - `r/{campaign}\0{request id}`: decision id of an idempotent request;
//! - `a/{campaign}\0{arm}`: [`crate::uplift::ArmCounts`] of the bandit and
//!   the control group;
//! - `g/{campaign}\0{arm}`: [`crate::uplift::ClusterSums`] of each arm,
//!   over decisions whose reward window has closed (counted when the sweep
//!   drops their expiry entry), and `t/{customer hash}{campaign}\0{arm}`:
//!   each customer's [`crate::uplift::CustomerTotals`] in it, so that a
//!   customer's next decision updates the sums and erasure removes the
//!   customer exactly;
//! - `u/{campaign}\0{offer}`: [`crate::budget::DailyCounts`] of the offer's
//!   current day in the campaign's time zone, for daily budgets;
//! - `h/{campaign}`: [`crate::budget::TrafficProfile`], the campaign's
//!   decisions by local hour over past days, that daily budgets are paced
//!   by (written with the decisions it counts; a store without one starts
//!   flat);
//! - `s/{campaign}`: what operators paused or retired
//!   ([`crate::status::CampaignStatus`]);
//! - `k/{campaign}`: the campaign's config revision
//!   ([`crate::revisions::StoredCampaign`]; a store without them, from
//!   before live campaign changes, reads as if every campaign came from the
//!   file);
//! - `c/{customer hash}{decision id}`: the decisions of a customer (for
//!   erasure), under the keyed hash of [`crate::customer`];
//! - `p/{campaign}\0{offer}`: a contextual posterior as of the last model
//!   checkpoint, and `meta/model-seq`: the last learning event it includes
//!   (later events are replayed from the decision records at startup);
//! - `q/{campaign}`: the learned prior of a contextual campaign
//!   ([`SharedPrior`]), written with its posteriors at each checkpoint (a
//!   store without one reads as the configured prior, before any event);
//! - `meta/customer-key`, `meta/customer-key-fingerprint`: the generated
//!   customer key (when none is configured) and the fingerprint of the key
//!   in use, so that a changed key is refused rather than silently breaking
//!   erasure.
//!
//! Every value starts with a format-version byte. A [`WriteSet`] is applied
//! as one atomic batch, so a crash never splits a decision from its
//! posterior change.

use std::path::Path;

use serde::{Serialize, de::DeserializeOwned};

use crate::{
    customer::{CustomerHash, CustomerKey},
    decision::{DecisionId, DecisionRecord, DecisionState},
    policy::{contextual::GaussianPosterior, segment::CellCounts, shared_prior::SharedPrior},
};

mod backup;
mod blocks;
mod codec;
mod keys;
mod memory;
mod migrate;
mod traits;
mod write_set;

pub use self::blocks::BLOCK_MAX;
pub use self::migrate::{Migration, MigrationPlan, plan_migration};
pub use self::{
    backup::{SnapshotEntry, check_entry, parse_snapshot, restore_snapshot},
    memory::MemoryStore,
    traits::{CampaignConfigs, Checkpoints, DecisionLog, Storage},
    write_set::{Placement, Write, WriteSet},
};
use self::{blocks::*, codec::*, keys::*, migrate::*, write_set::keyed};

/// Schema of the key layout above. 4 added the customer of each decision;
/// a schema-3 store is migrated when opened. 5 added learned priors (`q/`):
/// a schema-4 store (and a schema-4 backup) has none, so it is only marked
/// 5 when opened, and its campaigns start from the configured prior. The
/// mark keeps an older build from reading a store whose posteriors were
/// re-based on a prior it does not know. 6 added the intercept's learned
/// mean to each learned prior: a schema-5 prior is read without one (the
/// configured `prior_rate`, as schema 5 had it), so schema-4 and schema-5
/// stores and backups are only marked 6. 7 added the offer features'
/// learned effects: a schema-6 prior is read with none, so schema-4 to
/// schema-6 stores and backups are only marked 7. 8 added each contextual
/// posterior's forgetting clock: a schema-7 posterior is read with none
/// (the next learning event starts it), so schema-4 to schema-7 stores and
/// backups are only marked 8. 9, three changes in one release: the
/// per-customer sums of closed windows (`g/`, `t/`) the report's intervals
/// are computed from, rebuilt from the decision records when a schema-4 to
/// schema-8 store (or backup) is opened; new decisions written in blocks
/// (`b/`, LZ4-compressed when that is smaller, with later changes in
/// `o/`), records of schema 8 and before read
/// where they are; and each contextual posterior's prior mean (left out of
/// its own evidence under the learned prior), a schema-8 posterior read
/// without one (the learned prior's mean for its features, as schema 8 had
/// it). An older build would see none of them, so the mark keeps it out.
pub const SCHEMA_VERSION: u32 = 9;
/// Longest a write group's decisions can span, first to last: they are
/// made while the writer commits the group before, and a writer stalled
/// this long has long failed its health checks (an hour).
pub const MAX_GROUP_SPAN_MS: i64 = 3_600_000;
/// Page cache of [`Store::open`]: 128 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 128 << 20;
/// Format version byte in front of every stored value.
pub const FORMAT_VERSION: u8 = 1;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not read or write (I/O, a full disk, a lost
    /// connection, an internal error): nothing of the failed call was
    /// applied. The backend's own error is the source; the seam names no
    /// backend.
    #[error("{0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored value cannot be read by this version.
    #[error("corrupt or unsupported record at key {key}: {reason}")]
    Corrupt {
        /// The key, escaped.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The campaign file conflicts with a stored campaign revision, or a
    /// stored revision no longer validates.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The configured customer key is not the one the store was written with.
    #[error(
        "this store's customer ids are hashed under the key with fingerprint {stored}, but {configured}; \
         erasure would miss every earlier decision. Configure the original key (--customer-key-file)"
    )]
    CustomerKeyMismatch {
        /// Fingerprint recorded in the store.
        stored: String,
        /// What was configured instead.
        configured: String,
    },
}

impl StoreError {
    /// A backend's own failure (sled's, the file system's, a message).
    pub fn backend(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Backend(e.into())
    }
}

/// The sled backend's failures, so that `?` works in its code.
impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::backend(e)
    }
}

/// A posterior cell's address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CellKey {
    /// Campaign id.
    pub campaign: String,
    /// Segment key.
    pub segment: String,
    /// Offer id.
    pub offer: String,
}

/// The embedded database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens (or creates) the store in `dir` with sled's default page cache,
    /// checking the schema version. Fails when another process holds the
    /// directory.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// [`Store::open`] with a page cache of at most `cache_bytes` (sled's own
    /// default is 1 GiB; what is not cached is read from disk).
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| match e {
                // sled reads a damaged `conf` file as one from before 0.29.
                sled::Error::Unsupported(m) if m.contains("earlier than 0.29") => {
                    StoreError::Corrupt {
                        key: "conf".into(),
                        reason: format!(
                            "the store's files in {} are damaged or not sled's (sled says: {m}); restore the directory from a backup",
                            dir.display()
                        ),
                    }
                }
                sled::Error::Corruption { .. } => StoreError::Corrupt {
                    key: "conf".into(),
                    reason: format!(
                        "the store's files in {} are damaged (sled: {e}); restore the directory from a backup",
                        dir.display()
                    ),
                },
                e => StoreError::backend(e),
            })?;
        let tree = db.open_tree("offer-bandit")?;
        match migration_for(tree.get(META_SCHEMA)?.as_deref()) {
            Migration::Create => {
                tree.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
                db.flush()?;
            }
            Migration::Current => {}
            Migration::RewriteFrom3 => migrate_from_3(&db, &tree)?,
            Migration::RebuildFrom(from) => {
                migrate_clusters(&db, &tree, from)?;
            }
            Migration::Unreadable(reason) => {
                return Err(StoreError::Corrupt {
                    key: escape(META_SCHEMA),
                    reason,
                });
            }
        }
        Ok(Store { db, tree })
    }

    /// The key customer ids are hashed under: `configured` if given (and it
    /// must be the key the store was first used with), else the key this
    /// store generated on first use.
    pub fn customer_key(&self, configured: Option<CustomerKey>) -> Result<CustomerKey, StoreError> {
        let stored_fp = self
            .tree
            .get(META_CUSTOMER_FINGERPRINT)?
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        let generated = match self.tree.get(META_CUSTOMER_KEY)? {
            None => None,
            Some(v) => Some(CustomerKey::from_bytes(v.as_ref().try_into().map_err(
                |_| StoreError::Corrupt {
                    key: escape(META_CUSTOMER_KEY),
                    reason: "the stored customer key is not 32 bytes".into(),
                },
            )?)),
        };
        let (key, new) = choose_customer_key(configured, generated, stored_fp.as_deref())?;
        if new {
            self.tree.insert(META_CUSTOMER_KEY, key.bytes().to_vec())?;
        }
        if stored_fp.is_none() {
            self.tree
                .insert(META_CUSTOMER_FINGERPRINT, key.fingerprint().into_bytes())?;
            self.db.flush()?;
        }
        Ok(key)
    }

    /// Every campaign's operator-set status.
    pub fn load_statuses(
        &self,
    ) -> Result<Vec<(String, crate::status::CampaignStatus)>, StoreError> {
        self.load_by_campaign(STATUS)
    }

    /// Every campaign's stored config revision.
    pub fn load_configs(
        &self,
    ) -> Result<Vec<(String, crate::revisions::StoredCampaign)>, StoreError> {
        self.load_by_campaign(CONFIG)
    }

    /// Every contextual campaign's learned prior, as (campaign, prior).
    pub fn load_priors(&self) -> Result<Vec<(String, SharedPrior)>, StoreError> {
        self.load_by_campaign_with(PRIOR, decode_prior)
    }

    fn load_by_campaign<T: DeserializeOwned>(
        &self,
        prefix: &[u8],
    ) -> Result<Vec<(String, T)>, StoreError> {
        self.load_by_campaign_with(prefix, decode)
    }

    fn load_by_campaign_with<T>(
        &self,
        prefix: &[u8],
        decode: impl Fn(&[u8], &[u8]) -> Result<T, StoreError>,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(prefix) {
            let (k, v) = item?;
            let campaign =
                String::from_utf8(k[prefix.len()..].to_vec()).map_err(|_| StoreError::Corrupt {
                    key: escape(&k),
                    reason: "malformed campaign key".into(),
                })?;
            out.push((campaign, decode(&k, &v)?));
        }
        Ok(out)
    }

    /// Every offer's daily counts, as (campaign, offer, counts).
    pub fn load_daily(
        &self,
    ) -> Result<Vec<(String, String, crate::budget::DailyCounts)>, StoreError> {
        self.load_pairs(DAILY)
    }

    /// Every campaign's traffic profile by local hour, as (campaign,
    /// profile).
    pub fn load_traffic(&self) -> Result<Vec<(String, crate::budget::TrafficProfile)>, StoreError> {
        self.load_by_campaign(TRAFFIC)
    }

    /// Every campaign's arm counts, as (campaign, arm name, counts).
    pub fn load_arms(&self) -> Result<Vec<(String, String, crate::uplift::ArmCounts)>, StoreError> {
        self.load_pairs(ARM)
    }

    /// Every campaign's per-customer sums over closed windows, as
    /// (campaign, arm name, sums).
    pub fn load_clusters(
        &self,
    ) -> Result<Vec<(String, String, crate::uplift::ClusterSums)>, StoreError> {
        self.load_pairs(CLUSTERS)
    }

    /// A customer's totals over closed windows, as (campaign, arm, totals).
    pub fn customer_totals(
        &self,
        customer: &CustomerHash,
    ) -> Result<Vec<(String, crate::uplift::Arm, crate::uplift::CustomerTotals)>, StoreError> {
        let prefix = [TOTALS, &customer.0].concat();
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(&prefix) {
            let (k, v) = item?;
            let (campaign, arm) =
                parse_campaign_arm(&k[prefix.len()..]).ok_or_else(|| StoreError::Corrupt {
                    key: escape(&k),
                    reason: "malformed customer totals key".into(),
                })?;
            out.push((campaign, arm, decode(&k, &v)?));
        }
        Ok(out)
    }

    /// Every `{prefix}{a}\0{b}` entry, decoded.
    fn load_pairs<T: DeserializeOwned>(
        &self,
        prefix: &[u8],
    ) -> Result<Vec<(String, String, T)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(prefix) {
            let (k, v) = item?;
            let rest = &k[prefix.len()..];
            let parsed = rest.iter().position(|&b| b == 0).and_then(|i| {
                Some((
                    String::from_utf8(rest[..i].to_vec()).ok()?,
                    String::from_utf8(rest[i + 1..].to_vec()).ok()?,
                ))
            });
            let (a, b) = parsed.ok_or_else(|| StoreError::Corrupt {
                key: escape(&k),
                reason: "malformed key".into(),
            })?;
            out.push((a, b, decode(&k, &v)?));
        }
        Ok(out)
    }

    /// The decisions recorded for a customer.
    pub fn customer_decisions(
        &self,
        customer: &CustomerHash,
    ) -> Result<Vec<DecisionId>, StoreError> {
        let prefix = [CUSTOMER, &customer.0].concat();
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(&prefix) {
            let (k, _) = item?;
            let id = decision_id(&k[prefix.len()..]).ok_or_else(|| StoreError::Corrupt {
                key: escape(&k),
                reason: "malformed customer index key".into(),
            })?;
            out.push(id);
        }
        Ok(out)
    }

    /// Every posterior cell. Fails on the first unreadable record.
    pub fn load_cells(&self) -> Result<Vec<(CellKey, CellCounts)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(CELL) {
            let (k, v) = item?;
            let key = parse_cell_key(&k).ok_or_else(|| StoreError::Corrupt {
                key: escape(&k),
                reason: "malformed cell key".into(),
            })?;
            out.push((key, decode(&k, &v)?));
        }
        Ok(out)
    }

    /// Every contextual posterior, as (campaign, offer, posterior). Fails on
    /// the first unreadable record.
    pub fn load_models(&self) -> Result<Vec<(String, String, GaussianPosterior)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(MODEL) {
            let (k, v) = item?;
            let rest = &k[MODEL.len()..];
            let split = rest.iter().position(|&b| b == 0);
            let parsed = split.and_then(|i| {
                Some((
                    String::from_utf8(rest[..i].to_vec()).ok()?,
                    String::from_utf8(rest[i + 1..].to_vec()).ok()?,
                ))
            });
            let (campaign, offer) = parsed.ok_or_else(|| StoreError::Corrupt {
                key: escape(&k),
                reason: "malformed model key".into(),
            })?;
            let posterior = decode_model(&k, &v)?;
            if !posterior.is_well_formed() {
                return Err(StoreError::Corrupt {
                    key: escape(&k),
                    reason: "the posterior's mean and covariance do not agree".into(),
                });
            }
            out.push((campaign, offer, posterior));
        }
        Ok(out)
    }

    /// Reads and decodes every decision record, to check the store at startup.
    /// Returns how many there are.
    pub fn check_decisions(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.tree.scan_prefix(DECISION) {
            let (k, v) = item?;
            let _: DecisionRecord = decode(&k, &v)?;
            n += 1;
        }
        for item in self.tree.scan_prefix(BLOCK) {
            let (k, v) = item?;
            n += block_records(&k, &v)?.len();
        }
        for item in self.tree.scan_prefix(OVERLAY) {
            let (k, v) = item?;
            let _: DecisionRecord = decode(&k, &v)?;
        }
        Ok(n)
    }

    /// The learning sequence number the stored contextual posteriors
    /// include (0 before the first checkpoint).
    pub fn model_seq(&self) -> Result<u64, StoreError> {
        match self.tree.get(META_MODEL_SEQ)? {
            None => Ok(0),
            Some(v) => Ok(u64::from_be_bytes(v.as_ref().try_into().map_err(|_| {
                StoreError::Corrupt {
                    key: escape(META_MODEL_SEQ),
                    reason: "not an 8-byte sequence number".into(),
                }
            })?)),
        }
    }

    /// Decision records made in `[since_ms, until_ms)`, with their ids, in
    /// time order within a stream (decisions written on their own first,
    /// then block by block); `visit` returns false to stop early.
    pub fn scan_decisions(
        &self,
        since_ms: i64,
        until_ms: i64,
        mut visit: impl FnMut(DecisionId, DecisionRecord) -> bool,
    ) -> Result<(), StoreError> {
        let ranges = time_ranges(since_ms, until_ms);
        let [legacy, v1] = ranges
            .clone()
            .map(|r| decision_key(&r.start)..decision_key(&r.end));
        // Decisions written on their own (schema 8 and before) predate
        // every block, so they come first.
        for item in self.tree.range(legacy).chain(self.tree.range(v1)) {
            let (k, v) = item?;
            let mut id = [0u8; 16];
            if k.len() != DECISION.len() + 16 {
                return Err(StoreError::Corrupt {
                    key: escape(&k),
                    reason: "malformed decision key".into(),
                });
            }
            id.copy_from_slice(&k[DECISION.len()..]);
            if !visit(DecisionId(id), decode(&k, &v)?) {
                return Ok(());
            }
        }
        // Blocks: every block that may hold a decision of the range began
        // at most MAX_GROUP_SPAN_MS before it, whatever its stream.
        let [_, v1] = ranges;
        let [_, earlier] = time_ranges(since_ms.saturating_sub(MAX_GROUP_SPAN_MS), until_ms);
        for item in self
            .tree
            .range(block_key(&earlier.start)..block_key(&v1.end))
        {
            let (k, v) = item?;
            for (id, rec) in block_records(&k, &v)? {
                if id < v1.start || id >= v1.end {
                    continue;
                }
                let rec = match self.tree.get(overlay_key(&id))? {
                    Some(o) => decode(&overlay_key(&id), &o)?,
                    None => rec,
                };
                if !visit(id, rec) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// A decision record: its latest change, else its block's copy, else
    /// its own record (schema 8 and before).
    pub fn decision(&self, id: &DecisionId) -> Result<Option<DecisionRecord>, StoreError> {
        Ok(self.placed_decision(id)?.map(|(rec, _)| rec))
    }

    /// [`Store::decision`], and where it lies: an overlay or a block's copy
    /// is a decision in a block.
    pub fn placed_decision(
        &self,
        id: &DecisionId,
    ) -> Result<Option<(DecisionRecord, Placement)>, StoreError> {
        let key = overlay_key(id);
        if let Some(v) = self.tree.get(&key)? {
            return Ok(Some((decode(&key, &v)?, Placement::Block)));
        }
        // A record lies in a block or under its own key, never both (only
        // decisions made by schema 8 and before, v0 ids included, have their
        // own; a decision found in a block changes in its overlay): the
        // block first, where every decision made since schema 9 is, saves a
        // read that would miss.
        if let Some((k, v)) = self.block_of(id)?
            && let Some(rec) = find_in_block(&k, &v, id)?
        {
            return Ok(Some((rec, Placement::Block)));
        }
        let key = decision_key(id);
        match self.tree.get(&key)? {
            Some(v) => Ok(Some((decode(&key, &v)?, Placement::Own))),
            None => Ok(None),
        }
    }

    /// The block that holds `id` if any block does: the last block of its
    /// stream that starts at or before it (blocks of other streams made at
    /// the same time are passed over). A block's decisions were made while
    /// the writer committed the group before it, so the search stops at
    /// blocks begun more than [`MAX_GROUP_SPAN_MS`] before `id`: an unknown
    /// (erased, pruned) id costs a bounded read, not a walk over every
    /// block.
    fn block_of(&self, id: &DecisionId) -> Result<Option<(sled::IVec, sled::IVec)>, StoreError> {
        if id.version() != crate::decision_id::VERSION {
            return Ok(None);
        }
        let stream = stream_of(id);
        let oldest = id.created_ms().saturating_sub(MAX_GROUP_SPAN_MS);
        for item in self.tree.range(BLOCK.to_vec()..=block_key(id)).rev() {
            let (k, v) = item?;
            let first = decision_id(&k[BLOCK.len()..]).ok_or_else(|| StoreError::Corrupt {
                key: escape(&k),
                reason: "malformed block key".into(),
            })?;
            if first.created_ms() < oldest {
                break;
            }
            if stream_of(&first) == stream {
                return Ok(Some((k, v)));
            }
        }
        Ok(None)
    }

    /// The decision an idempotency key points to.
    pub fn request(
        &self,
        campaign: &str,
        request_id: &str,
    ) -> Result<Option<DecisionId>, StoreError> {
        let key = request_key(campaign, request_id);
        match self.tree.get(&key)? {
            None => Ok(None),
            Some(v) => {
                let id: [u8; 16] = v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    key: escape(&key),
                    reason: "request entry is not a 16-byte decision id".into(),
                })?;
                Ok(Some(DecisionId(id)))
            }
        }
    }

    /// Expiry entries whose windows closed at or before `now_ms`, oldest
    /// first, until they hold at least `limit` decisions.
    pub fn due_expiries(&self, now_ms: i64, limit: usize) -> Result<Vec<ExpiryEntry>, StoreError> {
        let end = [EXPIRY, &now_ms.saturating_add(1).to_be_bytes()].concat();
        let mut out = Vec::new();
        let mut n = 0;
        for item in self.tree.range(EXPIRY.to_vec()..end) {
            if n >= limit {
                break;
            }
            let (k, v) = item?;
            let corrupt = |reason: &str| StoreError::Corrupt {
                key: escape(&k),
                reason: reason.into(),
            };
            let rest = &k[EXPIRY.len()..];
            if rest.len() != 24 {
                return Err(corrupt("malformed expiry key"));
            }
            let mut ms = [0u8; 8];
            ms.copy_from_slice(&rest[..8]);
            let first = decision_id(&rest[8..]).ok_or_else(|| corrupt("malformed expiry key"))?;
            let ids = if v.is_empty() {
                vec![first]
            } else if v.len() % 16 == 0 {
                v.chunks_exact(16).filter_map(decision_id).collect()
            } else {
                return Err(corrupt(
                    "expiry entry is not a list of 16-byte decision ids",
                ));
            };
            n += ids.len();
            out.push(ExpiryEntry {
                expires_ms: i64::from_be_bytes(ms),
                first,
                ids,
            });
        }
        Ok(out)
    }

    /// Applies a write set atomically (not yet flushed to disk).
    pub fn commit(&self, writes: WriteSet) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        // Blocks this set removes decisions from: their remaining records.
        let mut rewritten: std::collections::BTreeMap<Vec<u8>, Vec<(DecisionId, DecisionRecord)>> =
            Default::default();
        for write in writes.into_writes() {
            match write {
                // A decision in a block changes in its overlay; one written
                // on its own, in place. Where the writer's read found it
                // holds: only a commit moves a record, and this one is the
                // commit of that read's group.
                Write::Decision(id, rec, placed) => {
                    let own = decision_key(&id);
                    let in_block = match placed {
                        Some(p) => p == Placement::Block,
                        None => {
                            !self.tree.contains_key(&own)?
                                && match self.block_of(&id)? {
                                    Some((k, v)) => find_in_block(&k, &v, &id)?.is_some(),
                                    None => false,
                                }
                        }
                    };
                    let key = if in_block { overlay_key(&id) } else { own };
                    batch.insert(key, encode(&*rec));
                }
                // Erased or pruned: gone from wherever it is, its block
                // rewritten without it.
                Write::RemoveDecision(id) => {
                    batch.remove(decision_key(&id));
                    batch.remove(overlay_key(&id));
                    if let Some((k, v)) = self.block_of(&id)? {
                        let records = match rewritten.entry(k.to_vec()) {
                            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                            std::collections::btree_map::Entry::Vacant(e) => {
                                e.insert(block_records(&k, &v)?)
                            }
                        };
                        records.retain(|(x, _)| *x != id);
                    }
                }
                other => match keyed(other) {
                    Some((key, Some(v))) => batch.insert(key, v),
                    Some((key, None)) => batch.remove(key),
                    None => {}
                },
            }
        }
        for (key, mut records) in rewritten {
            if records.is_empty() {
                batch.remove(key);
            } else {
                // Keeps its key: still at or before each of its records.
                batch.insert(key, encode_block(&mut records));
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Makes everything committed so far durable (fsync).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }
}

/// The customer key to use: `configured` if given (and it must be the key
/// whose fingerprint is stored, if one is), else the `generated` one
/// stored, else a new one (then `true`: the caller stores it).
fn choose_customer_key(
    configured: Option<CustomerKey>,
    generated: Option<CustomerKey>,
    stored_fp: Option<&str>,
) -> Result<(CustomerKey, bool), StoreError> {
    match (configured, generated, stored_fp) {
        (Some(k), _, Some(fp)) if k.fingerprint() != fp => Err(StoreError::CustomerKeyMismatch {
            stored: fp.to_owned(),
            configured: format!("the configured key's is {}", k.fingerprint()),
        }),
        (Some(k), _, _) => Ok((k, false)),
        (None, Some(k), _) => Ok((k, false)),
        (None, None, Some(fp)) => Err(StoreError::CustomerKeyMismatch {
            stored: fp.to_owned(),
            configured: "no key is configured".into(),
        }),
        (None, None, None) => Ok((CustomerKey::generate(), true)),
    }
}

/// Decisions of one campaign and write group whose windows all close by
/// `expires_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryEntry {
    /// When the last of their windows closes (Unix ms).
    pub expires_ms: i64,
    /// The entry's key: its first decision.
    pub first: DecisionId,
    /// The decisions, `first` among them.
    pub ids: Vec<DecisionId>,
}

#[cfg(test)]
mod conformance;

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens a store just closed: sled's background threads can hold the
    /// directory's lock for a moment after the last handle drops.
    pub(super) fn reopen(dir: &Path) -> Result<Store, StoreError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Store::open(dir) {
                Err(StoreError::Backend(e))
                    if std::time::Instant::now() < deadline && e.to_string().contains("lock") =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    fn rec() -> DecisionRecord {
        DecisionRecord {
            campaign: "c".into(),
            offer: "o".into(),
            segment: "a|b\0c".into(),
            propensity: 0.25,
            created_ms: 10,
            expires_ms: 20,
            request_id: Some("r1".into()),
            model_version: 3,
            state: DecisionState::Pending,
            features: vec![(0, 1.0), (5, 0.25)],
            context: vec![(
                "tier".into(),
                crate::context::FeatureValue::Category("gold".into()),
            )],
            candidates: ["a".into(), "b".into()].into(),
            customer: Some(CustomerHash([3; 32])),
            learned_seq: 7,
            redeemed_seq: 0,
            arm: crate::uplift::Arm::Control,
        }
    }

    #[test]
    fn round_trips_and_reopens() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(StoreError::backend)?;
        let id = DecisionId([7; 16]);
        let key = CellKey {
            campaign: "c".into(),
            segment: "a|b\0c".into(),
            offer: "o".into(),
        };
        let counts = CellCounts {
            trials: 5,
            successes: 2,
            expired: 1,
            value_sum: 4.5,
        };
        {
            let store = Store::open(dir.path())?;
            let mut w = WriteSet::default();
            w.put_cell(&key, &counts);
            w.put_decision(&id, &rec());
            w.put_expiries(20, &[id]);
            w.put_expiries(30, &[DecisionId([8; 16]), DecisionId([9; 16])]);
            w.put_request("c", "r1", &id);
            store.commit(w)?;
            store.flush()?;
        }
        let store = reopen(dir.path())?;
        assert_eq!(store.load_cells()?, vec![(key, counts)]);
        assert_eq!(store.decision(&id)?, Some(rec()));
        assert_eq!(store.request("c", "r1")?, Some(id));
        assert_eq!(store.due_expiries(19, 10)?, vec![]);
        let single = ExpiryEntry {
            expires_ms: 20,
            first: id,
            ids: vec![id],
        };
        assert_eq!(store.due_expiries(20, 10)?, vec![single.clone()]);
        let pair = ExpiryEntry {
            expires_ms: 30,
            first: DecisionId([8; 16]),
            ids: vec![DecisionId([8; 16]), DecisionId([9; 16])],
        };
        // `limit` counts decisions; an entry is never split.
        assert_eq!(store.due_expiries(40, 1)?, vec![single.clone()]);
        assert_eq!(
            store.due_expiries(40, 2)?,
            vec![single.clone(), pair.clone()]
        );
        let mut w = WriteSet::default();
        w.remove_expiries(&single);
        store.commit(w)?;
        assert_eq!(store.due_expiries(40, 10)?, vec![pair]);
        assert_eq!(store.check_decisions()?, 1);
        Ok(())
    }

    #[test]
    fn unknown_format_version_is_an_error_not_a_reset() {
        let key = b"d/x";
        assert!(matches!(
            decode::<DecisionRecord>(key, &[9, 1, 2]),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            decode::<DecisionRecord>(key, &[]),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            decode::<DecisionRecord>(key, &[FORMAT_VERSION, 0xff]),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn schema_3_stores_are_migrated() -> Result<(), StoreError> {
        let r = rec();
        let old = DecisionRecordV3 {
            campaign: r.campaign.clone(),
            offer: r.offer.clone(),
            segment: r.segment.clone(),
            propensity: r.propensity,
            created_ms: r.created_ms,
            expires_ms: r.expires_ms,
            request_id: r.request_id.clone(),
            model_version: r.model_version,
            state: r.state,
            features: r.features.clone(),
            context: r.context.clone(),
            candidates: r.candidates.to_vec(),
        };
        let dir = tempfile::tempdir().map_err(StoreError::backend)?;
        let id = DecisionId([5; 16]);
        {
            let store = Store::open(dir.path())?;
            store.tree.insert(META_SCHEMA, &3u32.to_be_bytes())?;
            store.tree.insert(decision_key(&id), encode(&old))?;
            store.flush()?;
        }
        // A dry run counts what the migration rewrites, and writes nothing.
        let plan = plan_migration(dir.path())?;
        assert_eq!(plan.migration, Migration::RewriteFrom3);
        assert_eq!((plan.decisions, plan.campaigns), (1, 1));
        assert_eq!(plan.found.as_deref(), Some("3"));
        assert_eq!(plan_migration(dir.path())?, plan, "still schema 3");
        let store = reopen(dir.path())?;
        let want = DecisionRecord {
            customer: None,
            learned_seq: 0,
            arm: crate::uplift::Arm::Bandit,
            ..rec()
        };
        assert_eq!(store.decision(&id)?, Some(want));
        assert_eq!(
            store.tree.get(META_SCHEMA)?.as_deref(),
            Some(&SCHEMA_VERSION.to_be_bytes()[..])
        );
        // The bandit arm starts from the migrated decisions.
        let arms = store.load_arms()?;
        assert_eq!(arms.len(), 1);
        assert_eq!((arms[0].0.as_str(), arms[0].1.as_str()), ("c", "bandit"));
        assert_eq!(arms[0].2.decisions, 1);
        Ok(())
    }

    #[test]
    fn schema_5_priors_are_read_without_an_intercept_mean() -> Result<(), StoreError> {
        #[derive(Serialize)]
        struct V5 {
            variance: Vec<f64>,
            events: u64,
            next_estimate: u64,
        }
        let dir = tempfile::tempdir().map_err(StoreError::backend)?;
        let learned = SharedPrior {
            variance: vec![0.1, 0.02, 0.4],
            events: 900,
            next_estimate: 1012,
            intercept: Some(-1.5),
            offer_effects: Vec::new(),
        };
        {
            let store = Store::open(dir.path())?;
            store.tree.insert(META_SCHEMA, &5u32.to_be_bytes())?;
            let old = V5 {
                variance: learned.variance.clone(),
                events: 900,
                next_estimate: 1012,
            };
            store
                .tree
                .insert([PRIOR, b"c5".as_slice()].concat(), encode(&old))?;
            let mut w = WriteSet::default();
            w.put_prior("c6", &learned);
            store.commit(w)?;
            store.flush()?;
        }
        let store = reopen(dir.path())?;
        assert_eq!(
            store.tree.get(META_SCHEMA)?.as_deref(),
            Some(&SCHEMA_VERSION.to_be_bytes()[..])
        );
        let priors = store.load_priors()?;
        let get = |c: &str| {
            priors
                .iter()
                .find(|(id, _)| id == c)
                .map(|(_, p)| p.clone())
        };
        assert_eq!(
            get("c5"),
            Some(SharedPrior {
                intercept: None,
                ..learned.clone()
            })
        );
        assert_eq!(get("c6"), Some(learned));
        // Backup entries are checked with the same reading.
        let v5 = store
            .tree
            .get([PRIOR, b"c5".as_slice()].concat())?
            .expect("c5");
        assert!(check_entry(&[PRIOR, b"c5".as_slice()].concat(), &v5).is_ok());
        let mut long = v5.to_vec();
        long.extend([1, 2]);
        assert!(decode_prior(b"q/x", &long).is_err(), "trailing bytes");
        Ok(())
    }

    #[test]
    fn a_change_lands_where_the_read_found_its_decision() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(StoreError::backend)?;
        let ids = crate::decision_id::IdGenerator::new(0);
        let (old_id, new_id) = (ids.next(10), ids.next(11));
        let store = Store::open(dir.path())?;
        // One decision on its own (as schema 8 wrote them), one in a block.
        store.tree.insert(decision_key(&old_id), encode(&rec()))?;
        let mut w = WriteSet::default();
        w.add_decision(new_id, rec());
        store.commit(w)?;
        let found = |id| Ok::<_, StoreError>(store.placed_decision(id)?.map(|(_, p)| p));
        assert_eq!(found(&old_id)?, Some(Placement::Own));
        assert_eq!(found(&new_id)?, Some(Placement::Block));
        let absent = ids.next(12);
        assert_eq!(found(&absent)?, None);
        // On its own key though a block of its stream begins before it: the
        // block is read, does not hold it, and the own key is.
        let later = ids.next(13);
        store.tree.insert(decision_key(&later), encode(&rec()))?;
        assert_eq!(found(&later)?, Some(Placement::Own));
        assert_eq!(store.decision(&later)?, Some(rec()));
        // Each change, told where its read found the record, lands there:
        // the block's decision in its overlay (twice: the second read finds
        // the overlay), the other under its own key.
        for state in [
            DecisionState::Redeemed {
                value: 2.0,
                at_ms: 20,
            },
            DecisionState::Expired,
        ] {
            let mut changed = rec();
            changed.state = state;
            let mut w = WriteSet::default();
            for id in [old_id, new_id] {
                let (_, placed) = store.placed_decision(&id)?.expect("stored");
                w.set_placed_decision(id, changed.clone(), Some(placed));
            }
            store.commit(w)?;
            assert_eq!(store.decision(&old_id)?, Some(changed.clone()));
            assert_eq!(store.decision(&new_id)?, Some(changed));
            assert!(store.tree.get(overlay_key(&old_id))?.is_none());
            assert!(store.tree.get(overlay_key(&new_id))?.is_some());
            assert!(store.tree.get(decision_key(&new_id))?.is_none());
            assert_eq!(found(&new_id)?, Some(Placement::Block));
        }
        Ok(())
    }

    #[test]
    fn schema_8_decisions_stay_readable_beside_blocks() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(StoreError::backend)?;
        let ids = crate::decision_id::IdGenerator::new(0);
        let old_id = ids.next(10);
        {
            let store = Store::open(dir.path())?;
            // As schema 8 wrote a decision: on its own, under d/.
            store.tree.insert(META_SCHEMA, &8u32.to_be_bytes())?;
            store.tree.insert(decision_key(&old_id), encode(&rec()))?;
            store.flush()?;
        }
        let store = reopen(dir.path())?;
        assert_eq!(
            store.tree.get(META_SCHEMA)?.as_deref(),
            Some(SCHEMA_VERSION.to_be_bytes().as_slice())
        );
        let new_id = ids.next(11);
        let mut newer = rec();
        newer.created_ms = 11;
        let mut w = WriteSet::default();
        w.add_decision(new_id, newer.clone());
        store.commit(w)?;
        assert_eq!(store.decision(&old_id)?, Some(rec()));
        assert_eq!(store.decision(&new_id)?, Some(newer));
        // The old record changes where it is, not in an overlay.
        let mut redeemed = rec();
        redeemed.state = DecisionState::Expired;
        let mut w = WriteSet::default();
        w.put_decision(&old_id, &redeemed);
        store.commit(w)?;
        assert_eq!(store.decision(&old_id)?, Some(redeemed));
        assert!(store.tree.get(overlay_key(&old_id))?.is_none());
        let mut order = Vec::new();
        store.scan_decisions(0, i64::MAX, |id, _| {
            order.push(id);
            true
        })?;
        assert_eq!(order, vec![old_id, new_id]);
        Ok(())
    }

    #[test]
    fn schema_7_posteriors_are_read_without_a_forgetting_clock() -> Result<(), StoreError> {
        #[derive(Serialize)]
        struct V7 {
            mean: Vec<f64>,
            cov: crate::linalg::SymMatrix,
            observations: u64,
            decisions: u64,
            predicted_sum: f64,
        }
        let dir = tempfile::tempdir().map_err(StoreError::backend)?;
        let config = crate::policy::contextual::ContextualConfig::new(
            crate::policy::contextual::Likelihood::Logistic,
        );
        let mut learned = GaussianPosterior::prior(3, &config);
        learned.update(&[(0, 1.0), (2, 1.0)], 1.0, &config);
        learned.forgotten_to_ms = 1_800_000_000_000;
        let old_key = model_key("c7", "a");
        {
            let store = Store::open(dir.path())?;
            store.tree.insert(META_SCHEMA, &7u32.to_be_bytes())?;
            let old = V7 {
                mean: learned.mean.clone(),
                cov: learned.cov.clone(),
                observations: learned.observations,
                decisions: learned.decisions,
                predicted_sum: learned.predicted_sum,
            };
            store.tree.insert(old_key.clone(), encode(&old))?;
            let mut w = WriteSet::default();
            w.put_model("c8", "a", &learned);
            store.commit(w)?;
            store.flush()?;
        }
        let store = reopen(dir.path())?;
        assert_eq!(
            store.tree.get(META_SCHEMA)?.as_deref(),
            Some(&SCHEMA_VERSION.to_be_bytes()[..])
        );
        let models = store.load_models()?;
        let get = |c: &str| {
            models
                .iter()
                .find(|(id, _, _)| id == c)
                .map(|(_, _, p)| p.clone())
        };
        assert_eq!(
            get("c7"),
            Some(GaussianPosterior {
                forgotten_to_ms: crate::policy::forgetting::NEVER,
                forgetting_since_ms: crate::policy::forgetting::NEVER,
                prior_mean: Vec::new(),
                ..learned.clone()
            })
        );
        assert_eq!(get("c8"), Some(learned));
        let v7 = store.tree.get(&old_key)?.expect("c7");
        assert!(check_entry(&old_key, &v7).is_ok(), "backups read it too");
        let mut long = v7.to_vec();
        // Three: two would read as schema 8's two clocks, and a zero third
        // as the current layout's empty prior mean (versions are told apart
        // by trial decoding; see decode_model).
        long.extend([1, 2, 3]);
        assert!(decode_model(b"m/x", &long).is_err(), "trailing bytes");
        Ok(())
    }

    #[test]
    fn schema_4_stores_are_marked_current_and_keep_their_data() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(StoreError::backend)?;
        let id = DecisionId([6; 16]);
        {
            let store = Store::open(dir.path())?;
            store.tree.insert(META_SCHEMA, &4u32.to_be_bytes())?;
            store.tree.insert(decision_key(&id), encode(&rec()))?;
            store.flush()?;
        }
        let store = reopen(dir.path())?;
        assert_eq!(store.decision(&id)?, Some(rec()));
        assert_eq!(
            store.tree.get(META_SCHEMA)?.as_deref(),
            Some(&SCHEMA_VERSION.to_be_bytes()[..])
        );
        assert!(store.load_priors()?.is_empty());
        Ok(())
    }

    #[test]
    fn schema_8_stores_get_the_sums_of_their_closed_windows() -> Result<(), StoreError> {
        use crate::uplift::{Arm, ClusterSums, CustomerTotals};
        let dir = tempfile::tempdir().map_err(StoreError::backend)?;
        let alice = CustomerHash([3; 32]);
        let redeemed = |value| DecisionState::Redeemed { value, at_ms: 15 };
        // (id, customer, arm, state, still in an expiry entry)
        let decisions = [
            (1u8, Some(alice), Arm::Control, redeemed(2.0), false),
            (2, Some(alice), Arm::Control, DecisionState::Expired, false),
            (3, None, Arm::Control, redeemed(0.5), false),
            (4, None, Arm::Bandit, DecisionState::Expired, false),
            // Windows not swept yet, redeemed or not: not counted.
            (5, Some(alice), Arm::Control, redeemed(4.0), true),
            (6, None, Arm::Bandit, DecisionState::Pending, true),
        ];
        {
            let store = Store::open(dir.path())?;
            store.tree.insert(META_SCHEMA, &8u32.to_be_bytes())?;
            let mut w = WriteSet::default();
            let mut open = Vec::new();
            for (b, customer, arm, state, unswept) in decisions {
                let id = DecisionId([b; 16]);
                let r = DecisionRecord {
                    customer,
                    arm,
                    state,
                    ..rec()
                };
                w.put_decision(&id, &r);
                if unswept {
                    open.push(id);
                }
            }
            w.put_expiries(20, &open);
            store.commit(w)?;
            store.flush()?;
        }
        let plan = plan_migration(dir.path())?;
        assert_eq!(plan.migration, Migration::RebuildFrom(8));
        assert_eq!((plan.decisions, plan.campaigns), (6, 1));
        let store = reopen(dir.path())?;
        assert_eq!(
            store.tree.get(META_SCHEMA)?.as_deref(),
            Some(&SCHEMA_VERSION.to_be_bytes()[..])
        );
        let alice_totals = CustomerTotals {
            decisions: 2,
            redemptions: 1,
            value: 2.0,
        };
        assert_eq!(
            store.customer_totals(&alice)?,
            vec![("c".to_owned(), Arm::Control, alice_totals)]
        );
        let mut control = ClusterSums::default();
        control.add_customer(2.0, 1.0, 2.0);
        control.add_customer(1.0, 1.0, 0.5);
        let mut bandit = ClusterSums::default();
        bandit.add_customer(1.0, 0.0, 0.0);
        assert_eq!(
            store.load_clusters()?,
            vec![
                ("c".to_owned(), "bandit".to_owned(), bandit),
                ("c".to_owned(), "control".to_owned(), control)
            ]
        );
        Ok(())
    }

    #[test]
    fn customer_keys_are_kept_and_a_changed_key_is_refused() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(StoreError::backend)?;
        let generated = {
            let store = Store::open(dir.path())?;
            store.customer_key(None)?
        };
        let store = reopen(dir.path())?;
        assert_eq!(store.customer_key(None)?, generated, "kept across restarts");
        assert_eq!(store.customer_key(Some(generated.clone()))?, generated);
        let other = CustomerKey::from_bytes([9; 32]);
        assert!(matches!(
            store.customer_key(Some(other.clone())),
            Err(StoreError::CustomerKeyMismatch { .. })
        ));
        // A store first used with a configured key needs it every time.
        let dir2 = tempfile::tempdir().map_err(StoreError::backend)?;
        let store2 = Store::open(dir2.path())?;
        assert_eq!(store2.customer_key(Some(other.clone()))?, other);
        assert!(matches!(
            store2.customer_key(None),
            Err(StoreError::CustomerKeyMismatch { .. })
        ));
        // The index finds a customer's decisions.
        let c = other.hash("member-42");
        let mut w = WriteSet::default();
        w.put_customer(&c, &DecisionId([1; 16]));
        w.put_customer(&c, &DecisionId([2; 16]));
        w.put_customer(&other.hash("member-43"), &DecisionId([3; 16]));
        store2.commit(w)?;
        assert_eq!(
            store2.customer_decisions(&c)?,
            vec![DecisionId([1; 16]), DecisionId([2; 16])]
        );
        Ok(())
    }

    #[test]
    fn snapshots_restore_exactly_and_damage_is_refused() -> Result<(), StoreError> {
        let io = |e: std::io::Error| StoreError::backend(e);
        let dir = tempfile::tempdir().map_err(io)?;
        let store = Store::open(&dir.path().join("a"))?;
        let mut w = WriteSet::default();
        for i in 0..50u8 {
            w.put_decision(&DecisionId([i; 16]), &rec());
        }
        store.commit(w)?;
        let file = dir.path().join("backup");
        let n = store.write_snapshot(&mut std::fs::File::create(&file).map_err(io)?)?;
        assert_eq!(n, 51, "50 decisions and the schema");
        assert_eq!(restore_snapshot(&file, &dir.path().join("b"))?, n);
        let restored = reopen(&dir.path().join("b"))?;
        let all = |s: &Store| -> Vec<(Vec<u8>, Vec<u8>)> {
            s.tree
                .iter()
                .filter_map(Result::ok)
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect()
        };
        assert_eq!(all(&restored), all(&store));
        // Into an existing store: refused.
        assert!(restore_snapshot(&file, &dir.path().join("b")).is_err());
        // A flipped byte or a cut file: refused, nothing created.
        let mut bytes = std::fs::read(&file).map_err(io)?;
        bytes[40] ^= 1;
        std::fs::write(&file, &bytes).map_err(io)?;
        assert!(restore_snapshot(&file, &dir.path().join("c")).is_err());
        std::fs::write(&file, &bytes[..bytes.len() / 2]).map_err(io)?;
        assert!(restore_snapshot(&file, &dir.path().join("c")).is_err());
        assert!(!dir.path().join("c").exists());
        Ok(())
    }
}
