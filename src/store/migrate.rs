//! Migrations of stores written by older schemas.

use super::*;

/// A decision record as schema 3 stored it.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct DecisionRecordV3 {
    pub(super) campaign: String,
    pub(super) offer: String,
    pub(super) segment: String,
    pub(super) propensity: f64,
    pub(super) created_ms: i64,
    pub(super) expires_ms: i64,
    pub(super) request_id: Option<String>,
    pub(super) model_version: u64,
    pub(super) state: DecisionState,
    pub(super) features: Vec<(u32, f64)>,
    pub(super) context: Vec<(String, crate::context::FeatureValue)>,
    pub(super) candidates: Vec<String>,
}

/// Schema 3 stored decisions without their customer: rewrites each record
/// with none, builds the per-customer sums of closed windows from them,
/// then marks the store as the current schema, in one batch.
pub(super) fn migrate_from_3(db: &sled::Db, tree: &sled::Tree) -> Result<(), StoreError> {
    let mut batch = sled::Batch::default();
    let mut n = 0usize;
    let mut records = Vec::new();
    // Schema 3 had no control groups: every decision was the bandit's, and
    // the arm counts start from them.
    let mut arms: std::collections::BTreeMap<String, crate::uplift::ArmCounts> =
        std::collections::BTreeMap::new();
    for item in tree.scan_prefix(DECISION) {
        let (k, v) = item?;
        let old: DecisionRecordV3 = decode(&k, &v)?;
        let a = arms.entry(old.campaign.clone()).or_default();
        a.decisions += 1;
        match old.state {
            DecisionState::Pending => {}
            DecisionState::Redeemed { value, .. } => {
                a.redemptions += 1;
                a.value_sum += value;
                a.value_sq_sum += value * value;
            }
            DecisionState::Expired => a.expired += 1,
        }
        let rec = DecisionRecord {
            campaign: old.campaign,
            offer: old.offer,
            segment: old.segment,
            propensity: old.propensity,
            created_ms: old.created_ms,
            expires_ms: old.expires_ms,
            request_id: old.request_id,
            model_version: old.model_version,
            state: old.state,
            features: old.features,
            context: old.context,
            candidates: old.candidates.into(),
            customer: None,
            learned_seq: 0,
            redeemed_seq: 0,
            arm: crate::uplift::Arm::Bandit,
        };
        batch.insert(k.clone(), encode(&rec));
        if let Some(id) = decision_id(&k[DECISION.len()..]) {
            records.push((id, rec));
        }
        n += 1;
    }
    rebuild_clusters(tree, &mut batch, records.into_iter().map(Ok))?;
    for (campaign, counts) in &arms {
        let key = [
            ARM,
            campaign.as_bytes(),
            &[0],
            crate::uplift::Arm::Bandit.as_str().as_bytes(),
        ]
        .concat();
        batch.insert(key, encode(counts));
    }
    batch.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes());
    tree.apply_batch(batch)?;
    db.flush()?;
    tracing::info!(
        decisions = n,
        "migrated the store from schema 3 to {SCHEMA_VERSION}"
    );
    Ok(())
}

/// Schemas 4 to 8 kept no per-customer sums of closed windows (`g/`, `t/`):
/// builds them from the decision records and marks the store current, in
/// one batch. Returns how many decision records were read.
pub(super) fn migrate_clusters(
    db: &sled::Db,
    tree: &sled::Tree,
    from: u32,
) -> Result<usize, StoreError> {
    let mut batch = sled::Batch::default();
    let records = tree.scan_prefix(DECISION).map(|item| {
        let (k, v) = item?;
        let id = decision_id(&k[DECISION.len()..]).ok_or_else(|| StoreError::Corrupt {
            key: escape(&k),
            reason: "malformed decision key".into(),
        })?;
        Ok((id, decode::<DecisionRecord>(&k, &v)?))
    });
    let n = rebuild_clusters(tree, &mut batch, records)?;
    batch.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes());
    tree.apply_batch(batch)?;
    db.flush()?;
    tracing::info!(
        from,
        decisions = n,
        "rebuilt the report's per-customer sums and marked the store schema {SCHEMA_VERSION}"
    );
    Ok(n)
}

/// Adds to `batch` the per-customer sums of closed windows (`g/`) and each
/// customer's totals (`t/`) that the live engine would hold after `records`,
/// replacing any stored: a decision counts once its expiry entry is gone
/// (the sweep drops an entry when it counts its decisions), redeemed or
/// not; a decision without a customer is a cluster of its own. Decisions
/// pruned by retention are not in the log and are not counted. Returns how
/// many records it read.
pub(super) fn rebuild_clusters(
    tree: &sled::Tree,
    batch: &mut sled::Batch,
    records: impl Iterator<Item = Result<(DecisionId, DecisionRecord), StoreError>>,
) -> Result<usize, StoreError> {
    use crate::uplift::{ClusterSums, CustomerTotals};
    use std::collections::{BTreeMap, HashSet};
    let mut open = HashSet::new();
    for item in tree.scan_prefix(EXPIRY) {
        let (k, v) = item?;
        open.extend(decision_id(&k[k.len().saturating_sub(16)..]));
        open.extend(v.chunks_exact(16).filter_map(decision_id));
    }
    for prefix in [CLUSTERS, TOTALS] {
        for item in tree.scan_prefix(prefix) {
            batch.remove(item?.0);
        }
    }
    let mut totals: BTreeMap<Vec<u8>, (String, crate::uplift::Arm, CustomerTotals)> =
        BTreeMap::new();
    let mut sums: BTreeMap<(String, usize), (crate::uplift::Arm, ClusterSums)> = BTreeMap::new();
    let mut n = 0;
    for item in records {
        let (id, rec) = item?;
        n += 1;
        if open.contains(&id) {
            continue; // its window has not been swept yet
        }
        let value = match rec.state {
            DecisionState::Redeemed { value, .. } => Some(value),
            _ => None,
        };
        match &rec.customer {
            Some(c) => {
                let entry = totals
                    .entry(totals_key(c, &rec.campaign, rec.arm))
                    .or_insert_with(|| (rec.campaign.clone(), rec.arm, CustomerTotals::default()));
                entry.2 = entry.2.with_decision(value);
            }
            None => {
                let (_, s) = sums
                    .entry((rec.campaign.clone(), rec.arm.index()))
                    .or_insert((rec.arm, ClusterSums::default()));
                s.change_customer(
                    CustomerTotals::default(),
                    CustomerTotals::default().with_decision(value),
                );
            }
        }
    }
    for (key, (campaign, arm, t)) in totals {
        let (_, s) = sums
            .entry((campaign, arm.index()))
            .or_insert((arm, ClusterSums::default()));
        s.change_customer(CustomerTotals::default(), t);
        batch.insert(key, encode(&t));
    }
    for ((campaign, _), (arm, s)) in sums {
        batch.insert(clusters_key(&campaign, arm), encode(&s));
    }
    Ok(n)
}

