//! Picking with `--wait`: one step of the ledger chooses (and reserves); when nothing
//! fits and the wait allows, sleep until the ledger says a slot frees, and try again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;

use super::choose::{self, Choice, Strategy};
use crate::clock::{self, Millis, SECOND_MS};
use crate::endpoints::Endpoint;
use crate::estimate::Estimate;
use crate::ledger::{Book, Ledger};

/// While waiting, look again at least this often: a settle or a reset by another process
/// can free a slot sooner than the ledger foresaw.
const LONGEST_NAP: Millis = SECOND_MS;
/// How soon a wait notices a signal.
const SIGNAL_NAP: Millis = 20;

/// `--wait`: not at all, for at most a span, or (`Some(None)`) as long as it takes. The
/// span is measured on the ledger's clock from the first attempt, so that a machine whose
/// clock disagrees with a shared ledger's still waits as long as it was told.
pub struct Wait {
    limit: Option<Option<Millis>>,
    deadline: std::cell::Cell<Option<Millis>>,
    /// Set by a signal: the wait ends at once.
    stop: Option<Arc<AtomicBool>>,
}

impl Wait {
    pub fn new(limit: Option<Option<Millis>>) -> Result<Wait> {
        Ok(Wait {
            limit,
            deadline: std::cell::Cell::new(None),
            stop: None,
        })
    }

    /// A wait that ends as soon as `stop` is set (by a signal a caller watches for).
    pub fn stopped_by(self, stop: Arc<AtomicBool>) -> Wait {
        Wait {
            stop: Some(stop),
            ..self
        }
    }

    fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    }

    /// Sleeps `span`, in short naps when a signal may end the wait; false when one did.
    pub fn sleep(&self, span: Millis) -> Result<bool> {
        let Some(_) = &self.stop else {
            clock::sleep_for(span)?;
            return Ok(true);
        };
        let mut left = span;
        while left > 0 && !self.stopped() {
            let nap = left.min(SIGNAL_NAP);
            clock::sleep_for(nap)?;
            left -= nap;
        }
        Ok(!self.stopped())
    }

    /// How long to sleep before trying again, when nothing fits at `now` and the first
    /// slot frees at `earliest`: until then, at most [`LONGEST_NAP`] and never past the
    /// deadline. `None` when the wait is over (or there is none).
    pub fn nap(&self, earliest: Option<Millis>, now: Millis) -> Option<Millis> {
        let deadline = self.deadline(now)?;
        if deadline.is_some_and(|d| now >= d) || self.stopped() {
            return None;
        }
        let earliest = earliest.unwrap_or(now);
        // A slot the ledger cannot date (or dates in the past) is looked for again after a
        // nap rather than in a tight loop.
        let wake = if earliest > now {
            earliest
        } else {
            now + LONGEST_NAP
        };
        let wake = wake.min(now + LONGEST_NAP);
        let wake = deadline.map_or(wake, |d| wake.min(d)).max(now + 1);
        Some(wake - now)
    }

    /// The deadline, once the first attempt has told the ledger's time: `None` for no
    /// waiting, `Some(None)` for no deadline.
    fn deadline(&self, now: Millis) -> Option<Option<Millis>> {
        let span = self.limit?;
        Some(span.map(|span| {
            let deadline = self.deadline.get().unwrap_or(now + span);
            self.deadline.set(Some(deadline));
            deadline
        }))
    }
}

/// What to pick for, and whether to reserve it.
#[derive(Clone, Copy)]
pub struct How {
    pub estimate: Estimate,
    pub strategy: Strategy,
    pub reserve: bool,
}

/// Chooses (and reserves) among `candidates` in one step of the ledger; when nothing fits
/// and `wait` allows, sleeps until the ledger says a slot frees, and tries again. Returns
/// the choice and the time of the step that made it; a wait that a signal stopped returns
/// what it last found, and nothing more is tried.
pub fn pick<'e>(
    ledger: &mut dyn Ledger,
    candidates: &[&'e Endpoint],
    how: How,
    wait: &Wait,
) -> Result<(Choice<'e>, Millis)> {
    let expected = choose::expected(candidates, how.strategy);
    loop {
        ledger.expect(&expected);
        // The time of each attempt is the ledger's, read under its lock.
        let step = |book: &dyn Book, now: Millis| {
            let choice = choose::choose(
                book,
                candidates,
                how.estimate,
                how.strategy,
                how.reserve,
                now,
            )?;
            Ok((choice, now))
        };
        let (choice, now) = if how.reserve {
            ledger.write(step)?
        } else {
            ledger.read(step)?
        };
        let Choice::Exhausted(blocked) = &choice else {
            return Ok((choice, now));
        };
        match wait.nap(blocked.iter().map(|b| b.frees_at).min(), now) {
            Some(nap) if wait.sleep(nap)? => {}
            _ => return Ok((choice, now)),
        }
    }
}
