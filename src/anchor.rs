//! Daily reset anchors: a day quota that starts afresh at a local time of day in an IANA time
//! zone (Gemini: midnight Pacific time). Pure like `quota.rs`: every function takes `now`, and
//! a day with a daylight-saving change comes out 23 or 25 hours long.
//!
//! The zone rules come from jiff's bundled copy of the tz database, never from the system's, so
//! the answers are the same on every machine.

use std::fmt;

use jiff::civil::{Date, Time};
use jiff::tz::{AmbiguousOffset, Offset, TimeZone};
use jiff::{Span, Timestamp};

use crate::clock::{MINUTE_MS, Millis};

const MINUTES_PER_DAY: u32 = 24 * 60;
const DAY_MS: Millis = 24 * 60 * MINUTE_MS;

/// The calendar months of a row whose day is rolling: from 00:00 UTC on the 1st.
pub static UTC_MONTHS: DayAnchor = DayAnchor {
    minute_of_day: 0,
    zone: TimeZone::UTC,
};

/// A daily reset at a local time of day, such as `00:00 America/Los_Angeles`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayAnchor {
    /// Minutes after local midnight, below 1440 (the endpoints file checks it); a larger
    /// value is taken modulo a day.
    pub minute_of_day: u32,
    /// An IANA zone from the bundled database (the endpoints file only makes those).
    pub zone: TimeZone,
}

impl DayAnchor {
    /// The most recent reset at or before `now` (a reset exactly at `now` counts: the new day
    /// starts then).
    pub fn day_start(&self, now: Millis) -> Millis {
        self.resets_near(now)
            .filter(|&reset| reset <= now)
            .max()
            .unwrap_or_else(|| self.grid_day_start(now))
    }

    /// The first reset after `now`.
    pub fn next_reset(&self, now: Millis) -> Millis {
        self.resets_near(now)
            .filter(|&reset| reset > now)
            .min()
            .unwrap_or_else(|| self.grid_day_start(now).saturating_add(DAY_MS))
    }

    /// When the calendar month of `now` began: the reset on the 1st of the month of the
    /// day `now` falls in (a moment before the 1st's reset is still in the month before).
    pub fn month_start(&self, now: Millis) -> Millis {
        self.month_reset(now, 0)
    }

    /// When the month after the month of `now` begins.
    pub fn next_month_start(&self, now: Millis) -> Millis {
        self.month_reset(now, 1)
    }

    /// When the month before the month of `now` began.
    pub fn previous_month_start(&self, now: Millis) -> Millis {
        self.month_reset(now, -1)
    }

    /// The reset on the 1st of the month `months` away from the month of `now`'s day.
    /// A step asks it of every row at one `now`, mostly of the same few anchors: the last
    /// answers are kept, since the zone arithmetic costs more than the ledger's reads.
    fn month_reset(&self, now: Millis, months: i32) -> Millis {
        type Key = (Millis, i32, u32, Option<String>);
        thread_local! {
            static LAST: std::cell::RefCell<Vec<(Key, Millis)>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let key: Key = (
            now,
            months,
            self.minute(),
            self.zone.iana_name().map(str::to_owned),
        );
        if key.3.is_some()
            && let Some(at) = LAST.with(|last| {
                last.borrow()
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|&(_, at)| at)
            })
        {
            return at;
        }
        let at = self.month_reset_uncached(now, months);
        if key.3.is_some() {
            LAST.with(|last| {
                let mut last = last.borrow_mut();
                if last.len() >= 16 {
                    last.remove(0);
                }
                last.push((key, at));
            });
        }
        at
    }

    fn month_reset_uncached(&self, now: Millis, months: i32) -> Millis {
        let day = self.day_start(now);
        Timestamp::from_millisecond(day)
            .ok()
            .map(|at| self.zone.to_datetime(at).date().first_of_month())
            .and_then(|first| first.checked_add(Span::new().try_months(months).ok()?).ok())
            .and_then(|first| self.reset_on(first))
            // Beyond the calendar, months of 30 days on the grid keep the answers ordered.
            .unwrap_or_else(|| day.saturating_add(Millis::from(months) * 30 * DAY_MS))
    }

    fn minute(&self) -> u32 {
        self.minute_of_day % MINUTES_PER_DAY
    }

