//! An in-memory store behind the same traits as sled: for the simulator
//! and for tests of the engine that need no disk. Nothing survives the
//! process; a clone shares the contents, [`MemoryStore::fork`] copies them.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use parking_lot::RwLock;

use super::*;
use crate::{
    budget::{DailyCounts, TrafficProfile},
    revisions::StoredCampaign,
    status::CampaignStatus,
    uplift::{Arm, ArmCounts, ClusterSums, CustomerTotals},
};

/// Durable state held in memory, in the orders sled's keys give it.
#[derive(Debug, Clone, Default)]
struct Contents {
    /// By sled's cell key (a segment may hold any byte).
    cells: BTreeMap<Vec<u8>, (CellKey, CellCounts)>,
    models: BTreeMap<(String, String), GaussianPosterior>,
    priors: BTreeMap<String, SharedPrior>,
    model_seq: u64,
    configs: BTreeMap<String, StoredCampaign>,
    statuses: BTreeMap<String, CampaignStatus>,
    daily: BTreeMap<(String, String), DailyCounts>,
    traffic: BTreeMap<String, TrafficProfile>,
    /// By campaign and arm name.
    arms: BTreeMap<(String, String), ArmCounts>,
    clusters: BTreeMap<(String, String), ClusterSums>,
    /// By (customer, campaign, arm name).
    totals: BTreeMap<([u8; 32], String, String), CustomerTotals>,
    decisions: BTreeMap<DecisionId, DecisionRecord>,
    /// By big-endian time (as sled orders it) and first decision.
    expiries: BTreeMap<([u8; 8], DecisionId), Vec<DecisionId>>,
    customers: BTreeSet<([u8; 32], DecisionId)>,
    requests: HashMap<(String, String), DecisionId>,
    customer_key: Option<CustomerKey>,
    customer_fingerprint: Option<String>,
}

impl Contents {
    fn apply(&mut self, write: Write) {
        match write {
            Write::Cell(key, counts) => {
                self.cells.insert(cell_key(&key), (key, counts));
            }
            Write::Model {
                campaign,
                offer,
                posterior,
            } => {
                self.models.insert((campaign, offer), posterior);
            }
            Write::Prior { campaign, prior } => {
                self.priors.insert(campaign, prior);
            }
            Write::ModelSeq(seq) => self.model_seq = seq,
            Write::Block(records) => self
                .decisions
                .extend(records.into_iter().map(|(id, rec)| (id, *rec))),
            Write::Decision(id, rec, _) => {
                self.decisions.insert(id, *rec);
            }
            Write::RemoveDecision(id) => {
                self.decisions.remove(&id);
            }
            Write::Expiries { expires_ms, ids } => {
                if let Some(first) = ids.first() {
                    self.expiries
                        .insert((expires_ms.to_be_bytes(), *first), ids);
                }
            }
            Write::RemoveExpiries { expires_ms, first } => {
                self.expiries.remove(&(expires_ms.to_be_bytes(), first));
            }
            Write::Config(campaign, stored) => {
                self.configs.insert(campaign, stored);
            }
            Write::Status(campaign, status) => {
                self.statuses.insert(campaign, status);
            }
            Write::Daily(campaign, offer, counts) => {
                self.daily.insert((campaign, offer), counts);
            }
            Write::Traffic(campaign, profile) => {
                self.traffic.insert(campaign, *profile);
            }
            Write::Arm(campaign, arm, counts) => {
                self.arms
                    .insert((campaign, arm.as_str().to_owned()), counts);
            }
            Write::Clusters(campaign, arm, sums) => {
                self.clusters
                    .insert((campaign, arm.as_str().to_owned()), sums);
            }
            Write::CustomerTotals {
                customer,
                campaign,
                arm,
                totals,
            } => {
                let key = (customer.0, campaign, arm.as_str().to_owned());
                match totals {
                    Some(t) => self.totals.insert(key, t),
                    None => self.totals.remove(&key),
                };
            }
            Write::Customer(customer, id) => {
                self.customers.insert((customer.0, id));
            }
            Write::RemoveCustomer(customer, id) => {
                self.customers.remove(&(customer.0, id));
            }
            Write::Request(campaign, request_id, id) => {
                self.requests.insert((campaign, request_id), id);
            }
            Write::RemoveRequest(campaign, request_id) => {
                self.requests.remove(&(campaign, request_id));
            }
        }
    }

