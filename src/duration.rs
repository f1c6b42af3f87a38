//! Durations as people type them (`30s`, `1h5m`) and as providers send them in rate-limit
//! headers (`2m59.56s`, `6m0s`, `20ms`). Fractions are summed in exact integers, not
//! floats, so `0.1s` is 100 ms rather than 99 and rounding happens once, at the end.

use crate::clock::Millis;
use chrono::DateTime;

/// The longest duration accepted, about 31,700 years: anything longer is a typo, and keeping
/// far below `i64::MAX` lets callers add a duration to an instant without overflow checks.
pub const MAX_DURATION_MS: Millis = 1_000_000_000_000_000;

/// Fraction digits kept exactly; later digits still have to be digits but change the result
/// by less than 1e-15 ms, which the final rounding to a millisecond never sees.
const FRACTION_DIGITS: u32 = 18;
/// One millisecond in the fixed-point unit the components are summed in.
const SCALE: u128 = 10u128.pow(FRACTION_DIGITS);

const EXAMPLES: &str = "like 30s, 2m, 1h5m";

/// Durations on the command line and in rate-limit headers: `30` (seconds), `30s`, `2m`,
/// `1h5m`, `2m59.56s`, `6m0s`, `20ms`, `1.5s`, `0.5h`, `7d`; units d, h, m, s, ms; components in
/// decreasing order, each unit at most once; whitespace around ignored; case-insensitive.
/// Result rounded to the nearest millisecond (halves up). Errors (empty, negative, unknown
/// unit, `1m2h`, `5x`, `inf`, NaN, longer than [`MAX_DURATION_MS`]) are Err with a short
/// reason, e.g. `"5x" is not a duration (like 30s, 2m, 1h5m)`.
pub fn parse_duration(text: &str) -> Result<Millis, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("empty duration ({EXAMPLES})"));
    }
    let not_a_duration = || format!("{text:?} is not a duration ({EXAMPLES})");
    if let Some(magnitude) = text.strip_prefix('-') {
        return Err(match parse_duration(magnitude) {
            Ok(_) => format!("{text:?} is negative; a duration is 0 or more"),
            Err(_) => not_a_duration(),
        });
    }
    let too_long = || format!("{text:?} is too long a duration (at most {MAX_DURATION_MS} ms)");

    let lower = text.to_ascii_lowercase();
    let mut rest = lower.as_str();
    let mut total: u128 = 0;
    let mut previous_unit_ms: Option<u128> = None;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        let unit_end = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let unit_ms: u128 = match unit {
            // A bare number is seconds, as in Retry-After, but only on its own: in `1m30`
            // the trailing number is more likely a forgotten unit than a deliberate second.
            "" if previous_unit_ms.is_none() && after.is_empty() => 1_000,
            "d" => 86_400_000,
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1_000,
            "ms" => 1,
            _ => return Err(not_a_duration()),
        };
        if previous_unit_ms.is_some_and(|previous| previous <= unit_ms) {
            return Err(format!(
                "{text:?} is not a duration: units go from largest to smallest (d, h, m, s, ms), each at most once"
            ));
        }
        previous_unit_ms = Some(unit_ms);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(not_a_duration());
        }
        let whole_ms = digits_value(whole)
            .and_then(|n| n.checked_mul(unit_ms))
            .filter(|&ms| ms <= MAX_DURATION_MS as u128)
            .ok_or_else(too_long)?;
        total += whole_ms * SCALE + fraction_value(fraction) * unit_ms;
        rest = after;
    }
    let ms = (total + SCALE / 2) / SCALE;
    if ms > MAX_DURATION_MS as u128 {
        return Err(too_long());
    }
    Ok(ms as Millis)
}

/// The value of a run of ASCII digits (empty is 0); None past u128.
fn digits_value(digits: &str) -> Option<u128> {
    digits.bytes().try_fold(0u128, |n, digit| {
        n.checked_mul(10)?.checked_add(u128::from(digit - b'0'))
    })
}

