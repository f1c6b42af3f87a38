//! How an endpoint's answers move its cooldown: a 429 cools it down (for the provider's
//! Retry-After, else an exponential back-off), three failures in a row do the same, and a
//! success after the cooldown ends it. Pure: the ledger stores what this decides.

use crate::clock::{MINUTE_MS, Millis, SECOND_MS};

const FIRST_BACKOFF: Millis = 5 * SECOND_MS;
const LONGEST_BACKOFF: Millis = 10 * MINUTE_MS;
const FAILURES_TO_COOL: u32 = 3;

/// An endpoint's recent answers: set by 429s and failures, cleared by success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cooldown {
    /// Picks skip the endpoint until then (when `strikes` > 0).
    pub until: Millis,
    pub reason: String,
    /// Cooldowns in a row without a success; each doubles the next back-off.
    pub strikes: u32,
    /// Failed calls in a row since the last success.
    pub failures: u32,
    /// When the one probe after the cooldown was handed out.
    pub probe_at: Option<Millis>,
}

/// How a recorded call went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Refused with 429; `retry_after` is the wait the provider asked for.
    RateLimited {
        retry_after: Option<Millis>,
    },
    Failed,
}

/// 5 s, doubling with each cooldown in a row, at most 10 min.
pub fn backoff(strikes: u32) -> Millis {
    let doublings = strikes.saturating_sub(1).min(16);
    (FIRST_BACKOFF << doublings).min(LONGEST_BACKOFF)
}

/// The cooldown after `outcome` at `now`; `None` is a healthy endpoint.
pub fn after(previous: Option<&Cooldown>, outcome: Outcome, now: Millis) -> Option<Cooldown> {
    let previous = previous.cloned().unwrap_or(Cooldown {
        until: now,
        reason: String::new(),
        strikes: 0,
        failures: 0,
        probe_at: None,
    });
    let cool = |strikes: u32, wait: Millis, reason: &str| Cooldown {
        // A cooldown never shortens one already running.
        until: previous.until.max(now + wait),
        reason: reason.to_owned(),
        strikes,
        failures: 0,
        probe_at: None,
    };
    match outcome {
        // A success while the cooldown runs (a call that started before the 429) does not
        // end it early; the one after it, the probe's, does.
        Outcome::Success if previous.strikes > 0 && now < previous.until => Some(Cooldown {
            failures: 0,
            ..previous
        }),
        Outcome::Success => None,
        Outcome::RateLimited { retry_after } => {
            let strikes = previous.strikes + 1;
            let wait = retry_after.unwrap_or_else(|| backoff(strikes));
            Some(cool(strikes, wait, "rate-limited"))
        }
        // The probe after a cooldown failed: the endpoint is not back, cool down again.
        Outcome::Failed if previous.strikes > 0 && now >= previous.until => {
            let strikes = previous.strikes + 1;
            Some(cool(strikes, backoff(strikes), "its probe failed"))
        }
        Outcome::Failed if previous.failures + 1 >= FAILURES_TO_COOL => {
            let strikes = previous.strikes + 1;
            Some(cool(strikes, backoff(strikes), "failed 3 times in a row"))
        }
        Outcome::Failed => Some(Cooldown {
            failures: previous.failures + 1,
            probe_at: None,
            ..previous
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_767_225_600_000;

    #[test]
    fn backoff_doubles_from_five_seconds_up_to_ten_minutes() {
        let secs: Vec<Millis> = (1..=10).map(|s| backoff(s) / 1000).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
        assert_eq!(backoff(u32::MAX), LONGEST_BACKOFF);
    }

    #[test]
    fn a_429_honours_retry_after_and_never_shortens_a_cooldown() {
        let first = after(
            None,
            Outcome::RateLimited {
                retry_after: Some(7_000),
            },
            T0,
        )
        .expect("cooling");
        assert_eq!((first.until, first.strikes), (T0 + 7_000, 1));
        let second = after(
            Some(&first),
            Outcome::RateLimited {
                retry_after: Some(1_000),
            },
            T0,
        )
        .expect("cooling");
        assert_eq!((second.until, second.strikes), (T0 + 7_000, 2));
        let third = after(
            Some(&second),
            Outcome::RateLimited { retry_after: None },
            T0,
        )
        .expect("cooling");
        assert_eq!(
            third.until,
            T0 + 20_000,
            "third in a row: 5 s doubled twice"
        );
    }

    #[test]
    fn success_ends_a_cooldown_only_once_it_has_run_out() {
        let cooling = after(None, Outcome::RateLimited { retry_after: None }, T0).expect("cooling");
        let early = after(Some(&cooling), Outcome::Success, T0 + 1_000).expect("still cooling");
        assert_eq!(early.until, T0 + 5_000);
        assert_eq!(after(Some(&cooling), Outcome::Success, T0 + 5_000), None);
    }

    #[test]
    fn three_failures_in_a_row_cool_down_and_a_success_resets_the_count() {
        let one = after(None, Outcome::Failed, T0);
        let two = after(one.as_ref(), Outcome::Failed, T0);
        assert_eq!(two.as_ref().map(|c| (c.failures, c.strikes)), Some((2, 0)));
        let healed = after(two.as_ref(), Outcome::Success, T0);
        assert_eq!(healed, None);
        let three = after(two.as_ref(), Outcome::Failed, T0).expect("cooling");
        assert_eq!(
            (three.strikes, three.failures, three.until),
            (1, 0, T0 + 5_000)
        );
        let during = after(Some(&three), Outcome::Failed, T0 + 1_000).expect("counted");
        assert_eq!(
            (during.strikes, during.failures, during.until),
            (1, 1, T0 + 5_000)
        );
        let probe_failed = after(Some(&three), Outcome::Failed, T0 + 6_000).expect("cooling");
        assert_eq!((probe_failed.strikes, probe_failed.until), (2, T0 + 16_000));
    }
}
