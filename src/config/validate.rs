//! Validation of a campaign: every rule a campaign must keep, with the
//! message that names what is wrong; defaults (offer names) filled in.

use super::*;

/// Validates a campaign built in code (as [`parse`] validates a file's),
/// filling in defaults such as offer names.
pub fn validate(mut config: CampaignConfig, origin: &str) -> Result<CampaignConfig, ConfigError> {
    validate_campaign(&mut config).map_err(|m| ConfigError::Invalid {
        origin: origin.to_owned(),
        message: format!("campaign '{}': {m}", config.id),
    })?;
    Ok(config)
}

/// Whether `id` is a valid campaign or offer id.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

/// `min_propensity`: a probability, and K x min at most 1 for the
/// campaign's K offers (every candidate set is a subset of them).
fn validate_min_propensity(c: &CampaignConfig) -> Result<(), String> {
    let min = c.min_propensity;
    if !(min.is_finite() && (0.0..=1.0).contains(&min)) {
        return Err(format!(
            "min_propensity must be a probability from 0 (off) to 1, not {min}"
        ));
    }
    let k = c.offers.len();
    if k as f64 * min > 1.0 + 1e-12 {
        return Err(format!(
            "min_propensity {min} x {k} offers = {:.4} is over 1: no choice can give every offer that much; use at most {:.6} (1 / offers)",
            k as f64 * min,
            1.0 / k as f64
        ));
    }
    Ok(())
}

