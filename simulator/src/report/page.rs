//! The page shell: stylesheet, `<head>`, the heading with the run's
//! particulars, and the titled section around each chart.

use std::fmt::Write as _;

use super::{
    format::{NA, auto, count, esc, grouped, pct},
    style::FONT,
};
use crate::results::RunReport;

/// Page stylesheet.
const CSS: &str = "
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f9fafb; color: #1f2937; font: 14px/1.5 FONT; }
main { max-width: 1120px; margin: 0 auto; padding: 32px 24px 48px; }
h1 { font-size: 24px; line-height: 1.3; margin: 0 0 16px; }
h2 { font-size: 18px; margin: 36px 0 4px; }
.mode { display: inline-block; vertical-align: middle; margin-right: 10px; padding: 2px 8px;
  border-radius: 4px; background: #e0e7ff; color: #3730a3; font-size: 12px; font-weight: 600;
  letter-spacing: 0.04em; text-transform: uppercase; }
.card { background: #ffffff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 16px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 6px 20px; margin: 0; }
dl.meta dt { color: #6b7280; }
dl.meta dd { margin: 0; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px;
  background: #f3f4f6; border-radius: 4px; padding: 2px 6px; word-break: break-all; }
.note { color: #6b7280; font-size: 13px; margin: 0 0 12px; }
.table-wrap { overflow-x: auto; padding: 0; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { padding: 8px 10px; border-bottom: 1px solid #e5e7eb; text-align: left; vertical-align: top; }
th { background: #f9fafb; color: #374151; font-weight: 600; font-size: 12px; line-height: 1.3;
  vertical-align: bottom; }
th.num { white-space: normal; }
tr:last-child td { border-bottom: none; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.ci { display: block; color: #6b7280; font-size: 11px; }
tr.best td { background: #ecfdf5; }
.badge { display: inline-block; margin-left: 6px; padding: 0 6px; border-radius: 9px;
  background: #059669; color: #ffffff; font-size: 11px; font-weight: 600; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 8px; }
td:first-child { min-width: 170px; }
.policy { font-weight: 600; overflow-wrap: anywhere; }
figure { margin: 0; }
figure svg { display: block; width: 100%; height: auto; }
footer { margin-top: 36px; color: #9ca3af; font-size: 12px; }
";

/// `<!DOCTYPE>`, `<head>` with title and styles, and the opening `<body>`.
pub(super) fn page_head(report: &RunReport) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
         <title>offer-sim {} · {}</title>\n<style>{}</style>\n</head>\n<body>\n<main>\n",
        esc(&report.mode),
        esc(&report.title),
        CSS.replace("FONT", FONT)
    )
}

/// The heading and the run's particulars.
pub(super) fn page_header(report: &RunReport) -> String {
    let seeds = if report.seeds == 0 {
        "0".to_owned()
    } else {
        let last = report.first_seed.saturating_add(report.seeds - 1);
        format!(
            "{} (seeds {}–{})",
            count(report.seeds),
            report.first_seed,
            last
        )
    };
    let rows = [
        ("Source", esc(&report.source)),
        ("Command", format!("<code>{}</code>", esc(&report.command))),
        ("Seeds", seeds),
        ("Rounds per seed", count(report.rounds)),
        ("Oracle mean reward", reward_text(report.oracle_mean_reward)),
        ("Random mean reward", reward_text(report.random_mean_reward)),
        ("Oracle mean value", auto(report.oracle_mean_value)),
        ("Segment feature", esc(&report.segment_feature)),
    ];
    let mut out = format!(
        "<header>\n<h1><span class=\"mode\">{}</span>{}</h1>\n</header>\n<section class=\"card\">\n<dl class=\"meta\">\n",
        esc(&report.mode),
        esc(&report.title)
    );
    for (name, value) in rows {
        let _ = writeln!(out, "<dt>{name}</dt><dd>{value}</dd>");
    }
    out.push_str("</dl>\n</section>\n");
    out
}

/// A per-visit reward as a rate and per 1,000 visits.
fn reward_text(p: f64) -> String {
    if p.is_finite() {
        format!(
            "{} ({} per 1,000 visits)",
            pct(p, 2),
            grouped(1000.0 * p, 1)
        )
    } else {
        NA.to_owned()
    }
}

/// A titled section holding one chart.
pub(super) fn chart_section(title: &str, note: &str, svg: &str) -> String {
    format!(
        "<h2>{}</h2>\n<p class=\"note\">{}</p>\n<figure class=\"card\">\n{svg}\n</figure>\n",
        esc(title),
        esc(note)
    )
}
