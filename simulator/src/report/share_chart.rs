//! The offer share chart: per policy, a stacked bar per segment with the
//! oracle's top offer named beside it.

use super::{
    axis::Axis,
    format::{NA, count, esc, pct, truncate},
    style::{GRID, INK, MUTED, PolicyColours, palette, text_on},
    svg::{CHAR_W, labelled_text, line, rect, svg_open, text, text_width},
};
use crate::results::{PolicyShares, RunReport, SegmentShares};

/// Width of the offer share chart.
const SHARE_WIDTH: f64 = 880.0;
/// Height of one segment's bar.
const BAR_H: f64 = 22.0;
/// Space between two segments' bars.
const BAR_GAP: f64 = 8.0;
/// Height of a policy panel's heading.
const PANEL_HEAD: f64 = 30.0;
/// Width of the oracle note to the right of the bars.
const NOTE_W: f64 = 190.0;

/// Horizontal layout of the share chart.
#[derive(Debug, Clone, Copy)]
struct ShareLayout {
    /// Right end of the segment labels.
    label_end: f64,
    /// Characters a segment label may show.
    label_chars: usize,
    bar_x0: f64,
    bar_x1: f64,
}

impl ShareLayout {
    fn new(report: &RunReport) -> Self {
        let widest = report
            .shares
            .iter()
            .flat_map(|p| p.segments.iter())
            .map(|s| text_width(&segment_label(s)))
            .fold(0.0, f64::max);
        let label_w = widest.clamp(90.0, 260.0);
        let label_end = 16.0 + label_w;
        Self {
            label_end,
            label_chars: (label_w / CHAR_W) as usize,
            bar_x0: label_end + 10.0,
            bar_x1: SHARE_WIDTH - NOTE_W,
        }
    }

    fn bar_w(&self) -> f64 {
        self.bar_x1 - self.bar_x0
    }
}

/// "segment (n visits)".
fn segment_label(s: &SegmentShares) -> String {
    let unit = if s.visits == 1 { "visit" } else { "visits" };
    format!("{} ({} {unit})", s.segment, count(s.visits))
}

/// The offer share chart: an offer legend, then per policy a horizontal
/// stacked bar per segment with the oracle's top offer named beside it.
pub(super) fn share_chart(report: &RunReport) -> String {
    let title = if report.segment_feature.is_empty() {
        "Offer share by segment".to_owned()
    } else {
        format!("Offer share by segment ({})", report.segment_feature)
    };
    let layout = ShareLayout::new(report);
    let colours = PolicyColours::new(report);
    let (legend, legend_h) = offer_legend(&offer_names(report), 44.0);
    let mut y = 44.0 + legend_h + 10.0;
    let mut body = String::new();
    if report.shares.is_empty() {
        body.push_str(&text(
            16.0,
            y + 16.0,
            "start",
            &format!(" fill=\"{MUTED}\""),
            "No data",
        ));
        y += 32.0;
    }
    for policy in &report.shares {
        let (panel, h) = share_panel(report, policy, colours.of(&policy.policy), &layout, y);
        body.push_str(&panel);
        y += h;
    }
    if !report.shares.is_empty() {
        let axis_title = "share of the segment's decisions (last half of the run)";
        let mid = (layout.bar_x0 + layout.bar_x1) / 2.0;
        let attrs = format!(" fill=\"{MUTED}\"");
        body.push_str(&text(mid, y + 8.0, "middle", &attrs, axis_title));
    }
    let mut out = svg_open(SHARE_WIDTH, y + 24.0, &title);
    out.push_str(&legend);
    out.push_str(&body);
    out.push_str("</svg>");
    out
}

/// Name of offer number `i` (counting from 0): its name (or id), or "offer #n" when a
/// share vector is longer than the report's offer list.
fn offer_name(report: &RunReport, i: usize) -> String {
    report.offers.get(i).map_or_else(
        || format!("offer #{}", i + 1),
        |id| report.offer_display(id),
    )
}

