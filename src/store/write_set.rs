//! A write set: the changes of one write group, typed, applied atomically
//! by whichever [`Storage`](super::Storage) commits it.

use super::*;

/// One change to durable state. Each backend maps it to its own layout
/// (sled: a key and an encoded value; see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Sets a posterior cell.
    Cell(CellKey, CellCounts),
    /// Sets the contextual posterior of one offer.
    Model {
        /// Campaign id.
        campaign: String,
        /// Offer id.
        offer: String,
        /// The posterior.
        posterior: GaussianPosterior,
    },
    /// Sets the learned prior of a contextual campaign.
    Prior {
        /// Campaign id.
        campaign: String,
        /// The prior.
        prior: SharedPrior,
    },
    /// The stored posteriors include learning events up to this one.
    ModelSeq(u64),
    /// Adds new decisions, sorted by locator, as one block (at most
    /// [`BLOCK_MAX`](super::BLOCK_MAX)); boxed, as they were staged.
    Block(Vec<(DecisionId, Box<DecisionRecord>)>),
    /// Sets a decision record (one stored before: its new state), and
    /// where it lies when the read that found it said so
    /// ([`DecisionLog::placed_decision`](super::DecisionLog::placed_decision)).
    Decision(DecisionId, Box<DecisionRecord>, Option<Placement>),
    /// Removes a decision record.
    RemoveDecision(DecisionId),
    /// Adds one expiry entry: decisions whose windows all close by
    /// `expires_ms`, keyed by the first of them.
    Expiries {
        /// When the last window closes (Unix ms).
        expires_ms: i64,
        /// The decisions (at least one).
        ids: Vec<DecisionId>,
    },
    /// Removes the expiry entry keyed by (`expires_ms`, `first`).
    RemoveExpiries {
        /// The entry's time.
        expires_ms: i64,
        /// The entry's first decision.
        first: DecisionId,
    },
    /// Stores a campaign's config revision.
    Config(String, crate::revisions::StoredCampaign),
    /// Sets a campaign's operator-set status.
    Status(String, crate::status::CampaignStatus),
    /// Sets today's counts of one offer: (campaign, offer, counts).
    Daily(String, String, crate::budget::DailyCounts),
    /// Sets a campaign's traffic profile by local hour.
    Traffic(String, Box<crate::budget::TrafficProfile>),
    /// Sets the counts of one arm of a campaign.
    Arm(String, crate::uplift::Arm, crate::uplift::ArmCounts),
    /// Sets the per-customer sums of one arm of a campaign, over decisions
    /// whose window has closed.
    Clusters(String, crate::uplift::Arm, crate::uplift::ClusterSums),
    /// Sets (`Some`) or removes (`None`) one customer's totals in one arm
    /// of a campaign.
    CustomerTotals {
        /// The customer.
        customer: CustomerHash,
        /// Campaign id.
        campaign: String,
        /// The arm.
        arm: crate::uplift::Arm,
        /// The totals; `None` removes them.
        totals: Option<crate::uplift::CustomerTotals>,
    },
    /// Indexes a decision under its customer.
    Customer(CustomerHash, DecisionId),
    /// Drops a decision from its customer's index.
    RemoveCustomer(CustomerHash, DecisionId),
    /// Points an idempotency key (campaign, request id) at a decision.
    Request(String, String, DecisionId),
    /// Forgets an idempotency key (campaign, request id).
    RemoveRequest(String, String),
}

/// Changes to apply together, atomically: all of them or none. A later
/// write of the same record replaces an earlier one. Decision records are
/// kept by id, so the writer reads what its group staged from here.
#[derive(Debug, Default)]
pub struct WriteSet {
    writes: Vec<Write>,
    /// Decision records set (`Some`) or removed (`None`) in this set;
    /// boxed, so that the map's growth and the blocks move pointers, not
    /// records of hundreds of bytes.
    decisions: crate::fast_map::FastMap<DecisionId, Option<Box<DecisionRecord>>>,
    /// Those of `decisions` made in this set's group (written as blocks).
    new: crate::fast_map::FastSet<DecisionId>,
    /// Where changed decisions lie, as the reads that found them said.
    placed: crate::fast_map::FastMap<DecisionId, Placement>,
    len: usize,
}

