//! Budgets and pacing: whether an offer may still be chosen, given its
//! lifetime counts, today's counts and the time of day. Pure: the engine
//! keeps the counts; frequency caps need the customer's history and live
//! in the engine (checked when choosing, and again by the writer).

use serde::{Deserialize, Serialize};

use crate::{config::OfferConfig, policy::segment::CellCounts};

/// One UTC day of an offer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct DailyCounts {
    /// Days since the Unix epoch (UTC).
    pub day: i64,
    /// Decisions that chose the offer that day.
    pub decisions: u64,
    /// Redemptions recorded that day.
    pub redemptions: u64,
}

impl DailyCounts {
    /// The counts as of `now_ms`: zero once the day has changed. Never
    /// back to an earlier day: a decision stamped just before midnight that
    /// reaches the writer after one stamped just after counts for the new
    /// day rather than resetting it.
    pub fn on(self, now_ms: i64) -> DailyCounts {
        let day = day_of(now_ms);
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

const DAY_MS: i64 = 86_400_000;

/// Days since the Unix epoch (UTC) at `ms`.
pub(crate) fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// How far ahead of an even spread over the day a daily budget may run:
/// 5% of it, so that a quiet morning does not starve the first visits.
pub(crate) const PACING_SLACK: f64 = 0.05;

/// The part of a daily cap that may be used by `ms`: the cap times the share
/// of the day gone plus the slack, rounded up, so at least one.
pub fn paced_allowance(cap: u64, ms: i64) -> u64 {
    // In whole milliseconds, so that noon is exactly half a day.
    let slack = (PACING_SLACK * DAY_MS as f64) as u128;
    let gone = (ms.rem_euclid(DAY_MS) as u128 + slack).min(DAY_MS as u128);
    let allowed = (u128::from(cap) * gone).div_ceil(DAY_MS as u128);
    u64::try_from(allowed).unwrap_or(cap).min(cap)
}

/// Why `offer` may not be chosen for one more decision at `now_ms`, by its
/// decision budgets alone: `trials` decisions so far, `today` the counts of
/// the current day. The writer checks this again for every decision, so
/// concurrent requests cannot overshoot a decision budget.
pub(crate) fn decisions_exhausted(
    offer: &OfferConfig,
    trials: u64,
    today: DailyCounts,
    now_ms: i64,
) -> Option<String> {
    decision_status(offer, trials, today, now_ms).reason()
}

/// [`decisions_exhausted`], saying whether the offer is spent or paced.
fn decision_status(
    offer: &OfferConfig,
    trials: u64,
    today: DailyCounts,
    now_ms: i64,
) -> BudgetStatus {
    let today = today.on(now_ms);
    if let Some(cap) = offer.max_decisions
        && trials >= cap
    {
        return BudgetStatus::Spent(format!(
            "decision budget spent: {trials} of {cap} decisions"
        ));
    }
    if let Some(cap) = offer.max_decisions_per_day {
        let allowed = paced_allowance(cap, now_ms);
        if today.decisions >= allowed {
            return BudgetStatus::Paced(format!(
                "daily decision budget paced: {} of {cap} used, {allowed} allowed by this time of day (UTC)",
                today.decisions
            ));
        }
    }
    BudgetStatus::Open
}

/// Whether an offer's budgets let it be chosen now: what the dashboard
/// shows and what [`exhausted`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BudgetStatus {
    /// It may be chosen.
    Open,
    /// A daily budget allows no more by this time of day; why.
    Paced(String),
    /// A lifetime budget is used up; why.
    Spent(String),
}

impl BudgetStatus {
    /// Why the offer may not be chosen, or `None` when it may.
    pub(crate) fn reason(self) -> Option<String> {
        match self {
            BudgetStatus::Open => None,
            BudgetStatus::Paced(why) | BudgetStatus::Spent(why) => Some(why),
        }
    }
}

/// Why `offer` may not be chosen at `now_ms`, or `None` when it may.
/// `totals` are its lifetime counts; `today` its counts of the current day.
pub(crate) fn exhausted(
    offer: &OfferConfig,
    totals: CellCounts,
    today: DailyCounts,
    now_ms: i64,
) -> Option<String> {
    status(offer, totals, today, now_ms).reason()
}

/// Whether `offer`'s budgets let it be chosen at `now_ms`, and if not,
/// whether it is spent or paced. `totals` are its lifetime counts; `today`
/// its counts of the current day.
pub(crate) fn status(
    offer: &OfferConfig,
    totals: CellCounts,
    today: DailyCounts,
    now_ms: i64,
) -> BudgetStatus {
    let today = today.on(now_ms);
    let decisions = decision_status(offer, totals.trials, today, now_ms);
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
        let allowed = paced_allowance(cap, now_ms);
        if today.redemptions >= allowed {
            return BudgetStatus::Paced(format!(
                "daily redemption budget paced: {} of {cap} redeemed today, {allowed} allowed by this time of day (UTC)",
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
        assert_eq!(day2.on(2 * DAY_MS - 1), day2);
        assert_eq!(day2.on(2 * DAY_MS + 5), day2);
        assert_eq!(day2.on(3 * DAY_MS).decisions, 0);
    }

    #[test]
    fn lifetime_budgets_count_expected_redemptions_of_pending_decisions() {
        let noon = 19_000 * DAY_MS + DAY_MS / 2;
        let mut o = offer();
        assert!(exhausted(&o, counts(1000, 100, 800), DailyCounts::default(), noon).is_none());
        o.max_decisions = Some(1000);
        assert!(exhausted(&o, counts(999, 0, 0), DailyCounts::default(), noon).is_none());
        assert!(exhausted(&o, counts(1000, 0, 0), DailyCounts::default(), noon).is_some());
        // 100 redeemed of 1000 decisions (10%), 100 pending: 110 expected.
        let mut o = offer();
        o.max_redemptions = Some(111);
        assert!(exhausted(&o, counts(1000, 100, 800), DailyCounts::default(), noon).is_none());
        o.max_redemptions = Some(110);
        let why = exhausted(&o, counts(1000, 100, 800), DailyCounts::default(), noon);
        assert!(why.is_some_and(|w| w.contains("10.0 expected")));
        // Early on, with no expiry yet: 20 redeemed of 1000 does not block a
        // budget of 500 (a rate over resolved decisions would say 1000).
        o.max_redemptions = Some(500);
        assert!(exhausted(&o, counts(1000, 20, 0), DailyCounts::default(), noon).is_none());
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
            status(&o, counts(10, 0, 0), today(10), midnight),
            BudgetStatus::Open
        );
        o.max_decisions_per_day = Some(100);
        assert!(matches!(
            status(&o, counts(10, 0, 0), today(5), midnight),
            BudgetStatus::Paced(_)
        ));
        o.max_decisions = Some(10);
        assert!(matches!(
            status(&o, counts(10, 0, 0), today(5), midnight),
            BudgetStatus::Spent(_)
        ));
    }

    #[test]
    fn daily_budgets_are_paced_over_the_utc_day() {
        let midnight = 19_000 * DAY_MS;
        // 5% slack at midnight, half plus slack at noon, all by the evening.
        assert_eq!(paced_allowance(100, midnight), 5);
        assert_eq!(paced_allowance(100, midnight + DAY_MS / 2), 55);
        assert_eq!(paced_allowance(100, midnight + DAY_MS - 1), 100);
        assert_eq!(paced_allowance(3, midnight), 1, "at least one");
        let mut o = offer();
        o.max_decisions_per_day = Some(100);
        let today = |d| DailyCounts {
            day: 19_000,
            decisions: d,
            redemptions: 0,
        };
        let noon = midnight + DAY_MS / 2;
        assert!(exhausted(&o, counts(0, 0, 0), today(54), noon).is_none());
        assert!(exhausted(&o, counts(0, 0, 0), today(55), noon).is_some());
        // Yesterday's counts do not count today.
        assert!(exhausted(&o, counts(0, 0, 0), today(99), noon + DAY_MS).is_none());
    }
}
