//! The read-only web dashboard, served beside `/metrics`: an index of the
//! campaigns and one page per campaign with its report (bandit against
//! control, offers) and SVG charts (redemption rate by arm, offer share
//! over time). Plain HTML, no scripts. Who may see it, and under which
//! `Host`, is [`crate::web`]'s business.

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;

use crate::{
    decision::now_ms,
    engine::{CampaignReport, Engine, FeaturePrior, LearnedPrior},
    policy::shared_prior::{FIRST_ESTIMATE, MIN_VARIANCE, variances_estimated},
    uplift::{ArmSummary, Estimate},
};

/// How far back the offer-share chart looks, and how many records it reads.
const SHARE_WINDOW_MS: i64 = 7 * 86_400_000;
const SHARE_MAX_RECORDS: usize = 100_000;
const SHARE_BUCKETS: usize = 20;
/// How long a campaign's offer-share chart is reused: it reads up to
/// [`SHARE_MAX_RECORDS`] decision records, too many for every page view.
pub const CHART_TTL: Duration = Duration::from_secs(10);
const COLORS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}}\
         th:first-child,td:first-child{{text-align:left}}.note{{color:#666}}</style></head>\
         <body>{body}</body></html>",
        t = esc(title)
    )
}

/// The dashboard's pages over an engine, with each campaign's offer-share
/// chart cached for [`CHART_TTL`].
#[derive(Debug)]
pub struct Dashboard {
    engine: Arc<Engine>,
    /// Per campaign (only campaigns that exist get an entry): the chart and
    /// when it was drawn. The entry's lock is held while a chart is drawn,
    /// so that concurrent views of a campaign read the log once.
    charts: Mutex<HashMap<String, Arc<Mutex<Option<Chart>>>>>,
}

/// A drawn offer-share chart and when it was drawn.
type Chart = (Instant, String);

impl Dashboard {
    /// The dashboard of `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        Dashboard {
            engine,
            charts: Mutex::new(HashMap::new()),
        }
    }

    /// The index page.
    pub fn index(&self) -> String {
        index(&self.engine)
    }

    /// The page of one campaign; `None` for an unknown campaign. Reads the
    /// decision log at most once per campaign per [`CHART_TTL`]: call it
    /// off the async threads.
    pub fn campaign(&self, id: &str) -> Option<String> {
        campaign_page(&self.engine, id, |r| self.share_chart(r))
    }

    fn share_chart(&self, r: &CampaignReport) -> String {
        let entry = self
            .charts
            .lock()
            .entry(r.campaign.clone())
            .or_default()
            .clone();
        let mut cached = entry.lock();
        if let Some((drawn, chart)) = cached.as_ref()
            && drawn.elapsed() < CHART_TTL
        {
            return chart.clone();
        }
        let chart = share_chart(&self.engine, r);
        *cached = Some((Instant::now(), chart.clone()));
        chart
    }
}

/// The index page: every served campaign.
pub fn index(engine: &Engine) -> String {
    let mut b = String::from("<h1>offer-bandit</h1><ul>");
    for c in engine.campaigns().into_iter().filter(|c| c.active) {
        let id = esc(&c.config.id);
        let _ = write!(
            b,
            "<li><a href=\"/campaigns/{id}\">{id}</a> ({})</li>",
            c.config.policy.as_str()
        );
    }
    b.push_str("</ul>");
    page("offer-bandit", &b)
}

fn pct(e: &Estimate) -> String {
    format!(
        "{:.2}% <span class=\"note\">[{:.2}, {:.2}]</span>",
        100.0 * e.value,
        100.0 * e.low,
        100.0 * e.high
    )
}

fn arm_row(a: &ArmSummary) -> String {
    format!(
        "<tr data-arm=\"{arm}\"><td>{arm}</td><td class=\"decisions\">{}</td><td class=\"redemptions\">{}</td>\
         <td>{}</td><td>{}</td><td>{:.1} <span class=\"note\">[{:.1}, {:.1}]</span></td></tr>",
        a.counts.decisions,
        a.counts.redemptions,
        a.counts.pending(),
        pct(&a.rate),
        a.value_per_1000.value,
        a.value_per_1000.low,
        a.value_per_1000.high,
        arm = a.arm.as_str()
    )
}

