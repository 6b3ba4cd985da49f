//! The line charts: cumulative regret and reward over time, with their
//! interval bands and legend.

use super::{
    axis::{Axis, Frame},
    format::esc,
    style::{MUTED, ORACLE, PolicyColours},
    svg::{CHAR_W, axes, c, labelled_text, line, no_data, rect, svg_open, text},
};
use crate::results::{CurvePoint, PolicyCurve, RunReport};

/// Layout of the line charts (the height grows with a long legend).
const LINE_FRAME: Frame = Frame {
    width: 880.0,
    height: 420.0,
    left: 72.0,
    right: 210.0,
    top: 48.0,
    bottom: 58.0,
};
/// Vertical space per legend entry.
const LEGEND_ROW: f64 = 20.0;

/// The line-chart frame for `entries` legend entries.
pub(super) fn line_frame(entries: usize) -> Frame {
    let legend = LINE_FRAME.top + LEGEND_ROW * (entries as f64 + 2.0) + LINE_FRAME.bottom;
    Frame {
        height: LINE_FRAME.height.max(legend),
        ..LINE_FRAME
    }
}

/// One line of a line chart, with an optional interval band.
struct Series<'a> {
    label: &'a str,
    colour: &'static str,
    /// Finite `(x, y)` points in x order.
    points: Vec<(f64, f64)>,
    /// Finite `(x, low, high)` band points in x order.
    band: Vec<(f64, f64, f64)>,
    dashed: bool,
}

/// A line chart: titles, series, and whether to explain the bands.
struct LineChart<'a> {
    title: &'a str,
    x_title: &'a str,
    y_title: &'a str,
    series: Vec<Series<'a>>,
    band_note: bool,
}

/// The SVG of a line chart.
fn line_chart(chart: &LineChart<'_>) -> String {
    let frame = line_frame(chart.series.len());
    let xs = chart.series.iter().flat_map(|s| {
        s.points
            .iter()
            .map(|p| p.0)
            .chain(s.band.iter().map(|b| b.0))
    });
    let x_axis = Axis::new(xs, true, 6);
    let ys = chart.series.iter().flat_map(|s| {
        let band = s.band.iter().flat_map(|b| [b.1, b.2]);
        s.points.iter().map(|p| p.1).chain(band)
    });
    let y_axis = Axis::new(ys, true, 5);
    let mut out = svg_open(frame.width, frame.height, chart.title);
    out.push_str(&axes(
        &frame,
        &x_axis,
        &y_axis,
        chart.x_title,
        chart.y_title,
    ));
    if chart.series.iter().all(|s| s.points.is_empty()) {
        out.push_str(&no_data(&frame));
    }
    for s in &chart.series {
        out.push_str(&band_polygon(&frame, &x_axis, &y_axis, s));
    }
    for s in &chart.series {
        out.push_str(&series_line(&frame, &x_axis, &y_axis, s));
    }
    out.push_str(&line_legend(&frame, &chart.series, chart.band_note));
    out.push_str("</svg>");
    out
}

/// The stroke attribute of a dashed line (nothing for a solid one).
fn dash_attr(dashed: bool) -> &'static str {
    if dashed {
        " stroke-dasharray=\"6 4\""
    } else {
        ""
    }
}

/// The shaded interval band of a series (nothing with fewer than two points).
fn band_polygon(frame: &Frame, x: &Axis, y: &Axis, s: &Series<'_>) -> String {
    if s.band.len() < 2 {
        return String::new();
    }
    let upper = s.band.iter().map(|b| (b.0, b.2));
    let lower = s.band.iter().rev().map(|b| (b.0, b.1));
    let points: Vec<String> = upper
        .chain(lower)
        .map(|(px, py)| format!("{},{}", c(frame.x(x, px)), c(frame.y(y, py))))
        .collect();
    format!(
        "<polygon class=\"band\" fill=\"{}\" fill-opacity=\"0.15\" stroke=\"none\" points=\"{}\"/>\n",
        s.colour,
        points.join(" ")
    )
}

