//! Scenario files: a simulated loyalty program. Who visits (feature
//! distributions), which offers exist and when, how each visit truly responds
//! to each offer (a logit model of base rates plus effects), how that drifts,
//! how long redemptions take, and the static rule a marketer would write.
//! `simulator/scenarios/coffee-loyalty.toml` documents every key.
//!
//! One file a part: `file` (the TOML format, as serde reads it), `parse`
//! (validating a file into the model, errors naming the line and the field)
//! and `model` (the population and response model: drawing visits, delays and
//! the marketer's choice).

mod file;
mod model;
mod parse;

use std::path::Path;

use offer_bandit::Context;

use self::{
    file::DelaySpec,
    model::{Drift, Effect, Feature, Rule},
};

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

/// An offer of the simulated program.
#[derive(Debug, Clone)]
pub(crate) struct SimOffer {
    pub(crate) id: String,
    /// Display name (the file's `name`; the id when it has none).
    pub(crate) name: String,
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

impl Scenario {
    /// Reads and validates a scenario file.
    pub(crate) fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Scenario::parse(&text, &path.display().to_string())
    }

    /// The coffee-loyalty scenario, built into the binary (what `offer-sim
    /// load` runs without `--scenario`).
    pub(crate) fn built_in_coffee_loyalty() -> Result<Scenario, ScenarioError> {
        Scenario::parse(
            include_str!("../../scenarios/coffee-loyalty.toml"),
            "coffee-loyalty (built in)",
        )
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
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use offer_bandit::FeatureValue;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    const SHIPPED: [(&str, &str); 5] = [
        (
            "coffee-loyalty",
            include_str!("../../scenarios/coffee-loyalty.toml"),
        ),
        ("winback", include_str!("../../scenarios/winback.toml")),
        ("drift", include_str!("../../scenarios/drift.toml")),
        (
            "cold-start",
            include_str!("../../scenarios/cold-start.toml"),
        ),
        (
            "traffic-shift",
            include_str!("../../scenarios/traffic-shift.toml"),
        ),
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
