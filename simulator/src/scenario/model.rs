//! The population and response model of a parsed scenario: how a visit's
//! features are drawn, each offer's true redemption probability (base rate,
//! effects, drift), the redemption delay and the marketer's rule.

use std::collections::HashMap;

use offer_bandit::{Context, FeatureValue};
use rand::{Rng, RngExt};
use rand_distr::{Distribution, Exp, LogNormal, Normal, Poisson};

use super::{Scenario, SimOffer, SimVisit, file::DelaySpec};

/// A mean that depends on an earlier categorical feature: (its index, mean per value).
pub(super) type MeanBy = (usize, HashMap<String, f64>);

#[derive(Debug, Clone)]
pub(super) enum Sampler {
    Categorical {
        values: Vec<String>,
        cumulative: Vec<f64>,
    },
    Discrete {
        cumulative: Vec<f64>,
    },
    Normal {
        mean: f64,
        sd: f64,
        by: Option<(usize, HashMap<String, f64>)>,
    },
    Uniform {
        min: f64,
        max: f64,
    },
    Poisson {
        mean: f64,
        by: Option<(usize, HashMap<String, f64>)>,
    },
    Flag {
        p: f64,
    },
}

#[derive(Debug, Clone)]
pub(super) struct Feature {
    pub(super) name: String,
    pub(super) sampler: Sampler,
    pub(super) min: f64,
    pub(super) max: f64,
}

#[derive(Debug, Clone)]
pub(super) enum Condition {
    Always,
    In(String, Vec<String>),
    Range(String, f64, f64),
    /// The context feature equals the offer's category.
    MatchesCategory(String),
}

impl Condition {
    fn holds(&self, ctx: &Context, offer: &SimOffer) -> bool {
        match self {
            Condition::Always => true,
            Condition::In(f, values) => match ctx.get(f) {
                Some(FeatureValue::Category(c)) => values.iter().any(|v| v == c),
                Some(FeatureValue::Flag(b)) => values.iter().any(|v| *v == b.to_string()),
                _ => false,
            },
            Condition::Range(f, lo, hi) => {
                matches!(ctx.get(f), Some(FeatureValue::Number(x)) if *x >= *lo && *x <= *hi)
            }
            Condition::MatchesCategory(f) => {
                matches!(ctx.get(f), Some(FeatureValue::Category(c)) if *c == offer.category)
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Effect {
    pub(super) when: Condition,
    /// Logit added to each offer (0 where the effect does not apply).
    pub(super) logit: Vec<f64>,
}

#[derive(Debug, Clone)]
pub(super) enum Drift {
    Shock {
        from_day: f64,
        logit: Vec<f64>,
    },
    Seasonal {
        period: f64,
        phase: f64,
        amplitude: Vec<f64>,
    },
}

#[derive(Debug, Clone)]
pub(super) struct Rule {
    pub(super) when: Condition,
    pub(super) offer: usize,
}

pub(super) fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-9, 1.0 - 1e-9);
    (p / (1.0 - p)).ln()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

pub(super) fn cumulative(weights: &[f64]) -> Vec<f64> {
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect()
}

fn pick(cumulative: &[f64], u: f64) -> usize {
    cumulative
        .iter()
        .position(|c| u < *c)
        .unwrap_or(cumulative.len().saturating_sub(1))
}

impl Scenario {
    /// Draws the visit at `round` into `out`.
    pub(crate) fn draw_visit<R: Rng + ?Sized>(&self, round: u64, rng: &mut R, out: &mut SimVisit) {
        let day = round as f64 / self.visits_per_day;
        out.context.clear();
        let mut drawn: Vec<Option<usize>> = Vec::with_capacity(self.features.len());
        for f in &self.features {
            let mean_for = |base: f64, by: &Option<MeanBy>| match by {
                Some((i, means)) => drawn
                    .get(*i)
                    .copied()
                    .flatten()
                    .and_then(|v| match &self.features[*i].sampler {
                        Sampler::Categorical { values, .. } => means.get(&values[v]).copied(),
                        _ => None,
                    })
                    .unwrap_or(base),
                None => base,
            };
            let (value, index) = match &f.sampler {
                Sampler::Categorical { values, cumulative } => {
                    let i = pick(cumulative, rng.random());
                    (FeatureValue::Category(values[i].clone()), Some(i))
                }
                Sampler::Discrete { cumulative } => (
                    FeatureValue::Number(pick(cumulative, rng.random()) as f64),
                    None,
                ),
                Sampler::Normal { mean, sd, by } => {
                    let m = mean_for(*mean, by);
                    let x = Normal::new(m, *sd).map_or(m, |n| n.sample(rng));
                    (FeatureValue::Number((x * 100.0).round() / 100.0), None)
                }
                Sampler::Uniform { min, max } => {
                    (FeatureValue::Number(rng.random_range(*min..*max)), None)
                }
                Sampler::Poisson { mean, by } => {
                    let m = mean_for(*mean, by).max(1e-9);
                    let x: f64 = Poisson::new(m).map_or(m, |p| p.sample(rng));
                    (FeatureValue::Number(x), None)
                }
                Sampler::Flag { p } => (FeatureValue::Flag(rng.random::<f64>() < *p), None),
            };
            let value = match value {
                FeatureValue::Number(x) => FeatureValue::Number(x.clamp(f.min, f.max)),
                v => v,
            };
            drawn.push(index);
            out.context.insert(f.name.clone(), value);
        }
        out.candidates.clear();
        out.p.clear();
        for (k, o) in self.offers.iter().enumerate() {
            let available = day >= o.from_day && day < o.until_day;
            if !available {
                out.p.push(0.0);
                continue;
            }
            out.candidates.push(k);
            let mut z = o.base_logit;
            for e in &self.effects {
                if e.logit[k] != 0.0 && e.when.holds(&out.context, o) {
                    z += e.logit[k];
                }
            }
            for d in &self.drift {
                z += match d {
                    Drift::Shock { from_day, logit } if day >= *from_day => logit[k],
                    Drift::Shock { .. } => 0.0,
                    Drift::Seasonal {
                        period,
                        phase,
                        amplitude,
                    } => amplitude[k] * (2.0 * std::f64::consts::PI * (day - phase) / period).sin(),
                };
            }
            out.p.push(sigmoid(z));
        }
    }

    /// Days between a decision and its redemption.
    pub(crate) fn draw_delay_days<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        match &self.delay {
            DelaySpec::Exponential { mean_days } => {
                Exp::new(1.0 / mean_days).map_or(*mean_days, |e| e.sample(rng))
            }
            DelaySpec::Fixed { days } => *days,
            DelaySpec::Lognormal { median_days, sigma } => {
                LogNormal::new(median_days.ln(), *sigma).map_or(*median_days, |l| l.sample(rng))
            }
        }
    }

    /// The marketer's static rule: the first rule that holds and whose offer
    /// is a candidate, else the first candidate.
    pub(crate) fn marketer_choice(&self, context: &Context, candidates: &[usize]) -> usize {
        self.rules
            .iter()
            .find(|r| candidates.contains(&r.offer) && r.when.holds(context, &self.offers[r.offer]))
            .map_or(candidates[0], |r| r.offer)
    }
}
