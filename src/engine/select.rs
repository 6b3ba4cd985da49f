//! The select path: candidates, budgets and caps, the arm, and a Thompson
//! draw; the decision goes to the writer.

use super::*;

impl Engine {
    /// Chooses an offer by Thompson sampling and records the decision.
    pub async fn select(&self, mut req: SelectRequest) -> Result<Selection, Error> {
        // A decision budget another request spent while this one chose:
        // choose again without that offer (each time one offer fewer, so
        // this ends), in the same arm.
        let mut spent: Vec<(String, String)> = Vec::new();
        // Drawn when first needed (an anonymous visit to a campaign with a
        // control group), then kept for every retry.
        let anonymous_draw = std::sync::OnceLock::new();
        // The first draw's candidates: the logged propensity counts the
        // paths through every offer refused since (see `race`).
        let first_candidates = std::sync::OnceLock::new();
        // One campaign for the whole request, retries included, and one
        // snapshot of its posteriors: every draw, the logged version and
        // propensity, and the explanation come from it.
        let campaign = self.campaign(&req.campaign)?;
        let sampled = campaign.sample();
        if self.options.strict_context {
            self.refuse_undeclared_features(&campaign, &req)?;
        }
        loop {
            match self
                .select_among(
                    &campaign,
                    &sampled,
                    &mut req,
                    &spent,
                    &anonymous_draw,
                    &first_candidates,
                )
                .await?
            {
                Decided::Spent { offer, why, kept } => {
                    tracing::debug!(offer = %offer, "{why}: choosing again");
                    // The declared features the refused record took.
                    req.context.extend(kept);
                    if spent.iter().any(|(o, _)| *o == offer) {
                        return Err(Error::refused(
                            crate::error::Reason::BudgetExhausted,
                            format!("{offer}: {why}"),
                        ));
                    }
                    spent.push((offer, why));
                }
                Decided::Made(mut selection) => {
                    // Chosen and recorded: the keys the campaign does not
                    // read move from the context to the reply. A decision
                    // made now took the declared ones into its record, so
                    // the rest is exactly those. A replay is filtered: one
                    // found before a record was built (the request id seen
                    // already) took none, one the writer found after it did.
                    selection.ignored_features = if selection.replayed {
                        req.context.remove_names_not_in(campaign.declared())
                    } else {
                        debug_assert!({
                            let mut declared =
                                crate::context::SortedNames::new(campaign.declared());
                            req.context.keys().all(|k| !declared.contains(k))
                        });
                        req.context.take_all_names()
                    };
                    count_ignored_features(&campaign, selection.ignored_features.len());
                    return Ok(selection);
                }
            }
        }
    }

    /// Under `strict_context`: refuses a context with keys `req`'s campaign
    /// does not declare, and counts them in the metric (otherwise they are
    /// counted when the reply names them, [`count_ignored_features`]).
    fn refuse_undeclared_features(
        &self,
        campaign: &Campaign,
        req: &SelectRequest,
    ) -> Result<(), Error> {
        let ignored = || {
            let mut declared = crate::context::SortedNames::new(campaign.declared());
            req.context.keys().filter(move |k| !declared.contains(k))
        };
        let count = ignored().count();
        if count == 0 {
            return Ok(());
        }
        count_ignored_features(campaign, count);
        let shown: Vec<String> = ignored()
            .take(8)
            .map(|k| k.chars().take(64).collect())
            .collect();
        Err(Error::refused(
            crate::error::Reason::InvalidContext,
            format!(
                "context has {count} key(s) campaign '{}' does not declare: {}{} (--strict-context refuses them; ListCampaigns and the campaign file name its features)",
                req.campaign,
                shown.join(", "),
                if count > 8 { ", ..." } else { "" }
            ),
        ))
    }

