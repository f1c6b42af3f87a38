//! The usage ledger, in the words of the domain: what each endpoint used and when, its open
//! reservations, how it answered (cooldowns, the provider's reports) and whose turn it is.
//!
//! A [`Ledger`] runs a step under its lock and hands the step the time of that step: read
//! only once the lock is held, and never earlier than the newest entry already in the
//! ledger. So a process that waited for the lock, or a clock that stepped back, judges and
//! stamps no earlier than what the processes ahead of it wrote, and the windows, which count
//! every entry stamped after `now - W`, see all of it. The decisions (`admit`, `choose`,
//! `settle`) are plain code over a [`Book`] and that `now`.
//!
//! SQLite ([`sqlite`]) is the ledger of one machine, Redis ([`redis`]) the ledger that many
//! machines share; the in-memory one the unit tests run the same properties against keeps
//! them honest.

#[cfg(test)]
pub mod memory;
pub mod redis;
pub mod sqlite;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::clock::{self, MINUTE_MS, Millis};
use crate::cooldown::Cooldown;
use crate::quota::{self, LONGEST_WINDOW_MS, Limit, Request, Used};

/// How long a reservation stays open for `record ID` to settle it.
pub const RESERVATION_OPEN_MS: Millis = 15 * MINUTE_MS;

/// How long usage is kept: the longest window, and an hour more for a calendar day that a
/// daylight-saving change makes 25 hours long.
pub const RETENTION_MS: Millis = LONGEST_WINDOW_MS + 60 * MINUTE_MS;

/// Where the ledger lives when neither `--db` nor `LLM_ROTATE_DB` says.
pub fn default_path() -> Result<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "llm-rotate")
        .context("cannot find the user cache directory (is HOME set?); pass --db FILE")?;
    Ok(dirs.cache_dir().join("usage.sqlite3"))
}

/// Opens the ledger at `location`: a `redis://` or `rediss://` URL, else an SQLite file.
pub fn open(location: &Path) -> Result<Box<dyn Ledger>> {
    match location.to_str().filter(|l| redis::is_url(l)) {
        Some(url) => Ok(Box::new(redis::RedisLedger::open(url)?)),
        None => Ok(Box::new(sqlite::SqliteLedger::open(location)?)),
    }
}

/// A reservation in the ledger: one request and its token estimate, open until settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub lease: String,
    pub endpoint: String,
    pub at: Millis,
    pub requests: u64,
    pub tokens: u64,
    pub open: bool,
}

/// What a provider's headers said of one limit, and what was used here since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    pub limit: Limit,
    pub remaining: u64,
    pub cap: Option<u64>,
    pub resets_at: Millis,
    pub used_since: u64,
}

/// Usage: every call and reservation, counted in rolling windows.
pub trait Usage {
    /// When the newest entry of the whole ledger was stamped.
    fn newest(&self) -> Result<Option<Millis>>;
    /// A hint that the step is about to ask after these endpoints (with their day's
    /// start) at `now`: a ledger across a network reads them in one round trip.
    fn prefetch(&self, _wanted: &[(&str, Option<Millis>)], _now: Millis) -> Result<()> {
        Ok(())
    }
    /// What `endpoint` has used in each window at `now`, counting every entry stamped after
    /// the window's start. `day_start`, for an endpoint whose day is a calendar day, is when
    /// that day began; else the day window is rolling.
    fn used(&self, endpoint: &str, now: Millis, day_start: Option<Millis>) -> Result<Used>;
    /// When enough of `limit`'s usage has left its window for `excess` more to fit.
    fn frees_at(
        &self,
        endpoint: &str,
        limit: Limit,
        excess: u64,
        now: Millis,
    ) -> Result<Option<Millis>> {
        Ok(quota::freed_by(
            self.departures(endpoint, limit, now, excess)?,
            excess,
        ))
    }
    /// The usage of `limit`'s window at `now` as it will leave: `(leaves_at, amount)`,
    /// earliest first, at least until `enough` has left (a ledger may stop there). Pools
    /// merge their rows' departures.
    fn departures(
        &self,
        endpoint: &str,
        limit: Limit,
        now: Millis,
        enough: u64,
    ) -> Result<Vec<(Millis, u64)>>;
    /// When the endpoint last took a call (pick or record), for pacing.
    fn last_call(&self, endpoint: &str) -> Result<Option<Millis>>;
    /// How many reservations of `endpoint` are open (in flight) at `now`.
    fn open_reservations(&self, endpoint: &str, now: Millis) -> Result<u64>;
    /// When the oldest open reservation of `endpoint` expires, if one is open.
    fn first_expiry(&self, endpoint: &str, now: Millis) -> Result<Option<Millis>>;
    /// Reserves `request` for `endpoint` at `now`, as an open reservation; returns its lease.
    fn reserve(&self, endpoint: &str, request: Request, now: Millis) -> Result<String>;
    /// Adds usage made at `now` without a reservation.
    fn add(&self, endpoint: &str, request: Request, now: Millis) -> Result<()>;
    /// The reservation a lease names, settled or not, while it is in the ledger.
    fn by_lease(&self, lease: &str) -> Result<Option<Entry>>;
    /// The oldest reservation of `endpoint` still open at `now`.
    fn oldest_open(&self, endpoint: &str, now: Millis) -> Result<Option<Entry>>;
    /// Closes a reservation at `now`, replacing its estimate by what was really used.
    fn settle(&self, entry: &Entry, real: Request, now: Millis) -> Result<()>;
    /// Forgets what no window can count any more, so the ledger does not grow with time.
    fn prune(&self, now: Millis) -> Result<()>;
    /// Every endpoint id that has usage.
    fn endpoints_used(&self) -> Result<Vec<String>>;
    /// Forgets the usage and reservations of `endpoint`; returns how many calls it held.
    fn forget_usage(&self, endpoint: &str) -> Result<u64>;
}

