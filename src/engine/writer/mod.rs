//! The writer thread: commands in groups, staged over the store, learned
//! into the posteriors, committed in one batch (its verbs, one file each).

use super::*;
use crate::fast_map::{FastMap, LookupMap};
use crate::store::Placement;

mod closed;
mod commit;
mod decide;
mod erase;
mod redeem;
mod revise;
mod traffic;

impl Writer {
    pub(super) fn campaign(&self, id: &str) -> Option<Arc<Campaign>> {
        self.campaigns.read().get(id).cloned()
    }

    /// A decision's campaign, looked up once for all the counts an event
    /// changes; None (with a warning) for a campaign this server no longer
    /// has, whose counts then stay as they are.
    pub(super) fn campaign_of(&self, rec: &DecisionRecord) -> Option<Arc<Campaign>> {
        let campaign = self.campaign(&rec.campaign);
        if campaign.is_none() {
            tracing::warn!(campaign = %rec.campaign, "decision of an unknown campaign: counts not updated");
        }
        campaign
    }

    pub(super) fn run(mut self, mut inbox: WriterInbox) {
        inbox.register();
        let mut next: Option<Command> = None;
        loop {
            let first = match next.take() {
                Some(cmd) => cmd,
                None => match inbox.next() {
                    Some(cmd) => cmd,
                    None => break,
                },
            };
            // A backup runs alone, between groups: everything before it is
            // committed and nothing writes while it runs.
            if let Command::Backup { path, reply } = first {
                // Posteriors as of now, so the backup needs no replay.
                self.finish(Group {
                    checkpoint: true,
                    ..Group::default()
                });
                let _ = reply.send(self.backup(&path));
                continue;
            }
            // So does a config change: every learning event before it is
            // checkpointed under the old config, every later one is learned
            // (and replayed at startup) under the new one.
            if let Command::Revise {
                campaign,
                change,
                expected_revision,
                reply,
            } = first
            {
                let checkpointed = self.finish(Group {
                    checkpoint: true,
                    ..Group::default()
                });
                let result = if checkpointed {
                    self.revise(&campaign, change, expected_revision)
                } else {
                    Err(Error::Unavailable(
                        "the models could not be checkpointed before the change (see the server log); nothing was changed"
                            .into(),
                    ))
                };
                let _ = reply.send(result);
                continue;
            }
            let mut group = Group::default();
            self.apply(&mut group, first);
            while group.replies.len() < MAX_GROUP {
                match inbox.try_next() {
                    Some(cmd @ (Command::Backup { .. } | Command::Revise { .. })) => {
                        next = Some(cmd);
                        break;
                    }
                    Some(cmd) => self.apply(&mut group, cmd),
                    None => break,
                }
            }
            self.finish(group);
        }
        self.finish(Group {
            checkpoint: true,
            ..Group::default()
        });
        if let Err(e) = self.watched_flush() {
            tracing::error!(error = %e, "final flush failed");
        }
    }

