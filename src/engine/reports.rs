//! What a campaign has learned and earned: stats, the report, the learned
//! prior shown to people, and the decision log's export.

use super::*;

impl Engine {
    /// The bandit and control arms of a campaign, their uplift, and per-offer
    /// traffic and posteriors.
    pub fn report(&self, campaign_id: &str) -> Result<CampaignReport, Error> {
        let campaign = self.campaign(campaign_id)?;
        let arms = *campaign.arms.read();
        let closed = *campaign.clusters.read();
        let arm = |a: Arm| (arms[a.index()], &closed[a.index()]);
        let (bandit, control, uplift) = crate::uplift::compare(arm(Arm::Bandit), arm(Arm::Control));
        let other = |a: Arm| crate::uplift::summary(a, arms[a.index()], &closed[a.index()]);
        let stats = self.stats(campaign_id)?;
        let total: u64 = stats.offers.iter().map(|o| o.counts.trials).sum();
        let now = self.now_ms();
        let pace = campaign.pace(now);
        let daily = campaign.daily.read().clone();
        let offers = stats
            .offers
            .iter()
            .map(|o| {
                let c = o.counts;
                let (alpha, beta) = (
                    1.0 + c.successes as f64,
                    1.0 + c.trials.saturating_sub(c.successes) as f64,
                );
                let cfg = campaign.config.offers.iter().find(|x| x.id == o.offer_id);
                let today = campaign
                    .offer_index(&o.offer_id)
                    .and_then(|i| daily.get(i).copied())
                    .unwrap_or_default()
                    .on(pace.day);
                let left = |cap: Option<u64>, used: u64| cap.map(|c| c.saturating_sub(used));
                let paced =
                    |cap: Option<u64>| cap.map(|c| crate::budget::paced_allowance(c, &pace));
                OfferReport {
                    budget_status: cfg.map_or(crate::budget::BudgetStatus::Open, |x| {
                        crate::budget::status(x, c, today, &pace)
                    }),
                    decisions_allowed_by_now: paced(cfg.and_then(|x| x.max_decisions_per_day)),
                    redemptions_allowed_by_now: paced(cfg.and_then(|x| x.max_redemptions_per_day)),
                    decisions_left: left(cfg.and_then(|x| x.max_decisions), c.trials),
                    redemptions_left: left(cfg.and_then(|x| x.max_redemptions), c.successes),
                    decisions_left_today: left(
                        cfg.and_then(|x| x.max_decisions_per_day),
                        today.decisions,
                    ),
                    redemptions_left_today: left(
                        cfg.and_then(|x| x.max_redemptions_per_day),
                        today.redemptions,
                    ),
                    offer_id: o.offer_id.clone(),
                    counts: c,
                    share: if total > 0 {
                        c.trials as f64 / total as f64
                    } else {
                        0.0
                    },
                    posterior_mean: alpha / (alpha + beta),
                    posterior_low: crate::policy::special::beta_quantile(0.025, alpha, beta),
                    posterior_high: crate::policy::special::beta_quantile(0.975, alpha, beta),
                }
            })
            .collect();
        Ok(CampaignReport {
            pacing: PacingReport {
                time_zone: campaign.local_time.name().to_owned(),
                local_time: campaign.local_time.describe(now),
                day_gone: pace.gone,
                learned: pace.learned,
                profile: campaign
                    .traffic
                    .read()
                    .describe(pace.day, &campaign.local_time),
            },
            campaign: campaign_id.to_owned(),
            control_share: campaign.config.control_share,
            bandit,
            control,
            uplift,
            fallback: other(Arm::Fallback),
            non_personalized: other(Arm::NonPersonalized),
            offers,
            cells: stats.cells,
        })
    }

    /// A campaign's learned prior (empty for one without).
    pub fn learned_prior(&self, campaign_id: &str) -> Result<LearnedPrior, Error> {
        Ok(learned_prior(&*self.campaign(campaign_id)?))
    }