/// What each endpoint used over the long run: counters since it was first used or last
/// reset, which pruning never lowers, and requests and tokens per UTC hour for 90 days.
pub trait Lifetime {
    /// The counters of `endpoint` at `now`: requests when reserved or added, tokens when
    /// settled or added, and an open reservation's estimate once it has expired.
    fn totals(&self, endpoint: &str, now: Millis) -> Result<Totals>;
    /// Counts a refused (429) or failed call.
    fn count_outcome(&self, endpoint: &str, outcome: Tally) -> Result<()>;
    /// Requests and tokens per UTC hour from `since_hour` (hours since the epoch) on.
    fn history(&self, endpoint: &str, since_hour: i64) -> Result<Vec<Hourly>>;
    /// Every endpoint id with history.
    fn endpoints_with_history(&self) -> Result<Vec<String>>;
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub tokens: u64,
    pub rate_limited: u64,
    pub failed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tally {
    RateLimited,
    Failed,
}

/// One UTC hour of an endpoint's usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hourly {
    /// Hours since the Unix epoch.
    pub hour: i64,
    pub requests: u64,
    pub tokens: u64,
}

/// How long the hourly history is kept.
pub const HISTORY_MS: Millis = 90 * 24 * 60 * MINUTE_MS;

/// How endpoints answered (cooldowns, the provider's reports) and whose turn it is.
pub trait Answers {
    fn cooldown(&self, endpoint: &str) -> Result<Option<Cooldown>>;
    /// Stores the cooldown state of `endpoint`; `None` forgets it (a healthy endpoint).
    fn set_cooldown(&self, endpoint: &str, cooldown: Option<&Cooldown>) -> Result<()>;
    /// Notes that the one probe after a cooldown was handed out.
    fn mark_probe(&self, endpoint: &str, now: Millis) -> Result<()>;
    /// The provider's word on each limit of `endpoint` that has not reset by `now`, with
    /// how much was used locally since it was given.
    fn reports(&self, endpoint: &str, now: Millis) -> Result<Vec<Report>>;
    /// Takes the provider's word on one limit, replacing what it said before; usage
    /// recorded after this moment counts against `remaining`.
    fn set_report(
        &self,
        endpoint: &str,
        limit: Limit,
        remaining: u64,
        cap: Option<u64>,
        resets_at: Millis,
        now: Millis,
    ) -> Result<()>;
    /// The endpoint that took the last round-robin turn.
    fn last_turn(&self) -> Result<Option<String>>;
    fn set_turn(&self, endpoint: &str) -> Result<()>;
    /// Every endpoint id with a cooldown or a report.
    fn endpoints_answered(&self) -> Result<Vec<String>>;
    /// Forgets the cooldown, reports and turn of `endpoint`.
    fn forget_answers(&self, endpoint: &str) -> Result<()>;
}

/// Everything a step can read and write.
pub trait Book: Usage + Answers + Lifetime {
    /// Every endpoint id the ledger holds anything for, sorted.
    fn endpoints(&self) -> Result<Vec<String>> {
        let mut ids = self.endpoints_used()?;
        ids.extend(self.endpoints_answered()?);
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Forgets everything of `endpoint` but its hourly history, which records calls that
    /// were made; returns how many calls it held.
    fn forget(&self, endpoint: &str) -> Result<u64> {
        self.forget_answers(endpoint)?;
        self.forget_usage(endpoint)
    }
}

impl<T: Usage + Answers + Lifetime> Book for T {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A consistent snapshot; nothing is written.
    Read,
    /// The ledger's write lock, held from before the first read until the step commits.
    Write,
}

/// One step over the ledger: what it reads and writes, at the time it is given.
pub type Step<'a> = dyn FnMut(&dyn Book, Millis) -> Result<()> + 'a;

pub trait Ledger {
    /// Runs `step` atomically: under the write lock for [`Access::Write`], on a snapshot for
    /// [`Access::Read`], with the time of the step from [`time_of_step`]. A ledger may run
    /// the step more than once (an optimistic one re-runs it on a conflict); only the last
    /// run's writes count. A step's reads are only promised the ledger as the step found
    /// it: the decisions read first and write last.
    fn run(&mut self, access: Access, step: &mut Step<'_>) -> Result<()>;
}

impl dyn Ledger + '_ {
    /// Runs `step` under the write lock, taken before the first read: what it sees cannot
    /// change before it commits.
    pub fn write<T>(&mut self, step: impl FnMut(&dyn Book, Millis) -> Result<T>) -> Result<T> {
        self.run_for(Access::Write, step)
    }

    /// Runs `step` on one consistent snapshot of the ledger.
    pub fn read<T>(&mut self, step: impl FnMut(&dyn Book, Millis) -> Result<T>) -> Result<T> {
        self.run_for(Access::Read, step)
    }

    fn run_for<T>(
        &mut self,
        access: Access,
        mut step: impl FnMut(&dyn Book, Millis) -> Result<T>,
    ) -> Result<T> {
        let mut value = None;
        self.run(access, &mut |book, now| {
            value = Some(step(book, now)?);
            Ok(())
        })?;
        value.context("the ledger did not run the step")
    }
}

/// The time of a step, read with the ledger's lock held: the clock, but never earlier than
/// the newest entry already in the ledger.
pub fn time_of_step(clock: Millis, book: &dyn Book) -> Result<Millis> {
    Ok(book.newest()?.map_or(clock, |newest| clock.max(newest)))
}

/// The time of a step on the system clock (or `LLM_ROTATE_NOW`).
pub fn now_under_lock(book: &dyn Book) -> Result<Millis> {
    time_of_step(clock::now()?, book)
}
