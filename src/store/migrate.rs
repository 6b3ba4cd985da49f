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
/// with none, then marks the store as the current schema (4 and 5 changed
/// nothing else it has), in one batch.
pub(super) fn migrate_from_3(db: &sled::Db, tree: &sled::Tree) -> Result<(), StoreError> {
    let mut batch = sled::Batch::default();
    let mut n = 0usize;
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
            candidates: old.candidates,
            customer: None,
            learned_seq: 0,
            redeemed_seq: 0,
            arm: crate::uplift::Arm::Bandit,
        };
        batch.insert(k, encode(&rec));
        n += 1;
    }
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

/// What opening a store does to its schema: the one place the schema
/// rules live, read by [`Store::open`] and by [`plan_migration`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migration {
    /// No schema mark: a new store, marked with the current schema.
    Create,
    /// Already at the current schema: nothing to do.
    Current,
    /// Schema 3: every decision record is rewritten (no customer, the
    /// bandit arm), the bandit arm's counts are written from them, and the
    /// store is marked current, in one batch.
    RewriteFrom3,
    /// Schemas 4 to 7: marked current, no data changes (schema-7
    /// posteriors are read without a forgetting clock).
    MarkFrom(u32),
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
        Some(s @ 4..=8) => Migration::MarkFrom(s),
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
    /// Decision records a rewrite would rewrite (0 unless [`Migration::RewriteFrom3`]).
    pub decisions: usize,
    /// Campaigns whose arm counts a rewrite would write.
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
    if migration == Migration::RewriteFrom3 {
        for item in tree.scan_prefix(DECISION) {
            let (k, v) = item?;
            let old: DecisionRecordV3 = decode(&k, &v)?;
            campaigns.insert(old.campaign);
            decisions += 1;
        }
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
