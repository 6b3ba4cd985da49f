//! `offer-sim campaign-config`: a server campaign file for a scenario's
//! offers, serving the policy given or the one that won a comparison
//! (`results.json` of `compare --out`), with the offers' names, the policy's
//! options as campaign keys, and clean numbers (no `-0.0`, no
//! `0.30000000000000004`).

use std::{fmt::Write as _, path::Path};

use anyhow::{Context as _, bail};

use crate::scenario::Scenario;

/// The learning policies the server runs.
const SERVABLE: [&str; 3] = ["segment-ts", "linear-ts", "logistic-ts"];

/// The policy a campaign file serves, and why.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Choice {
    /// The policy spec (`logistic-ts:half-life=2000`, ...).
    pub(crate) spec: String,
    /// Why it was chosen, for the file's comment and the terminal.
    pub(crate) why: String,
}

/// The policy of `--policy`, else the winner of `--results`, else segment-ts.
pub(crate) fn choose(policy: Option<&str>, results: Option<&Path>) -> anyhow::Result<Choice> {
    match (policy, results) {
        (Some(p), _) => Ok(Choice {
            spec: p.trim().to_owned(),
            why: "given with --policy".to_owned(),
        }),
        (None, Some(path)) => winner(path),
        (None, None) => Ok(Choice {
            spec: "segment-ts".to_owned(),
            why: "the default; --results DIR takes the winner of a compare run".to_owned(),
        }),
    }
}

/// The best policy the server runs among a compare run's results, by
/// expected redemptions per visit (`mean_expected_reward`).
fn winner(path: &Path) -> anyhow::Result<Choice> {
    let file = if path.is_dir() {
        path.join("results.json")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("--results: cannot read {}", file.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("--results: {} is not JSON", file.display()))?;
    // results.json holds {"policies": [...]}; `--json` prints the array.
    let policies = json
        .get("policies")
        .unwrap_or(&json)
        .as_array()
        .with_context(|| format!("--results: {} has no policies list", file.display()))?;
    let mut ranked: Vec<(String, f64)> = policies
        .iter()
        .filter_map(|p| {
            let spec = p.get("policy")?.as_str()?.to_owned();
            let reward = p.get("mean_expected_reward")?.as_f64()?;
            reward.is_finite().then_some((spec, reward))
        })
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let Some(best) = ranked.first() else {
        bail!("--results: {} lists no policy results", file.display());
    };
    let Some(served) = ranked.iter().find(|(s, _)| SERVABLE.contains(&base(s))) else {
        bail!(
            "--results: none of the policies in {} is one the server runs ({}); run compare with one of them",
            file.display(),
            SERVABLE.join(", ")
        );
    };
    let mut why = format!(
        "the best by expected redemptions per visit in {} ({:.4})",
        file.display(),
        served.1
    );
    if best.0 != served.0 {
        let _ = write!(
            why,
            "; the run's best, {} ({:.4}), is not a policy the server learns with",
            best.0, best.1
        );
    }
    Ok(Choice {
        spec: served.0.clone(),
        why,
    })
}

/// The policy name of a spec (`logistic-ts` of `logistic-ts:half-life=9`).
fn base(spec: &str) -> &str {
    spec.split_once(':').map_or(spec, |(b, _)| b).trim()
}

/// `v` as a TOML float that reads cleanly: ten significant digits at most,
/// never `-0.0`, always with a decimal point or exponent.
pub(crate) fn clean_float(v: f64) -> String {
    let v = round_significant(v);
    let s = format!("{v}");
    if s.contains(['.', 'e', 'E', 'n', 'i']) {
        s
    } else {
        format!("{s}.0")
    }
}

/// `v` rounded to ten significant digits (and -0 made 0).
fn round_significant(v: f64) -> f64 {
    if !v.is_finite() || v == 0.0 {
        return if v == 0.0 { 0.0 } else { v };
    }
    format!("{v:.9e}").parse::<f64>().unwrap_or(v)
}

/// Every float in `value` rounded as [`clean_float`] does.
fn clean_value(value: &mut toml::Value) {
    match value {
        toml::Value::Float(f) => *f = round_significant(*f),
        toml::Value::Array(items) => items.iter_mut().for_each(clean_value),
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| clean_value(v)),
        _ => {}
    }
}