/// Where a stored decision record lies, as the read that found it says: a
/// change committed in the same group lands there without the backend
/// looking for it again (blocks hold every decision made since schema 9;
/// finding one in its block means decompressing the block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Under its own key (as schema 8 and before wrote decisions).
    Own,
    /// In a block: its changes go to its overlay.
    Block,
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

    /// A decision as this set leaves it: `None` when the set does not touch
    /// it, `Some(None)` when it removes it.
    pub fn staged_decision(&self, id: &DecisionId) -> Option<Option<&DecisionRecord>> {
        self.decisions.get(id).map(Option::as_deref)
    }

    /// Every decision this set touches: `Some` set, `None` removed.
    pub fn staged_decisions(&self) -> impl Iterator<Item = (&DecisionId, Option<&DecisionRecord>)> {
        self.decisions.iter().map(|(id, rec)| (id, rec.as_deref()))
    }

    /// The changes, decision records last: the new ones in blocks (in
    /// locator order), then changed and removed ones.
    pub fn into_writes(mut self) -> impl Iterator<Item = Write> {
        // The new ids sorted, then their records taken in that order: the
        // records (hundreds of bytes each) are not moved about by a sort.
        let mut ids: Vec<DecisionId> = self.new.iter().copied().collect();
        ids.sort_unstable();
        let mut made = Vec::with_capacity(ids.len());
        for id in ids {
            // `None`: made and erased in one group, never written.
            if let Some(Some(rec)) = self.decisions.remove(&id) {
                made.push((id, rec));
            }
        }
        let placed = self.placed;
        let changed: Vec<Write> = self
            .decisions
            .into_iter()
            .map(|(id, rec)| match rec {
                Some(rec) => Write::Decision(id, rec, placed.get(&id).copied()),
                None => Write::RemoveDecision(id),
            })
            .collect();
        // A block holds one stream's decisions, at most BLOCK_MAX of them,
        // made within MAX_GROUP_SPAN_MS of its first: what lookups and
        // scans rely on.
        let mut blocks = Vec::new();
        let mut block: Vec<(DecisionId, Box<DecisionRecord>)> = Vec::new();
        for (id, rec) in made {
            if let Some((first, _)) = block.first()
                && (block.len() >= super::BLOCK_MAX
                    || super::blocks::stream_of(first) != super::blocks::stream_of(&id)
                    || id.created_ms() - first.created_ms() > super::MAX_GROUP_SPAN_MS)
            {
                blocks.push(Write::Block(std::mem::take(&mut block)));
            }
            block.push((id, rec));
        }
        if !block.is_empty() {
            blocks.push(Write::Block(block));
        }
        self.writes.into_iter().chain(blocks).chain(changed)
    }

    fn push(&mut self, write: Write) {
        self.writes.push(write);
        self.len += 1;
    }

    /// Sets a posterior cell.
    pub fn put_cell(&mut self, key: &CellKey, counts: &CellCounts) {
        self.push(Write::Cell(key.clone(), *counts));
    }

    /// Sets the contextual posterior of one offer.
    pub fn put_model(&mut self, campaign: &str, offer: &str, model: &GaussianPosterior) {
        self.push(Write::Model {
            campaign: campaign.to_owned(),
            offer: offer.to_owned(),
            posterior: model.clone(),
        });
    }

    /// Sets the learned prior of a contextual campaign.
    pub fn put_prior(&mut self, campaign: &str, prior: &SharedPrior) {
        self.push(Write::Prior {
            campaign: campaign.to_owned(),
            prior: prior.clone(),
        });
    }

    /// Records that the stored posteriors include learning events up to `seq`.
    pub fn put_model_seq(&mut self, seq: u64) {
        self.push(Write::ModelSeq(seq));
    }

    /// Sets a decision record.
    pub fn put_decision(&mut self, id: &DecisionId, rec: &DecisionRecord) {
        self.set_decision(*id, rec.clone());
    }

    /// Adds a decision made in this group (later changes in the same set
    /// still land in its block).
    pub fn add_decision(&mut self, id: DecisionId, rec: impl Into<Box<DecisionRecord>>) {
        self.new.insert(id);
        self.set_decision(id, rec);
    }

    /// Sets a decision record, taking it.
    pub fn set_decision(&mut self, id: DecisionId, rec: impl Into<Box<DecisionRecord>>) {
        self.decisions.insert(id, Some(rec.into()));
        self.len += 1;
    }

    /// [`WriteSet::set_decision`] for a record read in this group, with
    /// where the read found it (`None`: the backend did not say). The
    /// backend writes there without checking: `placed` must come from a
    /// read made since the last commit, as the writer's group reads.
    pub fn set_placed_decision(
        &mut self,
        id: DecisionId,
        rec: impl Into<Box<DecisionRecord>>,
        placed: Option<Placement>,
    ) {
        match placed {
            Some(p) => self.placed.insert(id, p),
            None => self.placed.remove(&id),
        };
        self.set_decision(id, rec);
    }

    /// Adds decisions whose windows all close by `expires_ms` to the expiry
    /// index, as one entry keyed by the first of them. Nothing for no ids.
    pub fn put_expiries(&mut self, expires_ms: i64, ids: &[DecisionId]) {
        if ids.is_empty() {
            return;
        }
        self.push(Write::Expiries {
            expires_ms,
            ids: ids.to_vec(),
        });
    }

    /// Removes an expiry entry.
    pub fn remove_expiries(&mut self, entry: &ExpiryEntry) {
        self.push(Write::RemoveExpiries {
            expires_ms: entry.expires_ms,
            first: entry.first,
        });
    }

    /// Stores a campaign's config revision.
    pub fn put_config(&mut self, campaign: &str, stored: &crate::revisions::StoredCampaign) {
        self.push(Write::Config(campaign.to_owned(), stored.clone()));
    }

    /// Sets a campaign's operator-set status.
    pub fn put_status(&mut self, campaign: &str, status: &crate::status::CampaignStatus) {
        self.push(Write::Status(campaign.to_owned(), status.clone()));
    }

    /// Sets today's counts of one offer.
    pub fn put_daily(&mut self, campaign: &str, offer: &str, counts: &crate::budget::DailyCounts) {
        self.push(Write::Daily(campaign.to_owned(), offer.to_owned(), *counts));
    }

    /// Sets a campaign's traffic profile by local hour.
    pub fn put_traffic(&mut self, campaign: &str, profile: &crate::budget::TrafficProfile) {
        self.push(Write::Traffic(
            campaign.to_owned(),
            Box::new(profile.clone()),
        ));
    }

    /// Sets the counts of one arm of a campaign.
    pub fn put_arm(
        &mut self,
        campaign: &str,
        arm: crate::uplift::Arm,
        counts: &crate::uplift::ArmCounts,
    ) {
        self.push(Write::Arm(campaign.to_owned(), arm, *counts));
    }

    /// Sets the per-customer sums of one arm of a campaign.
    pub fn put_clusters(
        &mut self,
        campaign: &str,
        arm: crate::uplift::Arm,
        sums: &crate::uplift::ClusterSums,
    ) {
        self.push(Write::Clusters(campaign.to_owned(), arm, *sums));
    }

    /// Sets (`Some`) or removes (`None`) a customer's totals in one arm of
    /// a campaign.
    pub fn put_customer_totals(
        &mut self,
        customer: &CustomerHash,
        campaign: &str,
        arm: crate::uplift::Arm,
        totals: Option<crate::uplift::CustomerTotals>,
    ) {
        self.push(Write::CustomerTotals {
            customer: *customer,
            campaign: campaign.to_owned(),
            arm,
            totals,
        });
    }

    /// Removes a decision record.
    pub fn remove_decision(&mut self, id: &DecisionId) {
        self.decisions.insert(*id, None);
        self.len += 1;
    }

    /// Indexes a decision under its customer.
    pub fn put_customer(&mut self, customer: &CustomerHash, id: &DecisionId) {
        self.push(Write::Customer(*customer, *id));
    }

    /// Drops a decision from its customer's index.
    pub fn remove_customer(&mut self, customer: &CustomerHash, id: &DecisionId) {
        self.push(Write::RemoveCustomer(*customer, *id));
    }

    /// Points an idempotency key at a decision.
    pub fn put_request(&mut self, campaign: &str, request_id: &str, id: &DecisionId) {
        self.push(Write::Request(
            campaign.to_owned(),
            request_id.to_owned(),
            *id,
        ));
    }

    /// Forgets an idempotency key.
    pub fn remove_request(&mut self, campaign: &str, request_id: &str) {
        self.push(Write::RemoveRequest(
            campaign.to_owned(),
            request_id.to_owned(),
        ));
    }
}

