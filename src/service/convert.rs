//! Engine answers to protobuf replies.

use crate::{
    context::FeatureValue,
    engine::CampaignStats,
    proto::{self, feature_value::Kind},
};

pub(super) fn log_entry(
    id: String,
    rec: crate::decision::DecisionRecord,
) -> proto::DecisionLogEntry {
    use crate::decision::DecisionState;
    let (outcome, value, redeemed_unix_ms) = match rec.state {
        DecisionState::Pending => ("pending", None, None),
        DecisionState::Redeemed { value, at_ms } => ("redeemed", Some(value), Some(at_ms)),
        DecisionState::Expired => ("expired", None, None),
    };
    proto::DecisionLogEntry {
        arm: rec.arm.as_str().to_owned(),
        request_id: rec.request_id.unwrap_or_default(),
        decision_id: id,
        campaign: rec.campaign,
        created_unix_ms: rec.created_ms,
        expires_unix_ms: rec.expires_ms,
        context: rec
            .context
            .into_iter()
            .map(|(k, v)| {
                let kind = match v {
                    FeatureValue::Number(n) => Kind::Number(n),
                    FeatureValue::Category(c) => Kind::Category(c),
                    FeatureValue::Flag(b) => Kind::Flag(b),
                };
                (k, proto::FeatureValue { kind: Some(kind) })
            })
            .collect(),
        candidate_offer_ids: rec.candidates.to_vec(),
        offer_id: rec.offer,
        propensity: rec.propensity,
        model_version: rec.model_version,
        segment: rec.segment,
        outcome: outcome.to_owned(),
        value,
        redeemed_unix_ms,
    }
}

pub(super) fn estimate(e: crate::uplift::Estimate) -> Option<proto::Estimate> {
    Some(proto::Estimate {
        value: e.value,
        low: e.low,
        high: e.high,
    })
}

pub(super) fn arm_to_proto(a: crate::uplift::ArmSummary) -> proto::ArmReport {
    proto::ArmReport {
        arm: a.arm.as_str().to_owned(),
        decisions: a.counts.decisions,
        redemptions: a.counts.redemptions,
        pending: a.counts.pending(),
        redemption_rate: estimate(a.rate),
        value_per_1000: estimate(a.value_per_1000),
        closed_decisions: a.closed.decisions.round() as u64,
        closed_redemptions: a.closed.redemptions.round() as u64,
        customers: a.closed.clusters,
    }
}

pub(super) fn report_to_proto(r: crate::engine::CampaignReport) -> proto::CampaignReport {
    let cells = stats_to_proto(CampaignStats {
        campaign: r.campaign.clone(),
        offers: Vec::new(),
        cells: r.cells,
        model_version: 0,
        learned_prior: Default::default(),
    })
    .cells;
    proto::CampaignReport {
        campaign: r.campaign,
        control_share: r.control_share,
        bandit: Some(arm_to_proto(r.bandit)),
        control: Some(arm_to_proto(r.control)),
        fallback: Some(arm_to_proto(r.fallback)),
        non_personalized: Some(arm_to_proto(r.non_personalized)),
        uplift: r.uplift.map(|u| proto::UpliftReport {
            rate_difference: estimate(u.rate_difference),
            rate_relative: u.rate_relative.and_then(estimate),
            value_per_1000_difference: estimate(u.value_per_1000_difference),
        }),
        offers: r
            .offers
            .into_iter()
            .map(|o| proto::OfferReport {
                offer_id: o.offer_id,
                decisions: o.counts.trials,
                redemptions: o.counts.successes,
                traffic_share: o.share,
                decisions_left: o.decisions_left,
                redemptions_left: o.redemptions_left,
                decisions_left_today: o.decisions_left_today,
                redemptions_left_today: o.redemptions_left_today,
                budget_status: o.budget_status.label().to_owned(),
                budget_reason: o.budget_status.why().to_owned(),
                decisions_allowed_by_now: o.decisions_allowed_by_now,
                redemptions_allowed_by_now: o.redemptions_allowed_by_now,
                posterior: Some(proto::Estimate {
                    value: o.posterior_mean,
                    low: o.posterior_low,
                    high: o.posterior_high,
                }),
            })
            .collect(),
        cells,
        pacing: Some(proto::PacingStatus {
            time_zone: r.pacing.time_zone,
            local_time: r.pacing.local_time,
            day_gone: r.pacing.day_gone,
            learned: r.pacing.learned,
            profile: r.pacing.profile,
        }),
    }
}

pub(super) fn stats_to_proto(s: CampaignStats) -> proto::GetCampaignStatsResponse {
    proto::GetCampaignStatsResponse {
        campaign: s.campaign,
        offers: s
            .offers
            .into_iter()
            .map(|o| proto::OfferStats {
                offer_id: o.offer_id,
                decisions: o.counts.trials,
                pending: o.counts.pending(),
                redeemed: o.counts.successes,
                expired: o.counts.expired,
                value_sum: o.counts.value_sum,
                model_observations: o.model_observations,
                mean_predicted_rate: o.mean_predicted_rate,
            })
            .collect(),
        cells: s
            .cells
            .into_iter()
            .map(|c| proto::CellStats {
                segment: c.segment,
                offer_id: c.offer_id,
                alpha: c.alpha,
                beta: c.beta,
                trials: c.counts.trials,
                successes: c.counts.successes,
                mean: c.alpha / (c.alpha + c.beta),
            })
            .collect(),
        model_version: s.model_version,
        feature_priors: s
            .learned_prior
            .groups
            .into_iter()
            .map(|f| proto::FeaturePrior {
                feature: f.feature,
                part: f.part,
                prior_variance: f.prior_variance,
            })
            .collect(),
        prior_events: s.learned_prior.events,
        prior_rate: s.learned_prior.rate,
        offer_effects: s
            .learned_prior
            .offer_effects
            .into_iter()
            .map(|e| proto::OfferFeatureEffect {
                offer_feature: e.offer_feature,
                context: e.context,
                effect: e.effect,
            })
            .collect(),
    }
}
