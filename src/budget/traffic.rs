//! A campaign's traffic by local clock hour, learned from its own past
//! days: how much of a day's visits each hour brings, which is what daily
//! budgets are paced by. Counted from decisions' own timestamps, so a
//! replay of the same decisions learns the same profile.

use serde::{Deserialize, Serialize};

use super::local_time::LocalTime;

/// Days with decisions the profile must have seen before pacing follows
/// it; until then a day is paced flat.
pub const MIN_DAYS: u32 = 3;

/// Each past day weighs this much of the day after it: a half-life of
/// seven days, so a changed rhythm (a new store hour, the holidays) shows
/// within a week or two.
pub const DAY_DECAY: f64 = 0.905_723_664_263_906_9; // 0.5^(1/7)

/// Share of the flat day mixed into the learned profile, so that an hour
/// the past days happened to leave empty still gets a little.
pub const FLAT_MIX: f64 = 0.1;

/// The decisions of a campaign per local clock hour: today's as counted so
/// far, and the exponentially weighted sum of the days before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficProfile {
    /// The time zone the hours are in (a profile in another zone than the
    /// campaign's is started over).
    pub time_zone: String,
    /// The local day being counted (days since 1970-01-01).
    pub day: i64,
    /// Decisions per local hour of `day` so far.
    pub today: [u64; 24],
    /// Decisions per local hour of the days before `day`, each day weighing
    /// [`DAY_DECAY`] of the day after it.
    pub past: [f64; 24],
    /// Days with decisions summed into `past`.
    pub days: u32,
}

impl Default for TrafficProfile {
    fn default() -> Self {
        TrafficProfile::new(LocalTime::utc().name())
    }
}

impl TrafficProfile {
    /// An empty profile in `time_zone`.
    pub fn new(time_zone: &str) -> TrafficProfile {
        TrafficProfile {
            time_zone: time_zone.to_owned(),
            day: i64::MIN,
            today: [0; 24],
            past: [0.0; 24],
            days: 0,
        }
    }

    /// Counts one decision made at `at_ms`. A new local day first moves
    /// today's counts into the past ones; a decision stamped on an earlier
    /// day than the one being counted (it reached the writer late) counts
    /// today, under its own hour.
    pub fn count(&mut self, at_ms: i64, local: &LocalTime) {
        if self.time_zone != local.name() {
            *self = TrafficProfile::new(local.name());
        }
        let day = local.day_of(at_ms);
        if day > self.day {
            self.move_to(day);
        }
        if let Some(n) = self.today.get_mut(local.hour_of(at_ms)) {
            *n += 1;
        }
    }

    /// Moves today's counts into the past ones and starts `day`; days
    /// between without decisions count as days without traffic.
    fn move_to(&mut self, day: i64) {
        if self.today.iter().any(|&n| n > 0) {
            let gap = day.saturating_sub(self.day).clamp(1, 3650);
            let decay = DAY_DECAY.powi(gap as i32 - 1);
            for (p, &t) in self.past.iter_mut().zip(&self.today) {
                *p = (*p * DAY_DECAY + t as f64) * decay;
            }
            self.days = self.days.saturating_add(1);
        }
        self.today = [0; 24];
        self.day = day;
    }

