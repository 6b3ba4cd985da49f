//! `offer-bandit check-config`: validates a campaign file and echoes, per
//! campaign, everything in it that changes what customers get, with the
//! defaults filled in, so a reviewer sees what will run.

use offer_bandit::config::{CampaignConfig, OfferConfig};

/// A number as people write it: no `-0`, no trailing zeros.
fn num(x: f64) -> String {
    let x = if x == 0.0 { 0.0 } else { x };
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

fn percent(share: f64) -> String {
    format!("{}%", num(share * 100.0))
}

/// The summary line of a campaign.
fn summary(c: &CampaignConfig) -> String {
    let offers: Vec<&str> = c.offers.iter().map(|o| o.id.as_str()).collect();
    let unset = c.features.iter().any(|f| {
        matches!(f, offer_bandit::FeatureSpec::Numeric { bins, buckets: None, .. } if !bins.is_empty())
    });
    let dimension = match (c.contextual(), c.encoder()) {
        (Some(_), Ok(e)) if unset => format!(
            ", encoded dimension {} (numbers' buckets unset: steps for a new campaign; a stored campaign keeps the encoding it was stored with)",
            e.dim()
        ),
        (Some(_), Ok(e)) => format!(", encoded dimension {}", e.dim()),
        _ => String::new(),
    };
    let names: Vec<&str> = c.offer_features.iter().map(|f| f.name()).collect();
    let dimension = match c.offer_columns() {
        0 => dimension,
        n => format!(
            "{dimension}, offer features {} ({} columns)",
            names.join(", "),
            n - 1
        ),
    };
    format!(
        "campaign {}: policy {}, segment_by {:?}, reward_window {}, objective {}{dimension}, offers {}",
        c.id,
        c.policy.as_str(),
        c.segment_by,
        humantime::format_duration(c.reward_window),
        c.objective.as_str(),
        offers.join(", ")
    )
}

/// How the control group is served.
fn control(c: &CampaignConfig) -> String {
    if c.control_share <= 0.0 {
        return "  control group: none (no uplift is measured)".into();
    }
    let who = if c.control_share >= 1.0 {
        "every visit (personalization off; the measurement is kept)".to_owned()
    } else {
        format!("{} of customers", percent(c.control_share))
    };
    let what = match (&c.control_rules, &c.control_offer) {
        (Some(rules), _) => {
            let lines: Vec<&str> = rules
                .lines()
                .map(|l| l.split('#').next().unwrap_or("").trim())
                .filter(|l| !l.is_empty())
                .collect();
            format!("the rule: {}", lines.join("; "))
        }
        (None, Some(o)) => format!("{o} (a random candidate when it cannot be sent)"),
        (None, None) => "a random candidate".into(),
    };
    format!("  control group: {who} get {what}")
}

/// An offer's value, limits and budgets.
fn offer(o: &OfferConfig) -> String {
    let mut limits = Vec::new();
    let mut add = |what: &str, n: Option<u64>| {
        if let Some(n) = n {
            limits.push(format!("{n} {what}"));
        }
    };
    add("decisions in all", o.max_decisions);
    add("redemptions in all", o.max_redemptions);
    add("decisions a day", o.max_decisions_per_day);
    add("redemptions a day", o.max_redemptions_per_day);
    let mut line = format!("  offer {} \"{}\": value {}", o.id, o.name, num(o.value));
    if let Some(v) = o.max_value {
        line.push_str(&format!(", a redemption worth at most {}", num(v)));
    }
    if limits.is_empty() {
        line.push_str(", no budget");
    } else {
        line.push_str(&format!(", budget at most {}", limits.join(", ")));
    }
    line
}

/// Everything about one campaign, one line per topic.
pub(crate) fn describe(c: &CampaignConfig) -> Vec<String> {
    let mut out = vec![summary(c), control(c)];
    out.push(match &c.frequency_cap {
        Some(cap) => format!(
            "  frequency cap: the same offer at most {} times per {} per customer",
            cap.max,
            humantime::format_duration(cap.period)
        ),
        None => "  frequency cap: none".into(),
    });
    out.push(format!(
        "  time zone: {} (daily budgets reset at its midnight and are paced over its day, by the campaign's visits per local hour once {} days are seen)",
        c.time_zone,
        offer_bandit::budget::MIN_DAYS
    ));
    if let Some(m) = c.contextual() {
        out.push(format!(
            "  model: exploration {}, prior variance {}, prior rate {}, noise variance {}, forgetting per offer {}, forgetting over time {}, learned prior {}, change detection {}",
            num(m.exploration),
            num(m.prior_variance),
            num(m.prior_rate),
            num(m.noise_variance),
            m.half_life
                .map_or("off".to_owned(), |h| format!("half-life {} observations", num(h))),
            m.time_half_life_ms.map_or("off".to_owned(), |ms| format!(
                "half-life {} days",
                num(ms / offer_bandit::policy::forgetting::DAY_MS)
            )),
            if m.adaptive_prior { "on" } else { "off" },
            m.change_threshold
                .map_or("off".to_owned(), |z| format!("|z| > {}", num(z))),
        ));
    } else {
        out.push(format!(
            "  model: prior strength {}, at most {} segments",
            num(c.prior_strength),
            c.max_segments
        ));
    }
    out.extend(c.offers.iter().map(offer));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_plainly() {
        assert_eq!(num(-0.0), "0");
        assert_eq!(num(0.1), "0.1");
        assert_eq!(num(3.0), "3");
        assert_eq!(num(1e-7), "0");
        assert_eq!(percent(0.1), "10%");
    }
}
