//! Propensities estimated from a history that did not log them: how often
//! each offer was sent within cells of similar customers. Consistent when
//! the old rule decided on the cells' attributes only (a rule on `hour`
//! and `lifecycle`, with cells by `hour` and `lifecycle`); a rule that used
//! something the file does not have looks random to it, and the estimate
//! is then the share of each offer within the cell, as sent.

use std::collections::HashMap;

use offer_bandit::{Context, FeatureValue};
use serde::Serialize;

use crate::logs::Log;

/// Numbers with at most this many distinct values are cells by value
/// (an hour of the day is); others are cut at their quantiles.
const DISTINCT_AS_CELLS: usize = 24;
/// Quantile bins of a number with more distinct values.
const BINS: usize = 8;

/// How the propensities were estimated, for the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Estimated {
    /// The attributes the cells are made of.
    pub(crate) by: Vec<String>,
    /// Cells with at least `min_cell` sends.
    pub(crate) cells: usize,
    /// Share of sends in cells with fewer: they get the file's overall
    /// frequencies.
    pub(crate) pooled_share: f64,
    /// Sends a cell needs to have its own frequencies.
    pub(crate) min_cell: usize,
}

/// The cell of one customer: each attribute's value, numbers binned.
fn cell(context: &Context, by: &[String], cuts: &HashMap<&str, Vec<f64>>) -> String {
    let mut key = String::new();
    for f in by {
        let part = match context.get(f) {
            None => "-".to_owned(),
            Some(FeatureValue::Category(c)) => c.clone(),
            Some(FeatureValue::Flag(b)) => b.to_string(),
            Some(FeatureValue::Number(x)) => match cuts.get(f.as_str()) {
                Some(edges) => format!("bin{}", edges.iter().filter(|e| x >= *e).count()),
                None => x.to_string(),
            },
        };
        key.push_str(&part);
        key.push('\u{1f}');
    }
    key
}

/// Quantile edges of each number with many distinct values.
fn cuts<'a>(log: &Log, by: &'a [String]) -> HashMap<&'a str, Vec<f64>> {
    let mut out = HashMap::new();
    for f in by {
        let mut xs: Vec<f64> = log
            .rows
            .iter()
            .filter_map(|r| match r.context.get(f) {
                Some(FeatureValue::Number(x)) => Some(*x),
                _ => None,
            })
            .collect();
        xs.sort_by(f64::total_cmp);
        let mut distinct = xs.clone();
        distinct.dedup();
        if distinct.len() > DISTINCT_AS_CELLS {
            let mut edges: Vec<f64> = (1..BINS).map(|k| xs[k * xs.len() / BINS]).collect();
            edges.dedup();
            out.insert(f.as_str(), edges);
        }
    }
    out
}

/// Per send, every offer's estimated probability of being sent (rows of
/// `log` in order, columns `log.actions`); also sets each send's
/// `propensity` to its offer's.
pub(crate) fn estimate(
    log: &mut Log,
    by: &[String],
    min_cell: usize,
) -> (Vec<Vec<f64>>, Estimated) {
    let k = log.actions.len();
    let cuts = cuts(log, by);
    let keys: Vec<String> = log
        .rows
        .iter()
        .map(|r| cell(&r.context, by, &cuts))
        .collect();
    let mut counts: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut overall = vec![0.0; k];
    for (key, r) in keys.iter().zip(&log.rows) {
        counts.entry(key).or_insert_with(|| vec![0.0; k])[r.action] += 1.0;
        overall[r.action] += 1.0;
    }
    let n = log.rows.len() as f64;
    let overall: Vec<f64> = overall.iter().map(|c| c / n).collect();
    let mut pooled = 0usize;
    let probs: Vec<Vec<f64>> = keys
        .iter()
        .map(|key| {
            let c = &counts[key.as_str()];
            let total: f64 = c.iter().sum();
            if total >= min_cell as f64 {
                c.iter().map(|x| x / total).collect()
            } else {
                pooled += 1;
                overall.clone()
            }
        })
        .collect();
    for (r, p) in log.rows.iter_mut().zip(&probs) {
        r.propensity = p[r.action];
    }
    let cells = counts
        .values()
        .filter(|c| c.iter().sum::<f64>() >= min_cell as f64)
        .count();
    (
        probs,
        Estimated {
            by: by.to_vec(),
            cells,
            pooled_share: pooled as f64 / n.max(1.0),
            min_cell,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::Logged;

    fn row(hour: f64, tier: &str, action: usize) -> Logged {
        let mut context = Context::new();
        context.insert("hour".into(), FeatureValue::Number(hour));
        context.insert("tier".into(), FeatureValue::Category(tier.into()));
        Logged {
            context,
            candidates: vec![0, 1],
            action,
            propensity: f64::NAN,
            reward: 0.0,
            position: 0,
            customer: None,
        }
    }

    #[test]
    fn a_deterministic_rule_is_recovered_by_its_cells() {
        // Rule: hour >= 14 -> offer 1, else offer 0; a quarter of the
        // mornings were sent offer 1 at random.
        let mut rows = Vec::new();
        for i in 0..400 {
            let hour = (i % 24) as f64;
            let action = if hour >= 14.0 || i % 96 < 24 && hour < 14.0 && i % 4 == 0 {
                1
            } else {
                0
            };
            rows.push(row(hour, ["a", "b"][i % 2], action));
        }
        let mut log = Log {
            actions: vec!["points".into(), "bogo".into()],
            rows,
        };
        let (probs, how) = estimate(&mut log, &["hour".to_owned()], 5);
        assert_eq!(how.cells, 24, "one cell per hour");
        assert_eq!(how.pooled_share, 0.0);
        for (r, p) in log.rows.iter().zip(&probs) {
            let hour = match r.context["hour"] {
                FeatureValue::Number(h) => h,
                _ => unreachable!(),
            };
            if hour >= 14.0 {
                assert_eq!(p[1], 1.0, "the afternoon is always offer 1");
                assert_eq!(p[0], 0.0);
            }
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            assert_eq!(r.propensity, p[r.action]);
        }
    }

    #[test]
    fn small_cells_get_the_overall_frequencies() {
        let mut log = Log {
            actions: vec!["a".into(), "b".into()],
            rows: vec![
                row(1.0, "x", 0),
                row(2.0, "x", 1),
                row(2.0, "x", 1),
                row(3.0, "x", 1),
            ],
        };
        let (probs, how) = estimate(&mut log, &["hour".to_owned()], 2);
        assert_eq!(how.cells, 1);
        assert_eq!(how.pooled_share, 0.5);
        assert_eq!(probs[0], vec![0.25, 0.75]);
        assert_eq!(probs[1], vec![0.0, 1.0]);
    }
}
