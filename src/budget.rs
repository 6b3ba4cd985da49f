//! Budgets and pacing: whether an offer may still be chosen, given its
//! lifetime counts, today's counts and how far the campaign's local day
//! has gone. Pure: the engine keeps the counts; frequency caps need the
//! customer's history and live in the engine (checked when choosing, and
//! again by the writer).
//!
//! Days are the campaign's local days ([`LocalTime`], `time_zone` in its
//! config): daily budgets reset at local midnight, and by any moment a
//! daily budget may use the share of the day's expected traffic gone so
//! far ([`Pace`]), expected from the campaign's own past days
//! ([`TrafficProfile`]) or, until a few are seen, spread flat over the
//! day's hours.

use serde::{Deserialize, Serialize};

use crate::{config::OfferConfig, policy::segment::CellCounts};

mod local_time;
mod traffic;

pub use self::local_time::{DAY_MS, HOUR_MS, HourSlot, LocalTime};
pub use self::traffic::{DAY_DECAY, FLAT_MIX, MIN_DAYS, TrafficProfile};

/// One local day of an offer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct DailyCounts {
    /// The campaign's local day, as days since 1970-01-01 of its calendar.
    pub day: i64,
    /// Decisions that chose the offer that day.
    pub decisions: u64,
    /// Redemptions recorded that day.
    pub redemptions: u64,
}

impl DailyCounts {
    /// The counts as of local day `day`: zero once the day has changed.
    /// Never back to an earlier day: a decision stamped just before
    /// midnight that reaches the writer after one stamped just after counts
    /// for the new day rather than resetting it.
    pub fn on(self, day: i64) -> DailyCounts {
        if self.day >= day {
            self
        } else {
            DailyCounts {
                day,
                ..DailyCounts::default()
            }
        }
    }
}

/// How far ahead of the day's expected traffic a daily budget may run:
/// 5% of it, so that a quiet morning does not starve the first visits.
pub(crate) const PACING_SLACK: f64 = 0.05;

/// Where a campaign's local day stands at one moment, for pacing.
#[derive(Debug, Clone, PartialEq)]
pub struct Pace {
    /// The local day (days since 1970-01-01 of the local calendar).
    pub day: i64,
    /// The share of the day's expected traffic gone by now, 0 to 1.
    pub gone: f64,
    /// Whether that share follows the learned traffic profile (false: flat
    /// over the day's hours).
    pub learned: bool,
}

impl Pace {
    /// The pace at `now_ms` in `local`'s day: the expected share of each
    /// clock hour from `profile` once it has learned one, else each hour
    /// alike (a 23- or 25-hour day has 23 or 25 equal hours).
    pub fn at(now_ms: i64, local: &LocalTime, profile: &TrafficProfile) -> Pace {
        let day = local.day_of(now_ms);
        let shares = profile.shares(day, local);
        let weight = |hour: usize| shares.map_or(1.0, |s| s.get(hour).copied().unwrap_or(0.0));
        let (mut total, mut gone) = (0.0, 0.0);
        for slot in local.hours(now_ms) {
            let length = (slot.end_ms - slot.start_ms) as f64;
            let w = weight(slot.hour) * length / HOUR_MS as f64;
            total += w;
            if now_ms >= slot.end_ms {
                gone += w;
            } else if now_ms > slot.start_ms {
                gone += w * (now_ms - slot.start_ms) as f64 / length;
            }
        }
        Pace {
            day,
            gone: if total > 0.0 {
                (gone / total).clamp(0.0, 1.0)
            } else {
                0.0
            },
            learned: shares.is_some(),
        }
    }

    /// The pace of a UTC campaign before any traffic is learned.
    pub fn flat_utc(now_ms: i64) -> Pace {
        Pace::at(now_ms, &LocalTime::utc(), &TrafficProfile::default())
    }
}

/// The part of a daily cap that may be used by now: the cap times the
/// share of the day's traffic gone plus the slack, rounded up, so at least
/// one.
pub fn paced_allowance(cap: u64, pace: &Pace) -> u64 {
    let share = (pace.gone + PACING_SLACK).min(1.0);
    // Shares are sums of hour fractions: round off their last bits, so
    // that noon of a flat day is exactly half.
    let allowed = (cap as f64 * share - 1e-9).ceil().max(1.0);
    if allowed >= cap as f64 {
        cap
    } else {
        allowed as u64
    }
}

/// Why `offer` may not be chosen for one more decision at `pace`, by its
/// decision budgets alone: `trials` decisions so far, `today` the counts of
/// the current day. The writer checks this again for every decision, so
/// concurrent requests cannot overshoot a decision budget.
pub(crate) fn decisions_exhausted(
    offer: &OfferConfig,
    trials: u64,
    today: DailyCounts,
    pace: &Pace,
) -> Option<String> {
    decision_status(offer, trials, today, pace).reason()
}

