//! Logged decisions for off-policy evaluation, from two sources: the
//! service's export (JSON Lines, one decision per line) and the Open Bandit
//! Dataset's CSV layout (items are offers, positions are slots). Also the
//! Bernoulli-TS policy of the OBD paper, computed from its production prior.

use std::{collections::HashMap, path::Path};

use anyhow::{Context as _, bail};
use offer_bandit::context::{Context, FeatureValue};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

/// One logged decision.
#[derive(Debug, Clone)]
pub(crate) struct Logged {
    /// What the policy saw.
    pub(crate) context: Context,
    /// Offers it could choose from (indices into `Log::actions`).
    pub(crate) candidates: Vec<usize>,
    /// What it chose.
    pub(crate) action: usize,
    /// Its probability of that choice.
    pub(crate) propensity: f64,
    /// What happened: 1/0 redemption (or click), or the value.
    pub(crate) reward: f64,
    /// Slot of the choice (OBD positions); 0 for the service.
    pub(crate) position: usize,
}

/// A log of decisions over a fixed action set.
#[derive(Debug, Clone)]
pub(crate) struct Log {
    /// Action (offer or item) ids.
    pub(crate) actions: Vec<String>,
    /// Decisions in time order.
    pub(crate) rows: Vec<Logged>,
}

/// One line of `offer-bandit export` (see the README's "Decision log format").
#[derive(Debug, Deserialize)]
struct ExportLine {
    #[allow(dead_code)]
    decision_id: String,
    #[allow(dead_code)]
    campaign: String,
    #[serde(default)]
    context: HashMap<String, serde_json::Value>,
    #[serde(default)]
    candidates: Vec<String>,
    offer_id: String,
    propensity: f64,
    outcome: String,
    #[serde(default)]
    value: Option<f64>,
}

/// Reads an export; pending decisions (outcome unknown) are skipped.
/// Returns the log and how many lines were skipped as pending.
pub(crate) fn load_export(path: &Path, reward_is_value: bool) -> anyhow::Result<(Log, usize)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut actions: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut id = |s: &str, actions: &mut Vec<String>| -> usize {
        *index.entry(s.to_owned()).or_insert_with(|| {
            actions.push(s.to_owned());
            actions.len() - 1
        })
    };
    let (mut rows, mut pending) = (Vec::new(), 0);
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let l: ExportLine = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a decision log line", path.display(), i + 1))?;
        let reward = match l.outcome.as_str() {
            "pending" => {
                pending += 1;
                continue;
            }
            "redeemed" if reward_is_value => l.value.unwrap_or(0.0),
            "redeemed" => 1.0,
            "expired" => 0.0,
            o => bail!("{}:{}: unknown outcome '{o}'", path.display(), i + 1),
        };
        if !(l.propensity > 0.0 && l.propensity <= 1.0) {
            bail!(
                "{}:{}: propensity {} is not in (0, 1]",
                path.display(),
                i + 1,
                l.propensity
            );
        }
        let mut context = Context::new();
        for (k, v) in l.context {
            let fv = match v {
                serde_json::Value::Number(n) => FeatureValue::Number(n.as_f64().unwrap_or(0.0)),
                serde_json::Value::Bool(b) => FeatureValue::Flag(b),
                serde_json::Value::String(s) => FeatureValue::Category(s),
                other => bail!(
                    "{}:{}: feature '{k}' has unsupported value {other}",
                    path.display(),
                    i + 1
                ),
            };
            context.insert(k, fv);
        }
        let action = id(&l.offer_id, &mut actions);
        let mut candidates: Vec<usize> = l.candidates.iter().map(|c| id(c, &mut actions)).collect();
        if !candidates.contains(&action) {
            candidates.push(action);
        }
        candidates.sort_unstable();
        rows.push(Logged {
            context,
            candidates,
            action,
            propensity: l.propensity,
            reward,
            position: 0,
        });
    }
    if rows.is_empty() {
        bail!(
            "{}: no resolved decisions ({pending} pending)",
            path.display()
        );
    }
    Ok((Log { actions, rows }, pending))
}

