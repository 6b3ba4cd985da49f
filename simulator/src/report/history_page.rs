//! The `offer-sim history` report page: the verdict first, your sends vs
//! personalization vs your rule as bars with interval whiskers, the offers
//! each would send, what the numbers assume, support warnings, and every
//! estimator under "Advanced". Same shell and style as the compare report.

use std::fmt::Write as _;

use super::{
    axis::{Axis, Frame},
    format::{NA, esc, fixed, grouped, pct, signed},
    page::{PAGE_END, chart_section, page_head, verdict_header},
    style::{MUTED, palette},
    svg::{axes, labelled_text, line, rect, svg_open, text},
};
use crate::history::{Counterfactual, Figure, HistoryReport};

/// One bar of the comparison chart.
struct Bar {
    label: String,
    figure: Option<Figure>,
    colour: &'static str,
}

/// The complete, self-contained HTML page for a history verdict.
pub(crate) fn render_history_html(r: &HistoryReport) -> String {
    let title = std::path::Path::new(&r.file)
        .file_name()
        .map_or_else(|| r.file.clone(), |n| n.to_string_lossy().into_owned());
    let mut out = String::with_capacity(32 * 1024);
    out.push_str(&page_head("history", &title));
    out.push_str(&verdict_header("history", &title, &r.verdict, &evidence(r)));
    out.push_str(&figures_table(r));
    let bars = |f: &dyn Fn(&Counterfactual) -> Option<Figure>, yours: Option<Figure>| {
        let mut bars = vec![Bar {
            label: "Your sends".to_owned(),
            figure: yours,
            colour: palette(0),
        }];
        for (i, c) in policies(r).enumerate() {
            bars.push(Bar {
                label: label(&c.policy),
                figure: f(c),
                colour: palette(i + 1),
            });
        }
        bars
    };
    out.push_str(&chart_section(
        "Redemptions per 1,000 sends",
        "Bars are the estimates, whiskers their intervals (clipped to what is possible: 0 to 1,000).",
        &bar_chart(
            "Redemptions per 1,000 sends",
            &bars(
                &|c| c.redemptions_per_1000,
                Some(r.your_sends.redemptions_per_1000),
            ),
            Some(1000.0),
        ),
    ));
    if r.your_sends.value_per_1000.is_some() {
        out.push_str(&chart_section(
            "Value per 1,000 sends",
            "Value of the redemptions, as the file's value column gives it; whiskers are the intervals.",
            &bar_chart(
                "Value per 1,000 sends",
                &bars(&|c| c.value_per_1000, r.your_sends.value_per_1000),
                None,
            ),
        ));
    }
    out.push_str(&shares_table(r));
    out.push_str(&support_section(r));
    out.push_str(&assumptions_section(r));
    out.push_str("<h2>Advanced</h2>\n");
    out.push_str(&estimators_table(r));
    out.push_str(PAGE_END);
    out
}

/// How a policy is named on the page: a rules file as "Your rule (FILE)".
fn label(policy: &str) -> String {
    match policy.strip_prefix("rules:") {
        Some(path) => format!(
            "Your rule ({})",
            std::path::Path::new(path)
                .file_name()
                .map_or_else(|| path.to_owned(), |n| n.to_string_lossy().into_owned())
        ),
        None => policy.to_owned(),
    }
}

/// The personalization, then your rule when there is one.
fn policies(r: &HistoryReport) -> impl Iterator<Item = &Counterfactual> {
    std::iter::once(&r.personalization).chain(&r.your_rule)
}

/// Where the numbers come from.
fn evidence(r: &HistoryReport) -> String {
    let propensities = if r.propensities == serde_json::json!("logged") {
        "the probabilities each offer was sent with are the file's own"
    } else {
        "the probabilities each offer was sent with were estimated from the file (the file has none)"
    };
    format!(
        "Your own history: {} sends to {} customers in {}. What your sends earned is observed; what the others would have earned on the same customers is estimated from those sends (cross-fitted, doubly robust); {propensities}.",
        grouped(r.sends as f64, 0),
        grouped(r.customers as f64, 0),
        r.file
    )
}