    /// Counts and posteriors of a campaign.
    pub fn stats(&self, campaign_id: &str) -> Result<CampaignStats, Error> {
        let campaign = self.campaign(campaign_id)?;
        let model = campaign.model.load();
        let snapshot = campaign.contextual.as_ref().map(|c| c.models.load());
        let mut offers: Vec<OfferStats> = campaign
            .offers
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let posterior = snapshot.as_ref().and_then(|s| s.get(i));
                let (model_observations, mean_predicted_rate) = match posterior {
                    Some(p) if p.decisions > 0 => {
                        (p.observations, p.predicted_sum / p.decisions as f64)
                    }
                    _ => (0, 0.0),
                };
                OfferStats {
                    offer_id: o.id.clone(),
                    counts: model.totals(i),
                    model_observations,
                    mean_predicted_rate,
                }
            })
            .collect();
        offers.sort_by(|a, b| a.offer_id.cmp(&b.offer_id));
        let mut cells: Vec<CellStats> = model
            .iter_cells()
            .filter_map(|(segment, o, counts)| {
                // The shared model may already hold an offer that a newer
                // revision than this one added.
                let offer = campaign.offers.get(o)?;
                let (alpha, beta) = model.posterior(segment, o, campaign.config.prior_strength);
                Some(CellStats {
                    segment: segment.to_owned(),
                    offer_id: offer.id.clone(),
                    alpha,
                    beta,
                    counts,
                })
            })
            .collect();
        cells.sort_by(|a, b| (&a.segment, &a.offer_id).cmp(&(&b.segment, &b.offer_id)));
        Ok(CampaignStats {
            learned_prior: learned_prior(&campaign),
            campaign: campaign_id.to_owned(),
            offers,
            cells,
            model_version: model.version(),
        })
    }

    /// Everything stored about a customer: their keyed hash and their
    /// decision records, oldest first (the records erasure would erase).
    pub fn customer_records(
        &self,
        customer_id: &str,
    ) -> Result<(CustomerHash, Vec<(DecisionId, DecisionRecord)>), Error> {
        let customer = self.customer_key.hash(customer_id);
        let mut records = Vec::new();
        for id in self.store.customer_decisions(&customer)? {
            if let Some(rec) = self.store.decision(&id)?
                && rec.customer.as_ref() == Some(&customer)
            {
                records.push((id, rec));
            }
        }
        records.sort_by_key(|(_, r)| r.created_ms);
        Ok((customer, records))
    }

    /// Streams the decisions of `campaign` made in `[since_ms, until_ms)` to
    /// `sink` from a blocking thread, in time order; stops when `sink`
    /// returns false (the client went away).
    pub fn export(
        &self,
        campaign: &str,
        since_ms: i64,
        until_ms: i64,
        mut sink: impl FnMut(DecisionId, DecisionRecord) -> bool,
    ) -> Result<(), Error> {
        self.campaign(campaign)?;
        self.store
            .scan_decisions(since_ms, until_ms, &mut |id, rec| {
                if rec.campaign == campaign {
                    sink(id, rec)
                } else {
                    true
                }
            })?;
        Ok(())
    }
}

/// Lifetime counts of one offer.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferStats {
    /// Offer id.
    pub offer_id: String,
    /// Counts summed over segments.
    pub counts: CellCounts,
    /// Contextual campaigns: observations absorbed by the offer's model.
    pub model_observations: u64,
    /// Contextual campaigns: mean predicted redemption rate over the
    /// contexts the model learned from (0 before any).
    pub mean_predicted_rate: f64,
}

/// Posterior of one (segment, offer) cell.
#[derive(Debug, Clone, PartialEq)]
pub struct CellStats {
    /// Segment key.
    pub segment: String,
    /// Offer id.
    pub offer_id: String,
    /// Beta alpha.
    pub alpha: f64,
    /// Beta beta.
    pub beta: f64,
    /// Counts.
    pub counts: CellCounts,
}

/// A campaign's counts and posteriors.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignStats {
    /// Campaign id.
    pub campaign: String,
    /// Per offer, in offer-id order.
    pub offers: Vec<OfferStats>,
    /// Per cell with evidence, by segment then offer.
    pub cells: Vec<CellStats>,
    /// Model version.
    pub model_version: u64,
    /// Contextual campaigns with `adaptive_prior`: what the learned prior
    /// holds (empty otherwise).
    pub learned_prior: LearnedPrior,
}

/// The learned prior variance of one feature group.
#[derive(Debug, Clone, PartialEq)]
pub struct FeaturePrior {
    /// Context feature.
    pub feature: String,
    /// `values`, `scaled` or `buckets` (see [`crate::features::FeatureGroup`]).
    pub part: String,
    /// Prior variance of each of its weights.
    pub prior_variance: f64,
}

/// A contextual campaign's learned prior, as [`CampaignStats`] shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LearnedPrior {
    /// The prior variance of each feature group, in encoding order.
    pub groups: Vec<FeaturePrior>,
    /// Learning events counted.
    pub events: u64,
    /// The redemption rate per decision new offers start at, once learned.
    pub rate: Option<f64>,
    /// With offer features, once estimated: the largest effects of offer
    /// features on context weights, largest magnitude first.
    pub offer_effects: Vec<OfferEffect>,
}

/// A learned effect of an offer feature's column on a context column's
/// prior mean (see [`SharedPrior::offer_effects`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OfferEffect {
    /// The offer feature's column label.
    pub offer_feature: String,
    /// The context column label.
    pub context: String,
    /// On the model's scale.
    pub effect: f64,
}

/// Most offer effects [`LearnedPrior`] lists.
pub(super) const SHOWN_OFFER_EFFECTS: usize = 20;