/// Bars of the two arms' redemption rates with their 95% intervals.
fn rate_chart(r: &CampaignReport) -> String {
    let arms = [&r.bandit, &r.control];
    let top = arms.iter().map(|a| a.rate.high).fold(0.01f64, f64::max) * 1.1;
    let (w, h) = (360.0, 200.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" role=\"img\" aria-label=\"redemption rate by arm\">",
        h + 40.0
    );
    for (i, a) in arms.iter().enumerate() {
        let x = 60.0 + i as f64 * 150.0;
        let y = |v: f64| h - (v / top) * h + 10.0;
        let _ = write!(
            s,
            "<rect x=\"{x}\" y=\"{:.1}\" width=\"80\" height=\"{:.1}\" fill=\"{}\"/>\
             <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#000\"/>\
             <text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{} {:.2}%</text>",
            y(a.rate.value),
            h + 10.0 - y(a.rate.value),
            COLORS[i],
            x + 40.0,
            x + 40.0,
            y(a.rate.low.max(0.0)),
            y(a.rate.high),
            x + 40.0,
            h + 30.0,
            a.arm.as_str(),
            100.0 * a.rate.value
        );
    }
    s.push_str("</svg>");
    s
}

/// Stacked areas of each offer's share of decisions over time.
fn share_chart(engine: &Engine, r: &CampaignReport) -> String {
    let offers: Vec<&str> = r.offers.iter().map(|o| o.offer_id.as_str()).collect();
    let now = now_ms();
    let mut times = Vec::new();
    let _ = engine.export(&r.campaign, now - SHARE_WINDOW_MS, i64::MAX, |_, rec| {
        if let Some(k) = offers.iter().position(|o| *o == rec.offer) {
            times.push((rec.created_ms, k));
        }
        times.len() < SHARE_MAX_RECORDS
    });
    if times.len() < SHARE_BUCKETS {
        return "<p class=\"note\">Not enough decisions in the last 7 days for a chart.</p>".into();
    }
    let (t0, t1) = (times[0].0, times[times.len() - 1].0.max(times[0].0 + 1));
    let mut counts = vec![vec![0u64; offers.len()]; SHARE_BUCKETS];
    for (t, k) in &times {
        let b = (((t - t0) as f64 / (t1 - t0) as f64) * SHARE_BUCKETS as f64) as usize;
        counts[b.min(SHARE_BUCKETS - 1)][*k] += 1;
    }
    let (w, h) = (700.0, 240.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"offer share over time\">",
        w + 180.0,
        h + 30.0
    );
    let mut below = vec![0.0f64; SHARE_BUCKETS];
    for (k, offer) in offers.iter().enumerate() {
        let mut top = Vec::with_capacity(SHARE_BUCKETS);
        for (b, row) in counts.iter().enumerate() {
            let total: u64 = row.iter().sum();
            let share = if total > 0 {
                row[k] as f64 / total as f64
            } else {
                0.0
            };
            top.push(below[b] + share);
        }
        let x = |b: usize| 10.0 + w * b as f64 / (SHARE_BUCKETS - 1) as f64;
        let y = |v: f64| 10.0 + h * (1.0 - v);
        let mut pts: Vec<String> = (0..SHARE_BUCKETS)
            .map(|b| format!("{:.1},{:.1}", x(b), y(top[b])))
            .collect();
        pts.extend(
            (0..SHARE_BUCKETS)
                .rev()
                .map(|b| format!("{:.1},{:.1}", x(b), y(below[b]))),
        );
        let color = COLORS[k % COLORS.len()];
        let _ = write!(
            s,
            "<polygon points=\"{}\" fill=\"{color}\" fill-opacity=\"0.8\"/>\
             <rect x=\"{:.1}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{}\">{}</text>",
            pts.join(" "),
            w + 25.0,
            14 + 18 * k,
            w + 42.0,
            25 + 18 * k,
            esc(offer)
        );
        below = top;
    }
    s.push_str("</svg>");
    let when = |ms: i64| {
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
        )
        .to_string()
    };
    let _ = write!(
        s,
        "<p class=\"note\">{} decisions from {} to {} (UTC), in {SHARE_BUCKETS} equal slices of time.</p>",
        times.len(),
        when(t0),
        when(t1)
    );
    s
}

/// The page of one campaign; `None` for an unknown campaign. Reads the
/// decision log for the offer-share chart: see [`Dashboard::campaign`] for
/// a cached one.
pub fn campaign(engine: &Engine, id: &str) -> Option<String> {
    campaign_page(engine, id, |r| share_chart(engine, r))
}

