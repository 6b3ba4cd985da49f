//! SVG building blocks: the opening tag, text, lines, rectangles, axes and
//! the "no data" note.

use std::fmt::Write as _;

use super::{
    axis::{Axis, Frame},
    format::{esc, fixed, truncate},
    style::{AXIS, FONT, GRID, INK, MUTED},
};

/// Approximate width of one character of 12px chart text, for layout.
pub(super) const CHAR_W: f64 = 6.6;

/// Estimated rendered width of `s` in 12px chart text.
pub(super) fn text_width(s: &str) -> f64 {
    s.chars().count() as f64 * CHAR_W
}

/// A coordinate as written into SVG.
pub(super) fn c(v: f64) -> String {
    fixed(v, 1)
}

/// The opening `<svg>` tag (with namespace, so it also stands alone), its
/// accessible title, a white background and the chart heading.
pub(super) fn svg_open(width: f64, height: f64, title: &str) -> String {
    let t = esc(title);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{t}\" font-family=\"{FONT}\" \
         font-size=\"12\" fill=\"{INK}\">\n<title>{t}</title>\n\
         <rect width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>\n\
         <text x=\"16\" y=\"26\" font-size=\"15\" font-weight=\"600\">{t}</text>\n",
        w = c(width),
        h = c(height),
    )
}

/// A single line of text; `anchor` is `start`, `middle` or `end`.
pub(super) fn text(x: f64, y: f64, anchor: &str, attrs: &str, content: &str) -> String {
    format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\"{attrs}>{}</text>\n",
        c(x),
        c(y),
        esc(content)
    )
}

/// A line segment.
pub(super) fn line(x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str, extra: &str) -> String {
    format!(
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{stroke}\"{extra}/>\n",
        c(x1),
        c(y1),
        c(x2),
        c(y2)
    )
}

/// A filled rectangle.
pub(super) fn rect(x: f64, y: f64, w: f64, h: f64, fill: &str, extra: &str) -> String {
    format!(
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{fill}\"{extra}/>\n",
        c(x),
        c(y),
        c(w.max(0.0)),
        c(h.max(0.0))
    )
}

/// `label` cut to `max_chars`, with the full text as a hover title when cut.
pub(super) fn labelled_text(
    x: f64,
    y: f64,
    anchor: &str,
    attrs: &str,
    label: &str,
    max_chars: usize,
) -> String {
    let shown = truncate(label, max_chars);
    if shown == label {
        text(x, y, anchor, attrs, label)
    } else {
        format!(
            "<g><title>{}</title>{}</g>\n",
            esc(label),
            text(x, y, anchor, attrs, &shown)
        )
    }
}

/// Gridlines, tick marks and labels, axis lines and axis titles.
pub(super) fn axes(frame: &Frame, x: &Axis, y: &Axis, x_title: &str, y_title: &str) -> String {
    let mut out = String::new();
    let small = format!(" font-size=\"11\" fill=\"{MUTED}\"");
    for &t in &y.ticks {
        let py = frame.y(y, t);
        out.push_str(&line(frame.x0(), py, frame.x1(), py, GRID, ""));
        out.push_str(&text(
            frame.x0() - 8.0,
            py + 4.0,
            "end",
            &small,
            &y.label(t),
        ));
    }
    for &t in &x.ticks {
        let px = frame.x(x, t);
        out.push_str(&line(
            px,
            frame.y_bottom(),
            px,
            frame.y_bottom() + 5.0,
            AXIS,
            "",
        ));
        out.push_str(&text(
            px,
            frame.y_bottom() + 19.0,
            "middle",
            &small,
            &x.label(t),
        ));
    }
    out.push_str(&line(
        frame.x0(),
        frame.y_bottom(),
        frame.x1(),
        frame.y_bottom(),
        AXIS,
        "",
    ));
    out.push_str(&line(
        frame.x0(),
        frame.y_top(),
        frame.x0(),
        frame.y_bottom(),
        AXIS,
        "",
    ));
    let title_attrs = format!(" fill=\"{MUTED}\"");
    let mid_x = (frame.x0() + frame.x1()) / 2.0;
    out.push_str(&text(
        mid_x,
        frame.height - 14.0,
        "middle",
        &title_attrs,
        x_title,
    ));
    let mid_y = (frame.y_top() + frame.y_bottom()) / 2.0;
    let _ = writeln!(
        out,
        "<text transform=\"translate(20,{}) rotate(-90)\" text-anchor=\"middle\" fill=\"{MUTED}\">{}</text>",
        c(mid_y),
        esc(y_title)
    );
    out
}

/// A centred "no data" note in the plot area.
pub(super) fn no_data(frame: &Frame) -> String {
    let x = (frame.x0() + frame.x1()) / 2.0;
    let y = (frame.y_top() + frame.y_bottom()) / 2.0;
    text(x, y, "middle", &format!(" fill=\"{MUTED}\""), "No data")
}
