//! Campaign configuration: the TOML file format (here), reading files
//! (`load`), validation (`validate`), and the built-in demo campaign.

use std::{
    collections::{BTreeMap, HashSet},
    path::Path,
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::context::{Context, FeatureValue};
use crate::features::{EncodeError, Encoder, FeatureSpec};
use crate::policy::{
    Objective,
    contextual::{ContextualConfig, Likelihood},
};

mod load;
mod validate;

pub use load::{
    FileCampaign, demo, demo_campaigns, load_file, load_file_campaigns, parse, parse_campaign,
    parse_file,
};
pub use validate::{MAX_OFFER_DIMENSION, valid_id, validate};

/// The demo campaigns served when no config file is given.
pub const DEMO_CAMPAIGNS_TOML: &str = include_str!("../../config/demo-campaigns.toml");

/// Why a config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read campaign config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// TOML syntax or a field of the wrong type (the message has line and column).
    #[error("campaign config {origin}: {message}")]
    Parse {
        /// File name or "built-in demo".
        origin: String,
        /// What is wrong, and where.
        message: String,
    },
    /// A value that parses but cannot be served.
    #[error("campaign config {origin}: {message}")]
    Invalid {
        /// File name or "built-in demo".
        origin: String,
        /// What is wrong.
        message: String,
    },
}

/// Which learner a campaign uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyKind {
    /// Beta-Bernoulli Thompson sampling per (segment, offer).
    #[serde(rename = "segment-ts")]
    SegmentTs,
    /// Contextual Thompson sampling, Bayesian linear regression per offer.
    #[serde(rename = "linear-ts")]
    LinearTs,
    /// Contextual Thompson sampling, Bayesian logistic regression per offer.
    #[serde(rename = "logistic-ts")]
    LogisticTs,
}

impl PolicyKind {
    /// The name used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::SegmentTs => "segment-ts",
            PolicyKind::LinearTs => "linear-ts",
            PolicyKind::LogisticTs => "logistic-ts",
        }
    }

    /// The regression likelihood of a contextual policy.
    pub fn likelihood(self) -> Option<Likelihood> {
        match self {
            PolicyKind::SegmentTs => None,
            PolicyKind::LinearTs => Some(Likelihood::Linear),
            PolicyKind::LogisticTs => Some(Likelihood::Logistic),
        }
    }
}

/// Largest redemption value accepted (squares of values are summed for the
/// report's intervals; this keeps them finite).
pub const MAX_VALUE: f64 = 1e9;

/// An offer as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferConfig {
    /// Unique within the campaign: letters, digits, `_`, `-`, `.`; at most 64.
    pub id: String,
    /// Display name (defaults to the id).
    #[serde(default)]
    pub name: String,
    /// Net value of one redemption (>= 0; > 0 under the value objective).
    #[serde(default = "default_value")]
    pub value: f64,
    /// Product category.
    #[serde(default)]
    pub category: String,
    /// Most decisions that may ever choose this offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_decisions: Option<u64>,
    /// Most redemptions: the offer stops being chosen once its redemptions
    /// plus the redemptions its pending decisions are expected to bring
    /// reach this (redemptions of decisions already made are always honored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_redemptions: Option<u64>,
    /// Most decisions per day of the campaign's `time_zone`, paced over the day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_decisions_per_day: Option<u64>,
    /// Most redemptions per day of the campaign's `time_zone` (expected, as for max_redemptions), paced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_redemptions_per_day: Option<u64>,
    /// Largest value one redemption of this offer may report; a
    /// RecordRedemption above it is refused (INVALID_ARGUMENT). Unset: only
    /// the server-wide limit of 1e9.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_value: Option<f64>,
    /// Contextual campaigns with `offer_features`: this offer's values of
    /// them, e.g. `{ kind = "bogo", depth = 0.5 }` (missing ones are
    /// allowed, and encode as for a context).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, OfferFeatureValue>,
    /// What checkout shows, free-form: e.g. `{ headline = "20% off",
    /// image = "https://..." }`; SelectOffer returns it with the offer.
    /// Never read by the model.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub display: BTreeMap<String, String>,
}

/// Most display attributes per offer, and their key and value sizes in bytes.
pub const MAX_DISPLAY: (usize, usize, usize) = (32, 64, 2048);

