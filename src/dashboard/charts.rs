//! The dashboard's SVG charts, each with labelled axes: redemption rate by
//! arm, and each offer's share of decisions over time. Colours come from
//! [`crate::palette`], as in the simulator's reports.

use std::fmt::Write as _;

use crate::{
    palette::{AXIS, GRID, INK, MUTED, palette},
    uplift::ArmSummary,
};

use super::esc;

/// Time slices of the offer-share chart.
pub(super) const SHARE_BUCKETS: usize = 20;

/// Plot area: left margin, top margin, width, height.
struct Frame {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
}

impl Frame {
    /// The y coordinate of `v` on a `0..=max` scale.
    fn y(&self, v: f64, max: f64) -> f64 {
        self.top + self.height * (1.0 - (v / max).clamp(0.0, 1.0))
    }

    /// A labelled y axis from 0 to `max` with `ticks` gridlines, each tick
    /// written by `label`.
    fn y_axis(&self, max: f64, ticks: usize, label: impl Fn(f64) -> String, title: &str) -> String {
        let mut s = format!(
            "<g class=\"axis y-axis\" aria-label=\"y axis: {t}\" font-size=\"11\" fill=\"{MUTED}\">",
            t = esc(title)
        );
        for i in 0..=ticks {
            let v = max * i as f64 / ticks as f64;
            let y = self.y(v, max);
            let _ = write!(
                s,
                "<line x1=\"{l:.1}\" x2=\"{r:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{GRID}\"/>\
                 <text x=\"{tx:.1}\" y=\"{ty:.1}\" text-anchor=\"end\">{}</text>",
                label(v),
                l = self.left,
                r = self.left + self.width,
                tx = self.left - 6.0,
                ty = y + 4.0
            );
        }
        let (cx, cy) = (14.0, self.top + self.height / 2.0);
        let _ = write!(
            s,
            "<line x1=\"{l:.1}\" x2=\"{l:.1}\" y1=\"{t:.1}\" y2=\"{b:.1}\" stroke=\"{AXIS}\"/>\
             <text class=\"axis-title\" x=\"{cx}\" y=\"{cy:.1}\" text-anchor=\"middle\" fill=\"{INK}\" \
             transform=\"rotate(-90 {cx} {cy:.1})\">{}</text></g>",
            esc(title),
            l = self.left,
            t = self.top,
            b = self.top + self.height
        );
        s
    }

    /// The x axis line and its title under the plot.
    fn x_axis(&self, title: &str) -> String {
        let b = self.top + self.height;
        format!(
            "<g class=\"axis x-axis\" aria-label=\"x axis: {t}\"><line x1=\"{l:.1}\" x2=\"{r:.1}\" y1=\"{b:.1}\" \
             y2=\"{b:.1}\" stroke=\"{AXIS}\"/><text class=\"axis-title\" x=\"{cx:.1}\" y=\"{ty:.1}\" \
             text-anchor=\"middle\" font-size=\"12\" fill=\"{INK}\">{t}</text></g>",
            t = esc(title),
            l = self.left,
            r = self.left + self.width,
            cx = self.left + self.width / 2.0,
            ty = b + 36.0
        )
    }
}

/// A round step for an axis running to about `max`: 1, 2 or 5 times a
/// power of ten, so that about four ticks fit.
fn nice_step(max: f64) -> f64 {
    let raw = (max / 4.0).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// Bars of the arms' redemption rates with their 95% intervals (already
/// within 0-100%), on a labelled percentage axis.
pub(super) fn rate_chart(arms: &[(&str, &ArmSummary)]) -> String {
    let highest = arms
        .iter()
        .map(|(_, a)| a.rate.high)
        .fold(0.001f64, f64::max);
    let step = nice_step(highest);
    let ticks = (highest / step).ceil().max(1.0) as usize;
    let max = (step * ticks as f64).min(1.0).max(step);
    let f = Frame {
        left: 70.0,
        top: 10.0,
        width: 150.0 * arms.len() as f64,
        height: 200.0,
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" role=\"img\" \
         aria-label=\"redemption rate by arm\" font-family=\"system-ui, sans-serif\">",
        f.left + f.width + 10.0,
        f.top + f.height + 50.0
    );
    // Enough decimals that ticks a step apart read apart.
    let decimals = (-(100.0 * step).log10().floor()).max(0.0) as usize;
    s.push_str(&f.y_axis(
        max,
        ticks,
        |v| format!("{:.*}%", decimals, 100.0 * v),
        "redemption rate",
    ));
    for (i, (label, a)) in arms.iter().enumerate() {
        let x = f.left + 35.0 + i as f64 * 150.0;
        let y = f.y(a.rate.value, max);
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"80\" height=\"{:.1}\" fill=\"{}\"/>\
             <line x1=\"{mx:.1}\" x2=\"{mx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{INK}\"/>\
             <text x=\"{mx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"12\" fill=\"{INK}\">{} ({:.2}%)</text>",
            f.top + f.height - y,
            palette(i),
            f.y(a.rate.low, max),
            f.y(a.rate.high, max),
            f.top + f.height + 16.0,
            esc(label),
            100.0 * a.rate.value,
            mx = x + 40.0
        );
    }
    s.push_str(&f.x_axis("group"));
    s.push_str("</svg>");
    s
}

/// Decisions per offer in [`SHARE_BUCKETS`] equal slices of `t0..=t1`.
pub(super) struct ShareSlices {
    /// First and last decision time, ms since the epoch.
    pub t0: i64,
    /// See `t0`.
    pub t1: i64,
    /// Per slice, decisions per offer (in the legend's order).
    pub counts: Vec<Vec<u64>>,
}

