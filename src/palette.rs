//! Colours and fonts shared by the dashboard and the simulator's reports,
//! so that an offer or a policy looks the same on every page.

/// Twelve distinguishable series colours (Tableau 10 plus two), cycled when
/// there are more series.
pub const SERIES: [&str; 12] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#2f4b7c", "#bcbd22",
];
/// Font stack shared by the pages and the charts.
pub const FONT: &str =
    "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif";
/// Main text colour.
pub const INK: &str = "#1f2937";
/// Secondary text colour.
pub const MUTED: &str = "#6b7280";
/// Gridline colour.
pub const GRID: &str = "#e5e7eb";
/// Axis line and tick colour.
pub const AXIS: &str = "#9ca3af";
/// Colour of a dashed reference line (the simulator's oracle).
pub const ORACLE: &str = "#374151";

/// The series colour for series number `i`.
pub fn palette(i: usize) -> &'static str {
    SERIES[i % SERIES.len()]
}

/// Text colour readable on a `#rrggbb` background.
pub fn text_on(hex: &str) -> &'static str {
    let channel = |range: std::ops::Range<usize>| {
        hex.get(range)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .map_or(0.0, f64::from)
    };
    let luma = 0.299 * channel(1..3) + 0.587 * channel(3..5) + 0.114 * channel(5..7);
    if luma > 150.0 { INK } else { "#ffffff" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_colours_cycle_and_text_stays_readable() {
        assert_eq!(palette(0), palette(SERIES.len()));
        assert_ne!(palette(0), palette(1));
        assert_eq!(text_on("#ffffff"), INK);
        assert_eq!(text_on("#000000"), "#ffffff");
    }
}