/// Names of every offer that has a colour in the share chart.
fn offer_names(report: &RunReport) -> Vec<String> {
    let longest = report
        .shares
        .iter()
        .flat_map(|p| p.segments.iter())
        .map(|s| s.share.len())
        .fold(report.offers.len(), usize::max);
    (0..longest).map(|i| offer_name(report, i)).collect()
}

/// The offer colour legend starting at `y`, wrapped into rows, ending with
/// the key to the oracle outline; returns the SVG and its height.
fn offer_legend(offers: &[String], y: f64) -> (String, f64) {
    const ROW: f64 = 18.0;
    let (x_start, x_end) = (16.0, SHARE_WIDTH - 16.0);
    let mut out = String::new();
    let (mut x, mut row_y) = (x_start, y);
    let mut place = |width: f64| {
        if x + width > x_end && x > x_start {
            x = x_start;
            row_y += ROW;
        }
        let at = (x, row_y);
        x += width;
        at
    };
    for (i, offer) in offers.iter().enumerate() {
        let shown = truncate(offer, 28);
        let (ix, iy) = place(12.0 + 6.0 + text_width(&shown) + 16.0);
        out.push_str(&rect(ix, iy, 12.0, 12.0, palette(i), " rx=\"2\""));
        out.push_str(&labelled_text(ix + 18.0, iy + 10.0, "start", "", offer, 28));
    }
    let key = "oracle's top offer (outlined)";
    let (ix, iy) = place(12.0 + 6.0 + text_width(key));
    let outline = format!(" stroke=\"{INK}\" stroke-width=\"1.5\" rx=\"2\"");
    out.push_str(&rect(ix, iy, 12.0, 12.0, "#ffffff", &outline));
    out.push_str(&text(
        ix + 18.0,
        iy + 10.0,
        "start",
        &format!(" fill=\"{MUTED}\""),
        key,
    ));
    (out, row_y - y + ROW)
}

/// One policy's panel at `y`: heading, percentage gridlines, a bar per
/// segment and the percentage tick labels; returns the SVG and its height.
fn share_panel(
    report: &RunReport,
    policy: &PolicyShares,
    colour: &str,
    layout: &ShareLayout,
    y: f64,
) -> (String, f64) {
    let mut out = String::new();
    out.push_str(&rect(16.0, y + 8.0, 12.0, 12.0, colour, " rx=\"2\""));
    let max_chars = ((SHARE_WIDTH - 60.0) / 7.5) as usize;
    let head = " font-size=\"13\" font-weight=\"600\"";
    out.push_str(&labelled_text(
        34.0,
        y + 18.0,
        "start",
        head,
        &policy.policy,
        max_chars,
    ));
    let rows_top = y + PANEL_HEAD;
    // An empty panel keeps one row's height for its "No segments" note.
    let rows = policy.segments.len().max(1) as f64;
    let rows_bottom = rows_top + rows * (BAR_H + BAR_GAP) - BAR_GAP;
    let axis = Axis::new([0.0, 100.0], true, 5);
    let small = format!(" font-size=\"11\" fill=\"{MUTED}\"");
    for &t in &axis.ticks {
        let px = layout.bar_x0 + axis.frac(t) * layout.bar_w();
        out.push_str(&line(px, rows_top - 4.0, px, rows_bottom + 4.0, GRID, ""));
        out.push_str(&text(
            px,
            rows_bottom + 18.0,
            "middle",
            &small,
            &format!("{}%", axis.label(t)),
        ));
    }
    if policy.segments.is_empty() {
        let (nx, ny) = (layout.bar_x0 + 8.0, rows_top + BAR_H / 2.0 + 4.0);
        out.push_str(&text(nx, ny, "start", &small, "No segments"));
    }
    for (i, segment) in policy.segments.iter().enumerate() {
        let row_y = rows_top + i as f64 * (BAR_H + BAR_GAP);
        out.push_str(&segment_bar(report, segment, layout, row_y));
    }
    (out, rows_bottom - y + 34.0)
}