fn campaign_page(
    engine: &Engine,
    id: &str,
    chart: impl FnOnce(&CampaignReport) -> String,
) -> Option<String> {
    let r = engine.report(id).ok()?;
    let mut b = format!(
        "<p><a href=\"/\">all campaigns</a></p><h1>{}</h1>\
         <p class=\"note\">Control share {:.0}%. Rates count decisions still inside their \
         reward window as not redeemed yet, in both arms alike. Intervals are 95%.</p>\
         <h2>Bandit against control</h2><table id=\"arms\"><tr><th>arm</th><th>decisions</th>\
         <th>redeemed</th><th>pending</th><th>redemption rate</th><th>value per 1,000</th></tr>{}{}</table>",
        esc(&r.campaign),
        100.0 * r.control_share,
        arm_row(&r.bandit),
        arm_row(&r.control)
    );
    match &r.uplift {
        Some(u) => {
            let _ = write!(
                b,
                "<p id=\"uplift\"><b>Uplift:</b> {} points of redemption rate; {:.1} \
                 <span class=\"note\">[{:.1}, {:.1}]</span> value per 1,000 decisions.</p>",
                pct(&u.rate_difference),
                u.value_per_1000_difference.value,
                u.value_per_1000_difference.low,
                u.value_per_1000_difference.high
            );
        }
        None => b.push_str("<p id=\"uplift\">Uplift: not yet (an arm has no decisions).</p>"),
    }
    b.push_str(&rate_chart(&r));
    b.push_str("<h2>Offers</h2><table id=\"offers\"><tr><th>offer</th><th>decisions</th><th>share</th><th>redeemed</th><th>posterior rate</th></tr>");
    for o in &r.offers {
        let _ = write!(
            b,
            "<tr data-offer=\"{id}\"><td>{id}</td><td class=\"decisions\">{}</td><td>{:.1}%</td><td class=\"redemptions\">{}</td><td>{}</td></tr>",
            o.counts.trials,
            100.0 * o.share,
            o.counts.successes,
            pct(&Estimate {
                value: o.posterior_mean,
                low: o.posterior_low,
                high: o.posterior_high
            }),
            id = esc(&o.offer_id)
        );
    }
    b.push_str("</table>");
    if let Ok(prior) = engine.learned_prior(id) {
        b.push_str(&learned_prior(&prior));
    }
    b.push_str("<h2>Offer share over time (last 7 days)</h2>");
    b.push_str(&chart(&r));
    Some(page(&format!("{id} - offer-bandit"), &b))
}

/// A contextual campaign's learned prior: how far each feature group's
/// weights may go, largest first. Empty when the campaign has none.
fn learned_prior(prior: &LearnedPrior) -> String {
    if prior.groups.is_empty() {
        // Offer features without context features: only their own effects.
        return offer_effects(prior);
    }
    let start = prior.rate.map_or(String::new(), |r| {
        format!(
            "<p id=\"prior-rate\">New and untried offers start at a rate of {:.2}%, the campaign's so far.</p>",
            100.0 * r
        )
    });
    if !variances_estimated(prior.events) {
        return format!(
            "<h2>What the model found matters</h2><p id=\"priors\" class=\"note\">Not estimated \
             yet: the learned prior's first estimate comes after {FIRST_ESTIMATE} learning events \
             ({} so far).</p>{start}",
            prior.events
        );
    }
    let mut groups: Vec<&FeaturePrior> = prior.groups.iter().collect();
    groups.sort_by(|a, b| b.prior_variance.total_cmp(&a.prior_variance));
    let widest = groups.first().map_or(1.0, |g| g.prior_variance.sqrt());
    let mut b = format!(
        "<h2>What the model found matters</h2><p class=\"note\">The learned prior, after {} \
         learning events: the prior variance of each feature group's weights, shared by every \
         offer. Near {MIN_VARIANCE}, a feature says nothing about redemption; the bar is its \
         prior standard deviation, relative to the largest.</p><table id=\"priors\"><tr><th>feature</th>\
         <th>part</th><th>prior variance</th><th></th></tr>",
        prior.events
    );
    for g in groups {
        let width = 200.0 * g.prior_variance.sqrt() / widest;
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{:.4}</td><td style=\"text-align:left\">\
             <svg width=\"200\" height=\"10\" role=\"img\"><rect width=\"{width:.1}\" height=\"10\" \
             fill=\"{}\"/></svg></td></tr>",
            esc(&g.feature),
            esc(&g.part),
            g.prior_variance,
            COLORS[0]
        );
    }
    b.push_str("</table>");
    b.push_str(&start);
    b.push_str(&offer_effects(prior));
    b
}

/// With offer features: what they learned to do, largest first.
fn offer_effects(prior: &LearnedPrior) -> String {
    if prior.offer_effects.is_empty() {
        return String::new();
    }
    let mut b = String::from(
        "<h2>What offers' features do</h2><p class=\"note\">Learned across the offers that \
         share a feature: how much it moves an offer's prior score in a context (log-odds for \
         logistic-ts, the modelled rate for linear-ts). A new offer starts from these.</p>\
         <table id=\"offer-effects\"><tr><th>offer feature</th><th>context</th><th>effect</th></tr>",
    );
    for e in &prior.offer_effects {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{:+.3}</td></tr>",
            esc(&e.offer_feature),
            esc(&e.context),
            e.effect
        );
    }
    b.push_str("</table>");
    b
}
