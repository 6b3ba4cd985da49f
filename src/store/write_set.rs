//! A write set: the changes of one write group, applied atomically.

use super::*;

/// Changes to apply together, atomically.
#[derive(Default)]
pub struct WriteSet {
    pub(super) batch: sled::Batch,
    pub(super) len: usize,
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

    /// Sets the learned prior of a contextual campaign.
    pub fn put_prior(&mut self, campaign: &str, prior: &SharedPrior) {
        self.batch
            .insert([PRIOR, campaign.as_bytes()].concat(), encode(prior));
        self.len += 1;
    }

    /// Records that the stored posteriors include learning events up to `seq`.
    pub fn put_model_seq(&mut self, seq: u64) {
        self.batch.insert(META_MODEL_SEQ, &seq.to_be_bytes());
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

    /// Stores a campaign's config revision.
    pub fn put_config(&mut self, campaign: &str, stored: &crate::revisions::StoredCampaign) {
        let key = [CONFIG, campaign.as_bytes()].concat();
        self.batch.insert(key, encode(stored));
        self.len += 1;
    }

    /// Sets a campaign's operator-set status.
    pub fn put_status(&mut self, campaign: &str, status: &crate::status::CampaignStatus) {
        let key = [STATUS, campaign.as_bytes()].concat();
        self.batch.insert(key, encode(status));
        self.len += 1;
    }

    /// Sets today's counts of one offer.
    pub fn put_daily(&mut self, campaign: &str, offer: &str, counts: &crate::budget::DailyCounts) {
        let key = [DAILY, campaign.as_bytes(), &[0], offer.as_bytes()].concat();
        self.batch.insert(key, encode(counts));
        self.len += 1;
    }

    /// Sets the counts of one arm of a campaign.
    pub fn put_arm(
        &mut self,
        campaign: &str,
        arm: crate::uplift::Arm,
        counts: &crate::uplift::ArmCounts,
    ) {
        let key = [ARM, campaign.as_bytes(), &[0], arm.as_str().as_bytes()].concat();
        self.batch.insert(key, encode(counts));
        self.len += 1;
    }

    /// Removes a decision record.
    pub fn remove_decision(&mut self, id: &DecisionId) {
        self.batch.remove(decision_key(id));
        self.len += 1;
    }

    /// Indexes a decision under its customer.
    pub fn put_customer(&mut self, customer: &CustomerHash, id: &DecisionId) {
        self.batch.insert(customer_key(customer, id), Vec::new());
        self.len += 1;
    }

    /// Drops a decision from its customer's index.
    pub fn remove_customer(&mut self, customer: &CustomerHash, id: &DecisionId) {
        self.batch.remove(customer_key(customer, id));
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