    /// The resets of the local dates around `now`. The resets that bracket `now` fall on its
    /// local date or the day before or after; one more day on each side covers clocks that went
    /// back by a whole day (Alaska repeated one in 1867).
    fn resets_near(&self, now: Millis) -> impl Iterator<Item = Millis> {
        let today = Timestamp::from_millisecond(now)
            .ok()
            .map(|instant| self.zone.to_datetime(instant).date());
        today.into_iter().flat_map(move |today| {
            (-2..=2).filter_map(move |days: i64| {
                let date = today.checked_add(Span::new().try_days(days).ok()?).ok()?;
                self.reset_on(date)
            })
        })
    }

    /// The instant of the reset on the local `date`. A time that occurs twice (clocks going
    /// back) resets at its first occurrence, so the 25-hour day is one day, not a day and
    /// an hour-long one; a time that never occurs (clocks going forward) resets at the first
    /// instant after the gap, which is when the provider's clock reaches it.
    fn reset_on(&self, date: Date) -> Option<Millis> {
        let minute = self.minute();
        let hour = i8::try_from(minute / 60).ok()?;
        let local = date.to_datetime(Time::new(hour, i8::try_from(minute % 60).ok()?, 0, 0).ok()?);
        let (first, second) = match self.zone.to_ambiguous_timestamp(local).offset() {
            AmbiguousOffset::Unambiguous { offset } => (offset, offset),
            AmbiguousOffset::Fold { before, after } | AmbiguousOffset::Gap { before, after } => {
                (before, after)
            }
        };
        // Only the readings the zone confirms: jiff can see a fold that is not there where a
        // zone's last listed transition meets its rule for later years (America/Nuuk,
        // 2023-10-28, 23:00 to 24:00).
        let reads_local = |offset: Offset| {
            offset
                .to_timestamp(local)
                .ok()
                .filter(|&at| self.zone.to_datetime(at) == local)
        };
        let instant = match [first, second].into_iter().filter_map(reads_local).min() {
            Some(at) => at,
            // A gap: read with the offset after it, `local` names an instant before it (the
            // clocks had not yet moved on), and the gap ends at the next transition.
            None => {
                let before_the_gap = second.to_timestamp(local).ok()?;
                self.zone.following(before_the_gap).next()?.timestamp()
            }
        };
        Some(instant.as_millisecond())
    }

    /// Beyond jiff's calendar (the years -9999 to 9999) there is no local date: days of
    /// exactly 24 h starting at the anchor's minute of the UTC day keep the answers ordered.
    fn grid_day_start(&self, now: Millis) -> Millis {
        let offset = Millis::from(self.minute()) * MINUTE_MS;
        now.saturating_sub((now.rem_euclid(DAY_MS) - offset).rem_euclid(DAY_MS))
    }
}

