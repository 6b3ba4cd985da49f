//! Scenario files: a simulated loyalty program. Who visits (feature
//! distributions), which offers exist and when, how each visit truly responds
//! to each offer (a logit model of base rates plus effects), how that drifts,
//! how long redemptions take, and the static rule a marketer would write.
//! `simulator/scenarios/coffee-loyalty.toml` documents every key.

use std::{collections::HashMap, path::Path};

use offer_bandit::context::{Context, FeatureValue};
use rand::{Rng, RngExt};
use rand_distr::{Distribution, Exp, LogNormal, Normal, Poisson};
use serde::Deserialize;

/// Why a scenario cannot be used: always names the file, the line and the field.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Syntax, a wrong type, a missing or unknown key, or an invalid value.
    #[error("{origin}:{line}:{column}: field `{field}`: {message}")]
    Invalid {
        origin: String,
        line: usize,
        column: usize,
        field: String,
        message: String,
    },
}

// ---- file format ----------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    #[serde(default)]
    description: String,
    visits_per_day: f64,
    horizon_days: f64,
    reward_window_days: f64,
    report_segment: String,
    delay: DelaySpec,
    features: Vec<FeatureDef>,
    offers: Vec<OfferDef>,
    #[serde(default)]
    effects: Vec<EffectDef>,
    #[serde(default)]
    drift: Vec<DriftDef>,
    #[serde(default)]
    marketer_rule: Vec<RuleDef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum DelaySpec {
    Exponential { mean_days: f64 },
    Fixed { days: f64 },
    Lognormal { median_days: f64, sigma: f64 },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeatureDef {
    name: String,
    kind: String,
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    weights: Vec<f64>,
    #[serde(default)]
    dist: Option<String>,
    #[serde(default)]
    mean: Option<f64>,
    #[serde(default)]
    sd: Option<f64>,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    mean_by: HashMap<String, f64>,
    #[serde(default)]
    p: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct OfferDef {
    id: String,
    /// Display name: accepted for people reading the file; reports use ids.
    #[serde(default)]
    #[allow(dead_code)]
    name: String,
    value: f64,
    #[serde(default)]
    cost: f64,
    #[serde(default)]
    category: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    depth: f64,
    base: f64,
    #[serde(default)]
    available_from_day: f64,
    #[serde(default)]
    available_until_day: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WhenDef {
    feature: Option<String>,
    #[serde(rename = "in", default)]
    in_: Vec<String>,
    min: Option<f64>,
    max: Option<f64>,
    #[serde(rename = "match")]
    match_: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OffersDef {
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    kinds: Vec<String>,
    #[serde(default)]
    categories: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EffectDef {
    #[serde(default)]
    when: Option<WhenDef>,
    #[serde(default)]
    offers: OffersDef,
    #[serde(default)]
    logit: f64,
    #[serde(default)]
    per_depth: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum DriftDef {
    Shock {
        from_day: f64,
        logit: f64,
        #[serde(default)]
        offers: OffersDef,
    },
    Seasonal {
        period_days: f64,
        amplitude: f64,
        #[serde(default)]
        phase_days: f64,
        #[serde(default)]
        offers: OffersDef,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    #[serde(default)]
    when: Option<WhenDef>,
    offer: String,
}

// ---- compiled model -------------------------------------------------------

/// An offer of the simulated program.
#[derive(Debug, Clone)]
pub(crate) struct SimOffer {
    pub(crate) id: String,
    pub(crate) value: f64,
    pub(crate) cost: f64,
    pub(crate) category: String,
    pub(crate) kind: String,
    pub(crate) depth: f64,
    base_logit: f64,
    from_day: f64,
    until_day: f64,
}

impl SimOffer {
    /// What a redemption is worth to the business.
    pub(crate) fn net_value(&self) -> f64 {
        self.value - self.cost
    }
}

/// One visit: context, offers available, and every offer's true redemption
/// probability (0 for unavailable ones).
#[derive(Debug, Clone, Default)]
pub(crate) struct SimVisit {
    pub(crate) context: Context,
    pub(crate) candidates: Vec<usize>,
    pub(crate) p: Vec<f64>,
}

impl SimVisit {
    /// An empty, reusable visit.
    pub(crate) fn new() -> Self {
        SimVisit::default()
    }
}

/// A mean that depends on an earlier categorical feature: (its index, mean per value).
type MeanBy = (usize, HashMap<String, f64>);

#[derive(Debug, Clone)]
enum Sampler {
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
struct Feature {
    name: String,
    sampler: Sampler,
    min: f64,
    max: f64,
}

#[derive(Debug, Clone)]
enum Condition {
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
struct Effect {
    when: Condition,
    /// Logit added to each offer (0 where the effect does not apply).
    logit: Vec<f64>,
}

#[derive(Debug, Clone)]
enum Drift {
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
struct Rule {
    when: Condition,
    offer: usize,
}

/// A parsed, validated scenario.
#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    name: String,
    description: String,
    visits_per_day: f64,
    horizon_days: f64,
    reward_window_days: f64,
    report_segment: String,
    delay: DelaySpec,
    features: Vec<Feature>,
    offers: Vec<SimOffer>,
    effects: Vec<Effect>,
    drift: Vec<Drift>,
    rules: Vec<Rule>,
}

/// Line and column (1-based) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// Where `key = ...` mentioning `value` first appears (or just `key`), for
/// errors found after parsing.
fn locate(text: &str, key: &str, value: Option<&str>) -> (usize, usize) {
    let mut fallback = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with(key)
            || trimmed.contains(&format!(" {key} ="))
            || trimmed.contains(&format!("{{ {key} ="))
        {
            let indent = line.len() - trimmed.len();
            let here = offset + indent + trimmed.find(key).unwrap_or(0);
            match value {
                Some(v) if line.contains(v) => return line_col(text, here),
                Some(_) => {
                    fallback.get_or_insert(here);
                }
                None => return line_col(text, here),
            }
        }
        offset += line.len();
    }
    fallback.map_or((1, 1), |o| line_col(text, o))
}

struct Checker<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Checker<'_> {
    fn err(&self, field: &str, value: Option<&str>, message: impl Into<String>) -> ScenarioError {
        let key = field.rsplit('.').next().unwrap_or(field);
        let (line, column) = locate(self.text, key, value);
        ScenarioError::Invalid {
            origin: self.origin.to_owned(),
            line,
            column,
            field: field.to_owned(),
            message: message.into(),
        }
    }

    fn positive(&self, field: &str, v: f64) -> Result<(), ScenarioError> {
        if v.is_finite() && v > 0.0 {
            Ok(())
        } else {
            Err(self.err(field, None, format!("expected a positive number, got {v}")))
        }
    }
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-9, 1.0 - 1e-9);
    (p / (1.0 - p)).ln()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn cumulative(weights: &[f64]) -> Vec<f64> {
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
    /// Reads and validates a scenario file.
    pub(crate) fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Scenario::parse(&text, &path.display().to_string())
    }

    /// Parses and validates scenario text; `origin` names it in errors.
    pub(crate) fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let file: File = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            let message = e.message().to_owned();
            let field = message
                .split('`')
                .nth(1)
                .map(str::to_owned)
                .or_else(|| {
                    e.span().and_then(|s| {
                        let line_text = text[..s.start].rsplit('\n').next().unwrap_or("");
                        let full = text[s.start - line_text.len()..]
                            .lines()
                            .next()
                            .unwrap_or("");
                        full.split('=').next().map(|k| k.trim().to_owned())
                    })
                })
                .filter(|f| !f.is_empty())
                .unwrap_or_else(|| "(syntax)".to_owned());
            ScenarioError::Invalid {
                origin: origin.to_owned(),
                line,
                column,
                field,
                message,
            }
        })?;
        let c = Checker { text, origin };
        c.positive("visits_per_day", file.visits_per_day)?;
        c.positive("horizon_days", file.horizon_days)?;
        c.positive("reward_window_days", file.reward_window_days)?;
        match &file.delay {
            DelaySpec::Exponential { mean_days } => c.positive("delay.mean_days", *mean_days)?,
            DelaySpec::Fixed { days } => c.positive("delay.days", *days)?,
            DelaySpec::Lognormal { median_days, sigma } => {
                c.positive("delay.median_days", *median_days)?;
                c.positive("delay.sigma", *sigma)?;
            }
        }
        let features = Self::compile_features(&c, &file.features)?;
        if !features.iter().any(|f| f.name == file.report_segment) {
            return Err(c.err(
                "report_segment",
                Some(&file.report_segment),
                format!("no feature named '{}'", file.report_segment),
            ));
        }
        if file.offers.is_empty() {
            return Err(c.err("offers", None, "declare at least one [[offers]]"));
        }
        let mut offers: Vec<SimOffer> = Vec::with_capacity(file.offers.len());
        for o in &file.offers {
            if offers.iter().any(|x| x.id == o.id) {
                return Err(c.err(
                    "offers.id",
                    Some(&o.id),
                    format!("offer id '{}' is declared twice", o.id),
                ));
            }
            if !(o.base > 0.0 && o.base < 1.0) {
                return Err(c.err(
                    "offers.base",
                    None,
                    format!("offer '{}': base must be a probability in (0, 1)", o.id),
                ));
            }
            if !(o.value.is_finite() && o.cost.is_finite() && (0.0..=1.0).contains(&o.depth)) {
                return Err(c.err(
                    "offers.value",
                    None,
                    format!(
                        "offer '{}': value and cost must be numbers, depth in [0, 1]",
                        o.id
                    ),
                ));
            }
            let until = o.available_until_day.unwrap_or(f64::INFINITY);
            if o.available_from_day >= until {
                return Err(c.err(
                    "offers.available_from_day",
                    None,
                    format!("offer '{}' is never available", o.id),
                ));
            }
            offers.push(SimOffer {
                id: o.id.clone(),
                value: o.value,
                cost: o.cost,
                category: o.category.clone(),
                kind: o.kind.clone(),
                depth: o.depth,
                base_logit: logit(o.base),
                from_day: o.available_from_day,
                until_day: until,
            });
        }
        if !offers.iter().any(|o| o.from_day <= 0.0) {
            return Err(c.err(
                "offers.available_from_day",
                None,
                "at least one offer must be available from day 0",
            ));
        }
        let selector = |field: &str, sel: &OffersDef| -> Result<Vec<bool>, ScenarioError> {
            for id in &sel.ids {
                if !offers.iter().any(|o| o.id == *id) {
                    return Err(c.err(
                        &format!("{field}.ids"),
                        Some(id),
                        format!("no offer '{id}'"),
                    ));
                }
            }
            Ok(offers
                .iter()
                .map(|o| {
                    (sel.ids.is_empty() || sel.ids.contains(&o.id))
                        && (sel.kinds.is_empty() || sel.kinds.contains(&o.kind))
                        && (sel.categories.is_empty() || sel.categories.contains(&o.category))
                })
                .collect())
        };
        let condition = |field: &str, w: &Option<WhenDef>| -> Result<Condition, ScenarioError> {
            let Some(w) = w else {
                return Ok(Condition::Always);
            };
            if let Some(m) = &w.match_ {
                if !features.iter().any(|f| f.name == *m) {
                    return Err(c.err(
                        &format!("{field}.match"),
                        Some(m),
                        format!("no feature named '{m}'"),
                    ));
                }
                return Ok(Condition::MatchesCategory(m.clone()));
            }
            let Some(f) = &w.feature else {
                return Err(c.err(
                    &format!("{field}.feature"),
                    None,
                    "a condition needs `feature` (with `in` or `min`/`max`) or `match`",
                ));
            };
            if !features.iter().any(|x| x.name == *f) {
                return Err(c.err(
                    &format!("{field}.feature"),
                    Some(f),
                    format!("no feature named '{f}'"),
                ));
            }
            if !w.in_.is_empty() {
                Ok(Condition::In(f.clone(), w.in_.clone()))
            } else if w.min.is_some() || w.max.is_some() {
                Ok(Condition::Range(
                    f.clone(),
                    w.min.unwrap_or(f64::NEG_INFINITY),
                    w.max.unwrap_or(f64::INFINITY),
                ))
            } else {
                Err(c.err(
                    &format!("{field}.feature"),
                    Some(f),
                    "give `in = [...]` or `min`/`max`",
                ))
            }
        };
        let mut effects = Vec::new();
        for e in &file.effects {
            let applies = selector("effects.offers", &e.offers)?;
            let logit = offers
                .iter()
                .zip(&applies)
                .map(|(o, a)| {
                    if *a {
                        e.logit + e.per_depth * o.depth
                    } else {
                        0.0
                    }
                })
                .collect();
            effects.push(Effect {
                when: condition("effects.when", &e.when)?,
                logit,
            });
        }
        let mut drift = Vec::new();
        for d in &file.drift {
            drift.push(match d {
                DriftDef::Shock {
                    from_day,
                    logit,
                    offers: sel,
                } => {
                    let applies = selector("drift.offers", sel)?;
                    Drift::Shock {
                        from_day: *from_day,
                        logit: applies
                            .iter()
                            .map(|a| if *a { *logit } else { 0.0 })
                            .collect(),
                    }
                }
                DriftDef::Seasonal {
                    period_days,
                    amplitude,
                    phase_days,
                    offers: sel,
                } => {
                    c.positive("drift.period_days", *period_days)?;
                    let applies = selector("drift.offers", sel)?;
                    Drift::Seasonal {
                        period: *period_days,
                        phase: *phase_days,
                        amplitude: applies
                            .iter()
                            .map(|a| if *a { *amplitude } else { 0.0 })
                            .collect(),
                    }
                }
            });
        }
        let mut rules = Vec::new();
        for r in &file.marketer_rule {
            let offer = offers.iter().position(|o| o.id == r.offer).ok_or_else(|| {
                c.err(
                    "marketer_rule.offer",
                    Some(&r.offer),
                    format!("no offer '{}'", r.offer),
                )
            })?;
            rules.push(Rule {
                when: condition("marketer_rule.when", &r.when)?,
                offer,
            });
        }
        Ok(Scenario {
            name: file.name,
            description: file.description,
            visits_per_day: file.visits_per_day,
            horizon_days: file.horizon_days,
            reward_window_days: file.reward_window_days,
            report_segment: file.report_segment,
            delay: file.delay,
            features,
            offers,
            effects,
            drift,
            rules,
        })
    }

    fn compile_features(
        c: &Checker<'_>,
        defs: &[FeatureDef],
    ) -> Result<Vec<Feature>, ScenarioError> {
        let mut out: Vec<Feature> = Vec::new();
        for d in defs {
            if out.iter().any(|f| f.name == d.name) {
                return Err(c.err(
                    "features.name",
                    Some(&d.name),
                    format!("feature '{}' is declared twice", d.name),
                ));
            }
            let weights_ok = |w: &[f64]| {
                w.iter().all(|x| x.is_finite() && *x >= 0.0) && w.iter().sum::<f64>() > 0.0
            };
            let by = |name: &str| -> Result<Option<MeanBy>, ScenarioError> {
                match &d.by {
                    None => Ok(None),
                    Some(b) => match out.iter().position(|f| f.name == *b && matches!(f.sampler, Sampler::Categorical { .. })) {
                        Some(i) => Ok(Some((i, d.mean_by.clone()))),
                        None => Err(c.err("features.by", Some(b), format!("feature '{name}': `by` must name a categorical feature declared before it"))),
                    },
                }
            };
            let sampler = match (d.kind.as_str(), d.dist.as_deref()) {
                ("categorical", _) => {
                    if d.values.is_empty()
                        || d.values.len() != d.weights.len()
                        || !weights_ok(&d.weights)
                    {
                        return Err(c.err(
                            "features.weights",
                            Some(&d.name),
                            format!(
                                "feature '{}': give as many non-negative weights as values",
                                d.name
                            ),
                        ));
                    }
                    Sampler::Categorical {
                        values: d.values.clone(),
                        cumulative: cumulative(&d.weights),
                    }
                }
                ("flag", _) => match d.p {
                    Some(p) if (0.0..=1.0).contains(&p) => Sampler::Flag { p },
                    _ => {
                        return Err(c.err(
                            "features.p",
                            Some(&d.name),
                            format!("feature '{}': a flag needs p in [0, 1]", d.name),
                        ));
                    }
                },
                ("numeric", Some("discrete")) => {
                    if !weights_ok(&d.weights) {
                        return Err(c.err(
                            "features.weights",
                            Some(&d.name),
                            format!(
                                "feature '{}': discrete weights must be non-negative, not all zero",
                                d.name
                            ),
                        ));
                    }
                    Sampler::Discrete {
                        cumulative: cumulative(&d.weights),
                    }
                }
                ("numeric", Some("normal")) => match (d.mean, d.sd) {
                    (Some(mean), Some(sd)) if sd > 0.0 => Sampler::Normal {
                        mean,
                        sd,
                        by: by(&d.name)?,
                    },
                    _ => {
                        return Err(c.err(
                            "features.sd",
                            Some(&d.name),
                            format!("feature '{}': normal needs mean and sd > 0", d.name),
                        ));
                    }
                },
                ("numeric", Some("uniform")) => match (d.min, d.max) {
                    (Some(min), Some(max)) if min < max => Sampler::Uniform { min, max },
                    _ => {
                        return Err(c.err(
                            "features.min",
                            Some(&d.name),
                            format!("feature '{}': uniform needs min < max", d.name),
                        ));
                    }
                },
                ("numeric", Some("poisson")) => match d.mean {
                    Some(mean) if mean > 0.0 => Sampler::Poisson {
                        mean,
                        by: by(&d.name)?,
                    },
                    _ => {
                        return Err(c.err(
                            "features.mean",
                            Some(&d.name),
                            format!("feature '{}': poisson needs mean > 0", d.name),
                        ));
                    }
                },
                ("numeric", other) => {
                    return Err(c.err("features.dist", Some(&d.name), format!("feature '{}': dist must be discrete, normal, uniform or poisson, not {other:?}", d.name)));
                }
                (k, _) => {
                    return Err(c.err(
                        "features.kind",
                        Some(k),
                        format!(
                            "feature '{}': kind must be categorical, numeric or flag, not '{k}'",
                            d.name
                        ),
                    ));
                }
            };
            out.push(Feature {
                name: d.name.clone(),
                sampler,
                min: d.min.unwrap_or(f64::NEG_INFINITY),
                max: d.max.unwrap_or(f64::INFINITY),
            });
        }
        Ok(out)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    #[allow(dead_code)]
    pub(crate) fn description(&self) -> &str {
        &self.description
    }

    /// Every offer that exists at some point of the run.
    pub(crate) fn offers(&self) -> &[SimOffer] {
        &self.offers
    }

    /// Visits over the horizon.
    pub(crate) fn rounds(&self) -> u64 {
        (self.visits_per_day * self.horizon_days).round() as u64
    }

    pub(crate) fn visits_per_day(&self) -> f64 {
        self.visits_per_day
    }

    pub(crate) fn reward_window_days(&self) -> f64 {
        self.reward_window_days
    }

    /// The feature whose values the report's offer shares are split by.
    pub(crate) fn report_segment(&self) -> &str {
        &self.report_segment
    }

    /// Whether the scenario declares a marketer rule.
    pub(crate) fn has_marketer_rule(&self) -> bool {
        !self.rules.is_empty()
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const SHIPPED: [(&str, &str); 4] = [
        (
            "coffee-loyalty",
            include_str!("../scenarios/coffee-loyalty.toml"),
        ),
        ("winback", include_str!("../scenarios/winback.toml")),
        ("drift", include_str!("../scenarios/drift.toml")),
        ("cold-start", include_str!("../scenarios/cold-start.toml")),
    ];

    fn draws(s: &Scenario, from: u64, n: u64, seed: u64) -> Vec<SimVisit> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                let mut v = SimVisit::new();
                s.draw_visit(from + i, &mut rng, &mut v);
                v
            })
            .collect()
    }

    #[test]
    fn shipped_scenarios_parse_and_draw_sane_visits() {
        for (name, text) in SHIPPED {
            let s = Scenario::parse(text, name).unwrap_or_else(|e| panic!("{e}"));
            assert!(s.rounds() > 0 && s.has_marketer_rule(), "{name}");
            for v in draws(&s, 0, 2_000, 1) {
                assert!(!v.candidates.is_empty());
                assert!(v.candidates.windows(2).all(|w| w[0] < w[1]));
                assert_eq!(v.p.len(), s.offers().len());
                assert!(v.p.iter().all(|p| (0.0..=1.0).contains(p)));
                assert!(v.context.contains_key(s.report_segment()));
            }
        }
    }

    #[test]
    fn feature_frequencies_match_declared_weights() {
        let text = "name = \"t\"\nvisits_per_day = 10\nhorizon_days = 1\nreward_window_days = 1\nreport_segment = \"tier\"\n\
                    delay = { kind = \"fixed\", days = 1 }\n\
                    [[features]]\nname = \"tier\"\nkind = \"categorical\"\nvalues = [\"a\", \"b\", \"c\"]\nweights = [0.2, 0.5, 0.3]\n\
                    [[offers]]\nid = \"o\"\nvalue = 1\nbase = 0.1\n";
        let s = Scenario::parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let n = 20_000;
        let mut counts = HashMap::new();
        for v in draws(&s, 0, n, 2) {
            if let Some(FeatureValue::Category(c)) = v.context.get("tier") {
                *counts.entry(c.clone()).or_insert(0usize) += 1;
            }
        }
        // Binomial standard error at n = 20,000 is at most 0.0035; allow 4 of them.
        for (value, want) in [("a", 0.2), ("b", 0.5), ("c", 0.3)] {
            let got = counts[value] as f64 / n as f64;
            assert!((got - want).abs() < 0.014, "{value}: {got} vs {want}");
        }
    }

    fn mean_p(
        s: &Scenario,
        visits: &[SimVisit],
        offer: &str,
        filter: impl Fn(&SimVisit) -> bool,
    ) -> f64 {
        let k = s
            .offers()
            .iter()
            .position(|o| o.id == offer)
            .expect("offer exists");
        let sel: Vec<f64> = visits
            .iter()
            .filter(|v| filter(v))
            .map(|v| v.p[k])
            .collect();
        sel.iter().sum::<f64>() / sel.len().max(1) as f64
    }

    #[test]
    fn effects_drift_and_new_offers_change_the_truth() {
        let coffee = Scenario::parse(SHIPPED[0].1, "coffee").unwrap_or_else(|e| panic!("{e}"));
        let v = draws(&coffee, 0, 20_000, 3);
        let hour = |v: &SimVisit| match v.context.get("hour") {
            Some(FeatureValue::Number(h)) => *h,
            _ => -1.0,
        };
        let afternoon = mean_p(&coffee, &v, "bogo_afternoon", |v| {
            (14.0..18.0).contains(&hour(v))
        });
        let morning = mean_p(&coffee, &v, "bogo_afternoon", |v| hour(v) < 11.0);
        assert!(
            afternoon > 2.0 * morning,
            "BOGO after 2pm {afternoon} vs morning {morning}"
        );

        let drift = Scenario::parse(SHIPPED[2].1, "drift").unwrap_or_else(|e| panic!("{e}"));
        let half = drift.rounds() / 2;
        let before = draws(&drift, half - 5_000, 4_000, 4);
        let after = draws(&drift, half + 1_000, 4_000, 4);
        let b = mean_p(&drift, &before, "bogo_afternoon", |_| true);
        let a = mean_p(&drift, &after, "bogo_afternoon", |_| true);
        assert!(a < 0.5 * b, "shocked offer: {b} before, {a} after");
        let newcomer = drift
            .offers()
            .iter()
            .position(|o| o.from_day > 0.0)
            .expect("a new offer");
        assert!(before.iter().all(|v| !v.candidates.contains(&newcomer)));
        let late = draws(&drift, drift.rounds() - 100, 100, 5);
        assert!(late.iter().all(|v| v.candidates.contains(&newcomer)));
    }

    #[test]
    fn marketer_rule_follows_the_first_matching_rule() {
        let s = Scenario::parse(SHIPPED[0].1, "coffee").unwrap_or_else(|e| panic!("{e}"));
        let all: Vec<usize> = (0..s.offers().len()).collect();
        let id = |i: usize| s.offers()[i].id.clone();
        let mut ctx = Context::new();
        ctx.insert("hour".into(), FeatureValue::Number(15.0));
        ctx.insert("lifecycle".into(), FeatureValue::Category("active".into()));
        assert_eq!(id(s.marketer_choice(&ctx, &all)), "bogo_afternoon");
        ctx.insert("hour".into(), FeatureValue::Number(9.0));
        assert_eq!(id(s.marketer_choice(&ctx, &all)), "double_points");
        // Not a candidate: the rule falls through.
        let without: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&i| id(i) != "double_points")
            .collect();
        assert_ne!(id(s.marketer_choice(&ctx, &without)), "double_points");
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let good = SHIPPED[3].1;
        let err = |text: &str| {
            Scenario::parse(text, "x.toml")
                .expect_err("invalid")
                .to_string()
        };
        let e = err(&good.replacen("visits_per_day = ", "visits_per_day = -", 1));
        let line = good
            .lines()
            .position(|l| l.starts_with("visits_per_day"))
            .expect("key")
            + 1;
        assert!(
            e.starts_with(&format!("x.toml:{line}:")) && e.contains("`visits_per_day`"),
            "{e}"
        );
        let e = err(&good.replacen("visits_per_day = ", "visits_per_day = \"many\" #", 1));
        assert!(
            e.starts_with(&format!("x.toml:{line}:")) && e.contains("visits_per_day"),
            "{e}"
        );
        let e = err(&format!("{good}\n[[marketer_rule]]\noffer = \"nope\"\n"));
        let line = good.lines().count() + 3;
        assert!(
            e.starts_with(&format!("x.toml:{line}:"))
                && e.contains("`marketer_rule.offer`")
                && e.contains("nope"),
            "{e}"
        );
        let e = err(&format!("{good}\ncolour = 1\n"));
        assert!(e.contains("colour"), "{e}");
        let e = err(&good.replacen("report_segment = \"", "report_segment = \"zz", 1));
        assert!(
            e.contains("`report_segment`") && e.contains("no feature"),
            "{e}"
        );
    }
}