/// One segment's label, stacked bar and oracle note, at row `y`.
fn segment_bar(
    report: &RunReport,
    segment: &SegmentShares,
    layout: &ShareLayout,
    y: f64,
) -> String {
    let mut out = String::new();
    let mid = y + BAR_H / 2.0 + 4.0;
    let label = segment_label(segment);
    out.push_str(&labelled_text(
        layout.label_end,
        mid,
        "end",
        "",
        &label,
        layout.label_chars,
    ));
    out.push_str(&rect(
        layout.bar_x0,
        y,
        layout.bar_w(),
        BAR_H,
        "#f3f4f6",
        "",
    ));
    let oracle = report
        .offers
        .iter()
        .position(|o| *o == segment.oracle_top_offer);
    let spans = piece_spans(&segment.share);
    for (j, &span) in spans.iter().enumerate() {
        if span.1 > 0.0 {
            out.push_str(&bar_piece(report, segment, j, span, layout, y));
        }
    }
    // The oracle outline goes on top of the pieces so neighbours cannot hide it.
    if let Some(&(start, width)) = oracle.and_then(|j| spans.get(j))
        && width > 0.0
    {
        let stroke = format!(" fill-opacity=\"0\" stroke=\"{INK}\" stroke-width=\"1.5\"");
        let px = layout.bar_x0 + start * layout.bar_w();
        out.push_str(&rect(px, y, width * layout.bar_w(), BAR_H, "none", &stroke));
    }
    out.push_str(&oracle_note(report, segment, oracle, layout, mid));
    out
}

/// `(start, width)` of each offer's piece of a bar, as fractions of the bar:
/// shares that are negative or not finite count as zero, and pieces past a
/// total of one are cut off.
fn piece_spans(shares: &[f64]) -> Vec<(f64, f64)> {
    let mut start = 0.0_f64;
    shares
        .iter()
        .map(|&share| {
            let room = (1.0 - start).max(0.0);
            let width = if share.is_finite() {
                share.max(0.0).min(room)
            } else {
                0.0
            };
            let span = (start, width);
            start += width;
            span
        })
        .collect()
}

/// One offer's piece of a segment bar: `span` is (start, width) as fractions.
fn bar_piece(
    report: &RunReport,
    segment: &SegmentShares,
    offer: usize,
    span: (f64, f64),
    layout: &ShareLayout,
    y: f64,
) -> String {
    let colour = palette(offer);
    let name = offer_name(report, offer);
    let (x, w) = (
        layout.bar_x0 + span.0 * layout.bar_w(),
        span.1 * layout.bar_w(),
    );
    let tip = format!("{} · {}: {}", segment.segment, name, pct(span.1, 1));
    let mut out = format!("<g><title>{}</title>", esc(&tip));
    out.push_str(&rect(x, y, w, BAR_H, colour, ""));
    let value = pct(span.1, 0);
    if w >= text_width(&value) + 8.0 {
        let attrs = format!(" font-size=\"11\" fill=\"{}\"", text_on(colour));
        out.push_str(&text(
            x + w / 2.0,
            y + BAR_H / 2.0 + 4.0,
            "middle",
            &attrs,
            &value,
        ));
    }
    out.push_str("</g>\n");
    out
}

/// The note right of a segment bar naming the oracle's top offer, with its
/// colour when it is one of the report's offers.
fn oracle_note(
    report: &RunReport,
    segment: &SegmentShares,
    oracle: Option<usize>,
    layout: &ShareLayout,
    mid: f64,
) -> String {
    let x = layout.bar_x1 + 12.0;
    let mut out = match oracle {
        Some(j) => rect(
            x,
            mid - 9.0,
            10.0,
            10.0,
            palette(j),
            &format!(" stroke=\"{INK}\" stroke-width=\"1\""),
        ),
        None => String::new(),
    };
    let offer = if segment.oracle_top_offer.is_empty() {
        NA.to_owned()
    } else {
        report.offer_display(&segment.oracle_top_offer)
    };
    let note = format!("oracle: {offer}");
    let chars = ((NOTE_W - 34.0) / CHAR_W) as usize;
    out.push_str(&labelled_text(
        x + 16.0,
        mid,
        "start",
        &format!(" fill=\"{MUTED}\""),
        &note,
        chars,
    ));
    out
}