/// A TOML string literal.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The campaign keys a spec's options set (`half-life=2000` ->
/// `half_life = 2000.0`), and `segment_by` for segment-ts.
fn policy_keys(spec: &str, scenario: &Scenario) -> anyhow::Result<String> {
    let (name, opts) = spec.split_once(':').unwrap_or((spec, ""));
    let mut out = String::new();
    match name.trim() {
        "segment-ts" => {
            let by: Vec<String> = if opts.trim().is_empty() {
                vec![scenario.report_segment().to_owned()]
            } else {
                opts.split('+')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            };
            let list: Vec<String> = by.iter().map(|f| quoted(f)).collect();
            let _ = writeln!(out, "segment_by = [{}]", list.join(", "));
        }
        "linear-ts" | "logistic-ts" => {
            for kv in opts.split('+').map(str::trim).filter(|s| !s.is_empty()) {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("policy '{spec}': option '{kv}' is not KEY=VALUE"))?;
                let (k, v) = (k.trim(), v.trim());
                if k == "adaptive-prior" {
                    let on = match v {
                        "on" => true,
                        "off" => false,
                        _ => bail!("policy '{spec}': adaptive-prior must be on or off"),
                    };
                    let _ = writeln!(out, "adaptive_prior = {on}");
                    continue;
                }
                let key = match k {
                    "exploration" | "prior-variance" | "prior-rate" | "noise-variance"
                    | "half-life" => k.replace('-', "_"),
                    _ => bail!(
                        "policy '{spec}': unknown option '{k}' (exploration, prior-variance, prior-rate, noise-variance, half-life, adaptive-prior)"
                    ),
                };
                let x: f64 = v
                    .parse()
                    .ok()
                    .filter(|x: &f64| x.is_finite())
                    .with_context(|| format!("policy '{spec}': {k} must be a number, not '{v}'"))?;
                let _ = writeln!(out, "{key} = {}", clean_float(x));
            }
        }
        p => bail!(
            "the server runs {}, not '{p}' (pass one of them with --policy)",
            SERVABLE.join(", ")
        ),
    }
    Ok(out)
}

/// The campaign file: the campaign, its policy's keys, the scenario's
/// offers with their names, and for contextual policies the features.
pub(crate) fn campaign_toml(
    scenario: &Scenario,
    id: &str,
    choice: &Choice,
    window: &str,
    encoder: &offer_bandit::Encoder,
) -> anyhow::Result<String> {
    let policy = base(&choice.spec);
    let mut t = format!(
        "# Generated by offer-sim campaign-config from scenario '{}'.\n# Policy {}: {}.\n[[campaigns]]\nid = {}\npolicy = {}\nreward_window = {}\n",
        scenario.name(),
        choice.spec,
        choice.why,
        quoted(id),
        quoted(policy),
        quoted(window),
    );
    t.push_str(&policy_keys(&choice.spec, scenario)?);
    for o in scenario.offers() {
        let _ = write!(
            t,
            "\n[[campaigns.offers]]\nid = {}\nname = {}\nvalue = {}\ncategory = {}\n",
            quoted(&o.id),
            quoted(&o.name),
            clean_float(o.net_value().max(0.01)),
            quoted(&o.category)
        );
    }
    if policy != "segment-ts" {
        #[derive(serde::Serialize)]
        struct Features<'a> {
            features: &'a [offer_bandit::FeatureSpec],
        }
        let mut value = toml::Value::try_from(Features {
            features: encoder.specs(),
        })?;
        clean_value(&mut value);
        let body = toml::to_string(&value)?;
        // Nest the feature tables under the campaign.
        t.push('\n');
        t.push_str(&body.replace("[[features]]", "[[campaigns.features]]"));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_read_cleanly() {
        assert_eq!(clean_float(0.1 + 0.2), "0.3");
        assert_eq!(clean_float(-0.0), "0.0");
        assert_eq!(clean_float(6.0), "6.0");
        assert_eq!(clean_float(2.0 / 3.0), "0.6666666667");
        assert_eq!(clean_float(-1.25), "-1.25");
        let mut v = toml::Value::Array(vec![
            toml::Value::Float(-0.0),
            toml::Value::Float(0.1 + 0.7),
        ]);
        clean_value(&mut v);
        assert_eq!(v.to_string(), "[0.0, 0.8]");
    }

    #[test]
    fn the_winner_is_the_best_policy_the_server_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let results = serde_json::json!({"policies": [
            {"policy": "marketer", "mean_expected_reward": 0.2},
            {"policy": "segment-ts", "mean_expected_reward": 0.13},
            {"policy": "logistic-ts:half-life=2000", "mean_expected_reward": 0.18},
            {"policy": "uniform", "mean_expected_reward": 0.07},
        ]});
        std::fs::write(dir.path().join("results.json"), results.to_string()).expect("write");
        let c = choose(None, Some(dir.path())).expect("choice");
        assert_eq!(c.spec, "logistic-ts:half-life=2000");
        assert!(
            c.why.contains("(0.1800)") && c.why.contains("marketer (0.2000)"),
            "{}",
            c.why
        );
        let given = choose(Some("linear-ts"), Some(dir.path())).expect("choice");
        assert_eq!(given.spec, "linear-ts");
        let only = serde_json::json!([{"policy": "uniform", "mean_expected_reward": 0.07}]);
        std::fs::write(dir.path().join("r.json"), only.to_string()).expect("write");
        let err = choose(None, Some(&dir.path().join("r.json"))).expect_err("no servable policy");
        assert!(
            err.to_string()
                .contains("segment-ts, linear-ts, logistic-ts"),
            "{err}"
        );
    }
}
