//! Durable state in sled: the only module that touches it.
//!
//! One tree, keys prefixed by kind:
//! - `meta/schema`: schema version;
//! - `m/{campaign}\0{segment}\0{offer}`: [`CellCounts`] of a posterior cell;
//! - `d/{decision id}`: [`DecisionRecord`];
//! - `x/{expires ms, big-endian}{first decision id}`: the decisions of one
//!   campaign made in one write group, whose windows all close by that time
//!   (16-byte ids, concatenated; an empty value stands for the key's id
//!   alone). The expiry sweep walks them in time order and drops an entry
//!   once it has finalized its decisions, so a decision costs one write of
//!   its own plus a share of its group's entry;
//! - `r/{campaign}\0{request id}`: decision id of an idempotent request.
//!
//! Every value starts with a format-version byte. Changes are applied as one
//! atomic batch (see [`WriteSet`]), so a crash never splits a decision from
//! its posterior change.

use std::path::Path;

use serde::{Serialize, de::DeserializeOwned};

use crate::{
    decision::{DecisionId, DecisionRecord},
    policy::{contextual::GaussianPosterior, segment::CellCounts},
};

/// Schema of the key layout above.
pub const SCHEMA_VERSION: u32 = 3;
/// Page cache of [`Store::open`]: 128 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 128 << 20;
/// Format version byte in front of every stored value.
pub const FORMAT_VERSION: u8 = 1;

const META_SCHEMA: &[u8] = b"meta/schema";
const CELL: &[u8] = b"m/";
const DECISION: &[u8] = b"d/";
const EXPIRY: &[u8] = b"x/";
const REQUEST: &[u8] = b"r/";
const MODEL: &[u8] = b"p/";

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an I/O or internal error.
    #[error("{0}")]
    Sled(#[from] sled::Error),
    /// A stored value cannot be read by this version.
    #[error("corrupt or unsupported record at key {key}: {reason}")]
    Corrupt {
        /// The key, escaped.
        key: String,
        /// What is wrong.
        reason: String,
    },
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

fn escape(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    // postcard only fails on writer errors, impossible for a Vec.
    if let Ok(bytes) = postcard::to_stdvec(value) {
        out.extend_from_slice(&bytes);
    }
    out
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: escape(key),
        reason,
    };
    match bytes.split_first() {
        Some((&FORMAT_VERSION, rest)) => {
            postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string()))
        }
        Some((v, _)) => Err(corrupt(format!(
            "format version {v}, this build reads {FORMAT_VERSION}"
        ))),
        None => Err(corrupt("empty value".into())),
    }
}

fn cell_key(k: &CellKey) -> Vec<u8> {
    let mut key =
        Vec::with_capacity(CELL.len() + k.campaign.len() + k.segment.len() + k.offer.len() + 2);
    key.extend_from_slice(CELL);
    key.extend_from_slice(k.campaign.as_bytes());
    key.push(0);
    key.extend_from_slice(k.segment.as_bytes());
    key.push(0);
    key.extend_from_slice(k.offer.as_bytes());
    key
}

fn parse_cell_key(key: &[u8]) -> Option<CellKey> {
    let rest = key.strip_prefix(CELL)?;
    let first = rest.iter().position(|&b| b == 0)?;
    let last = rest.iter().rposition(|&b| b == 0)?;
    if last <= first {
        return None;
    }
    Some(CellKey {
        campaign: String::from_utf8(rest[..first].to_vec()).ok()?,
        segment: String::from_utf8(rest[first + 1..last].to_vec()).ok()?,
        offer: String::from_utf8(rest[last + 1..].to_vec()).ok()?,
    })
}

fn model_key(campaign: &str, offer: &str) -> Vec<u8> {
    [MODEL, campaign.as_bytes(), &[0], offer.as_bytes()].concat()
}

fn decision_key(id: &DecisionId) -> Vec<u8> {
    [DECISION, &id.0].concat()
}

fn expiry_key(expires_ms: i64, id: &DecisionId) -> Vec<u8> {
    [EXPIRY, &expires_ms.to_be_bytes(), &id.0].concat()
}