/// Reads `DIR/<behavior>/<campaign>/<campaign>.csv` of the Open Bandit
/// Dataset: one impression per row with `item_id`, `position` (1-based),
/// `click`, `propensity_score` and hashed `user_feature_*` columns.
pub(crate) fn load_obd(dir: &Path, behavior: &str, campaign: &str) -> anyhow::Result<Log> {
    let path = dir
        .join(behavior)
        .join(campaign)
        .join(format!("{campaign}.csv"));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().context("empty file")?.split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("{}: no column '{name}'", path.display()))
    };
    let (item, position, click, pscore) = (
        col("item_id")?,
        col("position")?,
        col("click")?,
        col("propensity_score")?,
    );
    let user: Vec<(usize, &str)> = header
        .iter()
        .enumerate()
        .filter(|(_, h)| h.starts_with("user_feature_"))
        .map(|(i, h)| (i, *h))
        .collect();
    let mut rows = Vec::new();
    let mut n_items = 0;
    for (i, line) in lines.enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        let num = |c: usize| -> anyhow::Result<f64> {
            f.get(c)
                .and_then(|v| v.parse::<f64>().ok())
                .with_context(|| {
                    format!(
                        "{}:{}: column {} is not a number",
                        path.display(),
                        i + 2,
                        header[c]
                    )
                })
        };
        let it = num(item)? as usize;
        let pos = num(position)? as usize;
        if pos == 0 {
            bail!("{}:{}: positions are 1-based", path.display(), i + 2);
        }
        n_items = n_items.max(it + 1);
        let mut context = Context::new();
        for (c, name) in &user {
            if let Some(v) = f.get(*c) {
                context.insert((*name).to_owned(), FeatureValue::Category((*v).to_owned()));
            }
        }
        context.insert(
            "position".to_owned(),
            FeatureValue::Category(pos.to_string()),
        );
        rows.push(Logged {
            context,
            candidates: Vec::new(),
            action: it,
            propensity: num(pscore)?,
            reward: num(click)?,
            position: pos - 1,
        });
    }
    let all: Vec<usize> = (0..n_items).collect();
    for r in &mut rows {
        r.candidates = all.clone();
    }
    Ok(Log {
        actions: (0..n_items).map(|i| format!("item_{i}")).collect(),
        rows,
    })
}

/// The production prior of one campaign in `prior_bts.yaml`:
/// `campaign: { alpha: [...], beta: [...] }` as YAML block lists.
pub(crate) fn load_bts_prior(path: &Path, campaign: &str) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (mut current, mut list): (Option<String>, Option<String>) = (None, None);
    let (mut alpha, mut beta) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if indent == 0 && t.ends_with(':') {
            current = Some(t.trim_end_matches(':').to_owned());
            list = None;
        } else if t.ends_with(':') {
            list = Some(t.trim_end_matches(':').to_owned());
        } else if let Some(v) = t.strip_prefix("- ")
            && current.as_deref() == Some(campaign)
        {
            let x: f64 = v
                .trim()
                .parse()
                .with_context(|| format!("{}: '{v}' is not a number", path.display()))?;
            match list.as_deref() {
                Some("alpha") => alpha.push(x),
                Some("beta") => beta.push(x),
                _ => {}
            }
        }
    }
    if alpha.is_empty() || alpha.len() != beta.len() {
        bail!(
            "{}: no alpha/beta lists of equal length for campaign '{campaign}'",
            path.display()
        );
    }
    Ok((alpha, beta))
}

/// The action distribution of Bernoulli Thompson sampling that fills
/// `positions` slots: each simulation draws Beta(alpha_i, beta_i) for every
/// item and ranks the draws; `dist[item][slot]` is the share of simulations
/// that put the item in that slot (the method of the OBD authors).
pub(crate) fn bts_action_dist(
    alpha: &[f64],
    beta: &[f64],
    positions: usize,
    sims: usize,
    seed: u64,
) -> Vec<Vec<f64>> {
    use offer_bandit::policy::thompson::Arm;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let arms: Vec<Arm> = alpha
        .iter()
        .zip(beta)
        .map(|(a, b)| Arm::new(*a, *b, 1.0))
        .collect();
    let mut counts = vec![vec![0usize; positions]; arms.len()];
    let mut draws: Vec<(f64, usize)> = Vec::with_capacity(arms.len());
    for _ in 0..sims {
        draws.clear();
        draws.extend(
            arms.iter()
                .enumerate()
                .map(|(i, a)| (a.sample(&mut rng), i)),
        );
        draws.sort_by(|x, y| y.0.total_cmp(&x.0));
        for (slot, (_, item)) in draws.iter().take(positions).enumerate() {
            counts[*item][slot] += 1;
        }
    }
    counts
        .iter()
        .map(|c| c.iter().map(|&n| n as f64 / sims as f64).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bts_distribution_is_a_distribution_per_slot_and_favours_strong_items() {
        let alpha = [50.0, 10.0, 10.0, 1.0];
        let beta = [950.0, 990.0, 990.0, 999.0];
        let d = bts_action_dist(&alpha, &beta, 3, 20_000, 1);
        for slot in 0..3 {
            let total: f64 = d.iter().map(|row| row[slot]).sum();
            assert!((total - 1.0).abs() < 1e-9, "slot {slot} sums to {total}");
        }
        // Item 0 (rate 5%) nearly always takes slot 1; items 1 and 2 are symmetric.
        assert!(d[0][0] > 0.99, "{:?}", d[0]);
        assert!((d[1][1] - d[2][1]).abs() < 0.02);
    }

    #[test]
    fn parses_the_prior_yaml_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("prior.yaml");
        std::fs::write(&p, "all:\n  alpha:\n    - 1.0\n  beta:\n    - 2.0\nmen:\n  alpha:\n    - 3.0\n    - 4.0\n  beta:\n    - 5.0\n    - 6.0\n")
            .expect("write");
        assert_eq!(
            load_bts_prior(&p, "men").expect("men"),
            (vec![3.0, 4.0], vec![5.0, 6.0])
        );
        assert!(load_bts_prior(&p, "women").is_err());
    }
}