impl ShareSlices {
    /// Slices of `(time, offer index)` decisions, sorted by time.
    pub(super) fn new(times: &[(i64, usize)], offers: usize) -> Option<ShareSlices> {
        let (first, last) = (times.first()?.0, times.last()?.0);
        let (t0, t1) = (first, last.max(first + 1));
        let mut counts = vec![vec![0u64; offers]; SHARE_BUCKETS];
        for (t, k) in times {
            let b = (((t - t0) as f64 / (t1 - t0) as f64) * SHARE_BUCKETS as f64) as usize;
            if let Some(row) = counts.get_mut(b.min(SHARE_BUCKETS - 1))
                && let Some(c) = row.get_mut(*k)
            {
                *c += 1;
            }
        }
        Some(ShareSlices { t0, t1, counts })
    }
}

/// `ms` as `YYYY-MM-DD HH:MM` (UTC), with seconds when the chart spans
/// less than two hours (else its ticks would read alike).
fn tick_label(ms: i64, span_ms: i64) -> String {
    let t = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
    )
    .to_string();
    let len = if span_ms < 2 * 3_600_000 { 19 } else { 16 };
    t.get(..len).unwrap_or(&t).replace('T', " ")
}

/// Stacked bars of each offer's share of decisions per slice of time, on a
/// time axis; a slice without decisions stays empty (a gap, not a drop to
/// zero). `names` label the legend, in the slices' offer order.
pub(super) fn share_chart(slices: &ShareSlices, names: &[String]) -> String {
    let f = Frame {
        left: 60.0,
        top: 10.0,
        width: 700.0,
        height: 240.0,
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" role=\"img\" \
         aria-label=\"offer share over time\" font-family=\"system-ui, sans-serif\">",
        f.left + f.width + 200.0,
        f.top + f.height + 50.0
    );
    s.push_str(&f.y_axis(
        1.0,
        4,
        |v| format!("{:.0}%", 100.0 * v),
        "share of decisions",
    ));
    let slice_w = f.width / SHARE_BUCKETS as f64;
    let mut empty = 0;
    for (b, row) in slices.counts.iter().enumerate() {
        let total: u64 = row.iter().sum();
        if total == 0 {
            empty += 1;
            continue;
        }
        let x = f.left + slice_w * b as f64;
        let mut below = 0.0;
        for (k, n) in row.iter().enumerate() {
            let share = *n as f64 / total as f64;
            if share > 0.0 {
                let _ = write!(
                    s,
                    "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/>",
                    f.y(below + share, 1.0),
                    slice_w,
                    f.height * share,
                    palette(k)
                );
            }
            below += share;
        }
    }
    // Time ticks at the slices' edges: five, first to last decision.
    let ticks = 4;
    for i in 0..=ticks {
        let x = f.left + f.width * i as f64 / ticks as f64;
        let t = slices.t0 + (slices.t1 - slices.t0) * i as i64 / ticks as i64;
        let anchor = match i {
            0 => "start",
            i if i == ticks => "end",
            _ => "middle",
        };
        let _ = write!(
            s,
            "<g class=\"tick\"><line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{b:.1}\" y2=\"{b5:.1}\" stroke=\"{AXIS}\"/>\
             <text x=\"{x:.1}\" y=\"{ty:.1}\" text-anchor=\"{anchor}\" font-size=\"11\" fill=\"{MUTED}\">{}</text></g>",
            tick_label(t, slices.t1 - slices.t0),
            b = f.top + f.height,
            b5 = f.top + f.height + 5.0,
            ty = f.top + f.height + 18.0
        );
    }
    s.push_str(&f.x_axis("time (UTC)"));
    for (k, name) in names.iter().enumerate() {
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{}\" font-size=\"12\" fill=\"{INK}\">{}</text>",
            f.left + f.width + 20.0,
            14 + 18 * k,
            palette(k),
            f.left + f.width + 37.0,
            25 + 18 * k,
            esc(name)
        );
    }
    s.push_str("</svg>");
    if empty > 0 {
        let _ = write!(
            s,
            "<p class=\"note\">{empty} of {SHARE_BUCKETS} slices had no decisions: they are left blank.</p>"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_steps_are_round() {
        assert_eq!(nice_step(0.2), 0.05);
        assert_eq!(nice_step(1.0), 0.5);
        assert!((nice_step(0.03) - 0.01).abs() < 1e-12);
    }

    #[test]
    fn small_rates_get_ticks_that_read_apart() {
        let mut a = crate::uplift::summary(
            crate::uplift::Arm::Bandit,
            crate::uplift::ArmCounts {
                decisions: 48,
                ..Default::default()
            },
            &crate::uplift::ClusterSums::default(),
        );
        a.rate.high = 0.001;
        let chart = rate_chart(&[("personalized", &a)]);
        assert!(
            chart.contains(">0.05%<") && chart.contains(">0.10%<"),
            "{chart}"
        );
    }

    #[test]
    fn empty_slices_are_gaps_not_drops_to_zero() {
        // Decisions at the start and the end only: the middle slices are empty.
        let times: Vec<(i64, usize)> = (0..10)
            .map(|i| (i, 0))
            .chain((0..10).map(|i| (1_000_000 + i, 1)))
            .collect();
        let slices = ShareSlices::new(&times, 2).expect("slices");
        let chart = share_chart(&slices, &["Coffee".into(), "Bagel".into()]);
        // One full-height bar per non-empty slice, none for the 18 empty ones.
        assert_eq!(chart.matches("<rect x=").count() - 2, 2, "{chart}");
        assert!(chart.contains("18 of 20 slices had no decisions"));
        assert!(chart.contains("x axis: time (UTC)") && chart.contains("1970-01-01 00:00:00"));
        assert!(chart.contains(">Bagel</text>"));
    }
}
