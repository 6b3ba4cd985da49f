//! The HTML report and SVG charts of a [`RunReport`]: a self-contained page
//! (the verdict, every policy against the team's rule, reward-over-time and
//! offer-share charts, then regret, oracle and speed under "Advanced";
//! inline CSS and SVG, no scripts or external resources) and the standalone
//! regret SVG.
//!
//! One file a part: `page` (the page shell and its stylesheet),
//! `versus_table` (against the rule), `summary_table` (advanced),
//! `line_chart` (regret, reward over time), `share_chart`
//! (offer share by segment), over `svg` (drawing primitives), `axis` (axes and
//! the plot frame), `style` (colours and fonts) and `format` (text and numbers).

mod axis;
mod format;
mod history_page;
mod line_chart;
mod page;
mod share_chart;
mod style;
mod summary_table;
mod svg;
mod versus_table;

pub(crate) use self::{format::signed, history_page::render_history_html};
use crate::{output::evidence_note, results::RunReport};

use self::{
    line_chart::{regret_chart, reward_chart},
    page::{PAGE_END, chart_section, page_head, run_particulars, verdict_header},
    share_chart::share_chart,
    summary_table::summary_section,
    versus_table::versus_section,
};

/// The complete, self-contained HTML report page for `report`: the verdict
/// and where its numbers come from, every policy against the team's rule,
/// the charts a marketer reads, then an "Advanced" section.
pub(crate) fn render_html(report: &RunReport) -> String {
    let mut out = String::with_capacity(64 * 1024);
    out.push_str(&page_head(&report.mode, &report.title));
    out.push_str(&verdict_header(
        &report.mode,
        &report.title,
        &report.verdict,
        &evidence_note(report),
    ));
    out.push_str(&versus_section(report));
    out.push_str(&chart_section(
        "Reward over time",
        "Mean expected redemptions per 1,000 visits in each window between curve points; the dashed line is the oracle (the best offer for every visit).",
        &reward_chart(report),
    ));
    out.push_str(&chart_section(
        "Offer share by segment",
        "How each policy split each segment's traffic over the offers in the last half of the run. The outlined piece and the note on the right name the oracle's top offer.",
        &share_chart(report),
    ));
    out.push_str("<h2>Advanced</h2>\n");
    out.push_str(&run_particulars(report));
    out.push_str(&summary_section(report));
    out.push_str(&chart_section(
        "Cumulative regret",
        "Expected redemptions lost against the oracle, mean over seeds; the shaded band is the 95% interval.",
        &regret_chart(report),
    ));
    out.push_str(PAGE_END);
    out
}