/// A series as a polyline, or a dot when it has a single point.
fn series_line(frame: &Frame, x: &Axis, y: &Axis, s: &Series<'_>) -> String {
    let coords: Vec<(f64, f64)> = s
        .points
        .iter()
        .map(|&(px, py)| (frame.x(x, px), frame.y(y, py)))
        .collect();
    let name = esc(s.label);
    match coords.as_slice() {
        [] => String::new(),
        [(px, py)] => format!(
            "<circle class=\"series\" data-series=\"{name}\" cx=\"{}\" cy=\"{}\" r=\"3.5\" fill=\"{}\"><title>{name}</title></circle>\n",
            c(*px),
            c(*py),
            s.colour
        ),
        _ => {
            let points: Vec<String> = coords
                .iter()
                .map(|(px, py)| format!("{},{}", c(*px), c(*py)))
                .collect();
            let dash = dash_attr(s.dashed);
            format!(
                "<polyline class=\"series\" data-series=\"{name}\" fill=\"none\" stroke=\"{}\" \
                 stroke-width=\"2\" stroke-linejoin=\"round\" stroke-linecap=\"round\"{dash} \
                 points=\"{}\"><title>{name}</title></polyline>\n",
                s.colour,
                points.join(" ")
            )
        }
    }
}

/// The legend to the right of a line chart's plot area.
fn line_legend(frame: &Frame, series: &[Series<'_>], band_note: bool) -> String {
    let x = frame.x1() + 20.0;
    let max_chars = ((frame.right - 50.0) / CHAR_W).max(4.0) as usize;
    let mut y = frame.y_top() + 6.0;
    let mut out = String::new();
    for s in series {
        let dash = dash_attr(s.dashed);
        let stroke = format!(" stroke-width=\"2.5\"{dash}");
        out.push_str(&line(x, y, x + 22.0, y, s.colour, &stroke));
        out.push_str(&labelled_text(
            x + 30.0,
            y + 4.0,
            "start",
            "",
            s.label,
            max_chars,
        ));
        y += LEGEND_ROW;
    }
    if band_note && series.iter().any(|s| s.band.len() >= 2) {
        out.push_str(&rect(
            x,
            y - 6.0,
            22.0,
            12.0,
            MUTED,
            " fill-opacity=\"0.2\"",
        ));
        let attrs = format!(" fill=\"{MUTED}\"");
        out.push_str(&text(x + 30.0, y + 4.0, "start", &attrs, "95% interval"));
    }
    out
}

/// The cumulative regret chart, one line and band per policy curve.
pub(super) fn regret_chart(report: &RunReport) -> String {
    line_chart(&LineChart {
        title: "Cumulative regret vs oracle",
        x_title: "round (decisions per seed)",
        y_title: "cumulative regret (expected redemptions lost)",
        series: policy_series(report, |p| p.cumulative_regret.mean, regret_band),
        band_note: true,
    })
}

/// The finite `(round, low, high)` points of a curve's regret interval.
fn regret_band(curve: &PolicyCurve) -> Vec<(f64, f64, f64)> {
    let band = curve.points.iter().map(|p| {
        let ci = &p.cumulative_regret;
        (p.round as f64, ci.low, ci.high)
    });
    band.filter(|b| b.0.is_finite() && b.1.is_finite() && b.2.is_finite())
        .collect()
}

/// The reward-over-time chart: windowed expected reward per 1,000 visits per
/// policy, and the oracle's (from the first curve that has points) dashed.
pub(super) fn reward_chart(report: &RunReport) -> String {
    let mut series = policy_series(
        report,
        |p| 1000.0 * p.window_expected_reward,
        |_| Vec::new(),
    );
    if let Some(curve) = report.curves.iter().find(|c| !c.points.is_empty()) {
        series.push(Series {
            label: "oracle",
            colour: ORACLE,
            points: curve_points(curve, |p| 1000.0 * p.window_oracle_reward),
            band: Vec::new(),
            dashed: true,
        });
    }
    line_chart(&LineChart {
        title: "Reward over time",
        x_title: "round (decisions per seed)",
        y_title: "expected redemptions per 1,000 visits",
        series,
        band_note: false,
    })
}

/// One solid line per policy curve, in the policy's colour: `y` of each
/// point against its round, with the interval band `band` gives.
fn policy_series<'a>(
    report: &'a RunReport,
    y: impl Fn(&CurvePoint) -> f64,
    band: impl Fn(&PolicyCurve) -> Vec<(f64, f64, f64)>,
) -> Vec<Series<'a>> {
    let colours = PolicyColours::new(report);
    report
        .curves
        .iter()
        .map(|curve| Series {
            label: &curve.policy,
            colour: colours.of(&curve.policy),
            points: curve_points(curve, &y),
            band: band(curve),
            dashed: false,
        })
        .collect()
}

/// `(round, y(point))` for each point of `curve` where both are finite.
fn curve_points(curve: &PolicyCurve, y: impl Fn(&CurvePoint) -> f64) -> Vec<(f64, f64)> {
    curve
        .points
        .iter()
        .map(|p| (p.round as f64, y(p)))
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect()
}
