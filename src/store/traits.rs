//! The storage seam: what the engine reads and how it commits, as a few
//! small traits. [`Store`] (sled) and [`MemoryStore`](super::MemoryStore)
//! implement them; a PostgreSQL backend plugs in here (one transaction per
//! [`WriteSet`]). No backend's types appear in them.

use super::*;

/// The decision log: records by locator, idempotency keys, expiry entries,
/// the customer index, and scans in time order.
pub trait DecisionLog {
    /// A decision record.
    fn decision(&self, id: &DecisionId) -> Result<Option<DecisionRecord>, StoreError>;

    /// [`DecisionLog::decision`], and where it lies if the backend says
    /// (`None`: it does not). A change of it committed in the same group
    /// passes that on ([`WriteSet::set_placed_decision`]), so that the
    /// backend need not look for the record again.
    fn placed_decision(
        &self,
        id: &DecisionId,
    ) -> Result<Option<(DecisionRecord, Option<Placement>)>, StoreError> {
        Ok(self.decision(id)?.map(|rec| (rec, None)))
    }

    /// The decision an idempotency key of `campaign` points to.
    fn request(&self, campaign: &str, request_id: &str) -> Result<Option<DecisionId>, StoreError>;

    /// Expiry entries whose windows closed at or before `now_ms`, oldest
    /// first (by time, then first decision), until they hold at least
    /// `limit` decisions; an entry is never split.
    fn due_expiries(&self, now_ms: i64, limit: usize) -> Result<Vec<ExpiryEntry>, StoreError>;

    /// The decisions indexed under a customer, in locator order.
    fn customer_decisions(&self, customer: &CustomerHash) -> Result<Vec<DecisionId>, StoreError>;

    /// Decision records made in `[since_ms, until_ms)`, with their ids, in
    /// time order within each stream (a backend writing blocks may
    /// interleave streams that overlapped in time block by block);
    /// `visit` returns false to stop early.
    fn scan_decisions(
        &self,
        since_ms: i64,
        until_ms: i64,
        visit: &mut dyn FnMut(DecisionId, DecisionRecord) -> bool,
    ) -> Result<(), StoreError>;

    /// A customer's totals over closed windows, as (campaign, arm, totals),
    /// in (campaign, arm name) order.
    fn customer_totals(
        &self,
        customer: &CustomerHash,
    ) -> Result<Vec<(String, crate::uplift::Arm, crate::uplift::CustomerTotals)>, StoreError>;

    /// Reads every decision record, failing on an unreadable one; returns
    /// how many there are.
    fn check_decisions(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        self.scan_decisions(0, i64::MAX, &mut |_, _| {
            n += 1;
            true
        })?;
        Ok(n)
    }

    /// Resolved decisions whose reward window closed before `before_ms`,
    /// among those made before `created_before`, oldest first: at most
    /// `limit`, looking at no more than `10 * limit` records (still-pending
    /// old decisions are passed over).
    fn prunable(
        &self,
        before_ms: i64,
        created_before: i64,
        limit: usize,
    ) -> Result<Vec<(DecisionId, DecisionRecord)>, StoreError> {
        let mut out = Vec::new();
        let mut looked = 0usize;
        self.scan_decisions(0, created_before.min(before_ms), &mut |id, rec| {
            looked += 1;
            if rec.state != DecisionState::Pending && rec.expires_ms < before_ms {
                out.push((id, rec));
            }
            out.len() < limit && looked < limit.saturating_mul(10)
        })?;
        Ok(out)
    }
}

/// Model checkpoints: what was learned, as of the last checkpoint. Each
/// list is in the order of its key (campaign, then the rest), the same in
/// every backend, so that startup builds the same state from each.
pub trait Checkpoints {
    /// Every posterior cell.
    fn load_cells(&self) -> Result<Vec<(CellKey, CellCounts)>, StoreError>;
    /// Every contextual posterior, as (campaign, offer, posterior).
    fn load_models(&self) -> Result<Vec<(String, String, GaussianPosterior)>, StoreError>;
    /// Every contextual campaign's learned prior, as (campaign, prior).
    fn load_priors(&self) -> Result<Vec<(String, SharedPrior)>, StoreError>;
    /// Every campaign's arm counts, as (campaign, arm name, counts).
    fn load_arms(&self) -> Result<Vec<(String, String, crate::uplift::ArmCounts)>, StoreError>;
    /// Every campaign's per-customer sums over closed windows, as
    /// (campaign, arm name, sums).
    fn load_clusters(
        &self,
    ) -> Result<Vec<(String, String, crate::uplift::ClusterSums)>, StoreError>;
    /// Every offer's daily counts, as (campaign, offer, counts).
    fn load_daily(&self) -> Result<Vec<(String, String, crate::budget::DailyCounts)>, StoreError>;
    /// Every campaign's traffic profile by local hour, as (campaign, profile).
    fn load_traffic(&self) -> Result<Vec<(String, crate::budget::TrafficProfile)>, StoreError>;
    /// The learning sequence number the stored contextual posteriors
    /// include (0 before the first checkpoint).
    fn model_seq(&self) -> Result<u64, StoreError>;
}

