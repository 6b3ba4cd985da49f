//! Redemptions and expiry: each decision ends as one trial and at most one
//! success.

use super::*;

impl Writer {
    pub(super) fn redeem(
        &mut self,
        g: &mut Group,
        r: &Redemption,
        now_ms: i64,
    ) -> Result<Redeemed, Error> {
        let id = r.decision_id;
        let Some(mut rec) = self.decision(g, &id)? else {
            return Err(Error::unknown_decision());
        };
        if let Some(offer) = &r.offer_id
            && *offer != rec.offer
        {
            // The message does not name the decision's offer: an id is a
            // bearer handle, and its offer is the holder's business only.
            return Err(Error::InvalidArgument(format!(
                "offer_id '{offer}' is not the offer this decision chose"
            )));
        }
        let outcome = |already_recorded| Redeemed {
            already_recorded,
            offer_id: rec.offer.clone(),
            campaign: rec.campaign.clone(),
        };
        match rec.state {
            DecisionState::Redeemed { .. } => Ok(outcome(true)),
            DecisionState::Expired => Err(late(rec.expires_ms)),
            DecisionState::Pending if now_ms > rec.expires_ms => {
                let expires_ms = rec.expires_ms;
                self.expire(g, id, rec);
                Err(late(expires_ms))
            }
            DecisionState::Pending => {
                let value = match r.value {
                    Some(v) => v,
                    None => self.offer_value(&rec),
                };
                if let Some(max) = self.offer_max_value(&rec)
                    && value > max
                {
                    return Err(Error::InvalidArgument(format!(
                        "value {value} is above this offer's max_value ({max}); nothing was recorded"
                    )));
                }
                let result = outcome(false);
                if let Some(campaign) = self.campaign_of(&rec) {
                    Self::change_cell(g, &campaign, &rec, |c| {
                        c.successes += 1;
                        c.value_sum += value;
                    });
                    Self::change_daily(g, &campaign, &rec, now_ms, |d| d.redemptions += 1);
                    Self::change_arm(g, &campaign, &rec, |a| {
                        a.redemptions += 1;
                        a.value_sum += value;
                        a.value_sq_sum += value * value;
                    });
                }
                g.delays.push(RedemptionDelay {
                    campaign: rec.campaign.clone(),
                    decided_ms: rec.created_ms,
                    redeemed_ms: now_ms,
                });
                rec.redeemed_seq = self.learn(g, &rec, true);
                rec.state = DecisionState::Redeemed {
                    value,
                    at_ms: now_ms,
                };
                self.put_decision(g, id, rec);
                Ok(result)
            }
        }
    }

    /// The offer's configured cap on one redemption's value, if any.
    pub(super) fn offer_max_value(&self, rec: &DecisionRecord) -> Option<f64> {
        let campaign = self.campaign(&rec.campaign)?;
        let offer = campaign.config.offers.iter().find(|o| o.id == rec.offer)?;
        offer.max_value
    }

    pub(super) fn offer_value(&self, rec: &DecisionRecord) -> f64 {
        self.campaign(&rec.campaign)
            .and_then(|c| c.offer_index(&rec.offer).map(|i| c.offers[i].value))
            .unwrap_or(0.0)
    }

    /// Finalizes a pending decision as not redeemed and drops its request
    /// key. Its expiry entry goes when the sweep has handled the whole entry.
    pub(super) fn expire(&mut self, g: &mut Group, id: DecisionId, mut rec: DecisionRecord) {
        if rec.learned_seq == 0 {
            // Not revealed yet: its window's close reveals it.
            rec.learned_seq = self.learn(g, &rec, false);
        }
        if let Some(campaign) = self.campaign_of(&rec) {
            Self::change_cell(g, &campaign, &rec, |c| c.expired += 1);
            Self::change_arm(g, &campaign, &rec, |a| a.expired += 1);
        }
        g.expired += 1;
        self.drop_request(g, id, &rec);
        rec.state = DecisionState::Expired;
        self.put_decision(g, id, rec);
    }

