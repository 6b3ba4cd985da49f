//! SelectOffer: validate the request, decide, convert the reply.

use tonic::{Request, Response, Status};

use super::{
    Api, Limits,
    convert::estimate,
    truncate,
    wire::{SelectOfferRequest, split_context},
};
use crate::{
    config::valid_id,
    context::{Context, FeatureValue},
    engine::SelectRequest,
    error::{Error, Reason},
    proto,
};

impl Api {
    /// RecordFallback: validated as a SelectOffer for its campaign and
    /// context, then recorded in the fallback arm.
    pub(super) async fn fallback(
        &self,
        request: Request<proto::RecordFallbackRequest>,
    ) -> Result<Response<proto::RecordFallbackResponse>, Status> {
        let r = request.into_inner();
        if r.offer_id.is_empty() {
            return Err(Error::InvalidArgument(
                "offer_id is required: the offer that was shown".into(),
            )
            .into());
        }
        if !valid_id(&r.offer_id) {
            return Err(Error::InvalidArgument(format!(
                "offer_id '{}' is not an offer id",
                truncate(&r.offer_id)
            ))
            .into());
        }
        let req = validate_select(
            &self.limits,
            proto::SelectOfferRequest {
                campaign: r.campaign,
                context: r.context,
                candidate_offer_ids: Vec::new(),
                customer_id: r.customer_id,
                request_id: r.request_id,
                explain: false,
                personalization_consent: r.personalization_consent,
            }
            .into(),
        )?;
        let s = self.engine.record_fallback(req, &r.offer_id).await?;
        Ok(Response::new(proto::RecordFallbackResponse {
            decision_id: self.engine.id_keys().encode(&s.decision_id),
            expires_at_unix_ms: s.expires_ms,
            replayed: s.replayed,
        }))
    }

    /// The display name and attributes of `offer` in `campaign` (empty when
    /// it is no longer configured, as for a replay of an old decision).
    fn shown(
        &self,
        campaign: &str,
        offer: &str,
    ) -> (String, std::collections::HashMap<String, String>) {
        self.engine
            .campaign(campaign)
            .ok()
            .and_then(|c| {
                let o = c.config.offers.iter().find(|o| o.id == offer)?;
                Some((
                    o.name.clone(),
                    o.display
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ))
            })
            .unwrap_or_default()
    }

    /// SelectOffer.
    pub(super) async fn decide(
        &self,
        request: Request<SelectOfferRequest>,
    ) -> Result<Response<proto::SelectOfferResponse>, Status> {
        let req = validate_select(&self.limits, request.into_inner())?;
        let campaign = req.campaign.clone();
        let s = self.engine.select(req).await?;
        let (offer_name, display) = self.shown(&campaign, &s.offer_id);
        Ok(Response::new(proto::SelectOfferResponse {
            offer_name,
            display,
            decision_id: self.engine.id_keys().encode(&s.decision_id),
            offer_id: s.offer_id,
            propensity: s.propensity,
            expires_at_unix_ms: s.expires_ms,
            model_version: s.model_version,
            segment: s.segment,
            replayed: s.replayed,
            arm: s.arm.as_str().to_owned(),
            explanation: s
                .explanation
                .into_iter()
                .map(|e| proto::OfferExplanation {
                    offer_id: e.offer_id,
                    excluded_reason: e.excluded.unwrap_or_default(),
                    redemption_rate: e.rate.and_then(estimate),
                    value: e.value.and_then(estimate),
                    probability: e.probability,
                })
                .collect(),
            ignored_features: s.ignored_features,
        }))
    }
}

/// Checks a SelectOffer request against `limits` and converts it for the
/// engine (the context moves as it was decoded); the error names the field. Never panics on any input (a fuzz
/// target checks).
pub fn validate_select(l: &Limits, r: SelectOfferRequest) -> Result<SelectRequest, Error> {
    let bad = |m: String| Err(Error::InvalidArgument(m));
    let bad_context = |m: String| Err(Error::refused(Reason::InvalidContext, m));
    if r.campaign.is_empty() {
        return bad("campaign is required (ListCampaigns shows the campaigns)".into());
    }
    if !valid_id(&r.campaign) {
        return bad("campaign must be 1-64 letters, digits, '_', '-' or '.'".into());
    }
    // Far more entries than features allowed is refused before any sort
    // (a name sent twice counts once, so a little slack).
    let entries = r.context.len();
    if entries > 4 * l.max_features {
        return bad_context(format!(
            "context has {entries} entries; at most {} features are allowed",
            l.max_features
        ));
    }
    let (context, unset) = split_context(r.context);
    let features = context.len() + unset.len();
    if features > l.max_features {
        return bad_context(format!(
            "context has {features} features; at most {} are allowed",
            l.max_features
        ));
    }
    if let Some(name) = context
        .keys()
        .chain(&unset)
        .find(|name| name.is_empty() || name.len() > l.max_feature_name)
    {
        return bad_context(format!(
            "feature names must be 1-{} bytes; got {} bytes",
            l.max_feature_name,
            name.len()
        ));
    }
    if let Some(name) = unset.first() {
        return bad_context(format!(
            "feature '{name}' has no value: set number, category or flag"
        ));
    }
    for (name, value) in context.iter() {
        match value {
            FeatureValue::Number(x) if !x.is_finite() => {
                return bad_context(format!("feature '{name}' is {x}; numbers must be finite"));
            }
            FeatureValue::Category(c) if c.len() > l.max_category => {
                return bad_context(format!(
                    "feature '{name}': categories are at most {} bytes",
                    l.max_category
                ));
            }
            _ => {}
        }
    }
    let mut context = context;
    if r.candidate_offer_ids.len() > l.max_candidates {
        return bad(format!(
            "at most {} candidate_offer_ids are allowed",
            l.max_candidates
        ));
    }
    if let Some(c) = r.candidate_offer_ids.iter().find(|c| !valid_id(c)) {
        return bad(format!(
            "candidate_offer_ids: '{}' is not an offer id",
            truncate(c)
        ));
    }
    if r.customer_id.len() > l.max_key {
        return bad(format!("customer_id is at most {} bytes", l.max_key));
    }
    if r.request_id.len() > l.max_key {
        return bad(format!("request_id is at most {} bytes", l.max_key));
    }
    if r.request_id
        .starts_with(crate::engine::FALLBACK_REQUEST_PREFIX)
    {
        // Fallbacks' request ids live there: one must never replay the other.
        return bad(format!(
            "request_id may not start with '{}' (reserved for RecordFallback)",
            crate::engine::FALLBACK_REQUEST_PREFIX
        ));
    }
    // Without consent, nothing that describes the customer goes further
    // than this check: no context, no customer id.
    let non_personalized = r.personalization_consent == Some(false);
    if non_personalized {
        context = Context::new();
    }
    Ok(SelectRequest {
        campaign: r.campaign,
        context,
        candidates: r.candidate_offer_ids,
        request_id: (!r.request_id.is_empty()).then_some(r.request_id),
        customer_id: (!r.customer_id.is_empty() && !non_personalized).then_some(r.customer_id),
        explain: r.explain,
        non_personalized,
    })
}