/// Campaign configs and what operators set.
pub trait CampaignConfigs {
    /// Every campaign's stored config revision.
    fn load_configs(&self) -> Result<Vec<(String, crate::revisions::StoredCampaign)>, StoreError>;
    /// Every campaign's operator-set status.
    fn load_statuses(&self) -> Result<Vec<(String, crate::status::CampaignStatus)>, StoreError>;
}

/// A whole backend: the reads above, the atomic commit of a write set, and
/// what an operator needs of it.
pub trait Storage:
    DecisionLog + Checkpoints + CampaignConfigs + Send + Sync + std::fmt::Debug + 'static
{
    /// Applies a write set atomically: every change or none, and no reader
    /// sees part of it. Not yet durable (see [`Storage::flush`]).
    fn commit(&self, writes: WriteSet) -> Result<(), StoreError>;

    /// Makes everything committed so far durable.
    fn flush(&self) -> Result<(), StoreError>;

    /// The key customer ids are hashed under: `configured` if given (and it
    /// must be the key the store was first used with), else the key this
    /// store generated on first use.
    fn customer_key(&self, configured: Option<CustomerKey>) -> Result<CustomerKey, StoreError>;

    /// Writes a backup file of everything stored (see
    /// [`restore_snapshot`]); returns how many entries. Consistent only if
    /// nothing commits meanwhile (the engine's writer thread calls it).
    fn write_snapshot(&self, out: &mut dyn std::io::Write) -> Result<u64, StoreError>;
}

impl DecisionLog for Store {
    fn decision(&self, id: &DecisionId) -> Result<Option<DecisionRecord>, StoreError> {
        Store::decision(self, id)
    }
    fn placed_decision(
        &self,
        id: &DecisionId,
    ) -> Result<Option<(DecisionRecord, Option<Placement>)>, StoreError> {
        Ok(Store::placed_decision(self, id)?.map(|(rec, p)| (rec, Some(p))))
    }
    fn request(&self, campaign: &str, request_id: &str) -> Result<Option<DecisionId>, StoreError> {
        Store::request(self, campaign, request_id)
    }
    fn due_expiries(&self, now_ms: i64, limit: usize) -> Result<Vec<ExpiryEntry>, StoreError> {
        Store::due_expiries(self, now_ms, limit)
    }
    fn customer_decisions(&self, customer: &CustomerHash) -> Result<Vec<DecisionId>, StoreError> {
        Store::customer_decisions(self, customer)
    }
    fn scan_decisions(
        &self,
        since_ms: i64,
        until_ms: i64,
        visit: &mut dyn FnMut(DecisionId, DecisionRecord) -> bool,
    ) -> Result<(), StoreError> {
        Store::scan_decisions(self, since_ms, until_ms, visit)
    }
    fn check_decisions(&self) -> Result<usize, StoreError> {
        Store::check_decisions(self)
    }
    fn customer_totals(
        &self,
        customer: &CustomerHash,
    ) -> Result<Vec<(String, crate::uplift::Arm, crate::uplift::CustomerTotals)>, StoreError> {
        Store::customer_totals(self, customer)
    }
}

impl Checkpoints for Store {
    fn load_cells(&self) -> Result<Vec<(CellKey, CellCounts)>, StoreError> {
        Store::load_cells(self)
    }
    fn load_models(&self) -> Result<Vec<(String, String, GaussianPosterior)>, StoreError> {
        Store::load_models(self)
    }
    fn load_priors(&self) -> Result<Vec<(String, SharedPrior)>, StoreError> {
        Store::load_priors(self)
    }
    fn load_arms(&self) -> Result<Vec<(String, String, crate::uplift::ArmCounts)>, StoreError> {
        Store::load_arms(self)
    }
    fn load_daily(&self) -> Result<Vec<(String, String, crate::budget::DailyCounts)>, StoreError> {
        Store::load_daily(self)
    }
    fn load_clusters(
        &self,
    ) -> Result<Vec<(String, String, crate::uplift::ClusterSums)>, StoreError> {
        Store::load_clusters(self)
    }
    fn load_traffic(&self) -> Result<Vec<(String, crate::budget::TrafficProfile)>, StoreError> {
        Store::load_traffic(self)
    }
    fn model_seq(&self) -> Result<u64, StoreError> {
        Store::model_seq(self)
    }
}

impl CampaignConfigs for Store {
    fn load_configs(&self) -> Result<Vec<(String, crate::revisions::StoredCampaign)>, StoreError> {
        Store::load_configs(self)
    }
    fn load_statuses(&self) -> Result<Vec<(String, crate::status::CampaignStatus)>, StoreError> {
        Store::load_statuses(self)
    }
}

impl Storage for Store {
    fn commit(&self, writes: WriteSet) -> Result<(), StoreError> {
        Store::commit(self, writes)
    }
    fn flush(&self) -> Result<(), StoreError> {
        Store::flush(self)
    }
    fn customer_key(&self, configured: Option<CustomerKey>) -> Result<CustomerKey, StoreError> {
        Store::customer_key(self, configured)
    }
    fn write_snapshot(&self, out: &mut dyn std::io::Write) -> Result<u64, StoreError> {
        Store::write_snapshot(self, out)
    }
}
