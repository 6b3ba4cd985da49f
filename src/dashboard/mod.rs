//! The read-only web dashboard, served beside `/metrics`: an index of the
//! campaigns and one page per campaign, in a marketer's words: a verdict
//! line (personalization against the control group), the groups, offers by
//! name with their budgets and pacing, and SVG charts with labelled axes
//! (redemption rate by group, offer share over time). Plain HTML, no
//! scripts; it reloads itself every 30 s unless asked not to
//! (`?refresh=off`). Who may see it, and under which `Host`, is
//! [`crate::web`]'s business.

mod charts;

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;

use crate::{
    budget::PACING_SLACK,
    config::OfferConfig,
    engine::{CampaignReport, Engine, FeaturePrior, LearnedPrior, OfferReport, PacingReport},
    palette::{FONT, INK, MUTED, palette},
    policy::shared_prior::{FIRST_ESTIMATE, MIN_VARIANCE, variances_estimated},
    uplift::{Arm, ArmSummary, Estimate},
};

/// How far back the offer-share chart looks, and how many records it reads.
const SHARE_WINDOW_MS: i64 = 7 * 86_400_000;
const SHARE_MAX_RECORDS: usize = 100_000;
/// How long a campaign's offer-share chart is reused: it reads up to
/// [`SHARE_MAX_RECORDS`] decision records, too many for every page view.
pub(crate) const CHART_TTL: Duration = Duration::from_secs(10);
/// How often a page reloads itself, unless its address says `refresh=off`.
pub(crate) const REFRESH_SECS: u32 = 30;

/// Whether a page reloads itself every [`REFRESH_SECS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// It does (the default).
    On,
    /// It does not: the address's query string has `refresh=off`.
    Off,
}

