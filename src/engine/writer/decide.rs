//! Recording a decision: idempotency, budgets and frequency caps, counts.

use super::*;

impl Writer {
    /// Why a decision's offer has no decision budget left, counting the
    /// decisions staged in this group, or None.
    pub(super) fn decision_budget_spent(
        &mut self,
        g: &mut Group,
        campaign: &Campaign,
        rec: &DecisionRecord,
    ) -> Result<Option<String>, Error> {
        if !campaign.limited {
            return Ok(None);
        }
        if let (Some(cap), Some(customer)) = (&campaign.config.frequency_cap, &rec.customer) {
            let ids = self.customer_decisions(g, customer)?;
            let seen = offers_seen(ids, &rec.campaign, cap_start(cap, rec.created_ms), |id| {
                self.decision(g, id)
            })?;
            if let Some(why) = cap_reached(cap, seen.get(&rec.offer).copied().unwrap_or(0)) {
                return Ok(Some(why));
            }
        }
        Ok(self.decision_count_spent(g, campaign, rec))
    }

    /// The decision-budget part of [`Writer::decision_budget_spent`];
    /// counts the decision in the group's staged trials when it passes.
    pub(super) fn decision_count_spent(
        &mut self,
        g: &mut Group,
        campaign: &Campaign,
        rec: &DecisionRecord,
    ) -> Option<String> {
        let cfg = campaign.config.offers.iter().find(|o| o.id == rec.offer)?;
        if cfg.max_decisions.is_none() && cfg.max_decisions_per_day.is_none() {
            return None;
        }
        let i = campaign.offer_index(&rec.offer)?;
        let staged = stage(
            &mut g.trials,
            StagedOffer(&rec.campaign, i),
            || (rec.campaign.clone(), i),
            || 0,
        );
        let trials = campaign.model.load().totals(i).trials + *staged;
        let today = match g.daily.get(&StagedOffer(&rec.campaign, i)) {
            Some(d) => *d,
            None => campaign.daily.read().get(i).copied().unwrap_or_default(),
        };
        let why =
            crate::budget::decisions_exhausted(cfg, trials, today, &campaign.pace(rec.created_ms));
        if why.is_none() {
            *staged += 1;
        }
        why
    }

    /// Records a decision; `shown`: SelectOffer answered it already (no
    /// budget, cap or request id to decide), so it is recorded as made.
    pub(super) fn decide(
        &mut self,
        g: &mut Group,
        id: DecisionId,
        rec: Box<DecisionRecord>,
        shown: bool,
    ) -> Result<Decided, Error> {
        if let Some(rid) = &rec.request_id {
            let staged = g
                .requests
                .get(&(rec.campaign.clone(), rid.clone()))
                .copied();
            let existing = match staged {
                Some(e) => Some(e),
                None => self.store.request(&rec.campaign, rid)?,
            };
            if let Some(eid) = existing
                && let Some(erec) = self.decision(g, &eid)?
                && erec.expires_ms > rec.created_ms
            {
                replay_for(erec.customer.as_ref(), rec.customer.as_ref())?;
                return Ok(Decided::Made(Selection::from_record(eid, &erec, true)));
            }
        }
        let campaign = self.campaign_of(&rec);
        if let Some(campaign) = &campaign {
            // A request that read the campaign before its retirement landed
            // (one that was answered already is a fact to record).
            if campaign.revision.retired && !shown {
                return Err(retired_error(&rec.campaign));
            }
            // SelectOffer checked the budgets against committed counts;
            // decisions made meanwhile are only known here.
            // A fallback, or a decision answered already, was shown: it is
            // counted, never refused.
            if rec.arm == Arm::Fallback || shown {
                // Staged trials are read by budget checks only.
                if campaign.limited
                    && let Some(i) = campaign.offer_index(&rec.offer)
                {
                    *stage(
                        &mut g.trials,
                        StagedOffer(&rec.campaign, i),
                        || (rec.campaign.clone(), i),
                        || 0,
                    ) += 1;
                }
            } else if let Some(why) = self.decision_budget_spent(g, campaign, &rec)? {
                let DecisionRecord { offer, context, .. } = *rec;
                return Ok(Decided::Spent {
                    offer,
                    why,
                    kept: context,
                });
            }
        }
        if let Some(rid) = &rec.request_id {
            g.writes.put_request(&rec.campaign, rid, &id);
            g.requests.insert((rec.campaign.clone(), rid.clone()), id);
        }
        if let Some(campaign) = &campaign {
            Self::change_cell(g, campaign, &rec, |c| c.trials += 1);
            Self::change_arm(g, campaign, &rec, |a| a.decisions += 1);
            Self::change_daily(g, campaign, &rec, rec.created_ms, |d| d.decisions += 1);
            Self::count_traffic(g, campaign, &rec);
            Self::await_reveal(campaign, &rec, id);
        }
        if let Some(c) = &rec.customer {
            g.writes.put_customer(c, &id);
        }
        // Looked up before inserting: no key allocated per decision.
        match g.expiries.get_mut(&rec.campaign) {
            Some((last, ids)) => {
                *last = (*last).max(rec.expires_ms);
                ids.push(id);
            }
            None => {
                g.expiries
                    .insert(rec.campaign.clone(), (rec.expires_ms, vec![id]));
            }
        }
        let selection = Selection::from_record(id, &rec, false);
        self.add_decision(g, id, rec);
        g.durable |= self.options.durable_decisions;
        Ok(Decided::Made(selection))
    }
}