/// [`decisions_exhausted`], saying whether the offer is spent or paced.
fn decision_status(
    offer: &OfferConfig,
    trials: u64,
    today: DailyCounts,
    pace: &Pace,
) -> BudgetStatus {
    let today = today.on(pace.day);
    if let Some(cap) = offer.max_decisions
        && trials >= cap
    {
        return BudgetStatus::Spent(format!(
            "decision budget spent: {trials} of {cap} decisions"
        ));
    }
    if let Some(cap) = offer.max_decisions_per_day {
        let allowed = paced_allowance(cap, pace);
        if today.decisions >= allowed {
            return BudgetStatus::Paced(format!(
                "daily decision budget paced: {} of {cap} used, {allowed} allowed by this time of the campaign's day",
                today.decisions
            ));
        }
    }
    BudgetStatus::Open
}

/// Whether an offer's budgets let it be chosen now: what the dashboard
/// shows and what [`exhausted`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetStatus {
    /// It may be chosen.
    Open,
    /// A daily budget allows no more by this time of day; why.
    Paced(String),
    /// A lifetime budget is used up; why.
    Spent(String),
}

impl BudgetStatus {
    /// One word: `open`, `paced` or `spent`.
    pub fn label(&self) -> &'static str {
        match self {
            BudgetStatus::Open => "open",
            BudgetStatus::Paced(_) => "paced",
            BudgetStatus::Spent(_) => "spent",
        }
    }

    /// Why the offer may not be chosen; empty when it may.
    pub fn why(&self) -> &str {
        match self {
            BudgetStatus::Open => "",
            BudgetStatus::Paced(why) | BudgetStatus::Spent(why) => why,
        }
    }

    /// Why the offer may not be chosen, or `None` when it may.
    pub(crate) fn reason(self) -> Option<String> {
        match self {
            BudgetStatus::Open => None,
            BudgetStatus::Paced(why) | BudgetStatus::Spent(why) => Some(why),
        }
    }
}

/// Why `offer` may not be chosen at `pace`, or `None` when it may.
/// `totals` are its lifetime counts; `today` its counts of the current day.
pub(crate) fn exhausted(
    offer: &OfferConfig,
    totals: CellCounts,
    today: DailyCounts,
    pace: &Pace,
) -> Option<String> {
    status(offer, totals, today, pace).reason()
}

