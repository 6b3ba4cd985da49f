//! The first table of the report: every policy against the team's rule (or
//! the run's baseline), in redemptions and money per 1,000 decisions, with
//! intervals paired by seed.

use std::fmt::Write as _;

use super::{
    format::{NA, decimals_by_size, esc, grouped, signed},
    style::PolicyColours,
    summary_table::estimate_cell,
};
use crate::{
    results::{Estimate, PolicySummary, RunReport},
    versus::PAIRED_INTERVAL,
};

/// The section: heading, what the numbers are, the table.
pub(super) fn versus_section(report: &RunReport) -> String {
    let (heading, against) = match &report.baseline {
        Some(b) if b.kind == "your-rule" => (format!("Against {}", b.label), b.policy.as_str()),
        Some(b) => (
            format!(
                "Against {} (no rule of yours in this run: add rules:FILE to --policies)",
                b.label
            ),
            b.policy.as_str(),
        ),
        None => ("Every policy".to_owned(), ""),
    };
    let mut out = format!(
        "<h2>{}</h2>\n<p class=\"note\">Expected redemptions and net value per 1,000 decisions \
         (the true probabilities of the offers each policy chose), means over seeds with 95% intervals. {}</p>\n\
         <div class=\"card table-wrap\">\n<table>\n<thead>\n<tr><th>Policy</th>\
         <th class=\"num\">Redemptions per 1,000<span class=\"ci\">95% CI</span></th>\
         <th class=\"num\">Difference{}<span class=\"ci\">95% CI, paired by seed</span></th>\
         <th class=\"num\">Value per 1,000<span class=\"ci\">95% CI</span></th>\
         <th class=\"num\">Difference in value{}<span class=\"ci\">95% CI, paired by seed</span></th></tr>\n\
         </thead>\n<tbody>\n",
        esc(&heading),
        esc(PAIRED_INTERVAL),
        if against.is_empty() {
            String::new()
        } else {
            format!(" vs {}", esc(against))
        },
        if against.is_empty() {
            String::new()
        } else {
            format!(" vs {}", esc(against))
        },
    );
    if report.policies.is_empty() {
        out.push_str("<tr><td colspan=\"5\">No policies were run.</td></tr>\n");
    }
    let colours = PolicyColours::new(report);
    for p in &report.policies {
        out.push_str(&row(p, colours.of(&p.policy), against));
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
    out
}

/// A difference cell: the signed mean and, below it, its interval.
fn difference_cell(e: Option<&Estimate>, decimals: usize) -> String {
    let Some(e) = e.filter(|e| e.mean.is_finite()) else {
        return format!("<td class=\"num\">{NA}</td>");
    };
    let interval = if e.low.is_finite() && e.high.is_finite() && e.high > e.low {
        format!(
            "{} to {}",
            signed(e.low, decimals),
            signed(e.high, decimals)
        )
    } else {
        "one seed: no interval".to_owned()
    };
    format!(
        "<td class=\"num\">{}<span class=\"ci\">{interval}</span></td>",
        signed(e.mean, decimals)
    )
}

fn row(p: &PolicySummary, colour: &str, against: &str) -> String {
    let is_baseline = !against.is_empty() && p.policy == against;
    let sized = |mean: f64| move |v: f64| grouped(v, decimals_by_size(mean));
    let mut cells = format!(
        "<td><span class=\"swatch\" style=\"background:{colour}\"></span><span class=\"policy\">{}</span></td>",
        esc(&p.policy)
    );
    // Redemptions per 1,000 lie in [0, 1000]: so does the interval shown.
    let possible = Estimate {
        low: p.reward_per_1000.low.clamp(0.0, 1000.0),
        high: p.reward_per_1000.high.clamp(0.0, 1000.0),
        ..p.reward_per_1000
    };
    cells.push_str(&estimate_cell(
        p.reward_per_1000.mean,
        &possible,
        sized(p.reward_per_1000.mean),
    ));
    let vs = p.vs_baseline.as_ref();
    let _ = write!(
        cells,
        "{}",
        if is_baseline {
            "<td class=\"num\">baseline</td>".to_owned()
        } else {
            difference_cell(vs.map(|v| &v.redemptions_per_1000), 1)
        }
    );
    cells.push_str(&estimate_cell(
        p.expected_value_per_1000.mean,
        &p.expected_value_per_1000,
        sized(p.expected_value_per_1000.mean),
    ));
    cells.push_str(&if is_baseline {
        "<td class=\"num\">baseline</td>".to_owned()
    } else {
        difference_cell(vs.map(|v| &v.value_per_1000), 0)
    });
    let class = if is_baseline {
        " class=\"baseline\""
    } else {
        ""
    };
    format!("<tr{class}>{cells}</tr>\n")
}