    /// The profile as of local day `day`: the days before it in `past`,
    /// even if no decision of `day` has moved them there yet.
    fn as_of(&self, day: i64) -> std::borrow::Cow<'_, TrafficProfile> {
        if day > self.day {
            let mut moved = self.clone();
            moved.move_to(day);
            std::borrow::Cow::Owned(moved)
        } else {
            std::borrow::Cow::Borrowed(self)
        }
    }

    /// The share of a day's visits each local hour brings on local day
    /// `day`, learned from the days before it once [`MIN_DAYS`] are seen in
    /// the campaign's current time zone (`None`: pace flat).
    pub fn shares(&self, day: i64, local: &LocalTime) -> Option<[f64; 24]> {
        if self.time_zone != local.name() {
            return None;
        }
        let profile = self.as_of(day);
        let total: f64 = profile.past.iter().sum();
        if profile.days < MIN_DAYS || total <= 0.0 {
            return None;
        }
        let mut shares = [0.0; 24];
        for (s, p) in shares.iter_mut().zip(&profile.past) {
            *s = (1.0 - FLAT_MIX) * p / total + FLAT_MIX / 24.0;
        }
        Some(shares)
    }

    /// The days seen by local day `day`, for people: "learned from the
    /// last 9 days of traffic" or "flat over the day until 3 days of
    /// traffic are seen, 1 so far".
    pub fn describe(&self, day: i64, local: &LocalTime) -> String {
        let days = if self.time_zone == local.name() {
            self.as_of(day).days
        } else {
            0
        };
        match self.shares(day, local) {
            Some(_) => format!("learned from the last {days} days of traffic"),
            None => format!(
                "flat over the day until {MIN_DAYS} days of traffic are seen, {days} so far"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::local_time::{DAY_MS, HOUR_MS};

    const T0: i64 = 1_767_225_600_000; // 2026-01-01 00:00 UTC

    #[test]
    fn it_learns_the_hours_from_past_days_and_is_flat_until_three() {
        let utc = LocalTime::utc();
        let mut p = TrafficProfile::default();
        for d in 0..4 {
            // Each day: 9 visits at 18:00, 1 at 06:00.
            for _ in 0..9 {
                p.count(T0 + d * DAY_MS + 18 * HOUR_MS, &utc);
            }
            p.count(T0 + d * DAY_MS + 6 * HOUR_MS, &utc);
            // Today is not in the past yet: day d is counted on day d + 1.
            assert_eq!(p.days, d as u32);
            assert_eq!(p.shares(p.day, &utc).is_some(), d as u32 >= MIN_DAYS);
        }
        // The day after, before any of its visits: day 3 counts too.
        assert!(p.describe(p.day + 1, &utc).contains("the last 4 days"));
        let Some(s) = p.shares(p.day, &utc) else {
            panic!("learned after three days")
        };
        assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(
            (s[18] - (0.9 * 0.9 + 0.1 / 24.0)).abs() < 1e-12,
            "{}",
            s[18]
        );
        assert!((s[12] - 0.1 / 24.0).abs() < 1e-12);
        assert!(
            p.describe(p.day, &utc)
                .contains("learned from the last 3 days")
        );
    }

    #[test]
    fn old_days_fade_and_empty_days_count_as_quiet() {
        let utc = LocalTime::utc();
        let mut p = TrafficProfile::default();
        p.count(T0 + 10 * HOUR_MS, &utc);
        // Nothing for a week, then a day at 20:00.
        p.count(T0 + 7 * DAY_MS + 20 * HOUR_MS, &utc);
        p.count(T0 + 8 * DAY_MS, &utc);
        // Day 0 is seven days before day 7, the latest past day.
        assert!((p.past[10] - DAY_DECAY.powi(7)).abs() < 1e-12);
        assert!((p.past[20] - 1.0).abs() < 1e-12);
        assert_eq!(p.days, 2);
    }

    #[test]
    fn a_late_decision_counts_today_and_a_new_zone_starts_over() {
        let utc = LocalTime::utc();
        let mut p = TrafficProfile::default();
        p.count(T0 + DAY_MS + 5, &utc);
        p.count(T0 + DAY_MS - 5, &utc); // stamped yesterday 23:59
        assert_eq!(p.day, (T0 + DAY_MS) / DAY_MS);
        assert_eq!((p.today[0], p.today[23], p.days), (1, 1, 0));
        let Ok(ny) = LocalTime::parse("America/New_York") else {
            panic!("tz")
        };
        assert!(p.describe(p.day, &ny).contains("0 so far"));
        p.count(T0 + DAY_MS + 5, &ny);
        assert_eq!(p.time_zone, "America/New_York");
        assert_eq!(p.today.iter().sum::<u64>(), 1);
        assert_eq!(p.today[19], 1, "00:00 UTC is 19:00 in New York");
    }
}
