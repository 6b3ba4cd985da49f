//! The scenario file format as serde reads it (`deny_unknown_fields`
//! everywhere); `parse` validates it into the model.

use std::collections::HashMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    pub(super) name: String,
    #[serde(default)]
    pub(super) description: String,
    pub(super) visits_per_day: f64,
    pub(super) horizon_days: f64,
    pub(super) reward_window_days: f64,
    pub(super) report_segment: String,
    pub(super) delay: DelaySpec,
    pub(super) features: Vec<FeatureDef>,
    pub(super) offers: Vec<OfferDef>,
    #[serde(default)]
    pub(super) effects: Vec<EffectDef>,
    #[serde(default)]
    pub(super) drift: Vec<DriftDef>,
    #[serde(default)]
    pub(super) marketer_rule: Vec<RuleDef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub(super) enum DelaySpec {
    Exponential { mean_days: f64 },
    Fixed { days: f64 },
    Lognormal { median_days: f64, sigma: f64 },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FeatureDef {
    pub(super) name: String,
    pub(super) kind: String,
    #[serde(default)]
    pub(super) values: Vec<String>,
    #[serde(default)]
    pub(super) weights: Vec<f64>,
    #[serde(default)]
    pub(super) dist: Option<String>,
    #[serde(default)]
    pub(super) mean: Option<f64>,
    #[serde(default)]
    pub(super) sd: Option<f64>,
    #[serde(default)]
    pub(super) min: Option<f64>,
    #[serde(default)]
    pub(super) max: Option<f64>,
    #[serde(default)]
    pub(super) by: Option<String>,
    #[serde(default)]
    pub(super) mean_by: HashMap<String, f64>,
    #[serde(default)]
    pub(super) p: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OfferDef {
    pub(super) id: String,
    /// Display name: what reports and campaign files show.
    #[serde(default)]
    pub(super) name: String,
    pub(super) value: f64,
    #[serde(default)]
    pub(super) cost: f64,
    #[serde(default)]
    pub(super) category: String,
    #[serde(default)]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) depth: f64,
    pub(super) base: f64,
    #[serde(default)]
    pub(super) available_from_day: f64,
    #[serde(default)]
    pub(super) available_until_day: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WhenDef {
    pub(super) feature: Option<String>,
    #[serde(rename = "in", default)]
    pub(super) in_: Vec<String>,
    pub(super) min: Option<f64>,
    pub(super) max: Option<f64>,
    #[serde(rename = "match")]
    pub(super) match_: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OffersDef {
    #[serde(default)]
    pub(super) ids: Vec<String>,
    #[serde(default)]
    pub(super) kinds: Vec<String>,
    #[serde(default)]
    pub(super) categories: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EffectDef {
    #[serde(default)]
    pub(super) when: Option<WhenDef>,
    #[serde(default)]
    pub(super) offers: OffersDef,
    #[serde(default)]
    pub(super) logit: f64,
    #[serde(default)]
    pub(super) per_depth: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub(super) enum DriftDef {
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
pub(super) struct RuleDef {
    #[serde(default)]
    pub(super) when: Option<WhenDef>,
    pub(super) offer: String,
}