impl Refresh {
    /// From a request's query string (the part after `?`, if any).
    pub(crate) fn from_query(query: Option<&str>) -> Refresh {
        let off = query.is_some_and(|q| {
            q.split('&')
                .any(|kv| matches!(kv, "refresh=off" | "refresh=0" | "refresh=false"))
        });
        if off { Refresh::Off } else { Refresh::On }
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, body: &str, refresh: Refresh) -> String {
    let (meta, note) = match refresh {
        Refresh::On => (
            format!("<meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">"),
            format!(
                "<p class=\"note\" id=\"refresh\">This page reloads every {REFRESH_SECS} s \
                 (<a href=\"?refresh=off\">stop</a>).</p>"
            ),
        ),
        Refresh::Off => (
            String::new(),
            "<p class=\"note\" id=\"refresh\">Not reloading (<a href=\"?\">reload every 30 s</a>).</p>"
                .to_owned(),
        ),
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\">{meta}<title>{t}</title>\
         <style>body{{font-family:{FONT};color:{INK};margin:2em;max-width:1100px}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}}\
         th:first-child,td:first-child{{text-align:left}}.note{{color:{MUTED}}}</style></head>\
         <body>{body}{note}</body></html>",
        t = esc(title)
    )
}

/// The dashboard's pages over an engine, with each campaign's offer-share
/// chart cached for [`CHART_TTL`].
#[derive(Debug)]
pub(crate) struct Dashboard {
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
    pub(crate) fn new(engine: Arc<Engine>) -> Self {
        Dashboard {
            engine,
            charts: Mutex::new(HashMap::new()),
        }
    }

    /// The index page.
    pub(crate) fn index(&self, refresh: Refresh) -> String {
        index(&self.engine, refresh)
    }

    /// The page of one campaign; `None` for an unknown campaign. Reads the
    /// decision log at most once per campaign per [`CHART_TTL`]: call it
    /// off the async threads.
    pub(crate) fn campaign(&self, id: &str, refresh: Refresh) -> Option<String> {
        campaign_page(&self.engine, id, refresh, |r| self.share_chart(r))
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
pub(crate) fn index(engine: &Engine, refresh: Refresh) -> String {
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
    page("offer-bandit", &b, refresh)
}

fn pct(e: &Estimate) -> String {
    format!(
        "{:.2}% <span class=\"note\">[{:.2}, {:.2}]</span>",
        100.0 * e.value,
        100.0 * e.low,
        100.0 * e.high
    )
}

/// What the page calls each arm.
fn arm_label(arm: Arm) -> &'static str {
    match arm {
        Arm::Bandit => "personalized",
        Arm::Control => "control group",
        Arm::Fallback => "fallback (shown while the service was unreachable)",
        Arm::NonPersonalized => "not personalized (no consent)",
    }
}

fn arm_row(a: &ArmSummary) -> String {
    format!(
        "<tr data-arm=\"{arm}\"><td>{label}</td><td class=\"decisions\">{}</td><td class=\"redemptions\">{}</td>\
         <td>{}</td><td class=\"closed\">{:.0}</td><td class=\"customers\">{}</td>\
         <td>{}</td><td>{:.1} <span class=\"note\">[{:.1}, {:.1}]</span></td></tr>",
        a.counts.decisions,
        a.counts.redemptions,
        a.counts.pending(),
        a.closed.decisions,
        a.closed.clusters,
        pct(&a.rate),
        a.value_per_1000.value,
        a.value_per_1000.low,
        a.value_per_1000.high,
        arm = a.arm.as_str(),
        label = arm_label(a.arm)
    )
}

fn arm_table(id: &str, arms: &[&ArmSummary]) -> String {
    let mut b = format!(
        "<table id=\"{id}\"><tr><th>group</th><th>visits</th><th>redeemed</th>\
         <th>window still open</th><th>window closed</th><th>customers</th>\
         <th>redemption rate</th><th>value per 1,000 visits</th></tr>"
    );
    for a in arms {
        b.push_str(&arm_row(a));
    }
    b.push_str("</table>");
    b
}

/// The verdict line: personalization against the control group, in
/// redemptions per 1,000 visits, relative, and whether it is beyond chance.
fn verdict(r: &CampaignReport) -> String {
    let Some(u) = &r.uplift else {
        return "<p id=\"verdict\"><b>No verdict yet:</b> personalization and the control group \
                both need visits whose redemption window has closed first.</p>"
            .into();
    };
    let d = &u.rate_difference;
    let per_1000 = |v: f64| 1000.0 * v;
    let relative = u.rate_relative.map_or(String::new(), |rel| {
        format!(
            "; {:+.1}% relative <span class=\"note\">({:+.1}% to {:+.1}%)</span>",
            100.0 * rel.value,
            100.0 * rel.low,
            100.0 * rel.high
        )
    });
    let conclusion = if d.low > 0.0 {
        "Personalization does better than the control group, beyond chance."
    } else if d.high < 0.0 {
        "Personalization does worse than the control group, beyond chance."
    } else {
        "Not yet distinguishable from no difference: the interval includes zero."
    };
    let v = &u.value_per_1000_difference;
    format!(
        "<p id=\"verdict\"><b>Personalization earns {:+.1} redemptions per 1,000 visits over the \
         control group</b> <span class=\"note\">(95% interval {:+.1} to {:+.1})</span>{relative}, \
         and {:+.1} in value per 1,000 visits <span class=\"note\">({:+.1} to {:+.1})</span>. \
         {conclusion}</p>",
        per_1000(d.value),
        per_1000(d.low),
        per_1000(d.high),
        v.value,
        v.low,
        v.high
    )
}

/// Each offer's display name (its id when it has none), by offer id.
fn offer_names(engine: &Engine, id: &str) -> HashMap<String, String> {
    engine.campaign(id).map_or_else(
        |_| HashMap::new(),
        |c| {
            c.config
                .offers
                .iter()
                .map(|o| {
                    let name = if o.name.is_empty() { &o.id } else { &o.name };
                    (o.id.clone(), name.clone())
                })
                .collect()
        },
    )
}

fn name_of<'a>(names: &'a HashMap<String, String>, offer_id: &'a str) -> &'a str {
    names.get(offer_id).map_or(offer_id, String::as_str)
}

/// `left of cap`, or "none" without a cap.
fn left(left: Option<u64>, cap: Option<u64>) -> String {
    match (left, cap) {
        (Some(l), Some(c)) => format!("{l} of {c}"),
        _ => "none".into(),
    }
}

/// One row of the budget table: lifetime and daily budgets left, what
/// pacing allows by now, and whether the offer may be chosen (as the
/// report says).
fn budget_row(o: &OfferReport, cfg: &OfferConfig, name: &str) -> String {
    let paced = |allowed: Option<u64>, cap: Option<u64>, what: &str| {
        Some(format!("{} of {} {what}", allowed?, cap?))
    };
    let allowance: Vec<String> = [
        paced(
            o.decisions_allowed_by_now,
            cfg.max_decisions_per_day,
            "visits",
        ),
        paced(
            o.redemptions_allowed_by_now,
            cfg.max_redemptions_per_day,
            "redemptions",
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    format!(
        "<tr data-budget=\"{id}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
         <td>{}</td><td class=\"status\">{}</td><td class=\"note\">{}</td></tr>",
        esc(name),
        left(o.decisions_left, cfg.max_decisions),
        left(o.redemptions_left, cfg.max_redemptions),
        left(o.decisions_left_today, cfg.max_decisions_per_day),
        left(o.redemptions_left_today, cfg.max_redemptions_per_day),
        if allowance.is_empty() {
            "none".into()
        } else {
            allowance.join(", ")
        },
        o.budget_status.label(),
        esc(o.budget_status.why()),
        id = esc(&o.offer_id)
    )
}

/// The pacing line: the campaign's local time, how much of its day's
/// expected traffic is gone, and what that expectation is.
fn pacing_line(p: &PacingReport) -> String {
    format!(
        "<p id=\"pacing\" class=\"note\">Daily budgets follow the campaign's day in {zone}: \
         it is <b class=\"local-time\">{time}</b>, and {gone:.0}% of the day's expected visits \
         are gone (visits by hour: {profile}). By now an offer may use that share of a daily \
         budget plus {slack:.0}%. <i>paced</i>: it waits for the allowance to grow; \
         <i>spent</i>: a lifetime budget is used up.</p>",
        zone = esc(&p.time_zone),
        time = esc(&p.local_time),
        gone = 100.0 * p.day_gone,
        profile = esc(&p.profile),
        slack = 100.0 * PACING_SLACK,
    )
}

/// Every configured offer's budgets and pacing; empty when none has one.
fn budgets(engine: &Engine, r: &CampaignReport, names: &HashMap<String, String>) -> String {
    let Ok(campaign) = engine.campaign(&r.campaign) else {
        return String::new();
    };
    let budgeted = |c: &OfferConfig| {
        c.max_decisions.is_some()
            || c.max_redemptions.is_some()
            || c.max_decisions_per_day.is_some()
            || c.max_redemptions_per_day.is_some()
    };
    if !campaign.config.offers.iter().any(budgeted) {
        return "<h2>Budgets</h2><p id=\"budgets\" class=\"note\">No offer has a budget.</p>"
            .into();
    }
    let mut b = format!("<h2>Budgets</h2>{}", pacing_line(&r.pacing));
    b.push_str(
        "<table id=\"budgets\"><tr><th>offer</th><th>visits left</th><th>redemptions left</th>\
         <th>visits left today</th><th>redemptions left today</th><th>paced allowance now</th>\
         <th>status</th><th></th></tr>",
    );
    for o in &r.offers {
        if let Some(cfg) = campaign.config.offers.iter().find(|c| c.id == o.offer_id) {
            b.push_str(&budget_row(o, cfg, name_of(names, &o.offer_id)));
        }
    }
    b.push_str("</table>");
    b
}

/// Each offer's share of decisions over the last 7 days, by name.
fn share_chart(engine: &Engine, r: &CampaignReport) -> String {
    let names = offer_names(engine, &r.campaign);
    let offers: Vec<&str> = r.offers.iter().map(|o| o.offer_id.as_str()).collect();
    let now = engine.now_ms();
    let mut times = Vec::new();
    let _ = engine.export(&r.campaign, now - SHARE_WINDOW_MS, i64::MAX, |_, rec| {
        if let Some(k) = offers.iter().position(|o| *o == rec.offer) {
            times.push((rec.created_ms, k));
        }
        times.len() < SHARE_MAX_RECORDS
    });
    if times.len() < charts::SHARE_BUCKETS {
        return "<p class=\"note\">Not enough decisions in the last 7 days for a chart.</p>".into();
    }
    let Some(slices) = charts::ShareSlices::new(&times, offers.len()) else {
        return String::new();
    };
    let labels: Vec<String> = offers
        .iter()
        .map(|o| name_of(&names, o).to_owned())
        .collect();
    let mut s = charts::share_chart(&slices, &labels);
    let when = |ms: i64| {
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64),
        )
        .to_string()
    };
    let _ = write!(
        s,
        "<p class=\"note\">{} decisions from {} to {} (UTC), in {} equal slices of time.</p>",
        times.len(),
        when(slices.t0),
        when(slices.t1),
        charts::SHARE_BUCKETS
    );
    s
}

fn campaign_page(
    engine: &Engine,
    id: &str,
    refresh: Refresh,
    chart: impl FnOnce(&CampaignReport) -> String,
) -> Option<String> {
    let r = engine.report(id).ok()?;
    let names = offer_names(engine, id);
    let mut b = format!(
        "<p><a href=\"/\">all campaigns</a></p><h1>{}</h1>{}\
         <p class=\"note\">A visit is one offer chosen for a customer. {:.0}% of visits go to the \
         control group, which gets offers without personalization. Rates, values and the verdict \
         count the visits whose redemption window has closed, redeemed or not; a visit still \
         inside its window joins them when it closes. <span id=\"any-look\">Intervals are 95%, \
         clustered by customer (a customer's visits count together), and stay valid at any look: \
         check the page as often as you like.</span></p>\
         <h2>Personalization against the control group</h2>{}",
        esc(&r.campaign),
        verdict(&r),
        100.0 * r.control_share,
        arm_table("arms", &[&r.bandit, &r.control])
    );
    b.push_str(&charts::rate_chart(&[
        (arm_label(Arm::Bandit), &r.bandit),
        (arm_label(Arm::Control), &r.control),
    ]));
    b.push_str(
        "<h2>Outside the comparison</h2><p class=\"note\">These visits are in neither group: \
         who ends up here is not random, so they say nothing about personalization.</p>",
    );
    b.push_str(&arm_table(
        "other-arms",
        &[&r.fallback, &r.non_personalized],
    ));
    b.push_str(
        "<h2>Offers</h2><table id=\"offers\"><tr><th>offer</th><th>visits</th><th>share</th>\
         <th>redeemed</th><th>redemption rate (estimate)</th></tr>",
    );
    for o in &r.offers {
        let _ = write!(
            b,
            "<tr data-offer=\"{id}\"><td class=\"name\">{name}</td><td class=\"decisions\">{}</td><td>{:.1}%</td>\
             <td class=\"redemptions\">{}</td><td>{}</td></tr>",
            o.counts.trials,
            100.0 * o.share,
            o.counts.successes,
            pct(&Estimate {
                value: o.posterior_mean,
                low: o.posterior_low,
                high: o.posterior_high
            }),
            id = esc(&o.offer_id),
            name = esc(name_of(&names, &o.offer_id))
        );
    }
    b.push_str("</table>");
    b.push_str(&budgets(engine, &r, &names));
    if let Ok(prior) = engine.learned_prior(id) {
        b.push_str(&learned_prior(&prior));
    }
    b.push_str("<h2>Offer share over time (last 7 days)</h2>");
    b.push_str(&chart(&r));
    Some(page(&format!("{id} - offer-bandit"), &b, refresh))
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
            palette(0)
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