    /// Everything as writes that would rebuild it (decisions last).
    fn as_writes(&self) -> impl Iterator<Item = Write> + '_ {
        let arm = |name: &str| Arm::ALL.into_iter().find(|a| a.as_str() == name);
        let expiry_ms = |be: &[u8; 8]| i64::from_be_bytes(*be);
        self.cells
            .values()
            .map(|(k, c)| Write::Cell(k.clone(), *c))
            .chain(self.models.iter().map(|((c, o), p)| Write::Model {
                campaign: c.clone(),
                offer: o.clone(),
                posterior: p.clone(),
            }))
            .chain(self.priors.iter().map(|(c, p)| Write::Prior {
                campaign: c.clone(),
                prior: p.clone(),
            }))
            .chain(std::iter::once(Write::ModelSeq(self.model_seq)).filter(|_| self.model_seq > 0))
            .chain(
                self.configs
                    .iter()
                    .map(|(c, s)| Write::Config(c.clone(), s.clone())),
            )
            .chain(
                self.statuses
                    .iter()
                    .map(|(c, s)| Write::Status(c.clone(), s.clone())),
            )
            .chain(
                self.daily
                    .iter()
                    .map(|((c, o), d)| Write::Daily(c.clone(), o.clone(), *d)),
            )
            .chain(
                self.traffic
                    .iter()
                    .map(|(c, p)| Write::Traffic(c.clone(), Box::new(p.clone()))),
            )
            .chain(
                self.arms
                    .iter()
                    .filter_map(move |((c, a), n)| Some(Write::Arm(c.clone(), arm(a)?, *n))),
            )
            .chain(
                self.clusters
                    .iter()
                    .filter_map(move |((c, a), s)| Some(Write::Clusters(c.clone(), arm(a)?, *s))),
            )
            .chain(self.totals.iter().filter_map(move |((h, c, a), t)| {
                Some(Write::CustomerTotals {
                    customer: CustomerHash(*h),
                    campaign: c.clone(),
                    arm: arm(a)?,
                    totals: Some(*t),
                })
            }))
            .chain(
                self.expiries
                    .iter()
                    .map(move |((ms, _), ids)| Write::Expiries {
                        expires_ms: expiry_ms(ms),
                        ids: ids.clone(),
                    }),
            )
            .chain(
                self.customers
                    .iter()
                    .map(|(c, id)| Write::Customer(CustomerHash(*c), *id)),
            )
            .chain(
                self.requests
                    .iter()
                    .map(|((c, r), id)| Write::Request(c.clone(), r.clone(), *id)),
            )
            .chain(
                self.decisions
                    .iter()
                    .map(|(id, rec)| Write::Decision(*id, Box::new(rec.clone()), None)),
            )
    }
}

