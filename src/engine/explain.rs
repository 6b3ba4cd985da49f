//! `explain`: every offer's rate, value and probability for one visit,
//! within a time budget.

use super::*;

impl Engine {
    /// Every offer's estimate for this visit (see [`Explanation`]), from
    /// `sample`, what the request's draw sampled (a segment-ts visit the
    /// control policy served: the posterior of `segment` in the counts the
    /// request loaded).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn explain(
        &self,
        campaign: &Campaign,
        sample: Sample<'_>,
        segment: &str,
        x: &[(u32, f64)],
        candidates: &[usize],
        excluded: &[(usize, String)],
        control: Option<&thompson::Choice>,
    ) -> Result<Vec<Explanation>, Error> {
        use crate::policy::special::beta_quantile;
        use crate::uplift::Estimate;
        let objective = campaign.config.objective;
        // (mean, low, high) of the redemption rate, per candidate.
        let (rates, probabilities): (Vec<(f64, f64, f64)>, Vec<f64>) = match sample {
            Sample::Contextual(sampled) => {
                let (ctx, models) = (sampled.ctx, &sampled.snapshot);
                let weights: Vec<f64> = campaign
                    .offers
                    .iter()
                    .map(|o| objective.weight(o.value))
                    .collect();
                let arms = gaussian_arms(&models.posteriors, &ctx.config, &weights, x, candidates);
                let rate = |z: f64| GaussianPosterior::rate(z, ctx.config.likelihood);
                let rates = candidates
                    .iter()
                    .map(|&c| {
                        let (m, v) = models.get(c).map_or((0.0, 1.0), |p| p.predictive(x));
                        let sd = v.sqrt();
                        (rate(m), rate(m - 1.96 * sd), rate(m + 1.96 * sd))
                    })
                    .collect();
                let probs = within_budget(arms.len(), |i| thompson::win_probability(&arms, i))?;
                (rates, probs)
            }
            Sample::Segment { model, drawn } => {
                let live;
                let arms = match drawn {
                    Some(drawn) => drawn.arms(),
                    None => {
                        let weights: Vec<f64> = candidates
                            .iter()
                            .map(|&i| objective.weight(campaign.offers[i].value))
                            .collect();
                        live = model.arms(
                            segment,
                            candidates,
                            &weights,
                            campaign.config.prior_strength,
                        );
                        &live
                    }
                };
                let rates = arms
                    .iter()
                    .map(|a| {
                        (
                            a.mean(),
                            beta_quantile(0.025, a.alpha, a.beta),
                            beta_quantile(0.975, a.alpha, a.beta),
                        )
                    })
                    .collect();
                // The draw's snapshot computes each propensity once.
                let probs = within_budget(arms.len(), |i| match drawn {
                    Some(drawn) => drawn.propensity(i),
                    None => thompson::win_probability(arms, i),
                })?;
                (rates, probs)
            }
        };
        // A visit served by the control policy (control group, no consent):
        // its probabilities, one-hot for a fixed offer or a rule, uniform for
        // a random candidate.
        let probabilities: Vec<f64> = match control {
            None => {
                let floor = campaign.floor();
                probabilities
                    .into_iter()
                    .map(|p| floor.propensity(candidates.len(), p))
                    .collect()
            }
            Some(fixed) => (0..candidates.len())
                .map(|i| {
                    if fixed.propensity == 1.0 {
                        if i == fixed.index { 1.0 } else { 0.0 }
                    } else {
                        1.0 / candidates.len() as f64
                    }
                })
                .collect(),
        };
        let mut out: Vec<Explanation> = campaign
            .offers
            .iter()
            .enumerate()
            .map(|(i, o)| match candidates.iter().position(|&c| c == i) {
                Some(k) => {
                    let (m, lo, hi) = rates[k];
                    Explanation {
                        offer_id: o.id.clone(),
                        excluded: None,
                        rate: Some(Estimate {
                            value: m,
                            low: lo,
                            high: hi,
                        }),
                        value: Some(Estimate {
                            value: m * o.value,
                            low: lo * o.value,
                            high: hi * o.value,
                        }),
                        probability: probabilities[k],
                    }
                }
                None => Explanation {
                    offer_id: o.id.clone(),
                    excluded: Some(
                        if let Some((_, why)) = excluded.iter().find(|(j, _)| *j == i) {
                            why.clone()
                        } else if let Some(why) = campaign.unavailable(i) {
                            why
                        } else {
                            "not among this request's candidate_offer_ids".into()
                        },
                    ),
                    rate: None,
                    value: None,
                    probability: 0.0,
                },
            })
            .collect();
        out.sort_by(|a, b| a.offer_id.cmp(&b.offer_id));
        Ok(out)
    }
}

/// Longest an explanation's win probabilities may compute (each is an
/// integral over every candidate: the cost grows with the square of their
/// number). Past it the request fails before anything is recorded, rather
/// than run on past its deadline.
pub(super) const EXPLAIN_BUDGET: Duration = Duration::from_secs(2);

/// `f(0..n)`, or an error once [`EXPLAIN_BUDGET`] is spent.
pub(super) fn within_budget(n: usize, mut f: impl FnMut(usize) -> f64) -> Result<Vec<f64>, Error> {
    let started = std::time::Instant::now();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if started.elapsed() > EXPLAIN_BUDGET {
            return Err(Error::refused(
                crate::error::Reason::ExplainTooSlow,
                format!(
                    "explain over {n} candidate offers did not finish within {EXPLAIN_BUDGET:?}; nothing was recorded: ask for an explanation with fewer candidate_offer_ids"
                ),
            ));
        }
        out.push(f(i));
    }
    Ok(out)
}
