//! Counting a campaign's decisions by local hour: the traffic profile its
//! daily budgets are paced by, staged per group and stored once at commit,
//! with the decisions it counts.

use super::*;

impl Writer {
    /// Counts a new decision in its campaign's traffic profile, at the
    /// decision's own time (so a replay of the log counts the same).
    pub(super) fn count_traffic(g: &mut Group, campaign: &Campaign, rec: &DecisionRecord) {
        // Looked up before inserting: no key allocated per decision.
        if !g.traffic.contains_key(&rec.campaign) {
            g.traffic
                .insert(rec.campaign.clone(), campaign.traffic.read().clone());
        }
        if let Some(profile) = g.traffic.get_mut(&rec.campaign) {
            profile.count(rec.created_ms, &campaign.local_time);
        }
    }

    /// Adds the group's traffic profiles to its writes.
    pub(super) fn stage_traffic(group: &mut Group) {
        for (campaign, profile) in &group.traffic {
            group.writes.put_traffic(campaign, profile);
        }
    }

    /// After the group is stored: the profiles it counted are the
    /// campaigns' own.
    pub(super) fn publish_traffic(&self, traffic: FastMap<String, crate::budget::TrafficProfile>) {
        for (campaign, profile) in traffic {
            if let Some(c) = self.campaign(&campaign) {
                *c.traffic.write() = profile;
            }
        }
    }
}