/// What opening a store does to its schema: the one place the schema
/// rules live, read by [`Store::open`] and by [`plan_migration`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migration {
    /// No schema mark: a new store, marked with the current schema.
    Create,
    /// Already at the current schema: nothing to do.
    Current,
    /// Schema 3: every decision record is rewritten (no customer, the
    /// bandit arm), the bandit arm's counts and the per-customer sums of
    /// closed windows are written from them, and the store is marked
    /// current, in one batch.
    RewriteFrom3,
    /// Schemas 4 to 8: the per-customer sums of closed windows are built
    /// from the decision records and the store marked current, in one
    /// batch; nothing else changes (schema-7 posteriors are read without a
    /// forgetting clock, and so on: see [`SCHEMA_VERSION`]).
    RebuildFrom(u32),
    /// Another version's schema (newer, or not one this build knows):
    /// refused, with the reason.
    Unreadable(String),
}

/// The migration for a store whose schema mark is `schema`.
pub(super) fn migration_for(schema: Option<&[u8]>) -> Migration {
    let Some(v) = schema else {
        return Migration::Create;
    };
    let known = <[u8; 4]>::try_from(v).ok().map(u32::from_be_bytes);
    match known {
        Some(SCHEMA_VERSION) => Migration::Current,
        Some(3) => Migration::RewriteFrom3,
        Some(s @ 4..=8) => Migration::RebuildFrom(s),
        _ => Migration::Unreadable(format!(
            "schema {} written by another version; this build reads schema {SCHEMA_VERSION}",
            escape(v)
        )),
    }
}

/// What opening the store in a directory would do, found without writing
/// to it: see [`plan_migration`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationPlan {
    /// The store's schema mark as found (None: no store, or no mark).
    pub found: Option<String>,
    /// What opening it does.
    pub migration: Migration,
    /// Decision records the migration would read (0 for
    /// [`Migration::Create`] and [`Migration::Current`]).
    pub decisions: usize,
    /// Campaigns whose arm counts or sums the migration would write.
    pub campaigns: usize,
}

/// What [`Store::open`] would do to the store in `dir`, without writing to
/// it: sled writes when it opens a directory, so this opens a copy (made
/// beside `dir`, on the same disk, and removed afterwards). Stop the server
/// first: its lock is not checked, and a copy of a store being written is
/// only as consistent as a crash.
pub fn plan_migration(dir: &Path) -> Result<MigrationPlan, StoreError> {
    let io = |e: std::io::Error| StoreError::backend(e);
    let empty = MigrationPlan {
        found: None,
        migration: Migration::Create,
        decisions: 0,
        campaigns: 0,
    };
    if !dir.join("conf").exists() && !dir.join("db").exists() {
        return Ok(empty);
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let copy = tempfile::Builder::new()
        .prefix(".offer-bandit-migrate-plan-")
        .tempdir_in(parent)
        .map_err(io)?;
    copy_dir(dir, copy.path()).map_err(io)?;
    let db = sled::Config::new().path(copy.path()).open()?;
    let tree = db.open_tree("offer-bandit")?;
    let schema = tree.get(META_SCHEMA)?;
    let migration = migration_for(schema.as_deref());
    let (mut decisions, mut campaigns) = (0, std::collections::BTreeSet::new());
    match migration {
        Migration::RewriteFrom3 => {
            for item in tree.scan_prefix(DECISION) {
                let (k, v) = item?;
                let old: DecisionRecordV3 = decode(&k, &v)?;
                campaigns.insert(old.campaign);
                decisions += 1;
            }
        }
        Migration::RebuildFrom(_) => {
            for item in tree.scan_prefix(DECISION) {
                let (k, v) = item?;
                let rec: DecisionRecord = decode(&k, &v)?;
                campaigns.insert(rec.campaign);
                decisions += 1;
            }
        }
        _ => {}
    }
    Ok(MigrationPlan {
        found: schema.map(|v| match <[u8; 4]>::try_from(v.as_ref()) {
            Ok(b) => u32::from_be_bytes(b).to_string(),
            Err(_) => escape(&v),
        }),
        migration,
        decisions,
        campaigns: campaigns.len(),
    })
}

/// Copies the files under `from` into `to` (which exists).
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
