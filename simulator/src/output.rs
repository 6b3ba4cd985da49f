//! What a run shows and writes: the terminal table, `--json`, and the
//! `--out` directory (results.json, curves.csv, report.html, regret.svg).

use std::{fmt::Write as _, path::Path};

use anyhow::Context as _;

use crate::results::{Estimate, Evidence, RunReport};

fn pm(e: &Estimate, scale: f64, digits: usize) -> String {
    if (e.high - e.low).abs() < 1e-12 || e.high.is_nan() {
        format!("{:.*}", digits, e.mean * scale)
    } else {
        format!(
            "{:.*} ±{:.*}",
            digits,
            e.mean * scale,
            digits,
            0.5 * (e.high - e.low) * scale
        )
    }
}

/// Columns laid out: the first left-aligned, the others right-aligned.
fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for r in rows {
        let _ = writeln!(out, "{}", line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// A difference with its interval: "+41.2 (+35.0 to +47.4)".
fn signed_range(e: &Estimate, digits: usize) -> String {
    let s = |v: f64| crate::report::signed(v, digits);
    if !e.mean.is_finite() {
        "n/a".to_owned()
    } else if (e.high - e.low).abs() < 1e-12 || !e.high.is_finite() {
        s(e.mean)
    } else {
        format!("{} ({} to {})", s(e.mean), s(e.low), s(e.high))
    }
}

/// Where the numbers come from, said plainly.
pub(crate) fn evidence_note(report: &RunReport) -> String {
    match report.evidence {
        Evidence::SimulatedPopulation => format!(
            "Simulated population: these numbers come from the scenario {}, a model of customers and how they respond, not from your customers. `offer-sim history` measures on your own sends.",
            report.source
        ),
        Evidence::FullFeedbackDataset => format!(
            "Full-feedback dataset: these numbers come from {}, whose columns give every visit's probability of redeeming every offer; the policies are simulated on those visits.",
            report.source
        ),
    }
}

/// The comparison people read: the verdict, where the numbers come from,
/// every policy against the baseline, then the advanced figures.
pub(crate) fn table(report: &RunReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}
",
        report.verdict
    );
    let _ = writeln!(out, "{}", evidence_note(report));
    let _ = writeln!(
        out,
        "{} {}: {} decisions x {} seeds\n",
        report.mode, report.title, report.rounds, report.seeds,
    );
    let against = report.baseline.as_ref().map_or_else(
        || "(no baseline)".to_owned(),
        |b| format!("vs {}", b.policy),
    );
    let header = [
        "policy",
        "redemptions/1000 (95% CI)",
        &format!("{against} (95% CI)"),
        "value/1000",
        &format!("value {against}"),
    ];
    let rows: Vec<Vec<String>> = report
        .policies
        .iter()
        .map(|p| {
            let is_baseline = report
                .baseline
                .as_ref()
                .is_some_and(|b| b.policy == p.policy);
            let vs = |f: fn(&crate::results::Versus) -> &Estimate, digits| match &p.vs_baseline {
                _ if is_baseline => "(baseline)".to_owned(),
                Some(v) => signed_range(f(v), digits),
                None => "n/a".to_owned(),
            };
            vec![
                p.policy.clone(),
                pm(&p.reward_per_1000, 1.0, 1),
                vs(|v| &v.redemptions_per_1000, 1),
                pm(&p.expected_value_per_1000, 1.0, 0),
                vs(|v| &v.value_per_1000, 0),
            ]
        })
        .collect();
    out.push_str(&columns(&header, &rows));
    if let Some(b) = &report.baseline {
        let _ = writeln!(
            out,
            "Baseline: {}. Per 1,000 decisions, expected (true probabilities of the chosen offers); differences paired by seed.",
            b.label
        );
    }
    let _ = writeln!(
        out,
        "\nAdvanced: oracle {:.4}, uniform random {:.4} redemptions per visit",
        report.oracle_mean_reward, report.random_mean_reward
    );
    let header = [
        "policy",
        "realized rate",
        "realized value/1000",
        "regret",
        "% of oracle",
        "% value oracle",
        "uplift vs random",
        "decisions/s",
    ];
    let rows: Vec<Vec<String>> = report
        .policies
        .iter()
        .map(|p| {
            vec![
                p.policy.clone(),
                format!("{:.2}%", 100.0 * p.mean_reward),
                pm(&p.value_per_1000_ci, 1.0, 0),
                pm(&p.cumulative_regret, 1.0, 0),
                pm(&p.fraction_of_oracle_ci, 100.0, 1),
                format!("{:.1}", 100.0 * p.fraction_of_value_oracle),
                format!("{}%", pm(&p.uplift_vs_random, 100.0, 0)),
                format!("{:.0}", p.decisions_per_second),
            ]
        })
        .collect();
    out.push_str(&columns(&header, &rows));
    out
}

/// The per-policy summaries as a JSON array (the `--json` contract).
pub(crate) fn json(report: &RunReport) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(&report.policies)?)
}

/// Learning curves as CSV: one row per (policy, checkpoint).
pub(crate) fn curves_csv(report: &RunReport) -> String {
    let mut out = String::from(
        "policy,round,cumulative_regret,cumulative_regret_low,cumulative_regret_high,window_expected_reward,window_oracle_reward\n",
    );
    for c in &report.curves {
        for p in &c.points {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{}",
                csv_field(&c.policy),
                p.round,
                p.cumulative_regret.mean,
                p.cumulative_regret.low,
                p.cumulative_regret.high,
                p.window_expected_reward,
                p.window_oracle_reward
            );
        }
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Writes results.json, curves.csv, report.html and regret.svg into `dir`.
pub(crate) fn write_dir(dir: &Path, report: &RunReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let write = |name: &str, text: String| -> anyhow::Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write("results.json", serde_json::to_string_pretty(report)?)?;
    write("curves.csv", curves_csv(report))?;
    write("report.html", crate::report::render_html(report))?;
    write("regret.svg", crate::report::render_svg_regret(report))?;
    Ok(())
}