/// The digits after a decimal point as a multiple of 10^-FRACTION_DIGITS.
fn fraction_value(digits: &str) -> u128 {
    let kept = &digits[..digits.len().min(FRACTION_DIGITS as usize)];
    let padding = FRACTION_DIGITS - kept.len() as u32;
    kept.bytes()
        .fold(0u128, |n, digit| n * 10 + u128::from(digit - b'0'))
        * 10u128.pow(padding)
}

/// A time a provider sends: a wait, or an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Later {
    In(Millis),
    At(Millis),
}

impl Later {
    /// The wait from `now`; 0 when the instant has passed.
    pub fn wait_from(self, now: Millis) -> Millis {
        match self {
            Later::In(wait) => wait,
            Later::At(at) => at.saturating_sub(now).max(0),
        }
    }
}

/// A Retry-After value: a duration as above, or an HTTP date (`Wed, 21 Oct 2026 07:28:00
/// GMT`, via chrono's RFC 2822 parser). Read without a clock: a date is measured against
/// the time of the step that records it.
pub fn parse_retry_after(text: &str) -> Result<Later, String> {
    let text = text.trim();
    let duration_error = match parse_duration(text) {
        Ok(wait) => return Ok(Later::In(wait)),
        Err(error) => error,
    };
    match DateTime::parse_from_rfc2822(text) {
        Ok(at) => Ok(Later::At(at.timestamp_millis())),
        // Something that starts like a number was meant as a duration; say what is wrong
        // with it rather than that it is not a date either.
        Err(_) if text.is_empty() || text.starts_with(|c: char| c.is_ascii_digit() || c == '-') => {
            Err(duration_error)
        }
        Err(_) => Err(format!(
            "{text:?} is neither a duration ({EXAMPLES}) nor an HTTP date \
             (like Wed, 21 Oct 2026 07:28:00 GMT)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn ms(text: &str) -> Millis {
        match parse_duration(text) {
            Ok(ms) => ms,
            Err(error) => panic!("{text:?} should parse: {error}"),
        }
    }

    fn error(text: &str) -> String {
        match parse_duration(text) {
            Ok(ms) => panic!("{text:?} should not parse, got {ms} ms"),
            Err(error) => error,
        }
    }

    #[test]
    fn every_form_parses_to_milliseconds() {
        assert_eq!(ms("30"), 30_000);
        assert_eq!(ms("30s"), 30_000);
        assert_eq!(ms("2m"), 120_000);
        assert_eq!(ms("1h5m"), 3_900_000);
        assert_eq!(ms("7d"), 7 * 86_400_000);
        assert_eq!(ms("1d12h"), 36 * 3_600_000);
        assert_eq!(ms("2m59.56s"), 179_560);
        assert_eq!(ms("6m0s"), 360_000);
        assert_eq!(ms("20ms"), 20);
        assert_eq!(ms("1.5s"), 1_500);
        assert_eq!(ms("0.5h"), 1_800_000);
        assert_eq!(ms("1h2m3s4ms"), 3_723_004);
        assert_eq!(ms("1.5"), 1_500);
        assert_eq!(ms("0"), 0);
        assert_eq!(ms("0s"), 0);
        assert_eq!(ms(".5s"), 500);
        assert_eq!(ms("7.66s"), 7_660);
    }

    #[test]
    fn whitespace_around_and_case_do_not_matter() {
        assert_eq!(ms("  30s\t\n"), 30_000);
        assert_eq!(ms("1H5M"), 3_900_000);
        assert_eq!(ms("20MS"), 20);
        assert_eq!(ms("2M59.56S"), 179_560);
    }

    #[test]
    fn fractions_are_exact_and_round_to_the_nearest_millisecond() {
        assert_eq!(ms("0.1s"), 100);
        assert_eq!(ms("0.3s"), 300);
        assert_eq!(ms("0.0005s"), 1, "a half rounds up");
        assert_eq!(ms("0.00049s"), 0);
        assert_eq!(ms("1.4ms"), 1);
        assert_eq!(ms("1.6ms"), 2);
        assert_eq!(ms("33011.382867097855"), 33_011_383);
        // Rounding happens on the sum, not per component: 0.5 ms + 0.0004 s is 0.9 ms.
        assert_eq!(ms("0.0004s0.5ms"), 1);
        assert_eq!(
            ms("0.0000000000000000001s"),
            0,
            "digits past the 18th are dropped"
        );
    }

    #[test]
    fn the_longest_duration_is_accepted_and_one_more_is_not() {
        assert_eq!(ms("1000000000000000ms"), MAX_DURATION_MS);
        assert!(error("1000000000000001ms").contains("too long"));
        assert!(error("300000000h").contains("too long"));
        assert!(error("999999999999999999999999999999999999999999s").contains("too long"));
        assert_eq!(ms("999999999999999.9999ms"), MAX_DURATION_MS);
        assert!(
            error("1000000000000000.5ms").contains("too long"),
            "after rounding"
        );
    }

    #[test]
    fn bad_durations_say_why() {
        assert_eq!(
            error("5x"),
            r#""5x" is not a duration (like 30s, 2m, 1h5m)"#
        );
        assert_eq!(error(""), "empty duration (like 30s, 2m, 1h5m)");
        assert_eq!(error("   "), "empty duration (like 30s, 2m, 1h5m)");
        assert_eq!(
            error(" -5s "),
            r#""-5s" is negative; a duration is 0 or more"#
        );
        assert!(error("-5").contains("negative"));
        assert_eq!(
            error("1m2h"),
            r#""1m2h" is not a duration: units go from largest to smallest (d, h, m, s, ms), each at most once"#
        );
        assert!(error("1m1m").contains("each at most once"));
        assert!(error("1ms1s").contains("from largest to smallest"));
        for text in [
            "inf", "NaN", "-inf", "s", "m5", "1m30", "1..5s", ".", ".s", "1.2.3s", "1e3", "1h 5m",
            "+5s", "5mins", "1w", "5 s", "0x10", "1,5s", "½s",
        ] {
            assert!(
                error(text).ends_with("is not a duration (like 30s, 2m, 1h5m)"),
                "{text:?}: {}",
                error(text)
            );
        }
    }

    /// A Retry-After as the wait from NOW it means.
    fn wait(text: &str) -> Result<Millis, String> {
        parse_retry_after(text).map(|later| later.wait_from(NOW))
    }

    #[test]
    fn retry_after_in_seconds_is_a_wait_from_now() {
        assert_eq!(wait("120"), Ok(120_000));
        assert_eq!(wait(" 1.5 "), Ok(1_500));
        assert_eq!(wait("0"), Ok(0));
        assert_eq!(wait("2m"), Ok(120_000));
    }

    #[test]
    fn retry_after_as_an_http_date() {
        assert_eq!(wait("Thu, 01 Jan 2026 00:01:30 GMT"), Ok(90_000));
        assert_eq!(
            wait("Wed, 21 Oct 2026 07:28:00 GMT"),
            Ok(1_792_567_680_000 - NOW)
        );
        assert_eq!(
            wait("Wed, 31 Dec 2025 23:59:00 GMT"),
            Ok(0),
            "a date in the past means no wait"
        );
        assert_eq!(wait("Thu, 01 Jan 2026 00:00:00 GMT"), Ok(0));
    }

    #[test]
    fn bad_retry_after_values_say_why() {
        assert_eq!(
            wait("soon"),
            Err(r#""soon" is neither a duration (like 30s, 2m, 1h5m) nor an HTTP date (like Wed, 21 Oct 2026 07:28:00 GMT)"#.to_string())
        );
        assert_eq!(
            wait("-5"),
            Err(r#""-5" is negative; a duration is 0 or more"#.to_string())
        );
        assert_eq!(
            wait(""),
            Err("empty duration (like 30s, 2m, 1h5m)".to_string())
        );
        assert!(wait("Wed, 32 Oct 2026 07:28:00 GMT").is_err());
    }
}
