//! A campaign's time zone: which local day and clock hour an instant falls
//! in, and where each local day starts and ends (23 or 25 hours on the days
//! daylight saving time starts or ends). The IANA database is compiled into
//! the binary, so every host gives the same answers.

use jiff::{Timestamp, tz::TimeZone};

/// Milliseconds in an hour.
pub const HOUR_MS: i64 = 3_600_000;
/// Milliseconds in a (24-hour) day.
pub const DAY_MS: i64 = 86_400_000;

/// A campaign's time zone, by its IANA name.
#[derive(Debug, Clone)]
pub struct LocalTime {
    name: String,
    tz: TimeZone,
}

/// One stretch of a local day that reads one clock hour: 24 of them on
/// most days, 23 when the clocks go forward, 25 when they go back (the
/// repeated hour twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourSlot {
    /// Where it starts, Unix ms.
    pub start_ms: i64,
    /// Where it ends (exclusive), Unix ms.
    pub end_ms: i64,
    /// The local clock hour, 0-23.
    pub hour: usize,
}

impl Default for LocalTime {
    fn default() -> Self {
        LocalTime::utc()
    }
}

impl PartialEq for LocalTime {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl LocalTime {
    /// Coordinated Universal Time, the default.
    pub fn utc() -> LocalTime {
        LocalTime {
            name: "UTC".into(),
            tz: TimeZone::UTC,
        }
    }

    /// The zone of an IANA name such as `America/New_York`; the error says
    /// what is wrong, for the config's message.
    pub fn parse(name: &str) -> Result<LocalTime, String> {
        let name = name.trim();
        if name.is_empty() {
            return Err("an IANA time zone name such as \"America/New_York\" or \"UTC\"".into());
        }
        match TimeZone::get(name) {
            Ok(tz) => Ok(LocalTime {
                name: name.to_owned(),
                tz,
            }),
            Err(_) => Err(format!(
                "\"{name}\" is not an IANA time zone name (such as \"America/New_York\", \"Europe/Berlin\" or \"UTC\")"
            )),
        }
    }