pub(super) fn validate_campaign(c: &mut CampaignConfig) -> Result<(), String> {
    if !valid_id(&c.id) {
        return Err("id must be 1-64 letters, digits, '_', '-' or '.'".into());
    }
    if c.reward_window.is_zero() {
        return Err("reward_window must be longer than zero".into());
    }
    if c.reward_window > Duration::from_secs(366 * 86_400) {
        return Err("reward_window must be at most a year".into());
    }
    if !(c.prior_strength.is_finite() && c.prior_strength >= 0.0) {
        return Err("prior_strength must be a finite number >= 0".into());
    }
    if c.max_segments == 0 {
        return Err("max_segments must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&c.snapshot_tolerance) {
        return Err(
            "snapshot_tolerance must be between 0 and 1 (posterior standard deviations)".into(),
        );
    }
    let mut seen = HashSet::new();
    for f in &c.segment_by {
        if f.is_empty() || f.len() > 64 {
            return Err(format!("segment_by feature '{f}' must be 1-64 characters"));
        }
        if !seen.insert(f) {
            return Err(format!("segment_by lists '{f}' twice"));
        }
    }
    if c.offers.is_empty() {
        return Err("declare at least one [[campaigns.offers]]".into());
    }
    validate_contextual(c)?;
    validate_min_propensity(c)?;
    if !(0.0..=1.0).contains(&c.control_share) {
        return Err(
            "control_share must be from 0 to 1 (1: every visit gets the control policy)".into(),
        );
    }
    c.time_zone = c.time_zone.trim().to_owned();
    if let Err(why) = crate::budget::LocalTime::parse(&c.time_zone) {
        return Err(format!("time_zone: {why}"));
    }
    if let Some(text) = &c.control_rules {
        if c.control_offer.is_some() {
            return Err("set control_offer or control_rules, not both".into());
        }
        let ids: Vec<&str> = c.offers.iter().map(|o| o.id.as_str()).collect();
        crate::policy::rules::Rules::parse(text)
            .and_then(|r| r.bind(&ids))
            .map_err(|e| format!("control_rules: {e}"))?;
    }
    if let Some(o) = &c.control_offer
        && !c.offers.iter().any(|x| &x.id == o)
    {
        return Err(format!(
            "control_offer '{o}' is not one of the campaign's offers"
        ));
    }
    let mut offer_ids = HashSet::new();
    for o in &mut c.offers {
        if !valid_id(&o.id) {
            return Err(format!(
                "offer id '{}' must be 1-64 letters, digits, '_', '-' or '.'",
                o.id
            ));
        }
        if !offer_ids.insert(o.id.clone()) {
            return Err(format!("offer id '{}' is declared twice", o.id));
        }
        let (most, key_bytes, value_bytes) = MAX_DISPLAY;
        if o.display.len() > most
            || o.display
                .iter()
                .any(|(k, v)| k.is_empty() || k.len() > key_bytes || v.len() > value_bytes)
        {
            return Err(format!(
                "offer '{}': display takes at most {most} attributes, names of 1-{key_bytes} bytes and values of at most {value_bytes}",
                o.id
            ));
        }
        if !(o.value.is_finite() && (0.0..=MAX_VALUE).contains(&o.value)) {
            return Err(format!(
                "offer '{}': value must be a number from 0 to 1e9",
                o.id
            ));
        }
        if let Some(m) = o.max_value
            && !(m.is_finite() && m > 0.0 && m >= o.value && m <= MAX_VALUE)
        {
            return Err(format!(
                "offer '{}': max_value must be a number > 0, at least the offer's value ({}) and at most 1e9",
                o.id, o.value
            ));
        }
        if c.objective == Objective::Value && o.value <= 0.0 {
            return Err(format!(
                "offer '{}': value must be > 0 under objective = \"value\"",
                o.id
            ));
        }
        if o.name.is_empty() {
            o.name = o.id.clone();
        }
        if o.name.chars().count() > 256 || o.category.chars().count() > 64 {
            return Err(format!(
                "offer '{}': name may have at most 256 characters, category 64",
                o.id
            ));
        }
        for (name, cap) in [
            ("max_decisions", o.max_decisions),
            ("max_redemptions", o.max_redemptions),
            ("max_decisions_per_day", o.max_decisions_per_day),
            ("max_redemptions_per_day", o.max_redemptions_per_day),
        ] {
            if cap == Some(0) {
                return Err(format!(
                    "offer '{}': {name} must be at least 1 (remove the offer to stop it)",
                    o.id
                ));
            }
            if cap.is_some_and(|c| c > MAX_BUDGET) {
                return Err(format!(
                    "offer '{}': {name} must be at most {MAX_BUDGET} (leave it out for no limit)",
                    o.id
                ));
            }
        }
    }
    if let Some(f) = &c.frequency_cap
        && (f.max == 0 || f.period.is_zero())
    {
        return Err("frequency_cap needs max >= 1 and a period longer than zero".into());
    }
    Ok(())
}

fn validate_contextual(c: &CampaignConfig) -> Result<(), String> {
    let positive = |name: &str, v: Option<f64>| match v {
        Some(x) if !(x.is_finite() && x > 0.0) => {
            Err(format!("{name} must be a finite number > 0"))
        }
        _ => Ok(()),
    };
    positive("exploration", c.exploration)?;
    positive("prior_variance", c.prior_variance)?;
    positive("noise_variance", c.noise_variance)?;
    positive("half_life", c.half_life)?;
    if let Some(days) = c.time_half_life_days
        && !(days.is_finite() && days >= 0.0)
    {
        return Err("time_half_life_days must be a finite number >= 0 (0: off)".into());
    }
    if let Some(z) = c.change_threshold
        && !(z.is_finite() && z >= 0.0)
    {
        return Err("change_threshold must be a finite number >= 0 (0: off)".into());
    }
    // Beyond these, samples and propensities lose their precision (a prior
    // variance of 1e300 logged propensities of exactly 0 and 1).
    for (name, v, max) in [
        ("exploration", c.exploration, 100.0),
        ("prior_variance", c.prior_variance, 100.0),
        ("noise_variance", c.noise_variance, 1e6),
    ] {
        if v.is_some_and(|x| x > max) {
            return Err(format!("{name} must be at most {max}"));
        }
    }
    if let Some(r) = c.prior_rate
        && !(r > 0.0 && r < 1.0)
    {
        return Err("prior_rate must be between 0 and 1".into());
    }
    match c.policy.likelihood() {
        None => {
            let contextual_keys = [
                ("features", !c.features.is_empty()),
                ("offer_features", !c.offer_features.is_empty()),
                (
                    "an offer's features",
                    c.offers.iter().any(|o| !o.features.is_empty()),
                ),
                ("exploration", c.exploration.is_some()),
                ("prior_variance", c.prior_variance.is_some()),
                ("prior_rate", c.prior_rate.is_some()),
                ("noise_variance", c.noise_variance.is_some()),
                ("half_life", c.half_life.is_some()),
                ("time_half_life_days", c.time_half_life_days.is_some()),
                ("adaptive_prior", c.adaptive_prior.is_some()),
                ("change_threshold", c.change_threshold.is_some()),
            ];
            if let Some((k, _)) = contextual_keys.iter().find(|(_, set)| *set) {
                return Err(format!(
                    "{k} applies to linear-ts and logistic-ts, not {}",
                    c.policy.as_str()
                ));
            }
        }
        Some(_) => {
            if !c.segment_by.is_empty() {
                return Err(format!(
                    "segment_by applies to segment-ts; {} learns from [[campaigns.features]]",
                    c.policy.as_str()
                ));
            }
            let encoder = c.encoder().map_err(|e| e.to_string())?;
            if encoder.dim() > MAX_DIMENSION {
                return Err(format!(
                    "the features encode to {} dimensions; at most {MAX_DIMENSION} are allowed",
                    encoder.dim()
                ));
            }
            validate_offer_features(c)?;
        }
    }
    Ok(())
}

/// Largest offer encoding (intercept included): the learned prior solves
/// one system of this size per re-estimation.
pub const MAX_OFFER_DIMENSION: usize = 64;

fn validate_offer_features(c: &CampaignConfig) -> Result<(), String> {
    if c.offer_features.is_empty() {
        if let Some(o) = c.offers.iter().find(|o| !o.features.is_empty()) {
            return Err(format!(
                "offer '{}' has features but the campaign declares no [[campaigns.offer_features]]",
                o.id
            ));
        }
        return Ok(());
    }
    if c.contextual().is_some_and(|x| !x.adaptive_prior) {
        return Err(
            "offer_features act through the learned prior: they need adaptive_prior (on by default for at most 256 encoded columns)"
                .into(),
        );
    }
    if c.offer_features
        .iter()
        .any(|f| matches!(f, FeatureSpec::Hashed { .. }))
    {
        return Err("offer_features may be numeric, categorical or flag, not hashed".into());
    }
    let encoder =
        Encoder::new(c.offer_features.clone(), 0).map_err(|e| format!("offer_features: {e}"))?;
    if encoder.dim() > MAX_OFFER_DIMENSION {
        return Err(format!(
            "the offer_features encode to {} columns; at most {MAX_OFFER_DIMENSION} are allowed",
            encoder.dim()
        ));
    }
    let declared: HashSet<&str> = c.offer_features.iter().map(FeatureSpec::name).collect();
    for o in &c.offers {
        if let Some((k, _)) = o
            .features
            .iter()
            .find(|(_, v)| matches!(v, OfferFeatureValue::Number(x) if !x.is_finite()))
        {
            return Err(format!(
                "offer '{}': feature '{k}' must be a finite number",
                o.id
            ));
        }
        if let Some(k) = o.features.keys().find(|k| !declared.contains(k.as_str())) {
            return Err(format!(
                "offer '{}': feature '{k}' is not one of the campaign's offer_features",
                o.id
            ));
        }
        encoder
            .encode(&o.feature_context())
            .map_err(|e| format!("offer '{}': {e}", o.id))?;
    }
    Ok(())
}
