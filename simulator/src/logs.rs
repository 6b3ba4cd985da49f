//! Logged decisions for off-policy evaluation, from two sources: the
//! service's export (JSON Lines, one decision per line) and the Open Bandit
//! Dataset's CSV layout (items are offers, positions are slots). Also the
//! Bernoulli-TS policy of the OBD paper, computed from its production prior.

use std::{collections::HashMap, path::Path};

use anyhow::{Context as _, bail};
use offer_bandit::{Context, FeatureValue};
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
    /// The customer, numbered in order of appearance; `None` for an
    /// anonymous visit (its own cluster when intervals resample customers).
    pub(crate) customer: Option<u64>,
}

/// A log of decisions over a fixed action set.
#[derive(Debug, Clone)]
pub(crate) struct Log {
    /// Action (offer or item) ids.
    pub(crate) actions: Vec<String>,
    /// Decisions in time order.
    pub(crate) rows: Vec<Logged>,
}

/// One line of `offer-bandit export` (the format: docs/api.md, "The decision log").
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ExportLine {
    #[allow(dead_code)]
    #[serde(default)]
    pub(crate) decision_id: String,
    #[allow(dead_code)]
    #[serde(default)]
    pub(crate) campaign: String,
    /// When the decision was made (Unix ms).
    #[allow(dead_code)]
    #[serde(default)]
    pub(crate) created_unix_ms: i64,
    /// End of its reward window (Unix ms); 0 when the line does not say.
    #[serde(default)]
    pub(crate) expires_unix_ms: i64,
    #[serde(default)]
    pub(crate) context: HashMap<String, serde_json::Value>,
    #[serde(default)]
    pub(crate) candidates: Vec<String>,
    pub(crate) offer_id: String,
    pub(crate) propensity: f64,
    /// "pending", "redeemed" or "expired".
    pub(crate) outcome: String,
    #[serde(default)]
    pub(crate) value: Option<f64>,
    /// Who the decision was for, pseudonymous (any stable string: the
    /// intervals resample by it); absent for anonymous visits, each of which
    /// is then its own cluster. The service's export does not write it yet.
    #[serde(default)]
    pub(crate) customer: Option<String>,
}

/// Which decisions of an export were evaluated: those whose reward window
/// had closed by the cut time, whatever their outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Cut {
    /// Decisions whose window closes at or after this instant (Unix ms) were
    /// left out; `None` when every window had closed (nothing left out).
    pub(crate) cut_unix_ms: Option<i64>,
    /// Decisions kept: window closed by the cut.
    pub(crate) kept: usize,
    /// Decisions left out because their window was still open at the cut.
    pub(crate) open: usize,
    /// Of those, how many had already redeemed: keeping them (and dropping
    /// the unredeemed of the same windows) is what biased the old loader.
    pub(crate) open_redeemed: usize,
    /// Decisions still marked pending although their window closed by the
    /// cut: no redemption arrived in the window, so they count as expired.
    pub(crate) pending_closed: usize,
}

/// The default cut: the end of the earliest reward window still open
/// (the earliest `expires_unix_ms` of a pending decision). Every decision
/// whose window ends before then has its final outcome; `None` when no
/// decision is pending.
pub(crate) fn default_cut(lines: &[ExportLine]) -> Option<i64> {
    lines
        .iter()
        .filter(|l| l.outcome == "pending")
        .map(|l| l.expires_unix_ms)
        .min()
}

/// Keeps the decisions whose reward window closed before `cut` (every
/// decision when `cut` is `None`), whatever their outcome, so the sample does not
/// depend on the outcome: a decision redeemed early in a window still open
/// is left out exactly like its unredeemed neighbours. A decision without an
/// `expires_unix_ms` (0) is kept only when it is resolved.
pub(crate) fn closed_by(lines: Vec<ExportLine>, cut: Option<i64>) -> (Vec<ExportLine>, Cut) {
    let mut c = Cut {
        cut_unix_ms: cut,
        ..Cut::default()
    };
    let mut kept = Vec::with_capacity(lines.len());
    for mut l in lines {
        let closed = match cut {
            None => l.outcome != "pending",
            Some(_) if l.expires_unix_ms == 0 => l.outcome != "pending",
            Some(t) => l.expires_unix_ms < t,
        };
        if !closed {
            c.open += 1;
            c.open_redeemed += usize::from(l.outcome == "redeemed");
            continue;
        }
        if l.outcome == "pending" {
            c.pending_closed += 1;
            l.outcome = "expired".to_owned();
        }
        kept.push(l);
    }
    c.kept = kept.len();
    (kept, c)
}