/// A write as sled stores it: its key, and its encoded value (`None`:
/// remove the key); nothing for an expiry entry without decisions.
pub(super) fn keyed(write: Write) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    Some(match write {
        Write::Cell(key, counts) => (cell_key(&key), Some(encode(&counts))),
        Write::Model {
            campaign,
            offer,
            posterior,
        } => (model_key(&campaign, &offer), Some(encode(&posterior))),
        Write::Prior { campaign, prior } => {
            ([PRIOR, campaign.as_bytes()].concat(), Some(encode(&prior)))
        }
        Write::ModelSeq(seq) => (META_MODEL_SEQ.to_vec(), Some(seq.to_be_bytes().to_vec())),
        Write::Block(mut records) => (
            block_key(&records.first()?.0),
            Some(encode_block(&mut records)),
        ),
        Write::Decision(id, rec, _) => (decision_key(&id), Some(encode(&*rec))),
        Write::RemoveDecision(id) => (decision_key(&id), None),
        Write::Expiries { expires_ms, ids } => {
            // One id: an empty value stands for the key's id alone.
            let value = if ids.len() == 1 {
                Vec::new()
            } else {
                ids.iter().flat_map(|id| id.0).collect()
            };
            (expiry_key(expires_ms, ids.first()?), Some(value))
        }
        Write::RemoveExpiries { expires_ms, first } => (expiry_key(expires_ms, &first), None),
        Write::Config(campaign, stored) => (
            [CONFIG, campaign.as_bytes()].concat(),
            Some(encode(&stored)),
        ),
        Write::Status(campaign, status) => (
            [STATUS, campaign.as_bytes()].concat(),
            Some(encode(&status)),
        ),
        Write::Daily(campaign, offer, counts) => (
            [DAILY, campaign.as_bytes(), &[0], offer.as_bytes()].concat(),
            Some(encode(&counts)),
        ),
        Write::Traffic(campaign, profile) => (
            [TRAFFIC, campaign.as_bytes()].concat(),
            Some(encode(&*profile)),
        ),
        Write::Arm(campaign, arm, counts) => (
            [ARM, campaign.as_bytes(), &[0], arm.as_str().as_bytes()].concat(),
            Some(encode(&counts)),
        ),
        Write::Clusters(campaign, arm, sums) => (clusters_key(&campaign, arm), Some(encode(&sums))),
        Write::CustomerTotals {
            customer,
            campaign,
            arm,
            totals,
        } => (
            totals_key(&customer, &campaign, arm),
            totals.map(|t| encode(&t)),
        ),
        Write::Customer(customer, id) => (customer_key(&customer, &id), Some(Vec::new())),
        Write::RemoveCustomer(customer, id) => (customer_key(&customer, &id), None),
        Write::Request(campaign, request_id, id) => {
            (request_key(&campaign, &request_id), Some(id.0.to_vec()))
        }
        Write::RemoveRequest(campaign, request_id) => (request_key(&campaign, &request_id), None),
    })
}