/// "12.3 (interval 10.1 to 14.5)".
fn figure_text(f: Option<Figure>, digits: usize, sign: bool) -> String {
    let Some(f) = f.filter(|f| f.value.is_finite()) else {
        return "withheld".to_owned();
    };
    let n = |v: f64| {
        if sign {
            signed(v, digits)
        } else {
            grouped(v, digits)
        }
    };
    format!(
        "{}<span class=\"ci\">{} to {}</span>",
        n(f.value),
        n(f.low),
        n(f.high)
    )
}

/// The figures per 1,000 sends: earned, and gained over your sends.
fn figures_table(r: &HistoryReport) -> String {
    let mut out = format!(
        "<h2>Per 1,000 sends</h2>\n<p class=\"note\">Intervals: {}.</p>\n\
         <div class=\"card table-wrap\">\n<table>\n<thead>\n<tr><th>Who sends</th>\
         <th class=\"num\">Redemptions<span class=\"ci\">95% interval</span></th>\
         <th class=\"num\">Gain over your sends<span class=\"ci\">redemptions</span></th>\
         <th class=\"num\">Value<span class=\"ci\">95% interval</span></th>\
         <th class=\"num\">Gain over your sends<span class=\"ci\">value</span></th></tr>\n</thead>\n<tbody>\n",
        esc(r.interval)
    );
    let cell = |s: String| format!("<td class=\"num\">{s}</td>");
    let value_cell = |f: Option<Figure>, sign| {
        if r.your_sends.value_per_1000.is_none() {
            cell(NA.to_owned())
        } else {
            cell(figure_text(f, 0, sign))
        }
    };
    let _ = writeln!(
        out,
        "<tr class=\"baseline\"><td><span class=\"swatch\" style=\"background:{}\"></span><span class=\"policy\">Your sends</span></td>{}{}{}{}</tr>",
        palette(0),
        cell(figure_text(
            Some(r.your_sends.redemptions_per_1000),
            1,
            false
        )),
        cell("as made".to_owned()),
        value_cell(r.your_sends.value_per_1000, false),
        cell(if r.your_sends.value_per_1000.is_some() {
            "as made".to_owned()
        } else {
            NA.to_owned()
        }),
    );
    for (i, c) in policies(r).enumerate() {
        let _ = writeln!(
            out,
            "<tr><td><span class=\"swatch\" style=\"background:{}\"></span><span class=\"policy\">{}</span></td>{}{}{}{}</tr>",
            palette(i + 1),
            esc(&label(&c.policy)),
            cell(figure_text(c.redemptions_per_1000, 1, false)),
            cell(figure_text(c.gain_redemptions_per_1000, 1, true)),
            value_cell(c.value_per_1000, false),
            value_cell(c.gain_value_per_1000, true),
        );
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
    out
}

/// A vertical bar chart with interval whiskers; values and whiskers are
/// clipped to `[0, max]` (`max` when given).
fn bar_chart(title: &str, bars: &[Bar], max: Option<f64>) -> String {
    let frame = Frame {
        width: 720.0,
        height: 340.0,
        left: 72.0,
        right: 24.0,
        top: 48.0,
        bottom: 64.0,
    };
    let clip = |v: f64| {
        let v = v.max(0.0);
        max.map_or(v, |m| v.min(m))
    };
    let highs = bars
        .iter()
        .filter_map(|b| b.figure)
        .flat_map(|f| [f.value, f.high])
        .filter(|v| v.is_finite())
        .map(clip);
    let y = Axis::new(highs, true, 5);
    let mut x = Axis::new([0.0, 1.0], true, 1);
    x.ticks.clear();
    let mut out = svg_open(frame.width, frame.height, title);
    out.push_str(&axes(&frame, &x, &y, "", title));
    let slot = (frame.x1() - frame.x0()) / bars.len().max(1) as f64;
    let small = format!(" font-size=\"11\" fill=\"{MUTED}\"");
    for (i, b) in bars.iter().enumerate() {
        let mid = frame.x0() + (i as f64 + 0.5) * slot;
        let width = (slot * 0.45).min(120.0);
        let chars = (slot / 7.0) as usize;
        out.push_str(&labelled_text(
            mid,
            frame.y_bottom() + 20.0,
            "middle",
            "",
            &b.label,
            chars.max(8),
        ));
        let Some(f) = b.figure.filter(|f| f.value.is_finite()) else {
            out.push_str(&text(
                mid,
                frame.y_bottom() - 8.0,
                "middle",
                &small,
                "withheld: no support",
            ));
            continue;
        };
        let (value, low, high) = (clip(f.value), clip(f.low), clip(f.high));
        let top = frame.y(&y, value);
        out.push_str(&format!(
            "<g class=\"bar\" data-label=\"{}\">\n",
            esc(&b.label)
        ));
        out.push_str(&rect(
            mid - width / 2.0,
            top,
            width,
            frame.y_bottom() - top,
            b.colour,
            " rx=\"2\"",
        ));
        let (y_low, y_high) = (frame.y(&y, low), frame.y(&y, high));
        let whisker = " stroke-width=\"1.5\"";
        out.push_str(&line(mid, y_low, mid, y_high, "#111827", whisker));
        for yy in [y_low, y_high] {
            out.push_str(&line(mid - 8.0, yy, mid + 8.0, yy, "#111827", whisker));
        }
        out.push_str(&text(
            mid + width / 2.0 + 4.0,
            top + 4.0,
            "start",
            "",
            &fixed(value, 1),
        ));
        out.push_str("</g>\n");
    }
    out.push_str("</svg>");
    out
}

/// The share of sends each offer got, and would get from each policy.
fn shares_table(r: &HistoryReport) -> String {
    let mut out = String::from(
        "<h2>Offers each would send</h2>\n<p class=\"note\">Share of the sends per offer: \
         yours as made, and the policies' over the same customers.</p>\n\
         <div class=\"card table-wrap\">\n<table>\n<thead>\n<tr><th>Offer</th><th class=\"num\">Your sends</th>",
    );
    for c in policies(r) {
        let _ = write!(out, "<th class=\"num\">{}</th>", esc(&label(&c.policy)));
    }
    out.push_str("</tr>\n</thead>\n<tbody>\n");
    let bar = |share: Option<&f64>, colour: &str| -> String {
        let Some(&s) = share.filter(|s| s.is_finite()) else {
            return format!("<td class=\"num\">{NA}</td>");
        };
        format!(
            "<td class=\"num\">{}<span class=\"ci\"><span class=\"swatch\" style=\"background:{colour};width:{}px\"></span></span></td>",
            pct(s, 0),
            fixed(80.0 * s.clamp(0.0, 1.0), 1)
        )
    };
    for (k, offer) in r.offers.iter().enumerate() {
        let _ = write!(
            out,
            "<tr><td>{}</td>{}",
            esc(offer),
            bar(r.sent_share.get(k), palette(0))
        );
        for (i, c) in policies(r).enumerate() {
            out.push_str(&bar(c.offer_share.get(k), palette(i + 1)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
    out
}

/// Where a policy would send offers your sends (almost) never made.
fn support_section(r: &HistoryReport) -> String {
    let mut out =
        String::from("<h2>Support</h2>\n<section class=\"card\">\n<ul class=\"plain\">\n");
    for c in policies(r) {
        let share = pct(c.unsupported_share, 1);
        let line = if c.withheld {
            format!(
                "{}: about {share} of its choices go to offers your sends (almost) never made for such customers, so its figures are withheld. Send a random offer to a small share of customers (5-10%) for a few weeks to learn them.",
                label(&c.policy)
            )
        } else {
            format!(
                "{}: {share} of its choices go where your sends (almost) never went; small enough to estimate.",
                label(&c.policy)
            )
        };
        let _ = writeln!(out, "<li>{}</li>", esc(&line));
    }
    out.push_str("</ul>\n</section>\n");
    out
}

/// What the figures assume.
fn assumptions_section(r: &HistoryReport) -> String {
    let mut out = String::from(
        "<h2>What this assumes</h2>\n<section class=\"card\">\n<ul class=\"plain\">\n",
    );
    for a in &r.assumptions {
        let _ = writeln!(out, "<li>{}</li>", esc(a));
    }
    out.push_str("</ul>\n</section>\n");
    out
}

/// Every off-policy estimator of each policy, per 1,000 sends.
fn estimators_table(r: &HistoryReport) -> String {
    let mut out = String::from(
        "<h3>Every estimator</h3>\n<p class=\"note\">Redemptions per 1,000 sends by each off-policy \
         estimator, with its own interval (bootstrap or normal, one look), the effective sample \
         size of its weights and its warnings. The figures above are the doubly robust one with \
         intervals clustered by customer and valid at any look.</p>\n\
         <div class=\"card table-wrap\">\n<table>\n<thead>\n<tr><th>Policy</th><th>Estimator</th>\
         <th class=\"num\">Redemptions per 1,000<span class=\"ci\">interval</span></th>\
         <th class=\"num\">Effective sample size</th><th>Warnings</th></tr>\n</thead>\n<tbody>\n",
    );
    for c in policies(r) {
        for e in &c.estimators {
            let estimate = if e.withheld || !e.estimate.is_finite() {
                "withheld".to_owned()
            } else {
                format!(
                    "{}<span class=\"ci\">{} to {}</span>",
                    fixed((1000.0 * e.estimate).clamp(0.0, 1000.0), 1),
                    fixed((1000.0 * e.ci_low).clamp(0.0, 1000.0), 1),
                    fixed((1000.0 * e.ci_high).clamp(0.0, 1000.0), 1)
                )
            };
            let _ = writeln!(
                out,
                "<tr><td><span class=\"policy\">{}</span></td><td>{}</td><td class=\"num\">{estimate}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                esc(&label(&c.policy)),
                esc(&e.estimator),
                grouped(e.effective_sample_size, 0),
                esc(&e.warnings.join(" "))
            );
        }
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whiskers and bars stay within what is possible: an interval reaching
    /// past 1,000 redemptions per 1,000 sends (or below 0) is cut there.
    #[test]
    fn bars_and_whiskers_are_clipped_to_what_is_possible() {
        let bars = [
            Bar {
                label: "Your sends".to_owned(),
                figure: Some(Figure {
                    value: 990.0,
                    low: 950.0,
                    high: 1040.0,
                }),
                colour: palette(0),
            },
            Bar {
                label: "logistic-ts".to_owned(),
                figure: Some(Figure {
                    value: 3.0,
                    low: -4.0,
                    high: 9.0,
                }),
                colour: palette(1),
            },
            Bar {
                label: "withheld".to_owned(),
                figure: None,
                colour: palette(2),
            },
        ];
        let svg = bar_chart("Redemptions per 1,000 sends", &bars, Some(1000.0));
        assert!(svg.contains(">1,000<"), "{svg}");
        assert!(!svg.contains("1,040") && !svg.contains("1,200"), "{svg}");
        assert!(svg.contains(">990.0<") && svg.contains("withheld: no support"));
        // Every y coordinate lies inside the plot (top 48, bottom 276).
        for y in svg
            .split(" y1=\"")
            .skip(1)
            .chain(svg.split(" y2=\"").skip(1))
        {
            let v: f64 = y
                .split('"')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN);
            assert!(
                (48.0..=276.0).contains(&v) || v > 276.0 && v <= 281.0,
                "{v}"
            );
        }
        assert!(!svg.contains("NaN") && !svg.contains("-0"));
        assert_eq!(label("rules:/a/b/today.rules"), "Your rule (today.rules)");
    }
}