/// The cumulative regret chart as a standalone SVG document (the same chart
/// the HTML page shows).
pub(crate) fn render_svg_regret(report: &RunReport) -> String {
    let mut out = regret_chart(report);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::{format::NA, format::esc, line_chart::line_frame, *};
    use crate::results::{
        CurvePoint, Estimate, PolicyCurve, PolicyShares, PolicySummary, SegmentShares,
    };
    fn est(mean: f64) -> Estimate {
        Estimate {
            mean,
            low: mean * 0.9,
            high: mean * 1.1,
        }
    }

    fn summary(policy: &str, fraction: f64) -> PolicySummary {
        PolicySummary {
            policy: policy.to_owned(),
            rounds: 100,
            seeds: 3,
            mean_reward: 0.05,
            mean_reward_ci: est(0.05),
            mean_expected_reward: 0.05,
            mean_expected_reward_ci: est(0.05),
            reward_per_1000: est(50.0),
            value_per_1000: 120.0,
            value_per_1000_ci: est(120.0),
            cumulative_regret: est(4.0),
            fraction_of_oracle: fraction,
            fraction_of_oracle_ci: est(fraction),
            fraction_of_value_oracle: 0.8,
            fraction_of_value_oracle_ci: est(0.8),
            uplift_vs_random: est(0.25),
            decisions_per_second: 1_234_567.0,
            expected_value_per_1000: est(110.0),
            vs_baseline: None,
        }
    }

    fn point(round: u64, regret: f64) -> CurvePoint {
        CurvePoint {
            round,
            cumulative_regret: Estimate {
                mean: regret,
                low: regret,
                high: regret,
            },
            window_expected_reward: 0.04,
            window_oracle_reward: 0.06,
        }
    }

    fn curve(policy: &str, points: Vec<CurvePoint>) -> PolicyCurve {
        PolicyCurve {
            policy: policy.to_owned(),
            points,
        }
    }

    fn shares(policy: &str) -> PolicyShares {
        let segment = |name: &str, share: Vec<f64>| SegmentShares {
            segment: name.to_owned(),
            visits: 1500,
            share,
            oracle_top_offer: "o2".to_owned(),
        };
        PolicyShares {
            policy: policy.to_owned(),
            segments: vec![
                segment("gold", vec![0.2, 0.7, 0.1]),
                segment("silver", vec![0.5, 0.25, 0.25]),
            ],
        }
    }

    fn report(policies: &[&str]) -> RunReport {
        RunReport {
            mode: "compare".to_owned(),
            title: "coffee loyalty".to_owned(),
            source: "scenarios/coffee.toml".to_owned(),
            command: "offer-sim compare --seeds 3".to_owned(),
            seeds: 3,
            first_seed: 0,
            rounds: 100,
            oracle_mean_reward: 0.06,
            oracle_mean_value: 0.3,
            random_mean_reward: 0.03,
            offers: vec!["o1".to_owned(), "o2".to_owned(), "o3".to_owned()],
            segment_feature: "tier".to_owned(),
            policies: policies
                .iter()
                .enumerate()
                .map(|(i, p)| summary(p, 0.7 + 0.1 * i as f64))
                .collect(),
            curves: policies
                .iter()
                .map(|p| curve(p, vec![point(0, 0.0), point(50, 5.0), point(100, 10.0)]))
                .collect(),
            shares: policies.iter().map(|p| shares(p)).collect(),
            offer_names: vec!["Offer one".to_owned(), String::new(), "o3".to_owned()],
            evidence: crate::results::Evidence::SimulatedPopulation,
            baseline: None,
            verdict: "segment-ts earns the most.".to_owned(),
        }
    }

    fn empty_report() -> RunReport {
        RunReport {
            oracle_mean_reward: f64::NAN,
            random_mean_reward: f64::NAN,
            seeds: 0,
            rounds: 0,
            offers: Vec::new(),
            policies: Vec::new(),
            curves: Vec::new(),
            shares: Vec::new(),
            ..report(&[])
        }
    }

    /// The `(x, y)` pairs of the polyline drawn for `series`.
    fn polyline_points(svg: &str, series: &str) -> Vec<(f64, f64)> {
        let marker = format!("<polyline class=\"series\" data-series=\"{series}\"");
        let Some(start) = svg.find(&marker) else {
            panic!("no polyline for {series}");
        };
        let tail = &svg[start..];
        let Some(points) = tail
            .split("points=\"")
            .nth(1)
            .and_then(|t| t.split('"').next())
        else {
            panic!("polyline without points");
        };
        points
            .split_whitespace()
            .filter_map(|pair| {
                let (x, y) = pair.split_once(',')?;
                Some((x.parse().ok()?, y.parse().ok()?))
            })
            .collect()
    }

    #[test]
    fn html_names_every_policy_and_has_three_charts() {
        let names = ["segment-ts", "epsilon-greedy:0.1", "random"];
        let html = render_html(&report(&names));
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.trim_end().ends_with("</html>"));
        for name in names {
            assert!(html.contains(&esc(name)), "missing {name}");
        }
        assert_eq!(html.matches("<svg ").count(), 3);
        assert_eq!(html.matches("</svg>").count(), 3);
        assert!(html.contains("<code>offer-sim compare --seeds 3</code>"));
        // The verdict and the note on the evidence come first; offers show
        // by name (the id when unnamed); regret, oracle and speed come under
        // "Advanced".
        let at = |needle: &str| html.find(needle).unwrap_or(usize::MAX);
        assert!(at("segment-ts earns the most.") < at("Simulated population"));
        assert!(at("Simulated population") < at("Redemptions per 1,000"));
        assert!(at("Redemptions per 1,000") < at("<h2>Advanced</h2>"));
        for advanced in [
            "Fraction of oracle",
            "Uplift vs random",
            "Decisions/s",
            "Cumulative regret",
        ] {
            assert!(at("<h2>Advanced</h2>") < at(advanced), "{advanced}");
        }
        assert!(html.contains("Offer one") && html.contains(">o2<"));
        // The last policy has the highest fraction of oracle.
        assert_eq!(html.matches("<tr class=\"best\">").count(), 1);
        let Some(best_row) = html.split("<tr class=\"best\">").nth(1) else {
            panic!("no best row");
        };
        assert!(best_row.starts_with("<td><span class=\"swatch\" style=\"background:#e15759\"></span><span class=\"policy\">random<"));
    }

    #[test]
    fn text_is_escaped_everywhere() {
        let nasty = "a<b&\"c\"";
        let mut r = report(&[nasty, "plain"]);
        r.offers[0] = "<offer&'1'>".to_owned();
        r.offer_names[0] = "<offer&'1'>".to_owned();
        r.shares[0].segments[0].segment = "<seg>&\"".to_owned();
        r.shares[0].segments[0].oracle_top_offer = "<offer&'1'>".to_owned();
        r.title = "<script>alert(1)</script>".to_owned();
        let html = render_html(&r);
        let svg = render_svg_regret(&r);
        for out in [&html, &svg] {
            assert!(out.contains("a&lt;b&amp;&quot;c&quot;"));
            assert!(!out.contains(nasty));
        }
        assert!(html.contains("&lt;offer&amp;&#39;1&#39;&gt;"));
        assert!(!html.contains("<offer&"));
        assert!(html.contains("&lt;seg&gt;&amp;&quot;"));
        assert!(!html.contains("<seg>"));
        assert!(!html.contains("<script>"));
        assert_eq!(esc("\u{0}x\u{7}"), "\u{fffd}x\u{fffd}");
    }

    #[test]
    fn empty_and_degenerate_reports_render() {
        let html = render_html(&empty_report());
        assert_eq!(html.matches("<svg ").count(), 3);
        assert!(html.contains("No policies were run."));
        assert!(html.contains(NA));
        assert!(
            render_svg_regret(&empty_report())
                .starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\"")
        );

        // One point, all zeros, NaNs, empty curves and segments, short share vectors.
        let mut r = report(&["one", "zero", "nan"]);
        r.curves[0].points = vec![point(10, 3.0)];
        r.curves[1].points = vec![point(0, 0.0), point(0, 0.0)];
        r.curves[2].points = vec![point(5, f64::NAN), point(6, f64::INFINITY)];
        r.curves.push(curve("empty", Vec::new()));
        r.policies[2] = summary("nan", f64::NAN);
        r.policies[2].decisions_per_second = f64::NAN;
        r.shares[0].segments[0].share = vec![f64::NAN, 2.0];
        r.shares[1].segments.clear();
        r.shares[2].segments[0].share = vec![0.0; 9];
        let html = render_html(&r);
        assert!(html.contains("<circle class=\"series\" data-series=\"one\""));
        assert!(html.contains(NA));
        assert!(!html.contains("NaN"));
        let svg = render_svg_regret(&r);
        assert!(svg.contains("data-series=\"one\""));
    }

    #[test]
    fn regret_line_is_mapped_monotonically_onto_the_plot() {
        let svg = render_svg_regret(&report(&["ts"]));
        let points = polyline_points(&svg, "ts");
        assert_eq!(points.len(), 3);
        let frame = line_frame(1);
        // Rounds 0..100 and regret 0..10 are already nice domains: the line
        // runs from the bottom-left corner of the plot to the top-right one.
        assert_eq!(points[0], (frame.x0(), frame.y_bottom()));
        assert_eq!(points[2], (frame.x1(), frame.y_top()));
        // Regret 5 at round 50 sits halfway.
        let mid = (
            (frame.x0() + frame.x1()) / 2.0,
            (frame.y_top() + frame.y_bottom()) / 2.0,
        );
        assert_eq!(points[1], mid);
        assert!(
            points
                .windows(2)
                .all(|w| w[1].0 > w[0].0 && w[1].1 < w[0].1)
        );
    }
}