/// Reads an export and evaluates only decisions whose reward window closed
/// before `cut` (Unix ms; default [`default_cut`]), whatever their outcome.
pub(crate) fn load_export(
    path: &Path,
    reward_is_value: bool,
    cut: Option<i64>,
) -> anyhow::Result<(Log, Cut)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let l: ExportLine = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a decision log line", path.display(), i + 1))?;
        if !matches!(l.outcome.as_str(), "pending" | "redeemed" | "expired") {
            bail!(
                "{}:{}: unknown outcome '{}'",
                path.display(),
                i + 1,
                l.outcome
            );
        }
        if !(l.propensity > 0.0 && l.propensity <= 1.0) {
            bail!(
                "{}:{}: propensity {} is not in (0, 1]",
                path.display(),
                i + 1,
                l.propensity
            );
        }
        lines.push(l);
    }
    let cut = cut.or_else(|| default_cut(&lines));
    let (lines, summary) = closed_by(lines, cut);
    let log = to_log(lines, reward_is_value).with_context(|| path.display().to_string())?;
    if log.rows.is_empty() {
        bail!(
            "{}: no decision's window closed by the cut ({} still open)",
            path.display(),
            summary.open
        );
    }
    Ok((log, summary))
}

/// Export lines (already selected) as a log.
pub(crate) fn to_log(lines: Vec<ExportLine>, reward_is_value: bool) -> anyhow::Result<Log> {
    let mut actions: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut id = |s: &str, actions: &mut Vec<String>| -> usize {
        *index.entry(s.to_owned()).or_insert_with(|| {
            actions.push(s.to_owned());
            actions.len() - 1
        })
    };
    let mut customers: HashMap<String, u64> = HashMap::new();
    let mut rows = Vec::with_capacity(lines.len());
    for l in lines {
        let reward = match l.outcome.as_str() {
            "redeemed" if reward_is_value => l.value.unwrap_or(0.0),
            "redeemed" => 1.0,
            _ => 0.0,
        };
        let mut context = Context::new();
        for (k, v) in l.context {
            let fv = match v {
                serde_json::Value::Number(n) => FeatureValue::Number(n.as_f64().unwrap_or(0.0)),
                serde_json::Value::Bool(b) => FeatureValue::Flag(b),
                serde_json::Value::String(s) => FeatureValue::Category(s),
                other => bail!(
                    "decision {}: feature '{k}' has unsupported value {other}",
                    l.decision_id
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
        let next = customers.len() as u64;
        let customer = l
            .customer
            .filter(|c| !c.is_empty())
            .map(|c| *customers.entry(c).or_insert(next));
        rows.push(Logged {
            context,
            candidates,
            action,
            propensity: l.propensity,
            reward,
            position: 0,
            customer,
        });
    }
    Ok(Log { actions, rows })
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
            customer: None,
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
    use rand::RngExt;

    const DAY: i64 = 86_400_000;

    /// An export taken after 30 days of 2,000 decisions a day, a 7-day
    /// reward window, a true redemption probability `p` within an unbounded
    /// time, and exponential delays of mean 2 days (a redemption after the
    /// window does not count). The final redemption rate is
    /// p (1 - e^-3.5) = 0.9698 p.
    fn simulated_export(p: f64, seed: u64) -> Vec<ExportLine> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let export_at = 30 * DAY;
        (0..60_000)
            .map(|i| {
                let created = i64::from(i) * export_at / 60_000;
                let expires = created + 7 * DAY;
                let redeems_at = (rng.random::<f64>() < p).then(|| {
                    let u: f64 = rng.random();
                    created + (-2.0 * DAY as f64 * (1.0 - u).ln()) as i64
                });
                let outcome = match redeems_at {
                    Some(t) if t <= expires && t <= export_at => "redeemed",
                    _ if expires <= export_at => "expired",
                    _ => "pending",
                };
                ExportLine {
                    decision_id: format!("d{i}"),
                    campaign: "c".into(),
                    created_unix_ms: created,
                    expires_unix_ms: expires,
                    context: HashMap::new(),
                    candidates: vec!["a".into()],
                    offer_id: "a".into(),
                    propensity: 1.0,
                    outcome: outcome.into(),
                    value: None,
                    customer: None,
                }
            })
            .collect()
    }

    fn rate(lines: &[ExportLine]) -> f64 {
        lines.iter().filter(|l| l.outcome == "redeemed").count() as f64 / lines.len() as f64
    }

    #[test]
    fn only_closed_windows_are_evaluated_whatever_their_outcome() {
        let p = 0.05;
        let truth = p * (1.0 - (-3.5f64).exp());
        let lines = simulated_export(p, 7);
        // The old loader: drop what is pending. Among windows still open the
        // redeemed stay and the unredeemed go: 27.37 p / (23 + 5.06 p) in
        // expectation, +21% here (+22.7% as p -> 0).
        let old: Vec<ExportLine> = lines
            .iter()
            .filter(|l| l.outcome != "pending")
            .cloned()
            .collect();
        let old_bias = rate(&old) / truth - 1.0;
        // The new one: windows closed by the earliest still-open window's end.
        let cut = default_cut(&lines);
        let (kept, c) = closed_by(lines.clone(), cut);
        let new_bias = rate(&kept) / truth - 1.0;
        let n = kept.len() as f64;
        let se = (truth * (1.0 - truth) / n).sqrt() / truth;
        println!(
            "truth {truth:.4}; old loader {:.4} ({:+.1}%), closed windows {:.4} ({:+.1}%, se {:.1}%); kept {} of 60000, {} open left out ({} redeemed)",
            rate(&old),
            100.0 * old_bias,
            rate(&kept),
            100.0 * new_bias,
            100.0 * se,
            c.kept,
            c.open,
            c.open_redeemed
        );
        assert!(old_bias > 0.15, "the old way's bias {old_bias}");
        assert!(new_bias.abs() < 4.0 * se, "bias {new_bias}, se {se}");
        // The cut is the first pending decision's window end, about day 30.
        let t = cut.expect("some pending");
        assert!((t - 30 * DAY).abs() < DAY / 100, "cut {t}");
        assert!(
            kept.iter()
                .all(|l| l.expires_unix_ms < t && l.outcome != "pending")
        );
        assert_eq!(c.kept + c.open, 60_000);
        assert!(c.open_redeemed > 0 && c.pending_closed == 0);
        // Everything closed: nothing is cut.
        let done: Vec<ExportLine> = old
            .into_iter()
            .filter(|l| l.expires_unix_ms <= 30 * DAY)
            .collect();
        assert_eq!(default_cut(&done), None);
        assert_eq!(closed_by(done.clone(), None).0.len(), done.len());
    }

    #[test]
    fn an_explicit_cut_keeps_closed_windows_and_counts_stale_pendings_as_expired() {
        let line = |id: &str, expires: i64, outcome: &str| ExportLine {
            decision_id: id.into(),
            campaign: "c".into(),
            created_unix_ms: expires - 7 * DAY,
            expires_unix_ms: expires,
            context: HashMap::new(),
            candidates: Vec::new(),
            offer_id: "a".into(),
            propensity: 0.5,
            outcome: outcome.into(),
            value: None,
            customer: Some(format!("cust-{id}")),
        };
        let lines = vec![
            line("1", 10 * DAY, "redeemed"),
            line("2", 10 * DAY, "pending"),
            line("3", 12 * DAY, "redeemed"),
            line("4", 12 * DAY, "pending"),
        ];
        let (kept, c) = closed_by(lines, Some(11 * DAY));
        assert_eq!(kept.len(), 2);
        assert_eq!((c.open, c.open_redeemed, c.pending_closed), (2, 1, 1));
        let log = to_log(kept, false).expect("log");
        assert_eq!(
            log.rows.iter().map(|r| r.reward).collect::<Vec<_>>(),
            vec![1.0, 0.0]
        );
        assert_eq!(
            log.rows.iter().map(|r| r.customer).collect::<Vec<_>>(),
            vec![Some(0), Some(1)]
        );
    }

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