impl fmt::Display for DayAnchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let minute = self.minute();
        write!(
            f,
            "{:02}:{:02} {}",
            minute / 60,
            minute % 60,
            self.zone.iana_name().unwrap_or("Etc/Unknown")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_instant;
    use jiff::tz::TimeZoneDatabase;
    use proptest::prelude::*;

    const HOUR_MS: Millis = 60 * MINUTE_MS;

    fn at(rfc3339: &str) -> Millis {
        parse_instant(rfc3339).expect("a literal instant")
    }

    fn anchor(text: &str) -> DayAnchor {
        let (time, zone) = text.split_once(' ').expect("HH:MM Zone");
        let (hour, minute) = time.split_once(':').expect("HH:MM");
        DayAnchor {
            minute_of_day: hour.parse::<u32>().expect("hour") * 60
                + minute.parse::<u32>().expect("minute"),
            zone: TimeZoneDatabase::bundled().get(zone).expect("a known zone"),
        }
    }

    /// Asserts the day around `now` as (start, next reset), both as RFC 3339 instants.
    #[track_caller]
    fn assert_day(anchor: &DayAnchor, now: &str, start: &str, next: &str) {
        let now_ms = at(now);
        assert_eq!(
            (anchor.day_start(now_ms), anchor.next_reset(now_ms)),
            (at(start), at(next)),
            "{anchor} at {now}"
        );
    }

    fn day_length(anchor: &DayAnchor, now: &str) -> Millis {
        let now = at(now);
        anchor.next_reset(now) - anchor.day_start(now)
    }

    #[test]
    fn los_angeles_midnight_on_ordinary_days() {
        let pacific = anchor("00:00 America/Los_Angeles");
        // Winter, PST (UTC-8): local midnight is 08:00Z.
        assert_eq!(at("2026-01-15T08:00:00Z"), 1_768_464_000_000);
        assert_day(
            &pacific,
            "2026-01-15T20:00:00Z",
            "2026-01-15T08:00:00Z",
            "2026-01-16T08:00:00Z",
        );
        // Already the 16th in UTC, still the 15th in Los Angeles.
        assert_day(
            &pacific,
            "2026-01-16T03:00:00Z",
            "2026-01-15T08:00:00Z",
            "2026-01-16T08:00:00Z",
        );
        assert_day(
            &pacific,
            "2026-01-15T07:59:59.999Z",
            "2026-01-14T08:00:00Z",
            "2026-01-15T08:00:00Z",
        );
        // Exactly at a reset the new day has begun.
        assert_day(
            &pacific,
            "2026-01-15T08:00:00Z",
            "2026-01-15T08:00:00Z",
            "2026-01-16T08:00:00Z",
        );
        assert_eq!(day_length(&pacific, "2026-01-15T20:00:00Z"), 24 * HOUR_MS);

        // Summer, PDT (UTC-7): local midnight is 07:00Z.
        assert_day(
            &pacific,
            "2026-07-04T19:00:00Z",
            "2026-07-04T07:00:00Z",
            "2026-07-05T07:00:00Z",
        );
        assert_day(
            &pacific,
            "2026-07-05T07:00:00Z",
            "2026-07-05T07:00:00Z",
            "2026-07-06T07:00:00Z",
        );
        assert_eq!(day_length(&pacific, "2026-07-04T19:00:00Z"), 24 * HOUR_MS);
    }

    #[test]
    fn los_angeles_spring_forward_day_is_23_hours() {
        // 2026-03-08: 02:00 PST (10:00Z) becomes 03:00 PDT.
        let pacific = anchor("00:00 America/Los_Angeles");
        let (start, next) = ("2026-03-08T08:00:00Z", "2026-03-09T07:00:00Z");
        for now in [
            start,
            "2026-03-08T09:59:59.999Z", // 01:59:59.999 PST, just before the change
            "2026-03-08T10:00:00Z",     // 03:00 PDT, just after
            "2026-03-09T06:59:59.999Z", // 23:59:59.999 PDT
        ] {
            assert_day(&pacific, now, start, next);
        }
        assert_eq!(day_length(&pacific, "2026-03-08T12:00:00Z"), 23 * HOUR_MS);
        // Around the midnights that bound it.
        assert_day(
            &pacific,
            "2026-03-08T07:59:59.999Z",
            "2026-03-07T08:00:00Z",
            start,
        );
        assert_day(&pacific, next, next, "2026-03-10T07:00:00Z");
        assert_eq!(day_length(&pacific, "2026-03-07T12:00:00Z"), 24 * HOUR_MS);
        assert_eq!(day_length(&pacific, "2026-03-09T12:00:00Z"), 24 * HOUR_MS);
    }

    #[test]
    fn los_angeles_fall_back_day_is_25_hours() {
        // 2026-11-01: 02:00 PDT (09:00Z) becomes 01:00 PST; 01:00 to 02:00 happens twice.
        let pacific = anchor("00:00 America/Los_Angeles");
        let (start, next) = ("2026-11-01T07:00:00Z", "2026-11-02T08:00:00Z");
        for now in [
            start,
            "2026-11-01T08:30:00Z",     // 01:30 PDT, the first time
            "2026-11-01T08:59:59.999Z", // just before the change
            "2026-11-01T09:00:00Z",     // 01:00 PST, just after
            "2026-11-01T09:30:00Z",     // 01:30 PST, the second time
            "2026-11-02T07:59:59.999Z", // 23:59:59.999 PST
        ] {
            assert_day(&pacific, now, start, next);
        }
        assert_eq!(day_length(&pacific, "2026-11-01T12:00:00Z"), 25 * HOUR_MS);
        assert_day(
            &pacific,
            "2026-11-01T06:59:59.999Z",
            "2026-10-31T07:00:00Z",
            start,
        );
        assert_day(&pacific, next, next, "2026-11-03T08:00:00Z");
        assert_eq!(day_length(&pacific, "2026-10-31T12:00:00Z"), 24 * HOUR_MS);
        assert_eq!(day_length(&pacific, "2026-11-02T12:00:00Z"), 24 * HOUR_MS);
    }

    #[test]
    fn a_reset_time_skipped_by_spring_forward_resets_when_the_gap_ends() {
        // 2026-03-08 in New York: 02:00 EST (07:00Z) becomes 03:00 EDT, so 02:30 never
        // happens; the reset is at 03:00 EDT, the first instant after the gap.
        let eastern = anchor("02:30 America/New_York");
        let skipped = "2026-03-08T07:00:00Z";
        assert_day(
            &eastern,
            "2026-03-08T06:59:59.999Z", // 01:59:59.999 EST
            "2026-03-07T07:30:00Z",     // 02:30 EST
            skipped,
        );
        assert_day(&eastern, skipped, skipped, "2026-03-09T06:30:00Z"); // 02:30 EDT
        assert_day(
            &eastern,
            "2026-03-08T07:30:00Z", // 03:30 EDT
            skipped,
            "2026-03-09T06:30:00Z",
        );
        // The hour lost is shared: 23 h 30 min before the gap's end and after it.
        assert_eq!(
            day_length(&eastern, "2026-03-08T00:00:00Z"),
            23 * HOUR_MS + 30 * MINUTE_MS
        );
        assert_eq!(
            day_length(&eastern, "2026-03-08T12:00:00Z"),
            23 * HOUR_MS + 30 * MINUTE_MS
        );
    }

    #[test]
    fn a_reset_time_repeated_by_fall_back_resets_the_first_time_only() {
        // 2026-11-01 in New York: 02:00 EDT (06:00Z) becomes 01:00 EST, so 01:30 happens at
        // 05:30Z (EDT) and again at 06:30Z (EST); only the first is a reset.
        let eastern = anchor("01:30 America/New_York");
        let first = "2026-11-01T05:30:00Z";
        assert_day(
            &eastern,
            "2026-11-01T05:29:59.999Z",
            "2026-10-31T05:30:00Z",
            first,
        );
        assert_day(&eastern, first, first, "2026-11-02T06:30:00Z");
        assert_day(
            &eastern,
            "2026-11-01T06:30:00Z", // 01:30 EST, the second time
            first,
            "2026-11-02T06:30:00Z",
        );
        assert_eq!(day_length(&eastern, "2026-11-01T12:00:00Z"), 25 * HOUR_MS);
        assert_eq!(day_length(&eastern, "2026-10-31T12:00:00Z"), 24 * HOUR_MS);
    }

    #[test]
    fn a_fold_the_zone_does_not_have_is_no_fold() {
        // Greenland kept -02 through the autumn of 2023 (its summer time became standard
        // time), so 23:00 on 2023-10-28 happened once, at 01:00Z; jiff's rule for the
        // following years puts a fold there, at -01 and -02.
        let nuuk = anchor("23:00 America/Nuuk");
        assert_day(
            &nuuk,
            "2023-10-29T00:30:00Z",
            "2023-10-28T01:00:00Z",
            "2023-10-29T01:00:00Z",
        );
        assert_day(
            &nuuk,
            "2023-10-29T01:00:00Z",
            "2023-10-29T01:00:00Z",
            "2023-10-30T01:00:00Z",
        );
    }

    #[test]
    fn zones_east_of_utc() {
        // Tokyo is UTC+9 all year: local midnight is 15:00Z the day before.
        let tokyo = anchor("00:00 Asia/Tokyo");
        assert_day(
            &tokyo,
            "2026-01-14T16:00:00Z", // 01:00 on the 15th in Tokyo
            "2026-01-14T15:00:00Z",
            "2026-01-15T15:00:00Z",
        );
        assert_day(
            &tokyo,
            "2026-01-14T14:59:59.999Z",
            "2026-01-13T15:00:00Z",
            "2026-01-14T15:00:00Z",
        );
        assert_day(
            &tokyo,
            "2026-07-01T00:00:00Z",
            "2026-06-30T15:00:00Z",
            "2026-07-01T15:00:00Z",
        );

        // Berlin: 09:00 CET (UTC+1) is 08:00Z, 09:00 CEST (UTC+2) is 07:00Z; clocks go
        // forward on 2026-03-29 at 01:00Z.
        let berlin = anchor("09:00 Europe/Berlin");
        assert_day(
            &berlin,
            "2026-01-15T07:59:59.999Z",
            "2026-01-14T08:00:00Z",
            "2026-01-15T08:00:00Z",
        );
        assert_day(
            &berlin,
            "2026-01-15T08:00:00Z",
            "2026-01-15T08:00:00Z",
            "2026-01-16T08:00:00Z",
        );
        assert_day(
            &berlin,
            "2026-03-29T03:00:00Z",
            "2026-03-28T08:00:00Z",
            "2026-03-29T07:00:00Z",
        );
        assert_eq!(day_length(&berlin, "2026-03-29T03:00:00Z"), 23 * HOUR_MS);
        assert_day(
            &berlin,
            "2026-07-01T12:00:00Z",
            "2026-07-01T07:00:00Z",
            "2026-07-02T07:00:00Z",
        );
    }

    #[test]
    fn utc_days() {
        let midnight = DayAnchor {
            minute_of_day: 0,
            zone: TimeZone::UTC,
        };
        let t0 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        assert_eq!(midnight.day_start(t0), t0);
        assert_eq!(midnight.next_reset(t0), t0 + DAY_MS);
        assert_eq!(midnight.day_start(t0 - 1), t0 - DAY_MS);
        assert_eq!(midnight.next_reset(t0 - 1), t0);

        let quarter_to_two = anchor("13:45 UTC");
        assert_day(
            &quarter_to_two,
            "2026-01-01T12:00:00Z",
            "2025-12-31T13:45:00Z",
            "2026-01-01T13:45:00Z",
        );
    }

    #[test]
    fn a_day_skipped_by_the_calendar_leaves_one_24_hour_day() {
        // Samoa moved across the date line: 2011-12-29 23:59:59 (UTC-10) was followed by
        // 2011-12-31 00:00 (UTC+14); the 30th never happened there.
        let apia = anchor("00:00 Pacific/Apia");
        assert_day(
            &apia,
            "2011-12-30T09:59:59Z",
            "2011-12-29T10:00:00Z",
            "2011-12-30T10:00:00Z",
        );
        assert_day(
            &apia,
            "2011-12-30T10:00:00Z",
            "2011-12-30T10:00:00Z",
            "2011-12-31T10:00:00Z",
        );
    }

    #[test]
    fn a_day_repeated_by_the_calendar_makes_one_48_hour_day() {
        // Alaska became American on 1867-10-19 at 15:30 local time (UTC+14:58:47), and
        // its clocks went back to 1867-10-18 15:30 (UTC-9:01:13): local midnight of the 19th
        // came twice, and only the first is a reset.
        let sitka = anchor("00:00 America/Sitka");
        let (start, next) = ("1867-10-18T09:01:13Z", "1867-10-20T09:01:13Z");
        for now in [
            start,
            "1867-10-19T00:31:12Z", // 15:29:59 on the 19th, before the change
            "1867-10-19T00:31:13Z", // 15:30 on the 18th, after it
            "1867-10-19T09:01:13Z", // midnight of the 19th, the second time
        ] {
            assert_day(&sitka, now, start, next);
        }
        assert_eq!(day_length(&sitka, start), 2 * DAY_MS);
    }

    #[test]
    fn displays_as_written_in_the_endpoints_file() {
        assert_eq!(
            anchor("00:00 America/Los_Angeles").to_string(),
            "00:00 America/Los_Angeles"
        );
        assert_eq!(
            anchor("23:59 Asia/Kolkata").to_string(),
            "23:59 Asia/Kolkata"
        );
        assert_eq!(
            anchor("09:05 Europe/Berlin").to_string(),
            "09:05 Europe/Berlin"
        );
    }

    #[test]
    fn instants_past_the_calendar_stay_ordered_and_never_panic() {
        let pacific = anchor("00:00 America/Los_Angeles");
        for now in [
            Millis::MIN,
            Millis::MIN + 1,
            -1 << 62,
            1 << 62,
            Millis::MAX - DAY_MS,
        ] {
            let (start, next) = (pacific.day_start(now), pacific.next_reset(now));
            assert!(start <= now && now < next, "{now}: {start} {next}");
        }
        assert_eq!(pacific.next_reset(Millis::MAX), Millis::MAX);
    }

    /// The names of every zone in the bundled database.
    fn all_zones() -> Vec<String> {
        TimeZoneDatabase::bundled()
            .available()
            .map(|name| name.as_str().to_owned())
            .collect()
    }

    proptest! {
        /// In every zone, `now` lies in [day_start, next_reset), there is no reset in between,
        /// and a day is never shorter than 0 or longer than two.
        #[test]
        fn the_day_around_now_is_consistent_in_every_zone(
            zone in proptest::sample::select(all_zones()),
            minute_of_day in 0..MINUTES_PER_DAY,
            now in at("1850-01-01T00:00:00Z")..at("2150-01-01T00:00:00Z"),
        ) {
            let zone = TimeZoneDatabase::bundled().get(&zone).expect("a listed zone");
            let anchor = DayAnchor { minute_of_day, zone };
            let (start, next) = (anchor.day_start(now), anchor.next_reset(now));
            prop_assert!(start <= now && now < next, "{} {} {}", anchor, start, next);
            prop_assert!(next - start <= 2 * DAY_MS, "{} {} {}", anchor, start, next);
            prop_assert_eq!(anchor.day_start(start), start);
            prop_assert_eq!(anchor.next_reset(start), next);
            prop_assert_eq!(anchor.day_start(next - 1), start);
            prop_assert_eq!(anchor.day_start(next), next);
        }
    }

    /// Asserts the month around `now` as (previous start, start, next start).
    #[track_caller]
    fn assert_month(anchor: &DayAnchor, now: &str, months: [&str; 3]) {
        let now_ms = at(now);
        assert_eq!(
            [
                anchor.previous_month_start(now_ms),
                anchor.month_start(now_ms),
                anchor.next_month_start(now_ms)
            ],
            months.map(at),
            "{anchor} at {now}"
        );
    }

    #[test]
    fn months_begin_on_the_first_at_the_reset_in_every_zone() {
        let utc = &UTC_MONTHS;
        assert_month(
            utc,
            "2026-03-01T00:00:00Z",
            [
                "2026-02-01T00:00:00Z",
                "2026-03-01T00:00:00Z",
                "2026-04-01T00:00:00Z",
            ],
        );
        assert_month(
            utc,
            "2026-02-28T23:59:59.999Z",
            [
                "2026-01-01T00:00:00Z",
                "2026-02-01T00:00:00Z",
                "2026-03-01T00:00:00Z",
            ],
        );
        // +05:30 and +05:45: the month begins the evening before, UTC.
        assert_month(
            &anchor("00:00 Asia/Kolkata"),
            "2026-01-31T18:30:00Z",
            [
                "2025-12-31T18:30:00Z",
                "2026-01-31T18:30:00Z",
                "2026-02-28T18:30:00Z",
            ],
        );
        assert_month(
            &anchor("00:00 Asia/Kathmandu"),
            "2026-01-31T18:14:59.999Z",
            [
                "2025-11-30T18:15:00Z",
                "2025-12-31T18:15:00Z",
                "2026-01-31T18:15:00Z",
            ],
        );
        // A reset late in the day: the 1st before 07:00 is still the month before.
        assert_month(
            &anchor("07:00 Europe/Berlin"),
            "2026-04-01T04:59:00Z",
            [
                "2026-02-01T06:00:00Z",
                "2026-03-01T06:00:00Z",
                "2026-04-01T05:00:00Z",
            ],
        );
        // New York's November holds the change back to EST: 721 hours long.
        let ny = anchor("00:00 America/New_York");
        let november = at("2026-11-15T12:00:00Z");
        assert_eq!(
            ny.next_month_start(november) - ny.month_start(november),
            (30 * 24 + 1) * HOUR_MS
        );
    }
}
