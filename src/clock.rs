//! Time in llm-rotate: its unit, the one place that reads the system clock, and the one
//! place that sleeps. `LLM_ROTATE_NOW` pins the time so that tests and what-if runs move
//! time instead of sleeping: with it set, a sleep moves the pinned time forward and returns
//! at once. A ledger reads the clock only under its lock (see `ledger`), and never judges
//! a write earlier than what it already holds.

use std::sync::atomic::{AtomicI64, Ordering};

use anyhow::{Context, Result, bail};
use chrono::DateTime;

use crate::env::{self, NOW as NOW_VAR};

/// Milliseconds since the Unix epoch: the one unit of time inside llm-rotate.
pub type Millis = i64;

pub const SECOND_MS: Millis = 1_000;
pub const MINUTE_MS: Millis = 60 * SECOND_MS;
pub const HOUR_MS: Millis = 60 * MINUTE_MS;

/// How far this process has slept past a pinned time.
static SLEPT: AtomicI64 = AtomicI64::new(0);

/// The current time: `LLM_ROTATE_NOW` when set, else the system clock.
pub fn now() -> Result<Millis> {
    Ok(match pinned_now()? {
        Some(at) => at,
        None => system_now(),
    })
}

/// `LLM_ROTATE_NOW`, moved on by what this process slept, when it is set. A ledger with a
/// clock of its own (a server's) uses its clock only when this is `None`.
pub fn pinned_now() -> Result<Option<Millis>> {
    Ok(pinned()?.map(|at| at + SLEPT.load(Ordering::Relaxed)))
}

/// Waits `wait`: really, or, with the time pinned, by moving it forward. A wait is a
/// span of the ledger's time, whatever clock this machine keeps.
pub fn sleep_for(wait: Millis) -> Result<()> {
    if wait <= 0 {
        return Ok(());
    }
    if pinned()?.is_some() {
        SLEPT.fetch_add(wait, Ordering::Relaxed);
    } else {
        std::thread::sleep(std::time::Duration::from_millis(wait as u64));
    }
    Ok(())
}

fn pinned() -> Result<Option<Millis>> {
    let Some(value) = env::get(NOW_VAR) else {
        return Ok(None);
    };
    let Some(text) = value.to_str() else {
        bail!("{NOW_VAR} is not valid UTF-8");
    };
    parse_instant(text)
        .map(Some)
        .with_context(|| format!("{NOW_VAR}={text:?}"))
}

#[allow(clippy::disallowed_methods)] // the single sanctioned read of the system clock
fn system_now() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// RFC 3339 (`2026-01-01T00:00:00Z`, fractions allowed) or Unix seconds (`1767225600.25`).
pub fn parse_instant(text: &str) -> Result<Millis> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.timestamp_millis());
    }
    let seconds: f64 = match text.parse() {
        Ok(s)
            if text
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-') =>
        {
            s
        }
        _ => bail!("not a time: use RFC 3339 (2026-01-01T00:00:00Z) or Unix seconds (1767225600)"),
    };
    let millis = (seconds * 1000.0).round();
    if !millis.is_finite() || millis.abs() > 1e15 {
        bail!("time out of range");
    }
    Ok(millis as Millis)
}

#[cfg(test)]
mod tests {
    use super::parse_instant;

    #[test]
    fn accepts_rfc3339_and_unix_seconds() {
        let t0 = 1_767_225_600_000;
        assert_eq!(parse_instant("2026-01-01T00:00:00Z").expect("rfc3339"), t0);
        assert_eq!(
            parse_instant("2026-01-01T01:00:00.5+01:00").expect("offset"),
            t0 + 500
        );
        assert_eq!(parse_instant("1767225600").expect("seconds"), t0);
        assert_eq!(parse_instant("1767225600.25").expect("fraction"), t0 + 250);
    }

    #[test]
    fn rejects_anything_else() {
        for bad in [
            "",
            "tomorrow",
            "1767225600s",
            "2026-01-01",
            "1e9",
            "NaN",
            "inf",
        ] {
            assert!(parse_instant(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
