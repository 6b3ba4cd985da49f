//! Erasure and retention: a customer's decisions out of the store and out
//! of the posteriors; resolved records pruned.

use super::*;

impl Writer {
    /// Erases a customer's decisions: subtracts each from its cell (and
    /// regression posterior), then deletes the record and its indexes.
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
        for (id, rec) in records {
            g.writes.remove_customer(customer, &id);
            let Some(rec) = rec else {
                continue; // pruned or erased before: only the index was left
            };
            if rec.customer.as_ref() != Some(customer) {
                continue;
            }
            self.change_cell(g, &rec, |c| {
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
            self.change_arm(g, &rec, |a| {
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
            if let Some(exact) = self.unlearn(g, &rec) {
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
    pub(super) fn unlearn(&mut self, g: &mut Group, rec: &DecisionRecord) -> Option<bool> {
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
        let key = (rec.campaign.clone(), offer);
        let mut posterior = match g.models.remove(&key) {
            Some(p) => p,
            None => ctx.models.read().get(offer)?.clone(),
        };
        let redeemed = matches!(rec.state, DecisionState::Redeemed { .. });
        let mut exact = posterior.unlearn_decision(&rec.features, redeemed, &ctx.config);
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