/// A store in memory (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    contents: Arc<RwLock<Contents>>,
    fail_commits: Arc<AtomicBool>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An independent copy of what is stored now: what a restart after a
    /// crash at this moment would find (everything committed is kept, as
    /// if flushed).
    pub fn fork(&self) -> MemoryStore {
        MemoryStore {
            contents: Arc::new(RwLock::new(self.contents.read().clone())),
            fail_commits: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Makes every commit fail (nothing applied) while `fail` is true: what
    /// a full or failing disk does, for tests of the writer's answers.
    pub fn fail_commits(&self, fail: bool) {
        self.fail_commits.store(fail, Ordering::Relaxed);
    }
}

impl DecisionLog for MemoryStore {
    fn decision(&self, id: &DecisionId) -> Result<Option<DecisionRecord>, StoreError> {
        Ok(self.contents.read().decisions.get(id).cloned())
    }

    fn request(&self, campaign: &str, request_id: &str) -> Result<Option<DecisionId>, StoreError> {
        let key = (campaign.to_owned(), request_id.to_owned());
        Ok(self.contents.read().requests.get(&key).copied())
    }

    fn due_expiries(&self, now_ms: i64, limit: usize) -> Result<Vec<ExpiryEntry>, StoreError> {
        let end = (now_ms.saturating_add(1).to_be_bytes(), DecisionId([0; 16]));
        let contents = self.contents.read();
        let mut out = Vec::new();
        let mut n = 0;
        for ((ms, first), ids) in contents.expiries.range(..end) {
            if n >= limit {
                break;
            }
            n += ids.len();
            out.push(ExpiryEntry {
                expires_ms: i64::from_be_bytes(*ms),
                first: *first,
                ids: ids.clone(),
            });
        }
        Ok(out)
    }

    fn customer_decisions(&self, customer: &CustomerHash) -> Result<Vec<DecisionId>, StoreError> {
        let from = (customer.0, DecisionId([0; 16]));
        Ok(self
            .contents
            .read()
            .customers
            .range(from..)
            .take_while(|(c, _)| *c == customer.0)
            .map(|(_, id)| *id)
            .collect())
    }

    fn customer_totals(
        &self,
        customer: &CustomerHash,
    ) -> Result<Vec<(String, Arm, CustomerTotals)>, StoreError> {
        let from = (customer.0, String::new(), String::new());
        Ok(self
            .contents
            .read()
            .totals
            .range(from..)
            .take_while(|((h, _, _), _)| *h == customer.0)
            .filter_map(|((_, c, a), t)| Some((c.clone(), Arm::from_name(a)?, *t)))
            .collect())
    }

    fn scan_decisions(
        &self,
        since_ms: i64,
        until_ms: i64,
        visit: &mut dyn FnMut(DecisionId, DecisionRecord) -> bool,
    ) -> Result<(), StoreError> {
        // Copied out in pages, so that `visit` runs without the lock held.
        for range in time_ranges(since_ms, until_ms) {
            if range.start >= range.end {
                continue;
            }
            let mut from = range.start;
            loop {
                let page: Vec<(DecisionId, DecisionRecord)> = self
                    .contents
                    .read()
                    .decisions
                    .range(from..range.end)
                    .take(256)
                    .map(|(id, rec)| (*id, rec.clone()))
                    .collect();
                let Some(last) = page.last().map(|(id, _)| *id) else {
                    break;
                };
                for (id, rec) in page {
                    if !visit(id, rec) {
                        return Ok(());
                    }
                }
                match next_id(last) {
                    Some(next) => from = next,
                    None => break,
                }
            }
        }
        Ok(())
    }
}

/// The locator right after `id`, if any.
fn next_id(id: DecisionId) -> Option<DecisionId> {
    let n = u128::from_be_bytes(id.0).checked_add(1)?;
    Some(DecisionId(n.to_be_bytes()))
}

impl Checkpoints for MemoryStore {
    fn load_cells(&self) -> Result<Vec<(CellKey, CellCounts)>, StoreError> {
        Ok(self.contents.read().cells.values().cloned().collect())
    }

    fn load_models(&self) -> Result<Vec<(String, String, GaussianPosterior)>, StoreError> {
        let contents = self.contents.read();
        Ok(contents
            .models
            .iter()
            .map(|((c, o), p)| (c.clone(), o.clone(), p.clone()))
            .collect())
    }

    fn load_priors(&self) -> Result<Vec<(String, SharedPrior)>, StoreError> {
        let contents = self.contents.read();
        Ok(contents
            .priors
            .iter()
            .map(|(c, p)| (c.clone(), p.clone()))
            .collect())
    }

    fn load_arms(&self) -> Result<Vec<(String, String, ArmCounts)>, StoreError> {
        let contents = self.contents.read();
        Ok(contents
            .arms
            .iter()
            .map(|((c, a), n)| (c.clone(), a.clone(), *n))
            .collect())
    }

    fn load_clusters(&self) -> Result<Vec<(String, String, ClusterSums)>, StoreError> {
        let contents = self.contents.read();
        Ok(contents
            .clusters
            .iter()
            .map(|((c, a), s)| (c.clone(), a.clone(), *s))
            .collect())
    }

    fn load_daily(&self) -> Result<Vec<(String, String, DailyCounts)>, StoreError> {
        let contents = self.contents.read();
        Ok(contents
            .daily
            .iter()
            .map(|((c, o), d)| (c.clone(), o.clone(), *d))
            .collect())
    }

    fn load_traffic(&self) -> Result<Vec<(String, TrafficProfile)>, StoreError> {
        let contents = self.contents.read();
        Ok(contents
            .traffic
            .iter()
            .map(|(c, p)| (c.clone(), p.clone()))
            .collect())
    }

    fn model_seq(&self) -> Result<u64, StoreError> {
        Ok(self.contents.read().model_seq)
    }
}

impl CampaignConfigs for MemoryStore {
    fn load_configs(&self) -> Result<Vec<(String, StoredCampaign)>, StoreError> {
        let contents = self.contents.read();
        Ok(contents
            .configs
            .iter()
            .map(|(c, s)| (c.clone(), s.clone()))
            .collect())
    }

    fn load_statuses(&self) -> Result<Vec<(String, CampaignStatus)>, StoreError> {
        let contents = self.contents.read();
        Ok(contents
            .statuses
            .iter()
            .map(|(c, s)| (c.clone(), s.clone()))
            .collect())
    }
}

impl Storage for MemoryStore {
    fn commit(&self, writes: WriteSet) -> Result<(), StoreError> {
        if self.fail_commits.load(Ordering::Relaxed) {
            return Err(StoreError::backend(
                "storage unavailable: the in-memory store was told to fail commits",
            ));
        }
        // One lock for the whole set: no reader sees part of it.
        let mut contents = self.contents.write();
        for write in writes.into_writes() {
            contents.apply(write);
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn customer_key(&self, configured: Option<CustomerKey>) -> Result<CustomerKey, StoreError> {
        let mut contents = self.contents.write();
        let stored = contents.customer_key.clone();
        let (key, generated) =
            choose_customer_key(configured, stored, contents.customer_fingerprint.as_deref())?;
        if generated {
            contents.customer_key = Some(key.clone());
        }
        contents
            .customer_fingerprint
            .get_or_insert_with(|| key.fingerprint());
        Ok(key)
    }

    fn write_snapshot(&self, out: &mut dyn std::io::Write) -> Result<u64, StoreError> {
        let contents = self.contents.read();
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = contents
            .as_writes()
            .filter_map(keyed)
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
        entries.push((META_SCHEMA.to_vec(), SCHEMA_VERSION.to_be_bytes().to_vec()));
        if let Some(k) = &contents.customer_key {
            entries.push((META_CUSTOMER_KEY.to_vec(), k.bytes().to_vec()));
        }
        if let Some(fp) = &contents.customer_fingerprint {
            entries.push((META_CUSTOMER_FINGERPRINT.to_vec(), fp.clone().into_bytes()));
        }
        entries.sort();
        backup::write_entries(out, entries.into_iter().map(Ok))
    }
}