    /// Its IANA name, as configured.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn timestamp(ms: i64) -> Timestamp {
        // Out of jiff's range (beyond year 9999) only on a broken clock:
        // the nearest representable instant.
        Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
            Timestamp::MIN
        } else {
            Timestamp::MAX
        })
    }

    /// The zone's offset from UTC at `ms`, in ms.
    fn offset_ms(&self, ms: i64) -> i64 {
        i64::from(self.tz.to_offset(Self::timestamp(ms)).seconds()) * 1000
    }

    /// The local calendar day of `ms`, as days since 1970-01-01 (the same
    /// number as UTC's day for a UTC campaign).
    pub fn day_of(&self, ms: i64) -> i64 {
        (ms + self.offset_ms(ms)).div_euclid(DAY_MS)
    }

    /// The local clock hour (0-23) at `ms`.
    pub fn hour_of(&self, ms: i64) -> usize {
        let local = ms + self.offset_ms(ms);
        // rem_euclid is in [0, DAY_MS), so the hour is in 0..24.
        (local.rem_euclid(DAY_MS) / HOUR_MS) as usize
    }

    /// The start of the local day `ms` falls in when the offset holds all
    /// day (every day but those with a transition): 24 plain hours, found
    /// without building the day's dates.
    fn plain_day_start(&self, ms: i64) -> Option<i64> {
        let off = self.offset_ms(ms);
        let start = (ms + off).div_euclid(DAY_MS) * DAY_MS - off;
        let end = start + DAY_MS;
        (self.offset_ms(start) == off
            && self.offset_ms(end - 1) == off
            && self.offset_ms(end) == off)
            .then_some(start)
    }

    /// The start and end (exclusive) of the local day `ms` falls in.
    pub fn day_bounds(&self, ms: i64) -> (i64, i64) {
        if let Some(start) = self.plain_day_start(ms) {
            return (start, start + DAY_MS);
        }
        let zoned = Self::timestamp(ms).to_zoned_datetime(self.tz.clone());
        let start = zoned.start_of_day().map(|z| z.timestamp().as_millisecond());
        let end = zoned
            .tomorrow()
            .and_then(|t| t.start_of_day())
            .map(|z| z.timestamp().as_millisecond());
        match (start, end) {
            (Ok(s), Ok(e)) if s <= ms && ms < e => (s, e),
            // At the ends of jiff's range: the 24 hours around the offset.
            _ => {
                let off = self.offset_ms(ms);
                let s = (ms + off).div_euclid(DAY_MS) * DAY_MS - off;
                (s, s + DAY_MS)
            }
        }
    }

    /// The clock hours of the local day `ms` falls in, in order.
    pub fn hours(&self, ms: i64) -> Vec<HourSlot> {
        if let Some(start) = self.plain_day_start(ms) {
            return (0..24)
                .map(|hour| HourSlot {
                    start_ms: start + hour as i64 * HOUR_MS,
                    end_ms: start + (hour as i64 + 1) * HOUR_MS,
                    hour,
                })
                .collect();
        }
        let (start, end) = self.day_bounds(ms);
        let mut slots = Vec::with_capacity(25);
        let mut t = start;
        while t < end {
            let local = t + self.offset_ms(t);
            let hour = (local.rem_euclid(DAY_MS) / HOUR_MS) as usize;
            // To the next full local hour at this offset; a change of offset
            // on the way shows as the next slot's hour.
            let next = (t + HOUR_MS - local.rem_euclid(HOUR_MS)).min(end);
            slots.push(HourSlot {
                start_ms: t,
                end_ms: next,
                hour,
            });
            t = next;
        }
        slots
    }

    /// `ms` as people read it here: `2026-03-08 09:00 EDT`.
    pub fn describe(&self, ms: i64) -> String {
        let ts = Self::timestamp(ms);
        let info = self.tz.to_offset_info(ts);
        let local = info.offset().to_datetime(ts);
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02} {}",
            local.year(),
            local.month(),
            local.day(),
            local.hour(),
            local.minute(),
            info.abbreviation()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-03-08, the day New York's clocks go forward at 2:00.
    const SPRING_FORWARD: i64 = 1_772_928_000_000;
    /// 2026-11-01, the day they go back at 2:00.
    const FALL_BACK: i64 = 1_793_491_200_000;

    fn ny() -> LocalTime {
        match LocalTime::parse("America/New_York") {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn names_are_checked_against_the_compiled_in_database() {
        assert!(LocalTime::parse("Europe/Berlin").is_ok());
        assert!(LocalTime::parse("UTC").is_ok());
        let err = LocalTime::parse("America/Gotham").err().unwrap_or_default();
        assert!(
            err.contains("America/Gotham") && err.contains("IANA"),
            "{err}"
        );
        assert!(LocalTime::parse(" ").is_err());
    }

    #[test]
    fn a_day_in_new_york_starts_at_local_midnight() {
        let t = ny();
        // 2026-01-15 14:00 UTC is 09:00 EST.
        let nine = 1_768_485_600_000;
        assert_eq!(t.hour_of(nine), 9);
        assert_eq!(t.describe(nine), "2026-01-15 09:00 EST");
        let (start, end) = t.day_bounds(nine);
        assert_eq!(start, nine - 9 * HOUR_MS);
        assert_eq!(end - start, DAY_MS);
        assert_eq!(t.day_of(start), t.day_of(nine));
        assert_eq!(t.day_of(start - 1), t.day_of(nine) - 1);
        // UTC's day is the epoch day.
        assert_eq!(LocalTime::utc().day_of(nine), nine / DAY_MS);
    }

    #[test]
    fn dst_days_have_23_and_25_hours() {
        let t = ny();
        // Local midnight is 05:00 UTC (EST) on both days.
        let spring = SPRING_FORWARD + 5 * HOUR_MS;
        let (start, end) = t.day_bounds(spring + 12 * HOUR_MS);
        assert_eq!((start, end - start), (spring, 23 * HOUR_MS));
        let hours: Vec<usize> = t.hours(spring).iter().map(|s| s.hour).collect();
        assert_eq!(hours.len(), 23);
        assert!(!hours.contains(&2), "2:00 never happens: {hours:?}");
        let fall = FALL_BACK + 4 * HOUR_MS; // 00:00 EDT
        let (start, end) = t.day_bounds(fall + 12 * HOUR_MS);
        assert_eq!((start, end - start), (fall, 25 * HOUR_MS));
        let hours: Vec<usize> = t.hours(fall).iter().map(|s| s.hour).collect();
        assert_eq!(hours.len(), 25);
        assert_eq!(hours.iter().filter(|&&h| h == 1).count(), 2, "{hours:?}");
        assert_eq!(t.describe(fall + HOUR_MS), "2026-11-01 01:00 EDT");
        assert_eq!(t.describe(fall + 2 * HOUR_MS), "2026-11-01 01:00 EST");
    }

    #[test]
    fn the_plain_day_shortcut_agrees_with_the_calendar() {
        for name in [
            "America/New_York",
            "Europe/London",
            "Asia/Kolkata",
            "America/Santiago",
        ] {
            let Ok(t) = LocalTime::parse(name) else {
                panic!("{name}")
            };
            for d in 0..400 {
                let ms = 1_767_225_600_000 + d * DAY_MS + 7 * HOUR_MS + 123;
                let zoned = LocalTime::timestamp(ms).to_zoned_datetime(t.tz.clone());
                let start = zoned.start_of_day().map(|z| z.timestamp().as_millisecond());
                if let Some(plain) = t.plain_day_start(ms) {
                    assert_eq!(Ok(plain), start.map_err(drop), "{name} day {d}");
                }
            }
        }
    }

    #[test]
    fn half_hour_zones_and_transitions_cover_the_day() {
        for name in ["Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Chatham"] {
            let Ok(t) = LocalTime::parse(name) else {
                panic!("{name}")
            };
            // A year of days, each covered by its slots without gaps.
            for d in 0..366 {
                let ms = 1_767_225_600_000 + d * DAY_MS;
                let (start, end) = t.day_bounds(ms);
                let slots = t.hours(ms);
                assert_eq!(slots.first().map(|s| s.start_ms), Some(start));
                assert_eq!(slots.last().map(|s| s.end_ms), Some(end));
                assert!(slots.windows(2).all(|w| w[0].end_ms == w[1].start_ms));
                assert!((23 * HOUR_MS..=25 * HOUR_MS).contains(&(end - start)));
            }
        }
    }
}