    /// [`Engine::select`] in `campaign` (`req`'s), sampling `sampled` (the
    /// campaign's snapshots, loaded once for the request), without the
    /// offers in `spent` (offer, why), with
    /// `anonymous_draw` (uniform, drawn once per request when first needed)
    /// deciding the arm of a visit without a customer id, and
    /// `first_candidates` keeping the request's first draw's candidates.
    pub(super) async fn select_among(
        &self,
        campaign: &Arc<Campaign>,
        sampled: &Sampled<'_>,
        req: &mut SelectRequest,
        spent: &[(String, String)],
        anonymous_draw: &std::sync::OnceLock<f64>,
        first_candidates: &std::sync::OnceLock<Vec<usize>>,
    ) -> Result<Decided, Error> {
        self.check_healthy()?;
        if !campaign.active {
            return Err(Error::refused(
                crate::error::Reason::CampaignNotServing,
                format!(
                    "campaign '{}' {}; it accepts redemptions but makes no decisions",
                    req.campaign,
                    if campaign.revision.retired {
                        "was retired by an operator"
                    } else {
                        "is no longer configured"
                    }
                ),
            ));
        }
        if campaign.paused() {
            return Err(Error::refused(
                crate::error::Reason::CampaignNotServing,
                format!(
                    "campaign '{}' is paused by an operator; it accepts redemptions but makes no decisions",
                    req.campaign
                ),
            ));
        }
        if let Some(rid) = &req.request_id {
            // Fast path for retries, before budgets and statuses: a retry
            // gets its decision even if that decision spent the last of a
            // budget. The writer re-checks under its lock.
            if let Some(id) = self.store.request(&req.campaign, rid)?
                && let Some(rec) = self.store.decision(&id)?
                && rec.expires_ms > self.now_ms()
            {
                let customer = req
                    .customer_id
                    .as_deref()
                    .map(|c| self.customer_key.hash(c));
                replay_for(rec.customer.as_ref(), customer.as_ref())?;
                return Ok(Decided::Made(Selection::from_record(id, &rec, true)));
            }
        }
        let candidates = self.candidates(campaign, &req.candidates)?;
        let (candidates, excluded) = self.within_budget(
            campaign,
            &sampled.segments,
            candidates,
            req.customer_id.as_deref(),
            spent,
        )?;
        // Offer indices keep their meaning: offers are only ever appended.
        // Only a limited campaign's writer refuses a choice (a spent
        // budget), so only its first candidates are ever needed again.
        if campaign.limited {
            first_candidates.get_or_init(|| candidates.clone());
        }
        let objective = campaign.config.objective;
        let arm = if req.non_personalized {
            Arm::NonPersonalized
        } else {
            self.arm_of(campaign, req.customer_id.as_deref(), anonymous_draw)
        };
        // The bandit's draw only for the bandit's visits; the control
        // policy chooses for the others below.
        let bandit = arm == Arm::Bandit;
        let placeholder = thompson::Choice {
            index: 0,
            propensity: 1.0,
        };
        // segment-ts: the arms the bandit's draw sampled.
        let (segment, features, choice, model_version, drawn) = match &sampled.contextual {
            Some(sampled) => {
                let (ctx, models) = (sampled.ctx, &sampled.snapshot);
                let x = ctx
                    .encoder
                    .encode(&req.context)
                    .map_err(|e| Error::InvalidArgument(format!("context: {e}")))?;
                let (choice, model_version) = if bandit {
                    let weights: Vec<f64> = campaign
                        .offers
                        .iter()
                        .map(|o| objective.weight(o.value))
                        .collect();
                    let arms =
                        gaussian_arms(&models.posteriors, &ctx.config, &weights, &x, &candidates);
                    let choice = self
                        .rng
                        .with(|rng| thompson::choose(&arms, rng))
                        .ok_or_else(|| Error::FailedPrecondition("no candidate offers".into()))?;
                    (choice, models.version)
                } else {
                    (placeholder, models.version)
                };
                (String::new(), x, choice, model_version, None)
            }
            None => {
                let segment = segment_key(&campaign.config.segment_by, &req.context)
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?;
                let weights: Vec<f64> = candidates
                    .iter()
                    .map(|&i| objective.weight(campaign.offers[i].value))
                    .collect();
                let model = &*sampled.segments;
                let segment = campaign.tracked_segment(model, segment);
                let drawn = bandit.then(|| {
                    campaign.snapshots.sample_published(
                        &sampled.segments,
                        &segment,
                        &candidates,
                        &weights,
                        campaign.config.prior_strength,
                    )
                });
                let model_version = model.version();
                let choice = match &drawn {
                    Some(arms) => self.rng.with(|rng| arms.choose(rng)),
                    None => Some(placeholder),
                };
                let choice = choice
                    .ok_or_else(|| Error::FailedPrecondition("no candidate offers".into()))?;
                (segment, Vec::new(), choice, model_version, drawn)
            }
        };
        let sample = match &sampled.contextual {
            Some(s) => Sample::Contextual(s),
            None => Sample::Segment {
                model: &sampled.segments,
                drawn: drawn.as_ref(),
            },
        };
        // Without consent the visit's evidence goes to no segment the bandit
        // samples (and, contextual, to no posterior: the writer learns none).
        let segment = if arm == Arm::NonPersonalized && campaign.contextual.is_none() {
            crate::policy::segment::NON_PERSONALIZED_SEGMENT.to_owned()
        } else {
            segment
        };
        let mut choice = match arm {
            Arm::Bandit => choice,
            Arm::Control => self
                .rng
                .with(|rng| control_choice(campaign, &candidates, &req.context, rng)),
            // Without consent (and for a fallback) nothing of the visit
            // personalizes the offer: the rule sees no context.
            Arm::NonPersonalized | Arm::Fallback => self
                .rng
                .with(|rng| control_choice(campaign, &candidates, &Context::new(), rng)),
        };
        let mut explanation = if req.explain {
            // Up to EXPLAIN_BUDGET of computing: off the async workers where
            // the runtime allows it, so that health checks and other
            // requests on this worker are not held up meanwhile.
            let explain = || {
                self.explain(
                    campaign,
                    sample,
                    &segment,
                    &features,
                    &candidates,
                    &excluded,
                    (arm != Arm::Bandit).then_some(&choice),
                )
            };
            match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
                Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                    tokio::task::block_in_place(explain)?
                }
                _ => explain()?,
            }
        } else {
            Vec::new()
        };
        let draw = race::Draw {
            campaign,
            sample,
            arm,
            segment: &segment,
            features: &features,
            context: &req.context,
        };
        if arm == Arm::Bandit && !campaign.floor().is_off() {
            let explore = self
                .rng
                .with(|rng| campaign.floor().explore(candidates.len(), rng));
            choice = campaign
                .floor()
                .choose(candidates.len(), choice, explore, |i| {
                    draw.policy_probability(&candidates, candidates[i])
                });
        }
        let (all, refused) = if spent.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            race::refused_since_first(
                first_candidates.get().map_or(&candidates, |f| f),
                &candidates,
            )
        };
        if !refused.is_empty() {
            choice.propensity = race::propensity_after_refusals(
                &all,
                &refused,
                candidates[choice.index],
                |set, o| draw.probability(set, o),
            );
            race::explain_after_refusals(&mut explanation, campaign, &all, &refused, &draw);
        }
        let offer_index = candidates[choice.index];
        let offer = &campaign.offers[offer_index];
        let now = self.now_ms();
        let rec = DecisionRecord {
            campaign: req.campaign.clone(),
            offer: offer.id.clone(),
            segment,
            propensity: choice.propensity,
            created_ms: now,
            expires_ms: now.saturating_add(campaign.reward_window_ms()),
            request_id: req.request_id.clone(),
            model_version,
            state: DecisionState::Pending,
            features,
            // Moved, not copied: nothing reads them after the record (a
            // refused record hands them back, `Decided::Spent`).
            context: req.context.take_names_in(campaign.declared()),
            candidates: campaign.candidate_ids.of(&campaign.offers, &candidates),
            customer: req
                .customer_id
                .as_deref()
                .map(|c| self.customer_key.hash(c)),
            learned_seq: 0,
            redeemed_seq: 0,
            arm,
        };
        // Only budgets, caps and request ids need the writer's word (it
        // sees every decision in order); otherwise answer now and let the
        // writer record the decision in its next group.
        let wait = campaign.limited
            || rec.request_id.is_some()
            || self.options.durable_decisions
            || self.options.await_decisions;
        let mut selection = if wait {
            let (reply, rx) = oneshot::channel();
            self.send_decision(Box::new(rec), Some(reply)).await?;
            match rx.await.map_err(|_| writer_gone())?? {
                Decided::Made(s) => s,
                spent @ Decided::Spent { .. } => return Ok(spent),
            }
        } else {
            let mut selection = Selection::from_record(DecisionId([0; 16]), &rec, false);
            let (id, expires_ms) = self.send_decision(Box::new(rec), None).await?;
            selection.decision_id = id;
            selection.expires_ms = expires_ms;
            selection
        };
        selection.explanation = explanation;
        // A decision made now (not a replay) is of the offer chosen above.
        if !selection.replayed {
            campaign.offers[offer_index]
                .decisions
                .increment(1, || {
                    metrics::counter!("offer_bandit_decisions_total", "campaign" => campaign.config.id.clone(), "offer" => selection.offer_id.clone())
                });
        }
        Ok(Decided::Made(selection))
    }

    /// The arm of a visit: stable per customer (a keyed hash of campaign and
    /// customer), `anonymous_draw` (uniform, drawn once per request) for
    /// anonymous visits.
    pub(super) fn arm_of(
        &self,
        campaign: &Campaign,
        customer_id: Option<&str>,
        anonymous_draw: &std::sync::OnceLock<f64>,
    ) -> Arm {
        let share = campaign.config.control_share;
        if share <= 0.0 {
            return Arm::Bandit;
        }
        let u = match customer_id {
            Some(c) => crate::uplift::stable_draw(
                &self
                    .customer_key
                    .hash(&format!("arm\0{}\0{c}", campaign.config.id))
                    .0,
            ),
            None => *anonymous_draw.get_or_init(|| self.rng.unit()),
        };
        Arm::of(u, share)
    }

    /// Drops the candidates whose budget is spent, whose daily pacing is
    /// ahead, or that the customer has had too often (budgets' totals read
    /// from `model`, the request's snapshot); returns the rest and the
    /// reasons. BUDGET_EXHAUSTED (FAILED_PRECONDITION) when nothing is left.
    #[allow(clippy::type_complexity)]
    pub(super) fn within_budget(
        &self,
        campaign: &Campaign,
        model: &SegmentModel,
        candidates: Vec<usize>,
        customer_id: Option<&str>,
        spent: &[(String, String)],
    ) -> Result<(Vec<usize>, Vec<(usize, String)>), Error> {
        if !campaign.limited && spent.is_empty() {
            // The common case on the hot path: nothing to check.
            return Ok((candidates, Vec::new()));
        }
        let now = self.now_ms();
        let mut excluded = Vec::new();
        // Offers the writer found spent by concurrent decisions.
        let candidates: Vec<usize> = candidates
            .into_iter()
            .filter(
                |&i| match spent.iter().find(|(o, _)| *o == campaign.offers[i].id) {
                    Some((_, why)) => {
                        excluded.push((i, why.clone()));
                        false
                    }
                    None => true,
                },
            )
            .collect();
        let seen = match (&campaign.config.frequency_cap, customer_id) {
            (Some(cap), Some(c)) => {
                let ids = self.store.customer_decisions(&self.customer_key.hash(c))?;
                let seen = offers_seen(ids, &campaign.config.id, cap_start(cap, now), |id| {
                    Ok(self.store.decision(id)?)
                })?;
                Some((cap, seen))
            }
            _ => None,
        };
        let pace = campaign.pace(now);
        let daily = campaign.daily.read();
        let kept: Vec<usize> = candidates
            .into_iter()
            .filter(|&i| {
                let offer = &campaign.offers[i];
                let why = campaign
                    .config
                    .offers
                    .iter()
                    .find(|o| o.id == offer.id)
                    .and_then(|cfg| {
                        crate::budget::exhausted(
                            cfg,
                            model.totals(i),
                            daily.get(i).copied().unwrap_or_default(),
                            &pace,
                        )
                    })
                    .or_else(|| {
                        let (cap, seen) = seen.as_ref()?;
                        cap_reached(cap, seen.get(&offer.id).copied().unwrap_or(0))
                    });
                match why {
                    Some(w) => {
                        excluded.push((i, w));
                        false
                    }
                    None => true,
                }
            })
            .collect();
        if kept.is_empty() {
            let reasons: Vec<String> = excluded
                .iter()
                .map(|(i, w)| format!("{}: {w}", campaign.offers[*i].id))
                .collect();
            return Err(Error::refused(
                crate::error::Reason::BudgetExhausted,
                format!(
                    "no candidate offer can be chosen now: {}",
                    reasons.join("; ")
                ),
            ));
        }
        Ok((kept, excluded))
    }

    pub(super) fn candidates(
        &self,
        campaign: &Campaign,
        ids: &[String],
    ) -> Result<Vec<usize>, Error> {
        if ids.is_empty() {
            let all = campaign.available_offers();
            return if all.is_empty() {
                Err(Error::refused(
                    crate::error::Reason::CampaignNotServing,
                    format!("campaign '{}' has no active offers", campaign.config.id),
                ))
            } else {
                Ok(all)
            };
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let idx = campaign.offer_index(id).ok_or_else(|| {
                Error::refused(crate::error::Reason::UnknownOffer, format!(
                    "candidate_offer_ids: unknown offer '{id}' in campaign '{}' (ListCampaigns shows its offers)",
                    campaign.config.id
                ))
            })?;
            if let Some(why) = campaign.unavailable(idx) {
                return Err(Error::refused(
                    crate::error::Reason::OfferUnavailable,
                    format!("offer '{id}' cannot be chosen: {why}"),
                ));
            }
            if !out.contains(&idx) {
                out.push(idx);
            }
        }
        Ok(out)
    }
}

/// A replay (a request_id seen before in the campaign) answers with the
/// earlier decision only for the same customer (or for an anonymous request
/// replaying an anonymous one): a request_id is an idempotency key, not a
/// way to read another customer's decision.
pub(super) fn replay_for(
    stored: Option<&CustomerHash>,
    asking: Option<&CustomerHash>,
) -> Result<(), Error> {
    if stored == asking {
        Ok(())
    } else {
        Err(Error::refused(
            crate::error::Reason::RequestIdReused,
            "request_id was already used by a request for another customer; send a fresh request_id with every new request (retries reuse theirs)",
        ))
    }
}

/// Counts `count` context keys `campaign` does not declare in
/// `offer_bandit_ignored_features_total`: those a reply named in
/// `ignored_features`, or those `--strict-context` refused.
fn count_ignored_features(campaign: &Campaign, count: usize) {
    if count > 0 {
        campaign.ignored_features.increment(count as u64, || {
            metrics::counter!("offer_bandit_ignored_features_total", "campaign" => campaign.config.id.clone())
        });
    }
}