    pub(super) fn drop_request(&mut self, g: &mut Group, id: DecisionId, rec: &DecisionRecord) {
        if let Some(rid) = &rec.request_id {
            let key = (rec.campaign.clone(), rid.clone());
            // Only if the key still points at this decision.
            let current = match g.requests.get(&key) {
                Some(c) => Some(*c),
                None => self.store.request(&rec.campaign, rid).ok().flatten(),
            };
            if current == Some(id) {
                g.writes.remove_request(&rec.campaign, rid);
                g.requests.remove(&key);
            }
        }
    }

    /// Finalizes the decisions of due expiry entries (at least `limit` of
    /// them when that many are due), counts each into its arm's
    /// per-customer sums, and drops the entries; returns how many decisions
    /// it looked at.
    pub(super) fn sweep(
        &mut self,
        g: &mut Group,
        now_ms: i64,
        limit: usize,
    ) -> Result<usize, Error> {
        let due: Vec<ExpiryEntry> = self.store.due_expiries(now_ms, limit)?;
        let mut n = 0;
        for entry in due {
            // Everything an entry needs is read before any of it is staged:
            // a failed read leaves the entry whole for the next sweep, and
            // nothing of it counted.
            let mut records = Vec::with_capacity(entry.ids.len());
            for &id in &entry.ids {
                if let Some(rec) = self.decision(g, &id)? {
                    self.prepare_close(g, &rec)?;
                    records.push((id, rec));
                }
            }
            n += entry.ids.len();
            // Every decision is in one entry, which goes with this group:
            // counted once, redeemed or not, when its window closes (an
            // erased one is gone, and so is its customer's cluster).
            for (id, rec) in records {
                self.count_closed(g, &rec);
                if rec.state == DecisionState::Pending {
                    self.expire(g, id, rec);
                } else {
                    self.drop_request(g, id, &rec);
                }
            }
            g.writes.remove_expiries(&entry);
        }
        self.reveal(g, now_ms)?;
        g.reweigh_at = Some(now_ms);
        Ok(n)
    }

    /// Learns the non-redemptions of contextual campaigns' pending
    /// decisions that are due at `now_ms`'s tick
    /// ([`crate::policy::delay::Reveals`]), under each campaign's delay
    /// model as of that tick (the delays of windows closed by its start).
    /// A decision redeemed, closed or erased since is skipped; one whose
    /// record cannot be read goes back to wait for the next sweep.
    fn reveal(&mut self, g: &mut Group, now_ms: i64) -> Result<(), Error> {
        let campaigns: Vec<Arc<Campaign>> = self.campaigns.read().values().cloned().collect();
        for campaign in campaigns {
            let Some(ctx) = &campaign.contextual else {
                continue;
            };
            let due = {
                let mut delays = ctx.delays.write();
                delays.learner.advance(now_ms);
                let super::campaign::Delays { learner, reveals } = &mut *delays;
                reveals.due(learner.model(), now_ms)
            };
            for (k, id) in due.iter().enumerate() {
                let rec = match self.decision(g, id) {
                    Ok(rec) => rec,
                    Err(e) => {
                        let mut delays = ctx.delays.write();
                        for id in &due[k..] {
                            delays.add(*id, id.created_ms());
                        }
                        return Err(e);
                    }
                };
                let Some(mut rec) = rec else { continue };
                if rec.state != DecisionState::Pending || rec.learned_seq != 0 {
                    continue;
                }
                rec.learned_seq = self.learn(g, &rec, false);
                if rec.learned_seq != 0 {
                    self.put_decision(g, *id, rec);
                }
            }
        }
        Ok(())
    }
}

/// The answer for a redemption after its window. It names no id: the
/// stored locator is not the id the caller sent.
pub(super) fn late(expires_ms: i64) -> Error {
    Error::refused(
        crate::error::Reason::RedemptionLate,
        format!(
            "this decision is past its reward window (closed at unix ms {expires_ms}); late redemptions are not counted"
        ),
    )
}
