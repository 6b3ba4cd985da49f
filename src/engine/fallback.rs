//! Fallback impressions: what the caller showed when offer-bandit was down
//! or slow, logged afterwards as a decision of the `fallback` arm, so that
//! the impression and any redemption of it are counted (never in the
//! control group: the fallback offer was not drawn at random).

use super::*;

impl Engine {
    /// Records that `offer_id` was shown for `req` as a fallback. The
    /// record has propensity 1 (the caller's fixed choice), the context's
    /// segment and features, and the caller's request id in a namespace of
    /// its own (`fallback:` + id): a retry of the same log replays it, and
    /// it never replays the SelectOffer that timed out. It counts against
    /// frequency caps, never against a budget's refusal (the offer was
    /// already shown).
    pub async fn record_fallback(
        &self,
        mut req: SelectRequest,
        offer_id: &str,
    ) -> Result<Selection, Error> {
        self.check_healthy()?;
        let campaign = self.campaign(&req.campaign)?;
        if !campaign.active {
            return Err(Error::refused(
                crate::error::Reason::CampaignNotServing,
                format!(
                    "campaign '{}' is no longer served; a fallback shown for it is not counted",
                    req.campaign
                ),
            ));
        }
        let offer = campaign.offer_index(offer_id).ok_or_else(|| {
            Error::refused(
                crate::error::Reason::UnknownOffer,
                format!(
                    "offer_id: unknown offer '{offer_id}' in campaign '{}'; a fallback offer must be one of the campaign's (ListCampaigns shows them)",
                    campaign.config.id
                ),
            )
        })?;
        // One snapshot of what the campaign learned, for the segment and
        // the logged version.
        let sampled = campaign.sample();
        let (segment, features) = match &campaign.contextual {
            Some(ctx) => (
                String::new(),
                ctx.encoder
                    .encode(&req.context)
                    .map_err(|e| Error::InvalidArgument(format!("context: {e}")))?,
            ),
            None => {
                let segment = segment_key(&campaign.config.segment_by, &req.context)
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?;
                let segment = campaign.tracked_segment(&sampled.segments, segment);
                (segment, Vec::new())
            }
        };
        let now = self.now_ms();
        // Only what the campaign declares is kept: what it never reads is
        // not the store's to keep, and undeclared keys let a caller grow
        // every record (21 KB each filled a disk).
        let context = req.context.take_names_in(campaign.declared());
        let rec = DecisionRecord {
            campaign: req.campaign.clone(),
            offer: campaign.offers[offer].id.clone(),
            segment,
            propensity: 1.0,
            created_ms: now,
            expires_ms: now.saturating_add(campaign.reward_window_ms()),
            request_id: req
                .request_id
                .map(|r| format!("{FALLBACK_REQUEST_PREFIX}{r}")),
            model_version: Campaign::model_version(&sampled),
            state: DecisionState::Pending,
            features,
            context,
            candidates: [campaign.offers[offer].id.clone()].into(),
            customer: req
                .customer_id
                .as_deref()
                .map(|c| self.customer_key.hash(c)),
            learned_seq: 0,
            redeemed_seq: 0,
            arm: Arm::Fallback,
        };
        let (reply, rx) = oneshot::channel();
        self.send_decision(Box::new(rec), Some(reply)).await?;
        match rx.await.map_err(|_| writer_gone())?? {
            Decided::Made(s) => {
                if !s.replayed {
                    metrics::counter!("offer_bandit_fallbacks_total", "campaign" => req.campaign)
                        .increment(1);
                }
                Ok(s)
            }
            // The writer never refuses a fallback for a budget.
            Decided::Spent { offer, why, .. } => Err(Error::refused(
                crate::error::Reason::Internal,
                format!("fallback of '{offer}' refused by a budget: {why}"),
            )),
        }
    }
}

/// Prefixes a fallback's request id in the store, apart from SelectOffer's
/// (which may therefore not start with it).
pub(crate) const FALLBACK_REQUEST_PREFIX: &str = "fallback:";
