//! The advanced table: regret, fraction of oracle, uplift vs random and
//! speed, one row per policy, the best by fraction of oracle highlighted;
//! and the numeric cell both tables share.

use std::fmt::Write as _;

use super::{
    format::{NA, decimals_by_size, esc, grouped, pct, signed_pct},
    style::PolicyColours,
};
use crate::results::{Estimate, PolicySummary, RunReport};

/// Column headings of the summary table: (label, note under it; the first
/// column is text, the others are numbers).
const SUMMARY_COLUMNS: [(&str, &str); 8] = [
    ("Policy", ""),
    ("Redemption rate", "realized"),
    ("Value per 1,000 visits", "realized, 95% CI"),
    ("Cumulative regret", "95% CI"),
    ("Fraction of oracle", "95% CI"),
    ("Fraction of value oracle", ""),
    ("Uplift vs random", "95% CI"),
    ("Decisions/s", "one core"),
];

/// The advanced table, one row per policy, the best by fraction of oracle
/// highlighted.
pub(super) fn summary_section(report: &RunReport) -> String {
    let mut out = String::from(
        "<h3>Against the oracle and random</h3>\n<p class=\"note\">Means over seeds with 95% intervals. \
         The oracle knows every visit's true probabilities and always sends the best offer; \
         regret is the expected redemptions lost against it over a run. \
         The redemption rate and value here are realized (coins drawn).</p>\n\
         <div class=\"card table-wrap\">\n<table>\n<thead>\n<tr>",
    );
    for (i, (label, note)) in SUMMARY_COLUMNS.into_iter().enumerate() {
        let class = if i > 0 { " class=\"num\"" } else { "" };
        let note = if note.is_empty() {
            String::new()
        } else {
            format!("<span class=\"ci\">{note}</span>")
        };
        let _ = write!(out, "<th{class}>{label}{note}</th>");
    }
    out.push_str("</tr>\n</thead>\n<tbody>\n");
    if report.policies.is_empty() {
        let _ = writeln!(
            out,
            "<tr><td colspan=\"{}\">No policies were run.</td></tr>",
            SUMMARY_COLUMNS.len()
        );
    }
    let best = best_policy(&report.policies);
    let colours = PolicyColours::new(report);
    for (i, policy) in report.policies.iter().enumerate() {
        out.push_str(&summary_row(
            policy,
            colours.of(&policy.policy),
            best == Some(i),
        ));
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
    out
}

/// The index of the policy with the highest finite fraction of oracle (the
/// first on ties), when there are at least two policies to choose from.
fn best_policy(policies: &[PolicySummary]) -> Option<usize> {
    if policies.len() < 2 {
        return None;
    }
    let mut best: Option<(usize, f64)> = None;
    for (i, p) in policies.iter().enumerate() {
        let f = p.fraction_of_oracle;
        if f.is_finite() && best.is_none_or(|(_, b)| f > b) {
            best = Some((i, f));
        }
    }
    best.map(|(i, _)| i)
}

/// A numeric cell: the value and, below it, the interval.
pub(super) fn estimate_cell(mean: f64, ci: &Estimate, format: impl Fn(f64) -> String) -> String {
    let interval = if ci.low.is_finite() || ci.high.is_finite() {
        format!("{} – {}", format(ci.low), format(ci.high))
    } else {
        NA.to_owned()
    };
    format!(
        "<td class=\"num\">{}<span class=\"ci\">{interval}</span></td>",
        format(mean)
    )
}

/// One policy's row of the summary table.
fn summary_row(p: &PolicySummary, colour: &str, best: bool) -> String {
    let class = if best { " class=\"best\"" } else { "" };
    let badge = if best {
        "<span class=\"badge\">best</span>"
    } else {
        ""
    };
    // An interval shows as many decimals as its mean.
    let sized = |mean: f64| move |v: f64| grouped(v, decimals_by_size(mean));
    let percent = |v: f64| pct(v, 1);
    let cells = [
        format!(
            "<td><span class=\"swatch\" style=\"background:{colour}\"></span><span class=\"policy\">{}</span>{badge}</td>",
            esc(&p.policy)
        ),
        format!("<td class=\"num\">{}</td>", pct(p.mean_reward, 2)),
        estimate_cell(
            p.value_per_1000,
            &p.value_per_1000_ci,
            sized(p.value_per_1000),
        ),
        estimate_cell(
            p.cumulative_regret.mean,
            &p.cumulative_regret,
            sized(p.cumulative_regret.mean),
        ),
        estimate_cell(p.fraction_of_oracle, &p.fraction_of_oracle_ci, percent),
        format!(
            "<td class=\"num\">{}</td>",
            pct(p.fraction_of_value_oracle, 1)
        ),
        estimate_cell(p.uplift_vs_random.mean, &p.uplift_vs_random, signed_pct),
        format!(
            "<td class=\"num\">{}</td>",
            grouped(p.decisions_per_second, 0)
        ),
    ];
    format!("<tr{class}>{}</tr>\n", cells.concat())
}