/// One offer feature's value in a campaign file: a category label, a
/// number or a flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OfferFeatureValue {
    /// A yes/no value.
    Flag(bool),
    /// A number.
    Number(f64),
    /// A category label.
    Category(String),
}

impl OfferFeatureValue {
    /// As a context value.
    pub fn to_feature_value(&self) -> FeatureValue {
        match self {
            OfferFeatureValue::Flag(b) => FeatureValue::Flag(*b),
            OfferFeatureValue::Number(v) => FeatureValue::Number(*v),
            OfferFeatureValue::Category(c) => FeatureValue::Category(c.clone()),
        }
    }
}

impl OfferConfig {
    /// The offer's features as a context, for the offer encoder.
    pub fn feature_context(&self) -> Context {
        self.features
            .iter()
            .map(|(k, v)| (k.clone(), v.to_feature_value()))
            .collect()
    }
}

/// At most `max` times the same offer per customer per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrequencyCap {
    /// Times.
    pub max: u32,
    /// The period, e.g. "7d".
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub period: Duration,
}

/// A campaign as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignConfig {
    /// Unique id: letters, digits, `_`, `-`, `.`; at most 64.
    pub id: String,
    /// The learner.
    pub policy: PolicyKind,
    /// Categorical context features forming the segment.
    #[serde(default)]
    pub segment_by: Vec<String>,
    /// How long after a decision a redemption still counts.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub reward_window: Duration,
    /// What the campaign maximizes.
    #[serde(default)]
    pub objective: Objective,
    /// Pseudo-observations a segment borrows from the rest of the campaign.
    #[serde(default = "default_prior_strength")]
    pub prior_strength: f64,
    /// Segments tracked before new ones share the segment "(other)".
    #[serde(default = "default_max_segments")]
    pub max_segments: usize,
    /// `segment-ts`: how far (in posterior standard deviations) a segment's
    /// live posterior may drift from the snapshot decisions sample from
    /// before a new snapshot is taken; 0 samples the live posterior every time.
    #[serde(default = "default_snapshot_tolerance")]
    pub snapshot_tolerance: f64,
    /// Least probability with which the bandit picks each of a visit's K
    /// candidates, so that the decision log supports off-policy evaluation
    /// of other policies: with probability K x min the choice is uniform,
    /// otherwise the policy's. 0 (the default): off. K x min may not pass 1
    /// for the campaign's offers.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub min_propensity: f64,
    /// Share of customers (stable per customer id; per request for
    /// anonymous visits) served by the control policy instead of the
    /// bandit, to measure what personalization is worth. 0: no control group.
    #[serde(default)]
    pub control_share: f64,
    /// The offer the control group gets, when it is among the candidates;
    /// without it (or when it is not a candidate) the control group gets a
    /// uniformly random candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_offer: Option<String>,
    /// The control group's rule instead of one offer: the rule a loyalty
    /// team runs today, in the rules language of [`crate::policy::rules`]
    /// (`if hour >= 14 then bogo`, ..., `otherwise double_points`), so that
    /// the report's uplift is personalization against that rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_rules: Option<String>,
    /// Frequency cap: a customer (by customer_id) gets the same offer at
    /// most `max` times per `period`; anonymous visits are not capped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_cap: Option<FrequencyCap>,
    /// The campaign's time zone, an IANA name such as `America/New_York`
    /// (default `UTC`): daily budgets reset at its midnight and are paced
    /// over its day (see [`crate::budget`]).
    #[serde(default = "default_time_zone", skip_serializing_if = "is_utc")]
    pub time_zone: String,
    /// The offers.
    #[serde(default)]
    pub offers: Vec<OfferConfig>,
    /// Context features of contextual policies (`linear-ts`, `logistic-ts`).
    #[serde(default)]
    pub features: Vec<FeatureSpec>,
    /// Columns shared by `hashed` features: 2^hash_bits.
    #[serde(default = "default_hash_bits")]
    pub hash_bits: u32,
    /// Contextual: features that describe offers (declared as context
    /// features are; each offer gives its values in `features`). The learned
    /// prior then learns how they move every context weight, the context x
    /// offer feature interactions, so a new offer starts where offers like
    /// it are. Needs the learned prior (`adaptive_prior`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offer_features: Vec<FeatureSpec>,
    /// Contextual: multiplies the predictive standard deviation when sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exploration: Option<f64>,
    /// Contextual: prior variance of each weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_variance: Option<f64>,
    /// Contextual: prior redemption rate (the intercept's prior mean).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_rate: Option<f64>,
    /// `linear-ts`: observation noise variance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_variance: Option<f64>,
    /// Contextual: an offer's evidence halves every this many of its
    /// observations (no forgetting when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_life: Option<f64>,
    /// Contextual: every offer's evidence halves every this many days of
    /// event time, back towards its prior (default 30; 0: no forgetting
    /// over time; see `policy::forgetting`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_half_life_days: Option<f64>,
    /// Contextual: learn one prior variance per feature group from all the
    /// campaign's offers (default: true for at most 256 encoded columns; see
    /// `policy::shared_prior`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive_prior: Option<bool>,
    /// Contextual: change detection per offer, the threshold of its score
    /// test (default 5; 0: off; see `policy::change`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_threshold: Option<f64>,
}

