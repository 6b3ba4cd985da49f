//! Scenario text to a validated [`Scenario`]: the TOML read into the file
//! format, then every value checked and compiled into the model. An error
//! names the file, the line and the field.

use super::{
    Scenario, ScenarioError, SimOffer,
    file::{DelaySpec, DriftDef, FeatureDef, File, OffersDef, WhenDef},
    model::{Condition, Drift, Effect, Feature, MeanBy, Rule, Sampler, cumulative, logit},
};

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

impl Scenario {
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
                name: if o.name.trim().is_empty() {
                    o.id.clone()
                } else {
                    o.name.trim().to_owned()
                },
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
}