/// Whether `offer`'s budgets let it be chosen at `pace`, and if not,
/// whether it is spent or paced. `totals` are its lifetime counts; `today`
/// its counts of the current day.
pub(crate) fn status(
    offer: &OfferConfig,
    totals: CellCounts,
    today: DailyCounts,
    pace: &Pace,
) -> BudgetStatus {
    let today = today.on(pace.day);
    let decisions = decision_status(offer, totals.trials, today, pace);
    if decisions != BudgetStatus::Open {
        return decisions;
    }
    if let Some(cap) = offer.max_redemptions {
        // Pending decisions will bring more: count them at the rate seen so
        // far over all decisions. Redemptions arrive before expiries, so a
        // rate over resolved decisions alone would be near 1 early on and
        // block the offer at once; this one errs low while the first
        // windows are open.
        let rate = if totals.trials > 0 {
            totals.successes as f64 / totals.trials as f64
        } else {
            0.0
        };
        let expected = totals.successes as f64 + totals.pending() as f64 * rate;
        if expected >= cap as f64 {
            return BudgetStatus::Spent(format!(
                "redemption budget spent: {} redeemed and {:.1} expected from pending decisions, of {cap}",
                totals.successes,
                expected - totals.successes as f64
            ));
        }
    }
    if let Some(cap) = offer.max_redemptions_per_day {
        let allowed = paced_allowance(cap, pace);
        if today.redemptions >= allowed {
            return BudgetStatus::Paced(format!(
                "daily redemption budget paced: {} of {cap} redeemed today, {allowed} allowed by this time of the campaign's day",
                today.redemptions
            ));
        }
    }
    BudgetStatus::Open
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> OfferConfig {
        OfferConfig {
            id: "o".into(),
            name: "o".into(),
            value: 1.0,
            category: String::new(),
            max_decisions: None,
            max_redemptions: None,
            max_decisions_per_day: None,
            max_redemptions_per_day: None,
            max_value: None,
            features: Default::default(),
            display: Default::default(),
        }
    }

    fn counts(trials: u64, successes: u64, expired: u64) -> CellCounts {
        CellCounts {
            trials,
            successes,
            expired,
            value_sum: 0.0,
        }
    }

    #[test]
    fn days_only_move_forward() {
        let day2 = DailyCounts {
            day: 2,
            decisions: 7,
            redemptions: 1,
        };
        // A decision stamped on day 1 reaching the writer late keeps day 2.
        assert_eq!(day2.on(1), day2);
        assert_eq!(day2.on(2), day2);
        assert_eq!(day2.on(3).decisions, 0);
    }

    #[test]
    fn lifetime_budgets_count_expected_redemptions_of_pending_decisions() {
        let noon = 19_000 * DAY_MS + DAY_MS / 2;
        let mut o = offer();
        assert!(
            exhausted(
                &o,
                counts(1000, 100, 800),
                DailyCounts::default(),
                &Pace::flat_utc(noon)
            )
            .is_none()
        );
        o.max_decisions = Some(1000);
        assert!(
            exhausted(
                &o,
                counts(999, 0, 0),
                DailyCounts::default(),
                &Pace::flat_utc(noon)
            )
            .is_none()
        );
        assert!(
            exhausted(
                &o,
                counts(1000, 0, 0),
                DailyCounts::default(),
                &Pace::flat_utc(noon)
            )
            .is_some()
        );
        // 100 redeemed of 1000 decisions (10%), 100 pending: 110 expected.
        let mut o = offer();
        o.max_redemptions = Some(111);
        assert!(
            exhausted(
                &o,
                counts(1000, 100, 800),
                DailyCounts::default(),
                &Pace::flat_utc(noon)
            )
            .is_none()
        );
        o.max_redemptions = Some(110);
        let why = exhausted(
            &o,
            counts(1000, 100, 800),
            DailyCounts::default(),
            &Pace::flat_utc(noon),
        );
        assert!(why.is_some_and(|w| w.contains("10.0 expected")));
        // Early on, with no expiry yet: 20 redeemed of 1000 does not block a
        // budget of 500 (a rate over resolved decisions would say 1000).
        o.max_redemptions = Some(500);
        assert!(
            exhausted(
                &o,
                counts(1000, 20, 0),
                DailyCounts::default(),
                &Pace::flat_utc(noon)
            )
            .is_none()
        );
    }

    #[test]
    fn the_status_says_spent_for_lifetime_and_paced_for_daily_budgets() {
        let midnight = 19_000 * DAY_MS;
        let today = |d| DailyCounts {
            day: 19_000,
            decisions: d,
            redemptions: 0,
        };
        let mut o = offer();
        assert_eq!(
            status(&o, counts(10, 0, 0), today(10), &Pace::flat_utc(midnight)),
            BudgetStatus::Open
        );
        o.max_decisions_per_day = Some(100);
        assert!(matches!(
            status(&o, counts(10, 0, 0), today(5), &Pace::flat_utc(midnight)),
            BudgetStatus::Paced(_)
        ));
        o.max_decisions = Some(10);
        assert!(matches!(
            status(&o, counts(10, 0, 0), today(5), &Pace::flat_utc(midnight)),
            BudgetStatus::Spent(_)
        ));
    }

    #[test]
    fn daily_budgets_are_paced_over_the_utc_day() {
        let midnight = 19_000 * DAY_MS;
        // 5% slack at midnight, half plus slack at noon, all by the evening.
        assert_eq!(paced_allowance(100, &Pace::flat_utc(midnight)), 5);
        assert_eq!(
            paced_allowance(100, &Pace::flat_utc(midnight + DAY_MS / 2)),
            55
        );
        assert_eq!(
            paced_allowance(100, &Pace::flat_utc(midnight + DAY_MS - 1)),
            100
        );
        assert_eq!(
            paced_allowance(3, &Pace::flat_utc(midnight)),
            1,
            "at least one"
        );
        let mut o = offer();
        o.max_decisions_per_day = Some(100);
        let today = |d| DailyCounts {
            day: 19_000,
            decisions: d,
            redemptions: 0,
        };
        let noon = midnight + DAY_MS / 2;
        assert!(exhausted(&o, counts(0, 0, 0), today(54), &Pace::flat_utc(noon)).is_none());
        assert!(exhausted(&o, counts(0, 0, 0), today(55), &Pace::flat_utc(noon)).is_some());
        // Yesterday's counts do not count today.
        assert!(
            exhausted(
                &o,
                counts(0, 0, 0),
                today(99),
                &Pace::flat_utc(noon + DAY_MS)
            )
            .is_none()
        );
    }

    fn ny() -> LocalTime {
        match LocalTime::parse("America/New_York") {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    fn per_day(cap: u64) -> OfferConfig {
        let mut o = offer();
        o.max_decisions_per_day = Some(cap);
        o
    }

    #[test]
    fn a_new_york_morning_is_paced_as_morning_not_as_the_utc_afternoon() {
        // 2026-01-15 14:00 UTC is 09:00 in New York.
        let nine = 1_768_485_600_000;
        let flat = TrafficProfile::default();
        let pace = Pace::at(nine, &ny(), &flat);
        assert!((pace.gone - 9.0 / 24.0).abs() < 1e-12, "{}", pace.gone);
        // 9/24 + 5% of 100, not 14/24 + 5% as the UTC day had it.
        assert_eq!(paced_allowance(100, &pace), 43);
        assert_eq!(paced_allowance(100, &Pace::flat_utc(nine)), 64);
        let today = DailyCounts {
            day: pace.day,
            decisions: 50,
            redemptions: 0,
        };
        let o = per_day(100);
        assert!(matches!(
            status(&o, counts(50, 0, 0), today, &pace),
            BudgetStatus::Paced(_)
        ));
    }

    #[test]
    fn daily_budgets_reset_at_local_midnight_across_dst_changes() {
        let t = ny();
        let flat = TrafficProfile::default();
        let o = per_day(100);
        let spent_on = |day| DailyCounts {
            day,
            decisions: 100,
            redemptions: 0,
        };
        // (23:30 local the evening before, 00:30 local, 12:00 local, and the
        // day's length in hours) for the day before the clocks go forward,
        // the 23-hour day, the day before they go back, the 25-hour day.
        let h = HOUR_MS;
        let half = HOUR_MS / 2;
        let spring = 1_772_928_000_000; // 2026-03-08 00:00 UTC
        let fall = 1_793_491_200_000; // 2026-11-01 00:00 UTC
        let days = [
            // 2026-03-08: midnight is 05:00 UTC (EST); noon 16:00 UTC (EDT).
            (
                spring + 4 * h + half,
                spring + 5 * h + half,
                spring + 16 * h,
                23,
            ),
            // 2026-03-09: midnight is 04:00 UTC (EDT).
            (
                spring + DAY_MS + 3 * h + half,
                spring + DAY_MS + 4 * h + half,
                spring + DAY_MS + 16 * h,
                24,
            ),
            // 2026-11-01: midnight is 04:00 UTC (EDT); noon 17:00 UTC (EST).
            (fall + 3 * h + half, fall + 4 * h + half, fall + 17 * h, 25),
            // 2026-11-02: midnight is 05:00 UTC (EST).
            (
                fall + DAY_MS + 4 * h + half,
                fall + DAY_MS + 5 * h + half,
                fall + DAY_MS + 17 * h,
                24,
            ),
        ];
        for (before, after, noon, hours) in days {
            let evening = Pace::at(before, &t, &flat);
            let spent = spent_on(evening.day);
            assert!(exhausted(&o, counts(100, 0, 0), spent, &evening).is_some());
            let morning = Pace::at(after, &t, &flat);
            assert_eq!(morning.day, evening.day + 1, "a new day at local midnight");
            assert!(
                exhausted(&o, counts(100, 0, 0), spent, &morning).is_none(),
                "the budget resets at 00:00 local"
            );
            // The UTC day had not changed.
            assert_eq!(before.div_euclid(DAY_MS), after.div_euclid(DAY_MS));
            // Noon is 12 (spring: 11, fall: 13) of the day's hours gone.
            let gone = Pace::at(noon, &t, &flat).gone;
            let expect = match hours {
                23 => 11.0 / 23.0,
                25 => 13.0 / 25.0,
                _ => 0.5,
            };
            assert!((gone - expect).abs() < 1e-12, "{hours} h: {gone}");
        }
    }

    #[test]
    fn an_evening_profile_allows_less_at_noon_than_the_flat_day() {
        let utc = LocalTime::utc();
        let day0 = 20_000 * DAY_MS;
        let mut profile = TrafficProfile::default();
        for d in 0..5 {
            // 90 visits between 18:00 and 21:00, 10 over the morning.
            for i in 0..90 {
                profile.count(day0 + d * DAY_MS + 18 * HOUR_MS + i * 120_000, &utc);
            }
            for i in 0..10 {
                profile.count(day0 + d * DAY_MS + (8 + i) * HOUR_MS, &utc);
            }
        }
        let noon = day0 + 5 * DAY_MS + 12 * HOUR_MS;
        let learned = Pace::at(noon, &utc, &profile);
        assert!(learned.learned);
        let flat = Pace::flat_utc(noon);
        assert!(!flat.learned);
        assert_eq!(paced_allowance(1000, &flat), 550);
        // 8:00 to 12:00 brought 4 of the 100 visits a day: 0.9 x 4% plus
        // the flat tenth's 12/24 x 10%, then the 5% slack.
        let expect = 0.9 * 0.04 + 0.1 * 0.5;
        assert!((learned.gone - expect).abs() < 1e-9, "{}", learned.gone);
        assert_eq!(paced_allowance(1000, &learned), 136);
        // And the evening catches up: by 21:00 nearly all is allowed.
        let nine_pm = Pace::at(day0 + 5 * DAY_MS + 21 * HOUR_MS, &utc, &profile);
        assert!(nine_pm.gone > 0.95, "{}", nine_pm.gone);
    }
}
