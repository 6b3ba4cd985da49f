//! Closed windows: each decision is counted once into its arm's
//! per-customer sums when its reward window closes (with its redemption, if
//! any), and an erased customer's cluster leaves them exactly. The report's
//! intervals are computed from these sums (see [`crate::uplift`]).

use super::*;

impl Writer {
    /// Reads into the group what counting `rec`'s closed window needs from
    /// the store (its customer's totals), so that [`Writer::count_closed`]
    /// cannot fail halfway through an expiry entry.
    pub(super) fn prepare_close(
        &mut self,
        g: &mut Group,
        rec: &DecisionRecord,
    ) -> Result<(), Error> {
        let Some(customer) = &rec.customer else {
            return Ok(());
        };
        let key = (*customer, rec.campaign.clone(), rec.arm);
        if g.totals.contains_key(&key) {
            return Ok(());
        }
        let stored = self
            .store
            .customer_totals(customer)?
            .into_iter()
            .find(|(c, a, _)| *c == rec.campaign && *a == rec.arm)
            .map(|(_, _, t)| t)
            .unwrap_or_default();
        // As stored: nothing to write until a decision changes it.
        g.totals.insert(key, Some(stored));
        Ok(())
    }

    /// Counts a decision whose reward window has closed (the sweep drops its
    /// expiry entry in the same group) into its arm's per-customer sums: a
    /// customer's next decision grows their cluster, an anonymous one is a
    /// cluster of its own. Reads nothing: [`Writer::prepare_close`] first.
    pub(super) fn count_closed(&mut self, g: &mut Group, rec: &DecisionRecord) {
        let Some(campaign) = self.campaign(&rec.campaign) else {
            return;
        };
        let value = match rec.state {
            DecisionState::Redeemed { value, .. } => Some(value),
            DecisionState::Pending | DecisionState::Expired => None,
        };
        let before = match &rec.customer {
            Some(customer) => g
                .totals
                .get(&(*customer, rec.campaign.clone(), rec.arm))
                .copied()
                .flatten()
                .unwrap_or_default(),
            None => CustomerTotals::default(),
        };
        let after = before.with_decision(value);
        let key = (rec.campaign.clone(), rec.arm);
        let mut sums = match g.clusters.get(&key) {
            Some(s) => *s,
            None => campaign.clusters.read()[rec.arm.index()],
        };
        sums.change_customer(before, after);
        g.writes.put_clusters(&rec.campaign, rec.arm, &sums);
        g.clusters.insert(key, sums);
        if let Some(customer) = &rec.customer {
            g.writes
                .put_customer_totals(customer, &rec.campaign, rec.arm, Some(after));
            g.totals
                .insert((*customer, rec.campaign.clone(), rec.arm), Some(after));
        }
    }

    /// Removes a customer's clusters from every arm's sums and deletes
    /// their totals (erasure): the sums become exactly those of the other
    /// customers. Returns how many clusters were removed.
    pub(super) fn forget_clusters(
        &mut self,
        g: &mut Group,
        customer: &CustomerHash,
    ) -> Result<usize, Error> {
        let mut current: HashMap<(String, Arm), CustomerTotals> = self
            .store
            .customer_totals(customer)?
            .into_iter()
            .map(|(campaign, arm, t)| ((campaign, arm), t))
            .collect();
        // What this group staged wins over the store.
        for ((c, campaign, arm), t) in &g.totals {
            if c == customer {
                match t {
                    Some(t) => current.insert((campaign.clone(), *arm), *t),
                    None => current.remove(&(campaign.clone(), *arm)),
                };
            }
        }
        // In a fixed order, so that the sums' rounding does not depend on
        // a hash.
        let mut current: Vec<_> = current.into_iter().collect();
        current.sort_by(|((c1, a1), _), ((c2, a2), _)| (c1, a1.index()).cmp(&(c2, a2.index())));
        let mut removed = 0;
        for ((campaign_id, arm), totals) in current {
            if totals.decisions == 0 {
                continue; // read by a sweep in this group, never counted
            }
            g.writes
                .put_customer_totals(customer, &campaign_id, arm, None);
            g.totals.insert((*customer, campaign_id.clone(), arm), None);
            let Some(campaign) = self.campaign(&campaign_id) else {
                continue; // a campaign no longer served: no sums to keep
            };
            let key = (campaign_id.clone(), arm);
            let mut sums = match g.clusters.get(&key) {
                Some(s) => *s,
                None => campaign.clusters.read()[arm.index()],
            };
            sums.change_customer(totals, CustomerTotals::default());
            g.writes.put_clusters(&campaign_id, arm, &sums);
            g.clusters.insert(key, sums);
            removed += 1;
        }
        Ok(removed)
    }
}