/// The learned prior of `campaign`; empty unless it is contextual with
/// `adaptive_prior`.
pub(super) fn learned_prior(campaign: &Campaign) -> LearnedPrior {
    let Some(c) = campaign
        .contextual
        .as_ref()
        .filter(|c| c.config.adaptive_prior)
    else {
        return LearnedPrior::default();
    };
    let prior = c.prior.read();
    let groups = c
        .encoder
        .groups()
        .into_iter()
        .filter_map(|g| {
            Some(FeaturePrior {
                prior_variance: *prior.variance.get(g.columns.start)?,
                feature: g.feature,
                part: g.part.to_owned(),
            })
        })
        .collect();
    let offer_effects = match campaign.config.offer_encoder() {
        Some(offers)
            if prior.has_estimated()
                && offers.dim() > 1
                && prior.offer_effects.len() == c.encoder.dim() * (offers.dim() - 1) =>
        {
            let contexts = c.encoder.column_labels();
            let offer_labels = offers.column_labels();
            let p = offer_labels.len() - 1;
            let mut effects: Vec<OfferEffect> = prior
                .offer_effects
                .iter()
                .enumerate()
                .filter(|(_, e)| **e != 0.0)
                .filter_map(|(k, e)| {
                    Some(OfferEffect {
                        offer_feature: offer_labels.get(1 + k % p)?.clone(),
                        context: contexts.get(k / p)?.clone(),
                        effect: *e,
                    })
                })
                .collect();
            effects.sort_by(|a, b| b.effect.abs().total_cmp(&a.effect.abs()));
            effects.truncate(SHOWN_OFFER_EFFECTS);
            effects
        }
        _ => Vec::new(),
    };
    LearnedPrior {
        offer_effects,
        groups,
        events: prior.events,
        // Redemptions per decision, as the offers' rates are shown.
        rate: prior
            .intercept
            .map(|mu| GaussianPosterior::rate(mu, c.config.likelihood)),
    }
}

/// One offer in a report.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferReport {
    /// Offer id.
    pub offer_id: String,
    /// Its counts over every segment and both arms.
    pub counts: CellCounts,
    /// Its share of the campaign's decisions.
    pub share: f64,
    /// Posterior mean of its redemption rate over the whole campaign
    /// (Beta(1 + redemptions, 1 + other decisions)).
    pub posterior_mean: f64,
    /// 2.5% quantile of that posterior.
    pub posterior_low: f64,
    /// 97.5% quantile of that posterior.
    pub posterior_high: f64,
    /// Lifetime decisions left under `max_decisions` (None: no budget).
    pub decisions_left: Option<u64>,
    /// Lifetime redemptions left under `max_redemptions`, not counting
    /// those expected from pending decisions (None: no budget).
    pub redemptions_left: Option<u64>,
    /// Decisions left today under `max_decisions_per_day`.
    pub decisions_left_today: Option<u64>,
    /// Redemptions left today under `max_redemptions_per_day`.
    pub redemptions_left_today: Option<u64>,
    /// Whether its budgets let it be chosen now, and if not why.
    pub budget_status: crate::budget::BudgetStatus,
    /// How many of `max_decisions_per_day` pacing allows by now.
    pub decisions_allowed_by_now: Option<u64>,
    /// How many of `max_redemptions_per_day` pacing allows by now.
    pub redemptions_allowed_by_now: Option<u64>,
}

/// Where a campaign's day stands for pacing, in its own time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct PacingReport {
    /// The campaign's time zone (IANA name).
    pub time_zone: String,
    /// Now, in that zone: `2026-03-08 09:00 EDT`.
    pub local_time: String,
    /// The share of the day's expected traffic gone by now, 0 to 1.
    pub day_gone: f64,
    /// Whether that share follows the learned traffic profile (false:
    /// flat over the day's hours).
    pub learned: bool,
    /// What the profile is, for people.
    pub profile: String,
}

/// What `GetCampaignReport` answers.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignReport {
    /// Campaign id.
    pub campaign: String,
    /// Configured control share.
    pub control_share: f64,
    /// The bandit arm.
    pub bandit: ArmSummary,
    /// The control arm.
    pub control: ArmSummary,
    /// Bandit minus control, once both arms have decisions.
    pub uplift: Option<Uplift>,
    /// Fallback impressions logged by callers (outside the comparison).
    pub fallback: ArmSummary,
    /// Visits without consent to personalization (outside the comparison).
    pub non_personalized: ArmSummary,
    /// Per offer, in offer-id order.
    pub offers: Vec<OfferReport>,
    /// Per segment x offer, as in the stats.
    pub cells: Vec<CellStats>,
    /// Where the campaign's day stands for pacing daily budgets.
    pub pacing: PacingReport,
}
