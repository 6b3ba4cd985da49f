//! `offer-sim drive`: scenario customers visiting a live server over gRPC.
//! Each visit asks `SelectOffer` with the visit's context; the scenario's
//! true probability of the chosen offer decides, with a seeded coin, whether
//! it is redeemed, and redemptions go back through `RecordRedemptions`.
//! This is how a log for off-policy evaluation is made in tests and demos.

use anyhow::Context as _;
use offer_bandit::{
    FeatureValue,
    proto::{self, feature_value::Kind, offer_service_client::OfferServiceClient},
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::scenario::{Scenario, SimVisit};

/// What a drive did.
#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct Driven {
    pub(crate) decisions: u64,
    pub(crate) redemptions: u64,
    /// Redemptions the server refused (late, unknown); should be 0.
    pub(crate) rejected: u64,
    /// Mean true probability of the offers the server chose.
    pub(crate) mean_expected_reward: f64,
}

/// A context value on the wire.
pub(crate) fn to_proto(v: &FeatureValue) -> proto::FeatureValue {
    let kind = match v {
        FeatureValue::Number(n) => Kind::Number(*n),
        FeatureValue::Category(c) => Kind::Category(c.clone()),
        FeatureValue::Flag(b) => Kind::Flag(*b),
    };
    proto::FeatureValue { kind: Some(kind) }
}

/// Sends `decisions` scenario visits to `campaign` at `target`, `wave` at a
/// time, redeeming per the scenario's truth.
pub(crate) async fn drive(
    target: &str,
    scenario: &Scenario,
    campaign: &str,
    decisions: u64,
    wave: usize,
    seed: u64,
) -> anyhow::Result<Driven> {
    let client = OfferServiceClient::connect(target.to_owned())
        .await
        .with_context(|| format!("cannot connect to {target}"))?;
    let mut visits_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0B5E_55ED);
    let mut coins = ChaCha8Rng::seed_from_u64(seed ^ 0xC0_1115);
    let mut out = Driven::default();
    let mut expected = 0.0;
    let mut round = 0;
    while round < decisions {
        let n = wave.min((decisions - round) as usize);
        let mut calls = Vec::with_capacity(n);
        for _ in 0..n {
            let mut v = SimVisit::new();
            scenario.draw_visit(round, &mut visits_rng, &mut v);
            round += 1;
            let req = proto::SelectOfferRequest {
                campaign: campaign.to_owned(),
                context: v
                    .context
                    .iter()
                    .map(|(k, x)| (k.clone(), to_proto(x)))
                    .collect(),
                candidate_offer_ids: v
                    .candidates
                    .iter()
                    .map(|&c| scenario.offers()[c].id.clone())
                    .collect(),
                ..Default::default()
            };
            let mut c = client.clone();
            calls.push((v, tokio::spawn(async move { c.select_offer(req).await })));
        }
        let mut redeemed = Vec::new();
        for (v, call) in calls {
            let resp = call
                .await?
                .map_err(|s| anyhow::anyhow!("SelectOffer: {}: {}", s.code(), s.message()))?
                .into_inner();
            let k = scenario
                .offers()
                .iter()
                .position(|o| o.id == resp.offer_id)
                .with_context(|| {
                    format!(
                        "the server chose '{}', which the scenario does not have",
                        resp.offer_id
                    )
                })?;
            expected += v.p[k];
            out.decisions += 1;
            if coins.random::<f64>() < v.p[k] {
                redeemed.push(proto::RecordRedemptionRequest {
                    decision_id: resp.decision_id,
                    offer_id: resp.offer_id,
                    value: None,
                });
            }
        }
        if !redeemed.is_empty() {
            let mut c = client.clone();
            let r = c
                .record_redemptions(tokio_stream::iter(redeemed))
                .await
                .map_err(|s| anyhow::anyhow!("RecordRedemptions: {}: {}", s.code(), s.message()))?
                .into_inner();
            out.redemptions += r.applied;
            out.rejected += r.rejected;
        }
    }
    out.mean_expected_reward = expected / out.decisions.max(1) as f64;
    Ok(out)
}
