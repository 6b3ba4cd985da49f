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