impl CampaignConfig {
    /// The contextual model settings, `None` for `segment-ts`.
    pub fn contextual(&self) -> Option<ContextualConfig> {
        let mut c = ContextualConfig::new(self.policy.likelihood()?);
        if let Some(v) = self.exploration {
            c.exploration = v;
        }
        if let Some(v) = self.prior_variance {
            c.prior_variance = v;
        }
        if let Some(v) = self.prior_rate {
            c.prior_rate = v;
        }
        if let Some(v) = self.noise_variance {
            c.noise_variance = v;
            c.noise_from_rate = false;
        }
        c.half_life = self.half_life;
        if let Some(z) = self.change_threshold {
            c.change_threshold = (z > 0.0).then_some(z);
        }
        if let Some(days) = self.time_half_life_days {
            c.time_half_life_ms = (days > 0.0).then_some(days * crate::policy::forgetting::DAY_MS);
        }
        c.adaptive_prior = match self.adaptive_prior {
            Some(v) => v,
            None => self
                .encoder()
                .is_ok_and(|e| crate::policy::shared_prior::on_by_default(e.dim())),
        };
        Some(c)
    }

    /// The campaign's time zone (validated at load; UTC should a stored
    /// name no longer be known).
    pub fn local_time(&self) -> crate::budget::LocalTime {
        crate::budget::LocalTime::parse(&self.time_zone).unwrap_or_default()
    }

    /// The feature encoder of a contextual campaign (validated at load).
    pub fn encoder(&self) -> Result<Encoder, EncodeError> {
        Encoder::new(self.features.clone(), self.hash_bits)
    }

    /// The encoder of offer features; `None` without them (validated at
    /// load).
    pub fn offer_encoder(&self) -> Option<Encoder> {
        if self.offer_features.is_empty() {
            return None;
        }
        Encoder::new(self.offer_features.clone(), 0).ok()
    }

    /// Offer columns of the learned prior: the offer encoder's dimension,
    /// 0 without offer features.
    pub fn offer_columns(&self) -> usize {
        self.offer_encoder().map_or(0, |e| e.dim())
    }
}

/// `offer`'s features encoded by `encoder` (empty without one, or if they
/// do not encode, which validation rules out).
pub fn encode_offer(encoder: Option<&Encoder>, offer: &OfferConfig) -> Vec<(u32, f64)> {
    encoder
        .and_then(|e| e.encode(&offer.feature_context()).ok())
        .unwrap_or_default()
}

/// Largest budget an offer may declare (TOML integers are 64-bit signed).
pub const MAX_BUDGET: u64 = i64::MAX as u64;

/// Largest encoded dimension a contextual campaign may have: the model keeps
/// a d x d covariance per offer and updates it in O(d^2).
pub const MAX_DIMENSION: usize = 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignsFile {
    campaigns: Vec<CampaignConfig>,
}

fn default_value() -> f64 {
    1.0
}
fn default_prior_strength() -> f64 {
    10.0
}
fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn default_time_zone() -> String {
    "UTC".into()
}

fn is_utc(name: &String) -> bool {
    name == "UTC"
}

