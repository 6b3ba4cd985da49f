//! Erasure and retention: a customer's decisions out of the store and out
//! of the posteriors; resolved records pruned.

use super::*;

impl Writer {
    /// Erases a customer's decisions: subtracts each from its cell (and
    /// regression posterior), then deletes the record and its indexes; and
    /// removes the customer's clusters from the report's sums.
    pub(super) fn forget(
        &mut self,
        g: &mut Group,
        customer: &CustomerHash,
    ) -> Result<Forgotten, Error> {
        let ids = self.customer_decisions(g, customer)?;
        let mut out = Forgotten {
            exact: true,
            ..Forgotten::default()
        };
        // Read everything first: a failed read must not leave half an
        // erasure staged in this group.
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            let rec = self.decision(g, &id)?;
            records.push((id, rec));
        }
        // What this erasure removes, for counting the observations that
        // came after each (they discounted it) once they are staged away.
        let erasing: HashMap<DecisionId, DecisionRecord> = records
            .iter()
            .filter_map(|(id, rec)| rec.clone().map(|r| (*id, r)))
            .collect();
        // Out of the report's sums: the customer's whole cluster, in every
        // campaign and arm (their totals outlive pruned records).
        self.forget_clusters(g, customer)?;
        for (id, rec) in records {
            g.writes.remove_customer(customer, &id);
            let Some(rec) = rec else {
                continue; // pruned or erased before: only the index was left
            };
            if rec.customer.as_ref() != Some(customer) {
                continue;
            }
            if let Some(campaign) = self.campaign_of(&rec) {
                Self::change_cell(g, &campaign, &rec, |c| {
                    c.trials = c.trials.saturating_sub(1);
                    match rec.state {
                        DecisionState::Pending => {}
                        DecisionState::Redeemed { value, .. } => {
                            c.successes = c.successes.saturating_sub(1);
                            c.value_sum -= value;
                        }
                        DecisionState::Expired => c.expired = c.expired.saturating_sub(1),
                    }
                });
                Self::change_arm(g, &campaign, &rec, |a| {
                    a.decisions = a.decisions.saturating_sub(1);
                    match rec.state {
                        DecisionState::Pending => {}
                        DecisionState::Redeemed { value, .. } => {
                            a.redemptions = a.redemptions.saturating_sub(1);
                            a.value_sum -= value;
                            a.value_sq_sum -= value * value;
                        }
                        DecisionState::Expired => a.expired = a.expired.saturating_sub(1),
                    }
                });
            }
            if let Some(exact) = self.unlearn(g, &rec, &erasing) {
                out.model_updates += 1;
                out.exact &= exact;
            }
            self.drop_request(g, id, &rec);
            g.writes.remove_decision(&id);
            out.decisions += 1;
        }
        Ok(out)
    }

    /// Subtracts a decision from its contextual posterior: `None` when the
    /// campaign is not contextual, else whether the subtraction was exact.
    /// `erasing`: the records this erasure removes (some already staged
    /// away), which count among the observations after `rec`.
    pub(super) fn unlearn(
        &mut self,
        g: &mut Group,
        rec: &DecisionRecord,
        erasing: &HashMap<DecisionId, DecisionRecord>,
    ) -> Option<bool> {
        let campaign = self.campaign(&rec.campaign)?;
        let ctx = campaign.contextual.as_ref()?;
        let offer = campaign.offer_index(&rec.offer)?;
        if rec
            .features
            .iter()
            .any(|(i, _)| *i as usize >= ctx.encoder.dim())
        {
            return Some(false); // never learned (encoded under other features)
        }
        // A decision holds one observation: its redemption, else its
        // non-redemption once learned (revealed or closed); a decision
        // still waiting for its reveal holds nothing yet. (A decision
        // redeemed before this scheme, under decision-time negatives, also
        // holds its non-redemption, which stays.)
        let redeemed = matches!(rec.state, DecisionState::Redeemed { .. });
        if (redeemed && rec.redeemed_seq == 0) || (!redeemed && rec.learned_seq == 0) {
            return None;
        }
        let key = (rec.campaign.clone(), offer);
        let mut posterior = match g.models.remove(&key) {
            Some(p) => p,
            None => ctx.models.load().get(offer)?.clone(),
        };
        // The weight forgetting left each observation, and the prior no
        // removal may widen the posterior past.
        let learned = match g.priors.get(&rec.campaign) {
            Some(p) => Some(p.clone()),
            None => ctx.config.adaptive_prior.then(|| ctx.prior.read().clone()),
        };
        let dim = ctx.encoder.dim();
        let variances =
            crate::policy::forgetting::offer_prior(learned.as_ref(), dim, &[], &ctx.config).1;
        let over_time =
            crate::policy::forgetting::kept_over_time(&ctx.config, &posterior, rec.created_ms);
        let (later_decision, later_redemption) = match ctx.config.half_life {
            Some(_) => self.later_observations(g, rec, erasing, campaign.reward_window_ms()),
            None => (0, 0),
        };
        let over_count = |n| crate::policy::forgetting::kept_over_count(&ctx.config, n);
        let removal = crate::policy::contextual::Removal {
            decision_weight: over_time * over_count(later_decision),
            redemption_weight: over_time * over_count(later_redemption),
            // An observation learned after the clock moved on (a
            // redemption, a revealed non-redemption) holds a little more
            // than its decision's age says; while the clock is still at the
            // decision's tick, nothing has been discounted.
            weights_are_exact: ctx.config.half_life.is_none()
                && posterior.change.kept(rec.created_ms) == 1.0
                && (ctx.config.time_half_life_ms.is_none()
                    || posterior.forgotten_to_ms
                        <= crate::policy::forgetting::tick_of(rec.created_ms)),
            prior_variance: &variances,
        };
        let config = crate::policy::shared_prior::learning_config(&ctx.config, learned.as_ref());
        let mut exact = posterior.unlearn_decision(&rec.features, redeemed, &removal, &config);
        if posterior.learned_nothing() {
            // Everything it learned is erased: it is its prior again, as a
            // restart would build it.
            let features = &campaign.offers[offer].features;
            let dim = ctx.encoder.dim();
            posterior = match g.priors.get(&rec.campaign) {
                Some(p) => Contextual::prior_under(p, dim, &ctx.config, features),
                None => Contextual::prior_under(&ctx.prior.read(), dim, &ctx.config, features),
            };
        }
        if ctx.config.adaptive_prior {
            // Once the prior has been re-estimated, the decision also
            // shaped the learned variances, and through them every offer.
            let estimated = match g.priors.get(&rec.campaign) {
                Some(p) => p.has_estimated(),
                None => ctx.prior.read().has_estimated(),
            };
            exact &= !estimated;
        }
        self.dirty.insert(key.clone());
        g.models.insert(key, posterior);
        // The erased record can no longer be replayed: checkpoint now.
        g.checkpoint = true;
        Some(exact)
    }

    /// How many observations of `rec`'s offer were learned after its
    /// decision and after its redemption (count-based forgetting discounted
    /// them by these): learning events with later sequence numbers, stored,
    /// staged in this group, or erased by this erasure (`erasing`). Scans
    /// from a reward window (`window_ms`, or `rec`'s own if longer) before
    /// `rec`: an earlier decision's redemption may be learned after it.
    /// O(decisions since then); erasure is rare.
    fn later_observations(
        &self,
        g: &Group,
        rec: &DecisionRecord,
        erasing: &HashMap<DecisionId, DecisionRecord>,
        window_ms: i64,
    ) -> (u64, u64) {
        let (mut after_decision, mut after_redemption) = (0u64, 0u64);
        let mut count = |other: &DecisionRecord| {
            if other.campaign != rec.campaign || other.offer != rec.offer {
                return;
            }
            for seq in [other.learned_seq, other.redeemed_seq] {
                if seq == 0 {
                    continue;
                }
                after_decision += u64::from(seq > rec.learned_seq);
                after_redemption += u64::from(rec.redeemed_seq > 0 && seq > rec.redeemed_seq);
            }
        };
        let mut seen = std::collections::HashSet::new();
        // Staged in this group (set or erased) first; the store for the rest.
        for (id, other) in g.writes.staged_decisions() {
            seen.insert(*id);
            if let Some(other) = other.or_else(|| erasing.get(id)) {
                count(other);
            }
        }
        let window = window_ms.max(rec.expires_ms.saturating_sub(rec.created_ms));
        let scanned = self.store.scan_decisions(
            rec.created_ms.saturating_sub(window).saturating_sub(1),
            i64::MAX,
            &mut |id, other| {
                if !seen.contains(&id) {
                    count(&other);
                }
                true
            },
        );
        if let Err(e) = scanned {
            // The removal's prior bound still holds; the weight is then 1.
            tracing::warn!(error = %e, "could not count later observations for an erasure");
        }
        (after_decision, after_redemption)
    }

    /// Deletes resolved records past retention (see [`Engine::prune`]).
    pub(super) fn prune(
        &mut self,
        g: &mut Group,
        before_ms: i64,
        created_before: i64,
        limit: usize,
    ) -> Result<usize, Error> {
        let old = self.store.prunable(before_ms, created_before, limit)?;
        let n = old.len();
        for (id, rec) in old {
            if g.writes.staged_decision(&id).is_some() {
                continue; // changed in this group; next time
            }
            if let Some(c) = &rec.customer {
                g.writes.remove_customer(c, &id);
            }
            g.writes.remove_decision(&id);
            // A pruned record can no longer be replayed: checkpoint now.
            g.checkpoint = true;
        }
        Ok(n)
    }
}
