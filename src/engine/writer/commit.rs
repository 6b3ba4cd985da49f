//! Committing a group: checkpoints, the batch, the flush, and memory
//! changed only after.

use super::*;

impl Writer {
    /// Whether the checkpoint interval has passed on the engine's clock (a
    /// clock set backwards waits until it is past the interval again).
    fn checkpoint_due(&self, now_ms: i64) -> bool {
        let interval_ms =
            i64::try_from(self.options.checkpoint_interval.as_millis()).unwrap_or(i64::MAX);
        now_ms.saturating_sub(self.last_checkpoint_ms) >= interval_ms
    }

    /// Flushes the store, with its start time visible to the health watch.
    pub(super) fn watched_flush(&mut self) -> Result<(), StoreError> {
        self.disk
            .flush_started_ms
            .store(self.clock.now_ms().max(1), Ordering::Relaxed);
        let r = self.store.flush();
        self.disk.flush_started_ms.store(0, Ordering::Relaxed);
        r
    }

    /// Commits a group, publishes its state and answers its commands;
    /// returns whether its writes are stored.
    pub(super) fn finish(&mut self, mut group: Group) -> bool {
        for (expires_ms, ids) in group.expiries.values() {
            group.writes.put_expiries(*expires_ms, ids);
        }
        Self::stage_traffic(&mut group);
        self.stage_counts(&mut group);
        let now_ms = self.clock.now_ms();
        let checkpoint =
            (group.checkpoint || self.checkpoint_due(now_ms)) && !self.dirty.is_empty();
        if checkpoint {
            let mut priors_written = std::collections::HashSet::new();
            for (campaign, offer) in self.dirty.iter() {
                let Some(c) = self.campaign(campaign) else {
                    continue;
                };
                let (Some(o), Some(ctx)) = (c.offers.get(*offer), &c.contextual) else {
                    continue;
                };
                let key = (campaign.clone(), *offer);
                match group.models.get(&key) {
                    Some(p) => group.writes.put_model(campaign, &o.id, p),
                    None => {
                        if let Some(p) = ctx.models.load().get(*offer) {
                            group.writes.put_model(campaign, &o.id, p);
                        }
                    }
                }
                if ctx.config.adaptive_prior && !priors_written.contains(campaign) {
                    match group.priors.get(campaign) {
                        Some(p) => group.writes.put_prior(campaign, p),
                        None => group.writes.put_prior(campaign, &ctx.prior.read()),
                    }
                    priors_written.insert(campaign.clone());
                }
            }
            group.writes.put_model_seq(self.seq);
        }
        metrics::histogram!("offer_bandit_write_group_commands").record(group.replies.len() as f64);
        metrics::histogram!("offer_bandit_write_group_writes").record(group.writes.len() as f64);
        let mut failure = None;
        if self.failed.load(Ordering::Relaxed) {
            failure = Some("an earlier storage failure".to_owned());
        } else if !group.writes.is_empty()
            && let Err(e) = self.store.commit(group.writes)
        {
            failure = Some(e.to_string());
        }
        let flush_started = std::time::Instant::now();
        if failure.is_none()
            && group.durable
            && let Err(e) = self.watched_flush()
        {
            // The batch is applied in sled but may not be on disk; memory no
            // longer knows which. Refuse further work rather than diverge.
            self.failed.store(true, Ordering::Relaxed);
            failure = Some(e.to_string());
        }
        if group.durable {
            metrics::histogram!("offer_bandit_flush_duration_seconds")
                .record(flush_started.elapsed().as_secs_f64());
        }
        if let Some(f) = &failure {
            tracing::error!(error = %f, "storage write failed");
            // Decisions answered already are lost with the group: stop
            // taking work (the server turns unhealthy) rather than answer
            // more that may not be stored.
            if group
                .replies
                .iter()
                .any(|r| matches!(r, Reply::Select(None, _)))
            {
                self.failed.store(true, Ordering::Relaxed);
            }
        } else {
            if checkpoint {
                self.dirty.clear();
                self.last_checkpoint_ms = now_ms;
            }
            metrics::counter!("offer_bandit_expiries_total").increment(group.expired);
            for (campaign, status) in group.statuses {
                if let Some(c) = self.campaign(&campaign) {
                    *c.status.write() = status;
                }
            }
            self.publish_traffic(group.traffic);
            for ((campaign, offer), counts) in group.daily {
                if let Some(c) = self.campaign(&campaign)
                    && let Some(slot) = c.daily.write().get_mut(offer)
                {
                    *slot = counts;
                }
            }
            for ((campaign, arm), counts) in group.arms {
                if let Some(c) = self.campaign(&campaign) {
                    c.arms.write()[arm.index()] = counts;
                }
            }
            for ((campaign, arm), sums) in group.clusters {
                if let Some(c) = self.campaign(&campaign) {
                    c.clusters.write()[arm.index()] = sums;
                }
            }
            self.publish_counts(group.cells, group.delays, group.reweigh_at);
            self.publish_models(group.models, &group.versions);
            for (campaign, prior) in group.priors {
                if let Some(c) = self.campaign(&campaign)
                    && let Some(ctx) = &c.contextual
                {
                    *ctx.prior.write() = prior;
                }
            }
        }
        for reply in group.replies {
            reply.send(failure.as_deref());
        }
        failure.is_none()
    }