    pub(super) fn apply(&mut self, g: &mut Group, cmd: Command) {
        match cmd {
            Command::Decide { id, rec, reply } => {
                let r = self.decide(g, id, rec, reply.is_none());
                g.replies.push(Reply::Select(reply, r));
            }
            Command::Redeem {
                redemption,
                now_ms,
                reply,
            } => {
                let r = self.redeem(g, &redemption, now_ms);
                g.durable = true;
                g.replies.push(Reply::Redeem(reply, r));
            }
            Command::Sweep {
                now_ms,
                limit,
                reply,
            } => {
                let r = self.sweep(g, now_ms, limit);
                g.replies.push(Reply::Sweep(reply, r));
            }
            Command::Flush { reply } => {
                g.durable = true;
                g.checkpoint = true;
                g.replies.push(Reply::Flush(reply));
            }
            Command::Barrier { reply } => g.replies.push(Reply::Flush(reply)),
            Command::Forget { customer, reply } => {
                let r = self.forget(g, &customer);
                g.durable = true;
                g.replies.push(Reply::Forget(reply, r));
            }
            Command::Prune {
                before_ms,
                created_before,
                limit,
                reply,
            } => {
                let r = self.prune(g, before_ms, created_before, limit);
                g.replies.push(Reply::Sweep(reply, r));
            }
            Command::SetStatus {
                campaign,
                change,
                reply,
            } => {
                let current = match g.statuses.get(&campaign) {
                    Some(st) => Some(st.clone()),
                    None => self.campaign(&campaign).map(|c| c.status.read().clone()),
                };
                let retired = self.campaign(&campaign).is_some_and(|c| c.revision.retired);
                let next = match current {
                    // Checked here too: a retirement may have landed since
                    // the caller looked.
                    Some(_) if retired => Err(retired_error(&campaign)),
                    Some(c) => c.with(&change),
                    None => Err(Error::refused(
                        crate::error::Reason::UnknownCampaign,
                        format!("unknown campaign '{campaign}'"),
                    )),
                };
                match next {
                    Ok(next) => {
                        g.writes.put_status(&campaign, &next);
                        g.statuses.insert(campaign, next);
                        g.durable = true;
                        g.replies.push(Reply::Flush(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Backup { reply, .. } => {
                // `run` never hands a backup to a group.
                let _ = reply.send(Err(Error::Unavailable("backup misrouted; retry".into())));
            }
            Command::Revise { reply, .. } => {
                // Nor a config change.
                let _ = reply.send(Err(Error::Unavailable(
                    "config change misrouted; retry".into(),
                )));
            }
        }
    }

    pub(super) fn decision(
        &self,
        g: &Group,
        id: &DecisionId,
    ) -> Result<Option<DecisionRecord>, Error> {
        match g.writes.staged_decision(id) {
            Some(staged) => Ok(staged.cloned()),
            None => Ok(self.store.placed_decision(id)?.map(|(rec, placed)| {
                if let Some(p) = placed {
                    g.placed.borrow_mut().insert(*id, p);
                }
                rec
            })),
        }
    }

    /// A customer's decisions: those in the store's index and those of
    /// this group (not indexed yet), sorted, each once.
    pub(super) fn customer_decisions(
        &self,
        g: &Group,
        customer: &CustomerHash,
    ) -> Result<Vec<DecisionId>, Error> {
        let mut ids = self.store.customer_decisions(customer)?;
        ids.extend(g.by_customer.get(customer).into_iter().flatten().copied());
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Stages a changed decision record.
    pub(super) fn put_decision(&mut self, g: &mut Group, id: DecisionId, rec: DecisionRecord) {
        if let Some(c) = &rec.customer {
            g.by_customer.entry(*c).or_default().push(id);
        }
        let placed = g.placed.borrow().get(&id).copied();
        g.writes.set_placed_decision(id, rec, placed);
    }

    /// Stages a decision made in this group (written in its block).
    pub(super) fn add_decision(&mut self, g: &mut Group, id: DecisionId, rec: Box<DecisionRecord>) {
        if let Some(c) = &rec.customer {
            g.by_customer.entry(*c).or_default().push(id);
        }
        g.writes.add_decision(id, rec);
    }

    /// Applies `change` to today's counts (as of `at_ms`) of a decision's
    /// offer, staging the result.
    pub(super) fn change_daily(
        g: &mut Group,
        campaign: &Campaign,
        rec: &DecisionRecord,
        at_ms: i64,
        change: impl FnOnce(&mut DailyCounts),
    ) {
        let Some(offer) = campaign.offer_index(&rec.offer) else {
            return;
        };
        let counts = stage(
            &mut g.daily,
            StagedOffer(&rec.campaign, offer),
            || (rec.campaign.clone(), offer),
            || {
                campaign
                    .daily
                    .read()
                    .get(offer)
                    .copied()
                    .unwrap_or_default()
            },
        );
        *counts = counts.on(campaign.local_time.day_of(at_ms));
        change(counts);
    }

    /// Applies `change` to the arm counts of a decision, staging the result.
    pub(super) fn change_arm(
        g: &mut Group,
        campaign: &Campaign,
        rec: &DecisionRecord,
        change: impl FnOnce(&mut ArmCounts),
    ) {
        change(stage(
            &mut g.arms,
            StagedArm(&rec.campaign, rec.arm),
            || (rec.campaign.clone(), rec.arm),
            || campaign.arms.read()[rec.arm.index()],
        ));
    }

    /// Applies `change` to the cell of a decision, staging the result.
    pub(super) fn change_cell(
        g: &mut Group,
        campaign: &Campaign,
        rec: &DecisionRecord,
        change: impl FnOnce(&mut CellCounts),
    ) {
        let Some(offer) = campaign.offer_index(&rec.offer) else {
            tracing::warn!(campaign = %rec.campaign, offer = %rec.offer, "decision of an unknown offer: posterior not updated");
            return;
        };
        let (counts, moves) = stage(
            &mut g.cells,
            StagedCell(&rec.campaign, &rec.segment, offer),
            || (rec.campaign.clone(), rec.segment.clone(), offer),
            || (campaign.model.load().cell(&rec.segment, offer), Vec::new()),
        );
        let pending_before = counts.pending();
        change(counts);
        let delta = counts.pending() as i64 - pending_before as i64;
        // segment-ts weighs pending decisions by their age.
        if delta != 0 && campaign.contextual.is_none() {
            moves.push((rec.created_ms, delta));
        }
    }

    /// A new decision of a contextual campaign waits for its
    /// non-redemption to be revealed by the sweep ([`Self::reveal`]); it is
    /// learned then, at its window's close, or as a redemption, whichever
    /// comes first. Not for a decision no learning step would learn.
    pub(super) fn await_reveal(campaign: &Campaign, rec: &DecisionRecord, id: DecisionId) {
        if rec.arm == Arm::NonPersonalized {
            return;
        }
        if let Some(ctx) = &campaign.contextual
            && campaign.offer_index(&rec.offer).is_some()
        {
            ctx.delays.write().add(id, rec.created_ms);
        }
    }

    /// Learns a decision as its one observation (`redeemed`: a redemption;
    /// a non-redemption learned before, `rec.learned_seq`, is taken back
    /// first) into its offer's staged posterior through the one learning
    /// step; returns the event's learning sequence number (0: nothing
    /// learned: not a contextual campaign, an unknown offer, features of
    /// another encoding, or a decision made without consent to
    /// personalization, whose context was not kept and would teach the
    /// model about an empty one).
    pub(super) fn learn(&mut self, g: &mut Group, rec: &DecisionRecord, redeemed: bool) -> u64 {
        if rec.arm == Arm::NonPersonalized {
            return 0;
        }
        let Some(campaign) = self.campaign(&rec.campaign) else {
            return 0;
        };
        let Some(ctx) = &campaign.contextual else {
            return 0;
        };
        let Some(offer) = campaign.offer_index(&rec.offer) else {
            return 0;
        };
        let retract = redeemed && rec.learned_seq != 0;
        let offers = &campaign.offers;
        let step = crate::policy::learning::Step {
            encoder: &ctx.encoder,
            config: &ctx.config,
            offer_features: &|| offer_features(offers),
        };
        let Group { models, priors, .. } = g;
        let prior = ctx.config.adaptive_prior.then(|| {
            &mut *priors
                .entry(rec.campaign.clone())
                .or_insert_with(|| ctx.prior.read().clone())
        });
        let mut staged = Staged {
            campaign: &rec.campaign,
            staged: models,
            published: &ctx.models,
            dirty: &mut self.dirty,
        };
        if retract {
            step.retract_non_redemption(
                &mut staged,
                prior.as_deref(),
                offer,
                &rec.features,
                rec.created_ms,
            );
        }
        if !step.learn(
            &mut staged,
            prior,
            offer,
            &rec.features,
            redeemed,
            rec.created_ms,
        ) {
            tracing::warn!(campaign = %rec.campaign, "decision encoded under other features: model not updated");
            return 0;
        }
        // Written at the next checkpoint (`finish`); until then the event is
        // durable as this sequence number in its decision record.
        self.seq += 1;
        g.versions.insert(rec.campaign.clone(), self.seq);
        self.seq
    }
}

/// A campaign's posteriors as the writer's group sees them: staged copies
/// over the published ones, each copied on its first change in the group
/// and marked for the next checkpoint.
struct Staged<'a> {
    campaign: &'a str,
    staged: &'a mut FastMap<(String, usize), GaussianPosterior>,
    published: &'a PublishedModels,
    dirty: &'a mut std::collections::HashSet<(String, usize)>,
}

impl crate::policy::learning::Posteriors for Staged<'_> {
    fn posterior_mut(&mut self, offer: usize) -> Option<&mut GaussianPosterior> {
        let key = (self.campaign.to_owned(), offer);
        if !self.staged.contains_key(&key) {
            let p = self.published.load().get(offer)?.clone();
            self.staged.insert(key.clone(), p);
        }
        self.dirty.insert(key.clone());
        self.staged.get_mut(&key)
    }

    fn with_all(&mut self, f: &mut dyn FnMut(&mut [GaussianPosterior]) -> bool) -> bool {
        let mut all: Vec<GaussianPosterior> = {
            let published = self.published.load();
            published
                .iter()
                .enumerate()
                .map(
                    |(i, p)| match self.staged.get(&(self.campaign.to_owned(), i)) {
                        Some(staged) => staged.clone(),
                        None => p.clone(),
                    },
                )
                .collect()
        };
        if !f(&mut all) {
            return false; // no variance moved: every posterior is as it was
        }
        for (i, m) in all.into_iter().enumerate() {
            let key = (self.campaign.to_owned(), i);
            self.dirty.insert(key.clone());
            self.staged.insert(key, m);
        }
        true
    }
}

/// The single mutator of stored and in-memory state.
pub(super) struct Writer {
    pub(super) store: Arc<dyn Storage>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) campaigns: Arc<RwLock<Campaigns>>,
    pub(super) failed: Arc<AtomicBool>,
    pub(super) disk: Arc<DiskWatch>,
    pub(super) options: EngineOptions,
    /// The last learning sequence number handed out.
    pub(super) seq: u64,
    /// Contextual posteriors changed since the last checkpoint.
    pub(super) dirty: std::collections::HashSet<(String, usize)>,
    /// When the last checkpoint was written, on the engine's clock (Unix
    /// ms), so that the interval runs in the simulator's virtual time too.
    pub(super) last_checkpoint_ms: i64,
}

/// The value `map` stages for `key`, staging `committed()` first when the
/// group has none; the key is copied (`owned`) only then, not per event.
fn stage<K, Q, V>(
    map: &mut LookupMap<K, V>,
    key: Q,
    owned: impl FnOnce() -> K,
    committed: impl FnOnce() -> V,
) -> &mut V
where
    K: std::hash::Hash + Eq,
    Q: std::hash::Hash + hashbrown::Equivalent<K>,
{
    match map.raw_entry_mut().from_key(&key) {
        hashbrown::hash_map::RawEntryMut::Occupied(e) => e.into_mut(),
        hashbrown::hash_map::RawEntryMut::Vacant(e) => {
            let owned = owned();
            // Else the value would sit under a key no lookup finds.
            debug_assert!(key.equivalent(&owned), "a borrowed key and its copy differ");
            e.insert(owned, committed()).1
        }
    }
}

/// A [`Group::cells`] key, borrowed: (campaign, segment, offer). It hashes
/// as the owned tuple does (a `&str` as its `String`, field by field), as a
/// lookup by it requires (tested).
#[derive(Hash)]
pub(super) struct StagedCell<'a>(pub &'a str, pub &'a str, pub usize);

impl hashbrown::Equivalent<(String, String, usize)> for StagedCell<'_> {
    fn equivalent(&self, key: &(String, String, usize)) -> bool {
        self.0 == key.0 && self.1 == key.1 && self.2 == key.2
    }
}

/// A [`Group::arms`] key, borrowed: (campaign, arm); hashed as [`StagedCell`].
#[derive(Hash)]
pub(super) struct StagedArm<'a>(pub &'a str, pub Arm);

impl hashbrown::Equivalent<(String, Arm)> for StagedArm<'_> {
    fn equivalent(&self, key: &(String, Arm)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

/// A (campaign, offer) key of [`Group::daily`] or [`Group::trials`],
/// borrowed; hashed as [`StagedCell`].
#[derive(Hash)]
pub(super) struct StagedOffer<'a>(pub &'a str, pub usize);

impl hashbrown::Equivalent<(String, usize)> for StagedOffer<'_> {
    fn equivalent(&self, key: &(String, usize)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

/// Changes staged by one group, visible to later commands of the same group.
#[derive(Default)]
pub(super) struct Group {
    /// What the group commits; its decision records (set or deleted) are
    /// what later commands of the group read.
    pub(super) writes: WriteSet,
    /// Where the store's reads in this group found decision records, for
    /// their changes ([`Writer::decision`] fills it behind `&Group`).
    pub(super) placed: std::cell::RefCell<FastMap<DecisionId, Placement>>,
    /// Counts this group changed (written once each, at commit), each with
    /// its pending decisions' moves, `(decided_ms, delta)` in order, for the
    /// segment models' delayed feedback once the group is stored (the
    /// segment's row is then found once per cell). Cells are then taken in
    /// the map's order: the counts are the same in any order, since a
    /// decision's end (-1) always lands in the cell and tick of its own
    /// decision (+1), made before it.
    pub(super) cells: LookupMap<(String, String, usize), (CellCounts, PendingMoves)>,
    pub(super) arms: LookupMap<(String, Arm), ArmCounts>,
    /// Per-customer sums this group changed, by (campaign, arm).
    pub(super) clusters: FastMap<(String, Arm), ClusterSums>,
    /// Customer totals as this group sees them: read by a sweep, changed
    /// (then also in `writes`), or `None`: erased.
    pub(super) totals: FastMap<(CustomerHash, String, Arm), Option<CustomerTotals>>,
    /// Today's counts this group changed (written once each, at commit).
    pub(super) daily: LookupMap<(String, usize), DailyCounts>,
    /// Traffic profiles this group counted decisions in, by campaign
    /// (stored once per group, at commit).
    pub(super) traffic: FastMap<String, crate::budget::TrafficProfile>,
    pub(super) statuses: FastMap<String, CampaignStatus>,
    pub(super) models: FastMap<(String, usize), GaussianPosterior>,
    /// Per contextual campaign, the sequence number of its last learning
    /// event in this group: its posteriors' version once published.
    pub(super) versions: FastMap<String, u64>,
    /// Learned priors this group changed, by campaign.
    pub(super) priors: FastMap<String, SharedPrior>,
    /// Decisions this group added per offer of a limited campaign, for its
    /// budget checks, the only readers (erasures in the same group are not
    /// subtracted: budget checks err on the safe side).
    pub(super) trials: LookupMap<(String, usize), u64>,
    /// The decisions staged in this group, by customer.
    pub(super) by_customer: FastMap<CustomerHash, Vec<DecisionId>>,
    pub(super) requests: FastMap<(String, String), DecisionId>,
    /// New decisions per campaign: when the last window closes, and the ids.
    pub(super) expiries: FastMap<String, (i64, Vec<DecisionId>)>,
    /// Redemption delays, for the delay models once the group is stored
    /// (learned when their windows close, so their order against the
    /// pending moves does not matter).
    pub(super) delays: Vec<RedemptionDelay>,
    /// The sweep's time: pending decisions are reweighed by their age.
    pub(super) reweigh_at: Option<i64>,
    pub(super) replies: Vec<Reply>,
    pub(super) durable: bool,
    /// Write every changed posterior with this group (erasure, pruning,
    /// flush, backup) instead of waiting for the next checkpoint.
    pub(super) checkpoint: bool,
    pub(super) expired: u64,
}

/// A cell's pending decisions moved in one group, `(decided_ms, delta)` in
/// order (a decision made: +1; redeemed, expired or erased while pending:
/// -1).
pub(super) type PendingMoves = Vec<(i64, i64)>;

/// A redemption's delay, for delayed feedback's delay model
/// ([`crate::policy::delay`]): the decision made at `decided_ms` was
/// redeemed at `redeemed_ms`.
pub(super) struct RedemptionDelay {
    pub(super) campaign: String,
    pub(super) decided_ms: i64,
    pub(super) redeemed_ms: i64,
}

#[cfg(test)]
mod group_tests;

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::{
        features::FeatureSpec,
        policy::{
            contextual::{ContextualConfig, Likelihood},
            learning::Step,
        },
    };

    /// A borrowed key hashes as its owned key and finds it, in maps seeded
    /// differently: otherwise staged counts would be read as missing and
    /// overwritten from the committed ones.
    #[test]
    fn borrowed_keys_hash_and_find_as_the_owned_ones() {
        use std::hash::BuildHasher;
        let segments = ["", "a", "new|afternoon", "é", "(other)"];
        for seed in 0..4 {
            let mut cells: LookupMap<(String, String, usize), u32> = LookupMap::default();
            let mut arms: LookupMap<(String, Arm), u32> = LookupMap::default();
            let mut daily: LookupMap<(String, usize), u32> = LookupMap::default();
            for (i, campaign) in ["", "coffee", "coffee-personal", "c"].iter().enumerate() {
                for (j, segment) in segments.iter().enumerate() {
                    let offer = seed * 7 + i + j;
                    let owned = (campaign.to_string(), segment.to_string(), offer);
                    let borrowed = StagedCell(campaign, segment, offer);
                    let h = cells.hasher();
                    assert_eq!(h.hash_one(&owned), h.hash_one(&borrowed));
                    *stage(&mut cells, borrowed, || owned.clone(), || 0) += 1;
                    *stage(
                        &mut cells,
                        StagedCell(campaign, segment, offer),
                        || owned,
                        || 0,
                    ) += 1;
                    let h = daily.hasher();
                    assert_eq!(
                        h.hash_one(&(campaign.to_string(), offer)),
                        h.hash_one(StagedOffer(campaign, offer))
                    );
                    for _ in 0..2 {
                        *stage(
                            &mut daily,
                            StagedOffer(campaign, offer),
                            || (campaign.to_string(), offer),
                            || 10,
                        ) += 1;
                    }
                }
                for arm in [Arm::Bandit, Arm::Control] {
                    let h = arms.hasher();
                    assert_eq!(
                        h.hash_one(&(campaign.to_string(), arm)),
                        h.hash_one(StagedArm(campaign, arm))
                    );
                    for _ in 0..2 {
                        *stage(
                            &mut arms,
                            StagedArm(campaign, arm),
                            || (campaign.to_string(), arm),
                            || 5,
                        ) += 1;
                    }
                }
            }
            // Each key staged once, and every change landed on it.
            assert_eq!(cells.len(), 4 * segments.len());
            assert!(cells.values().all(|&n| n == 2));
            assert_eq!(daily.len(), 4 * segments.len());
            assert!(daily.values().all(|&n| n == 12));
            assert_eq!(arms.len(), 8);
            assert!(arms.values().all(|&n| n == 7));
        }
    }

    /// The writer's staged learning (copy-on-write over published
    /// posteriors, in groups that are published between) and learning
    /// straight into a vector (recovery, the simulator) are the one learning
    /// step: the same events give bit-identical posteriors and prior, through
    /// the learned prior's re-estimations and with forgetting.
    #[test]
    fn staged_learning_equals_direct_learning() {
        let encoder = Encoder::new(
            vec![FeatureSpec::Categorical {
                name: "tier".into(),
                values: vec!["a".into(), "b".into(), "c".into()],
            }],
            0,
        )
        .expect("encoder");
        for half_life in [None, Some(200.0)] {
            let config = ContextualConfig {
                half_life,
                ..ContextualConfig::new(Likelihood::Logistic)
            };
            let k = 4;
            let fresh = || -> Vec<GaussianPosterior> {
                (0..k)
                    .map(|_| GaussianPosterior::prior(encoder.dim(), &config))
                    .collect()
            };
            let no_features = || vec![Vec::new(); k];
            let step = Step {
                encoder: &encoder,
                config: &config,
                offer_features: &no_features,
            };
            let mut rng = ChaCha8Rng::seed_from_u64(5);
            /// (offer, x, redeemed).
            type Event = (usize, Vec<(u32, f64)>, bool);
            let events: Vec<Event> = (0..3_000)
                .map(|_| {
                    let tier = ["a", "b", "c"][rng.random_range(0..3)];
                    let mut ctx = crate::context::Context::new();
                    ctx.insert(
                        "tier".into(),
                        crate::context::FeatureValue::Category(tier.into()),
                    );
                    let x = encoder.encode(&ctx).expect("encode");
                    (rng.random_range(0..k), x, rng.random::<f64>() < 0.2)
                })
                .collect();
            // Direct.
            let mut direct = fresh();
            let mut direct_prior = SharedPrior::new(encoder.dim(), 0, &config);
            // Decisions 20 minutes apart: the clock of forgetting over time
            // moves every 72nd event.
            let at = |i: usize| 1_800_000_000_000 + i as i64 * 1_200_000;
            for (i, (offer, x, redeemed)) in events.iter().enumerate() {
                let at = at(i);
                assert!(step.learn(&mut direct, Some(&mut direct_prior), *offer, x, false, at));
                if *redeemed {
                    step.learn(&mut direct, Some(&mut direct_prior), *offer, x, true, at);
                }
            }
            // Staged, in groups of 37 events, published after each group.
            let published = PublishedModels::default();
            published.publish_all(fresh(), None);
            let mut published_prior = SharedPrior::new(encoder.dim(), 0, &config);
            let mut dirty = std::collections::HashSet::new();
            for (g, group) in events.chunks(37).enumerate() {
                let mut staged_models = FastMap::default();
                let mut prior = published_prior.clone();
                for (j, (offer, x, redeemed)) in group.iter().enumerate() {
                    let at = at(g * 37 + j);
                    let mut staged = Staged {
                        campaign: "c",
                        staged: &mut staged_models,
                        published: &published,
                        dirty: &mut dirty,
                    };
                    step.learn(&mut staged, Some(&mut prior), *offer, x, false, at);
                    if *redeemed {
                        step.learn(&mut staged, Some(&mut prior), *offer, x, true, at);
                    }
                }
                published.publish(staged_models.into_iter().map(|((_, i), p)| (i, p)), None);
                published_prior = prior;
            }
            assert_eq!(published.load().to_vec(), direct, "{half_life:?}");
            assert_eq!(published_prior, direct_prior, "{half_life:?}");
            assert_eq!(dirty.len(), k, "every offer marked for the checkpoint");
        }
    }
}
