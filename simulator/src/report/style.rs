//! Colours and fonts shared by the page and the charts, and one colour per
//! policy.

use crate::results::RunReport;

/// Twelve distinguishable series colours (Tableau 10 plus two), cycled when
/// there are more series.
const PALETTE: [&str; 12] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#2f4b7c", "#bcbd22",
];
/// Font stack shared by the page and the charts.
pub(super) const FONT: &str =
    "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif";
/// Main text colour.
pub(super) const INK: &str = "#1f2937";
/// Secondary text colour.
pub(super) const MUTED: &str = "#6b7280";
/// Gridline colour.
pub(super) const GRID: &str = "#e5e7eb";
/// Axis line and tick colour.
pub(super) const AXIS: &str = "#9ca3af";
/// Colour of the dashed oracle line.
pub(super) const ORACLE: &str = "#374151";

/// The palette colour for series number `i`.
pub(super) fn palette(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// Text colour readable on a `#rrggbb` background.
pub(super) fn text_on(hex: &str) -> &'static str {
    let channel = |range: std::ops::Range<usize>| {
        hex.get(range)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .map_or(0.0, f64::from)
    };
    let luma = 0.299 * channel(1..3) + 0.587 * channel(3..5) + 0.114 * channel(5..7);
    if luma > 150.0 { INK } else { "#ffffff" }
}

/// One colour per policy, the same in the table and every chart: policies
/// in summary order, then any policy only named by a curve or share entry.
pub(super) struct PolicyColours<'a> {
    names: Vec<&'a str>,
}

impl<'a> PolicyColours<'a> {
    pub(super) fn new(report: &'a RunReport) -> Self {
        let mut names: Vec<&str> = Vec::new();
        let all = report
            .policies
            .iter()
            .map(|p| p.policy.as_str())
            .chain(report.curves.iter().map(|c| c.policy.as_str()))
            .chain(report.shares.iter().map(|s| s.policy.as_str()));
        for name in all {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Self { names }
    }

    pub(super) fn of(&self, name: &str) -> &'static str {
        palette(self.names.iter().position(|n| *n == name).unwrap_or(0))
    }
}