    /// After the group is stored: each contextual campaign's changed
    /// posteriors, published as the campaign's next snapshot in one swap
    /// with their version (the sequence number of the group's last event
    /// of the campaign; an erasure, which learns no event, leaves it), so
    /// that a decision samples a whole group's change or none of it and
    /// logs which.
    fn publish_models(
        &self,
        models: FastMap<(String, usize), GaussianPosterior>,
        versions: &FastMap<String, u64>,
    ) {
        let mut by_campaign: HashMap<String, Vec<(usize, GaussianPosterior)>> = HashMap::new();
        for ((campaign, offer), posterior) in models {
            by_campaign
                .entry(campaign)
                .or_default()
                .push((offer, posterior));
        }
        for (campaign, posteriors) in by_campaign {
            if let Some(c) = self.campaign(&campaign)
                && let Some(ctx) = &c.contextual
            {
                ctx.models
                    .publish(posteriors, versions.get(&campaign).copied());
            }
        }
    }

    /// After the group is stored: each campaign's changed cells, their counts
    /// and pending decisions' moves (each cell's in the group's order), then
    /// its redemption delays (a delay is learned only when its window closes,
    /// at a reweighing, so the moves do not depend on it) and, at a sweep,
    /// every campaign's pending decisions reweighed by their age; published
    /// as the campaign's next snapshot of counts in one swap
    /// ([`PublishedSegments::change`]), so that a decision reads a whole
    /// group's change or none of it.
    fn publish_counts(
        &self,
        cells: crate::fast_map::LookupMap<(String, String, usize), (CellCounts, PendingMoves)>,
        delays: Vec<RedemptionDelay>,
        reweigh_at: Option<i64>,
    ) {
        #[derive(Default)]
        struct Changes {
            /// Each cell's counts and pending moves, in order.
            cells: Vec<(String, usize, CellCounts, PendingMoves)>,
            /// Redemption delays, `(decided_ms, redeemed_ms)`.
            delays: Vec<(i64, i64)>,
        }
        let mut by_campaign: HashMap<String, Changes> = HashMap::new();
        for ((campaign, segment, offer), (counts, moves)) in cells {
            by_campaign
                .entry(campaign)
                .or_default()
                .cells
                .push((segment, offer, counts, moves));
        }
        for RedemptionDelay {
            campaign,
            decided_ms,
            redeemed_ms,
        } in delays
        {
            // A contextual campaign's delay model is its own.
            if let Some(c) = self.campaign(&campaign)
                && let Some(ctx) = &c.contextual
            {
                ctx.delays
                    .write()
                    .learner
                    .redemption(decided_ms, redeemed_ms);
                continue;
            }
            by_campaign
                .entry(campaign)
                .or_default()
                .delays
                .push((decided_ms, redeemed_ms));
        }
        let campaigns: Vec<(String, Arc<Campaign>)> = match reweigh_at {
            // A sweep reweighs every campaign.
            Some(_) => self
                .campaigns
                .read()
                .iter()
                .map(|(id, c)| (id.clone(), c.clone()))
                .collect(),
            None => by_campaign
                .keys()
                .filter_map(|id| Some((id.clone(), self.campaign(id)?)))
                .collect(),
        };
        for (id, c) in campaigns {
            let changes = by_campaign.remove(&id).unwrap_or_default();
            c.model.change(|m| {
                let mut changed = !changes.cells.is_empty() || !changes.delays.is_empty();
                for (segment, offer, counts, moves) in &changes.cells {
                    m.set_cell(segment, *offer, *counts);
                    m.move_pending_all(segment, *offer, moves);
                }
                for &(decided_ms, redeemed_ms) in &changes.delays {
                    m.redemption_delay(decided_ms, redeemed_ms);
                }
                if let Some(now_ms) = reweigh_at {
                    changed |= m.reweigh(now_ms);
                }
                changed
            });
        }
    }

    /// Adds the counts the group changed to its writes, each once however
    /// many of its commands changed it.
    fn stage_counts(&self, group: &mut Group) {
        for ((campaign, segment, offer), (counts, _)) in &group.cells {
            if let Some(id) = self.offer_id(campaign, *offer) {
                let cell = CellKey {
                    campaign: campaign.clone(),
                    segment: segment.clone(),
                    offer: id,
                };
                group.writes.put_cell(&cell, counts);
            }
        }
        for ((campaign, arm), counts) in &group.arms {
            group.writes.put_arm(campaign, *arm, counts);
        }
        for ((campaign, offer), counts) in &group.daily {
            if let Some(id) = self.offer_id(campaign, *offer) {
                group.writes.put_daily(campaign, &id, counts);
            }
        }
    }

    /// The id of offer `index` of `campaign`.
    fn offer_id(&self, campaign: &str, index: usize) -> Option<String> {
        Some(self.campaign(campaign)?.offers.get(index)?.id.clone())
    }
}