fn request_key(campaign: &str, request_id: &str) -> Vec<u8> {
    [REQUEST, campaign.as_bytes(), &[0], request_id.as_bytes()].concat()
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
            .open()?;
        let tree = db.open_tree("offer-bandit")?;
        match tree.get(META_SCHEMA)? {
            None => {
                tree.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
                db.flush()?;
            }
            Some(v) if v.as_ref() == SCHEMA_VERSION.to_be_bytes() => {}
            Some(v) => {
                return Err(StoreError::Corrupt {
                    key: escape(META_SCHEMA),
                    reason: format!(
                        "schema {} written by another version; this build reads schema {SCHEMA_VERSION}",
                        escape(&v)
                    ),
                });
            }
        }
        Ok(Store { db, tree })
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
            out.push((campaign, offer, decode(&k, &v)?));
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
        Ok(n)
    }

    /// Decision records made in `[since_ms, until_ms)`, in time order, with
    /// their ids; `visit` returns false to stop early.
    pub fn scan_decisions(
        &self,
        since_ms: i64,
        until_ms: i64,
        mut visit: impl FnMut(DecisionId, DecisionRecord) -> bool,
    ) -> Result<(), StoreError> {
        let from = [DECISION, &since_ms.max(0).to_be_bytes()].concat();
        let to = [DECISION, &until_ms.max(0).to_be_bytes()].concat();
        for item in self.tree.range(from..to) {
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
                break;
            }
        }
        Ok(())
    }

    /// A decision record.
    pub fn decision(&self, id: &DecisionId) -> Result<Option<DecisionRecord>, StoreError> {
        let key = decision_key(id);
        self.tree.get(&key)?.map(|v| decode(&key, &v)).transpose()
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
        self.tree.apply_batch(writes.batch)?;
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

fn decision_id(bytes: &[u8]) -> Option<DecisionId> {
    Some(DecisionId(bytes.try_into().ok()?))
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

/// Changes to apply together, atomically.
#[derive(Default)]
pub struct WriteSet {
    batch: sled::Batch,
    len: usize,
}

impl WriteSet {
    /// Number of writes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets a posterior cell.
    pub fn put_cell(&mut self, key: &CellKey, counts: &CellCounts) {
        self.batch.insert(cell_key(key), encode(counts));
        self.len += 1;
    }

    /// Sets the contextual posterior of one offer.
    pub fn put_model(&mut self, campaign: &str, offer: &str, model: &GaussianPosterior) {
        self.batch.insert(model_key(campaign, offer), encode(model));
        self.len += 1;
    }

    /// Sets a decision record.
    pub fn put_decision(&mut self, id: &DecisionId, rec: &DecisionRecord) {
        self.batch.insert(decision_key(id), encode(rec));
        self.len += 1;
    }

    /// Adds decisions whose windows all close by `expires_ms` to the expiry
    /// index, as one entry keyed by the first of them. Nothing for no ids.
    pub fn put_expiries(&mut self, expires_ms: i64, ids: &[DecisionId]) {
        let Some(first) = ids.first() else { return };
        let value = if ids.len() == 1 {
            Vec::new()
        } else {
            ids.iter().flat_map(|id| id.0).collect()
        };
        self.batch.insert(expiry_key(expires_ms, first), value);
        self.len += 1;
    }

    /// Removes an expiry entry.
    pub fn remove_expiries(&mut self, entry: &ExpiryEntry) {
        self.batch
            .remove(expiry_key(entry.expires_ms, &entry.first));
        self.len += 1;
    }

    /// Points an idempotency key at a decision.
    pub fn put_request(&mut self, campaign: &str, request_id: &str, id: &DecisionId) {
        self.batch
            .insert(request_key(campaign, request_id), id.0.to_vec());
        self.len += 1;
    }

    /// Forgets an idempotency key.
    pub fn remove_request(&mut self, campaign: &str, request_id: &str) {
        self.batch.remove(request_key(campaign, request_id));
        self.len += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::DecisionState;

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
            candidates: vec!["a".into(), "b".into()],
        }
    }

    #[test]
    fn round_trips_and_reopens() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Sled(e.into()))?;
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
        let store = Store::open(dir.path())?;
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
}