fn default_snapshot_tolerance() -> f64 {
    crate::policy::segment::DEFAULT_SNAPSHOT_TOLERANCE
}
fn default_max_segments() -> usize {
    10_000
}
fn default_hash_bits() -> u32 {
    8
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "'{s}' is not a duration like \"7d\", \"12h\" or \"30s\": {e}"
        ))
    })
}

impl CampaignConfig {
    /// The campaign as a config file of its own, which `parse_campaign`
    /// reads back to an equal config (checked: an error otherwise).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        let file = CampaignsFile {
            campaigns: vec![self.clone()],
        };
        let invalid = |message: String| ConfigError::Invalid {
            origin: format!("campaign '{}'", self.id),
            message,
        };
        let text = toml::to_string(&file).map_err(|e| invalid(e.to_string()))?;
        match parse_campaign(&text, "its TOML form") {
            Ok(back) if back == *self => Ok(text),
            Ok(_) => Err(invalid("does not read back as itself from TOML".into())),
            Err(e) => Err(invalid(format!("does not read back from TOML: {e}"))),
        }
    }

    /// Why a running campaign cannot become `next`, or None when it can;
    /// `retired` are the offers it dropped earlier, as last configured.
    /// What its learned state means must stay the same: the policy, the
    /// segment features, the encoded features and offer features (a change
    /// needs a new campaign id), and each offer's features, retired or not
    /// (a change needs a new offer). Everything else may change: offers
    /// (added, edited, or dropped, which retires them), budgets, caps, the
    /// control group, the objective, the reward window of new decisions,
    /// priors and exploration.
    pub fn update_conflict(
        &self,
        retired: &[OfferConfig],
        next: &CampaignConfig,
    ) -> Option<String> {
        let hint = "changing it would change what the learned posteriors mean; create a new campaign id instead";
        if next.id != self.id {
            return Some(format!(
                "the config is for campaign '{}', not '{}'",
                next.id, self.id
            ));
        }
        if next.policy != self.policy {
            return Some(format!(
                "policy is {}, not {}: {hint}",
                self.policy.as_str(),
                next.policy.as_str()
            ));
        }
        if next.segment_by != self.segment_by {
            return Some(format!(
                "segment_by is {:?}, not {:?}: {hint}",
                self.segment_by, next.segment_by
            ));
        }
        if next.features != self.features || next.hash_bits != self.hash_bits {
            return Some(format!(
                "features and hash_bits must stay as they are: {hint}"
            ));
        }
        if next.offer_features != self.offer_features {
            return Some(format!("offer_features must stay as they are: {hint}"));
        }
        // An offer's posterior was learned under the prior mean its
        // features gave.
        let changed = |o: &&OfferConfig| {
            self.offers
                .iter()
                .chain(retired)
                .any(|x| x.id == o.id && x.features != o.features)
        };
        next.offers.iter().find(changed).map(|o| {
            format!(
                "offer '{}': its features must stay as they are, as its model was learned with them (add a new offer instead)",
                o.id
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_is_valid() {
        let demo = demo().expect("demo config parses");
        assert_eq!(demo[0].id, "coffee");
        assert_eq!(demo[0].reward_window, Duration::from_secs(7 * 86_400));
        assert!(demo[0].offers.len() >= 4);
    }

    #[test]
    fn errors_name_the_problem() {
        let base = "[[campaigns]]\nid = \"c\"\npolicy = \"segment-ts\"\nreward_window = \"30s\"\n";
        let offer = "[[campaigns.offers]]\nid = \"a\"\n";
        let err = |t: &str| parse(t, "t.toml").expect_err("should fail").to_string();
        assert!(err(&format!("{base}{offer}{offer}")).contains("offer id 'a' is declared twice"));
        assert!(err(base).contains("at least one"));
        assert!(err(&base.replace("30s", "soon")).contains("not a duration"));
        assert!(err(&base.replace("segment-ts", "magic")).contains("line 3"));
        assert!(
            err(&format!("{base}objective = \"value\"\n{offer}value = 0\n"))
                .contains("must be > 0")
        );
        assert!(err(&format!("{base}colour = 1\n{offer}")).contains("unknown field"));
        assert!(err(&format!("{base}half_life = 10.0\n{offer}")).contains("half_life applies to"));
        assert!(
            err(&format!("{base}adaptive_prior = false\n{offer}"))
                .contains("adaptive_prior applies to")
        );
        let ctx = base.replace("segment-ts", "logistic-ts");
        let feature =
            "[[campaigns.features]]\nkind = \"numeric\"\nname = \"hour\"\nmin = 0\nmax = 24\n";
        assert!(
            err(&format!("{ctx}{offer}{feature}{}", "bins = [14, 10]\n"))
                .contains("strictly increasing")
        );
        assert!(err(&format!("{ctx}exploration = -1.0\n{offer}")).contains("exploration must be"));
        let ok =
            parse(&format!("{ctx}{offer}{feature}bins = [10, 14]\n"), "t.toml").expect("valid");
        // Intercept, scaled, one step per edge (the default).
        assert_eq!(ok[0].encoder().expect("encoder").dim(), 1 + 1 + 2);
        let one_hot = format!("{ctx}{offer}{feature}bins = [10, 14]\nbuckets = \"one-hot\"\n");
        let ok = parse(&one_hot, "t.toml").expect("valid");
        assert_eq!(ok[0].encoder().expect("encoder").dim(), 1 + 1 + 3);
        assert!(
            err(&format!("{ctx}{offer}{feature}buckets = \"ordinal\"\n"))
                .contains("unknown variant")
        );
        assert!(
            err(&format!("{ctx}time_half_life_days = -1\n{offer}"))
                .contains("time_half_life_days must be")
        );
        let day = crate::policy::forgetting::DAY_MS;
        let forgetting = |line: &str| {
            let ok = parse(&format!("{ctx}{line}{offer}"), "t.toml").expect("valid");
            ok[0].contextual().and_then(|c| c.time_half_life_ms)
        };
        assert_eq!(forgetting(""), Some(30.0 * day), "on by default");
        assert_eq!(forgetting("time_half_life_days = 7\n"), Some(7.0 * day));
        assert_eq!(forgetting("time_half_life_days = 0\n"), None, "0: off");
        let change = |line: &str| {
            let ok = parse(&format!("{ctx}{line}{offer}"), "t.toml").expect("valid");
            ok[0].contextual().and_then(|c| c.change_threshold)
        };
        assert_eq!(change(""), Some(crate::policy::change::DEFAULT_THRESHOLD));
        assert_eq!(change("change_threshold = 4\n"), Some(4.0));
        assert_eq!(change("change_threshold = 0\n"), None, "0: off");
        assert!(
            err(&format!("{ctx}change_threshold = -1\n{offer}"))
                .contains("change_threshold must be")
        );
        let ok = parse(&format!("{base}{offer}"), "t.toml").expect("valid");
        assert_eq!(ok[0].offers[0].name, "a");
        assert_eq!(ok[0].objective, Objective::Redemptions);
    }

    #[test]
    fn offer_features_are_declared_encoded_and_kept() {
        let base = "[[campaigns]]\nid = \"c\"\npolicy = \"logistic-ts\"\nreward_window = \"30s\"\n";
        let feature = "[[campaigns.features]]\nkind = \"flag\"\nname = \"member\"\n";
        let kinds = "[[campaigns.offer_features]]\nkind = \"categorical\"\nname = \"kind\"\nvalues = [\"bogo\", \"pct\"]\n";
        let depth = "[[campaigns.offer_features]]\nkind = \"numeric\"\nname = \"depth\"\nmin = 0\nmax = 1\n";
        let offers = "[[campaigns.offers]]\nid = \"a\"\nfeatures = { kind = \"bogo\", depth = 0.5 }\n\
                      [[campaigns.offers]]\nid = \"b\"\nfeatures = { kind = \"pct\" }\n";
        let text = format!("{base}{feature}{kinds}{depth}{offers}");
        let ok = parse(&text, "t.toml").expect("valid");
        let c = &ok[0];
        // Intercept, bogo, pct, other, depth scaled.
        assert_eq!(c.offer_columns(), 5);
        let e = c.offer_encoder();
        assert_eq!(
            encode_offer(e.as_ref(), &c.offers[0]),
            [(0, 1.0), (1, 1.0), (4, 0.5)]
        );
        assert_eq!(encode_offer(e.as_ref(), &c.offers[1]), [(0, 1.0), (2, 1.0)]);
        // The file format round-trips.
        let again = parse_campaign(&c.to_toml().expect("serializes"), "again").expect("valid");
        assert_eq!(&again, c);
        let err = |t: &str| parse(t, "t.toml").expect_err("should fail").to_string();
        let e = err(&format!("{base}{feature}{kinds}{offers}"));
        assert!(e.contains("feature 'depth' is not one of"), "{e}");
        let e = err(&format!("{base}{feature}{offers}"));
        assert!(
            e.contains("declares no [[campaigns.offer_features]]"),
            "{e}"
        );
        let e = err(&format!(
            "{base}adaptive_prior = false\n{feature}{kinds}{depth}{offers}"
        ));
        assert!(e.contains("need adaptive_prior"), "{e}");
        let e = err(&format!(
            "{}{kinds}[[campaigns.offers]]\nid = \"a\"\n",
            base.replace("logistic-ts", "segment-ts")
        ));
        assert!(e.contains("offer_features applies to"), "{e}");
        let hashed = "[[campaigns.offer_features]]\nkind = \"hashed\"\nname = \"sku\"\n";
        let e = err(&format!(
            "{base}{feature}{hashed}[[campaigns.offers]]\nid = \"a\"\n"
        ));
        assert!(e.contains("not hashed"), "{e}");
        let e = err(&format!(
            "{base}{feature}{kinds}{depth}[[campaigns.offers]]\nid = \"a\"\nfeatures = {{ depth = \"deep\" }}\n"
        ));
        assert!(e.contains("offer 'a'"), "{e}");
        let e = err(&format!(
            "{base}{feature}{kinds}{depth}[[campaigns.offers]]\nid = \"a\"\nfeatures = {{ depth = nan }}\n"
        ));
        assert!(e.contains("must be a finite number"), "{e}");
        let e = err(&format!(
            "{}[[campaigns.offers]]\nid = \"a\"\nfeatures = {{ kind = \"bogo\" }}\n",
            base.replace("logistic-ts", "segment-ts")
        ));
        assert!(e.contains("an offer's features applies to"), "{e}");
        // A retired offer keeps what it was.
        let retired = [c.offers[1].clone()];
        let mut back = c.clone();
        back.offers.truncate(1);
        back.offers.push(OfferConfig {
            features: BTreeMap::from([(
                "kind".to_owned(),
                OfferFeatureValue::Category("bogo".into()),
            )]),
            ..c.offers[1].clone()
        });
        let mut dropped = c.clone();
        dropped.offers.truncate(1);
        assert_eq!(
            dropped.update_conflict(&[], &back),
            None,
            "not among its offers"
        );
        assert!(
            dropped
                .update_conflict(&retired, &back)
                .expect("conflict")
                .contains("offer 'b'")
        );
        // What an offer is cannot change under it; a new offer may come.
        let mut changed = c.clone();
        changed.offers[1]
            .features
            .insert("kind".into(), OfferFeatureValue::Category("bogo".into()));
        let conflict = c.update_conflict(&[], &changed).expect("conflict");
        assert!(conflict.contains("offer 'b'"), "{conflict}");
        let mut added = c.clone();
        added.offers.push(OfferConfig {
            id: "n".into(),
            ..c.offers[1].clone()
        });
        assert_eq!(c.update_conflict(&[], &added), None);
        let mut respecified = c.clone();
        respecified.offer_features.pop();
        assert!(
            c.update_conflict(&[], &respecified)
                .expect("conflict")
                .contains("offer_features")
        );
    }

    #[test]
    fn min_propensity_is_a_probability_no_offer_set_can_exceed() {
        let base = "[[campaigns]]\nid = \"c\"\npolicy = \"segment-ts\"\nreward_window = \"30s\"\n";
        let three = "[[campaigns.offers]]\nid = \"a\"\n[[campaigns.offers]]\nid = \"b\"\n[[campaigns.offers]]\nid = \"d\"\n";
        let load = |t: String| parse(&t, "test.toml");
        let ok = load(format!("{base}min_propensity = 0.05\n{three}")).expect("0.05 x 3");
        assert_eq!(ok[0].min_propensity, 0.05);
        // Written back only when set, and read back as itself.
        assert!(
            ok[0]
                .to_toml()
                .expect("toml")
                .contains("min_propensity = 0.05")
        );
        let off = load(format!("{base}{three}")).expect("default");
        assert_eq!(off[0].min_propensity, 0.0);
        assert!(!off[0].to_toml().expect("toml").contains("min_propensity"));
        // K x min = 1: uniform, allowed; over 1 refused with the bound.
        assert!(
            load(format!(
                "{base}min_propensity = 0.3333333333333333\n{three}"
            ))
            .is_ok()
        );
        let e = load(format!("{base}min_propensity = 0.4\n{three}")).expect_err("0.4 x 3");
        assert!(
            e.to_string().contains("min_propensity 0.4 x 3 offers"),
            "{e}"
        );
        for bad in ["-0.1", "1.5", "nan"] {
            let e = load(format!("{base}min_propensity = {bad}\n{three}")).expect_err(bad);
            assert!(
                e.to_string().contains("min_propensity must be"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn time_zones_are_iana_names() {
        let base = "[[campaigns]]\nid = \"c\"\npolicy = \"segment-ts\"\nreward_window = \"30s\"\n";
        let offer = "[[campaigns.offers]]\nid = \"a\"\n";
        let load = |t: String| parse(&t, "test.toml");
        let utc = load(format!("{base}{offer}")).expect("no time zone");
        assert_eq!(utc[0].time_zone, "UTC");
        let ny = load(format!("{base}time_zone = \"America/New_York\"\n{offer}")).expect("NY");
        assert_eq!(ny[0].local_time().name(), "America/New_York");
        let e = load(format!("{base}time_zone = \"EST5EDT/Nowhere\"\n{offer}")).expect_err("bad");
        assert!(
            e.to_string().contains("time_zone") && e.to_string().contains("EST5EDT/Nowhere"),
            "{e}"
        );
    }

    #[test]
    fn control_groups_are_validated() {
        let base = "[[campaigns]]\nid = \"c\"\npolicy = \"segment-ts\"\nreward_window = \"30s\"\n";
        let offer = "[[campaigns.offers]]\nid = \"a\"\n";
        let load = |t: String| parse(&t, "test.toml");
        assert!(
            load(format!(
                "{base}control_share = 0.2\ncontrol_offer = \"a\"\n{offer}"
            ))
            .is_ok()
        );
        // 1: personalization off, the measurement kept.
        assert!(load(format!("{base}control_share = 1.0\n{offer}")).is_ok());
        let e = load(format!("{base}control_share = 1.5\n{offer}")).expect_err("share 1.5");
        assert!(e.to_string().contains("control_share"), "{e}");
        let rules = "control_rules = \"\"\"\nif hour >= 14 then a\notherwise b\n\"\"\"\n";
        let two = format!("{offer}[[campaigns.offers]]\nid = \"b\"\n");
        assert!(load(format!("{base}control_share = 0.5\n{rules}{two}")).is_ok());
        let e = load(format!("{base}{rules}{offer}")).expect_err("no offer b");
        assert!(
            e.to_string()
                .contains("control_rules: rules line 2: no offer 'b'"),
            "{e}"
        );
        let e = load(format!("{base}control_offer = \"a\"\n{rules}{two}")).expect_err("both");
        assert!(e.to_string().contains("not both"), "{e}");
        let e = load(format!("{base}control_offer = \"zz\"\n{offer}")).expect_err("unknown");
        assert!(e.to_string().contains("control_offer 'zz'"), "{e}");
    }

    #[test]
    fn configs_round_trip_through_toml() {
        let mut all = demo().expect("demo");
        let full = "[[campaigns]]\nid = \"f\"\npolicy = \"segment-ts\"\nsegment_by = [\"tier\"]\n\
                    reward_window = \"36h 30m\"\nobjective = \"value\"\ncontrol_share = 0.25\n\
                    control_offer = \"a\"\nfrequency_cap = { max = 2, period = \"7d\" }\ntime_zone = \"Europe/Berlin\"\n\
                    [[campaigns.offers]]\nid = \"a\"\nvalue = 2.5\nmax_decisions = 10\n\
                    max_redemptions_per_day = 3\n[[campaigns.offers]]\nid = \"b\"\nname = \"B!\"\n";
        all.extend(parse(full, "full").expect("full config"));
        for c in all {
            let text = c.to_toml().expect("toml");
            let back = parse_campaign(&text, "round trip").expect("reads back");
            assert_eq!(back, c, "{text}");
        }
    }

    #[test]
    fn one_campaign_is_read_bare_or_as_a_file() {
        let bare = "id = \"c\"\npolicy = \"segment-ts\"\nreward_window = \"30s\"\n[[offers]]\nid = \"a\"\n";
        let c = parse_campaign(bare, "bare").expect("bare");
        let text = c.to_toml().expect("toml");
        let file = parse_campaign(&text, "file").expect("file");
        assert_eq!(c, file);
        let two = format!("{text}{}", text.replace("\"c\"", "\"d\""));
        let e = parse_campaign(&two, "two").expect_err("two campaigns");
        assert!(e.to_string().contains("one campaign at a time"), "{e}");
        let e = parse_campaign(&bare.replace("30s", "0s"), "zero").expect_err("invalid");
        assert!(e.to_string().contains("reward_window"), "{e}");
        let e = parse_campaign("id = ", "syntax").expect_err("syntax");
        assert!(e.to_string().contains("line 1"), "{e}");
        let e = parse_campaign(&format!("{bare}colour = 3\n"), "unknown").expect_err("unknown");
        assert!(e.to_string().contains("line "), "{e}");
        let file = "[[campaigns]]\nid = \"c\"\npolicy = \"segment-ts\"\nreward_window = \"30s\"\n\
                    [[campaigns.offers]]\nid = \"a\"\nmax_decisions = 9223372036854775808\n";
        let e = parse(file, "huge").expect_err("too large");
        assert!(e.to_string().contains("at most"), "{e}");
    }

    #[test]
    fn fingerprints_follow_what_the_file_says() {
        let base = "[[campaigns]]\nid = \"c\"\npolicy = \"segment-ts\"\nreward_window = \"30s\"\n\
                    [[campaigns.offers]]\nid = \"a\"\n";
        let fp = |t: &str| parse_file(t, "t").expect("valid")[0].fingerprint.clone();
        let reordered = base.replace(
            "policy = \"segment-ts\"\nreward_window = \"30s\"",
            "reward_window = \"30s\" # a comment\n\npolicy = \"segment-ts\"",
        );
        assert_eq!(
            fp(base),
            fp(&reordered),
            "layout and comments are not edits"
        );
        assert_ne!(fp(base), fp(&base.replace("30s", "31s")));
        let demo = demo_campaigns().expect("demo");
        assert_ne!(demo[0].fingerprint, demo[1].fingerprint);
    }

    #[test]
    fn updates_keep_what_the_posteriors_mean() {
        let c = demo().expect("demo").remove(0);
        let mut next = c.clone();
        next.offers.pop();
        next.control_share = 0.3;
        next.reward_window = Duration::from_secs(60);
        assert_eq!(c.update_conflict(&[], &next), None);
        let mut bad = c.clone();
        bad.segment_by.pop();
        assert!(
            c.update_conflict(&[], &bad)
                .expect("conflict")
                .contains("segment_by")
        );
        let mut bad = c.clone();
        bad.policy = PolicyKind::LinearTs;
        assert!(
            c.update_conflict(&[], &bad)
                .expect("conflict")
                .contains("policy")
        );
        let mut bad = c.clone();
        bad.id = "other".into();
        assert!(
            c.update_conflict(&[], &bad)
                .expect("conflict")
                .contains("'other'")
        );
        // A contextual campaign may switch its learned prior off (every
        // posterior is then re-based on the configured prior) or on.
        let personal = demo().expect("demo").remove(1);
        assert!(personal.contextual().is_some_and(|x| x.adaptive_prior));
        let mut off = personal.clone();
        off.adaptive_prior = Some(false);
        assert_eq!(personal.update_conflict(&[], &off), None);
        // Off by default above 256 encoded columns (the cost is O(K d^3)).
        let mut wide = personal.clone();
        wide.hash_bits = 9;
        assert!(wide.encoder().expect("encodes").dim() > 256);
        assert!(wide.contextual().is_some_and(|x| !x.adaptive_prior));
        wide.adaptive_prior = Some(true);
        assert!(wide.contextual().is_some_and(|x| x.adaptive_prior));
    }
}
