//! The usage ledger, in the words of the domain: what each endpoint used and when, its open
//! reservations, how it answered (cooldowns, the provider's reports) and whose turn it is.
//!
//! A [`Ledger`] runs a step under its lock and hands the step the time of that step: read
//! only once the lock is held, and never earlier than the newest entry already in the
//! ledger. So a process that waited for the lock, or a clock that stepped back, judges and
//! stamps no earlier than what the processes ahead of it wrote, and the windows, which count
//! every entry stamped after `now - W`, see all of it.
//!
//! A [`Book`] is storage alone: it keeps calls, buckets, counters and answers, and sums
//! what it is asked to. What those values mean (what a reservation counts, when it expires,
//! what pruning keeps, which windows exist) is written once, in [`crate::engine`], and the
//! decisions there are plain code over what the book holds and that `now`.
//!
//! SQLite ([`sqlite`]) is the ledger of one machine, Redis ([`redis`]) the ledger that many
//! machines share; the in-memory one the unit tests run the same properties against keeps
//! them honest.

#[cfg(test)]
pub mod memory;
pub mod redis;
pub mod sqlite;
#[cfg(test)]
pub(crate) mod tests;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::clock::{self, MINUTE_MS, Millis};
use crate::cooldown::Cooldown;
use crate::quota::{LONGEST_WINDOW_MS, Limit, MEASURES, Request};

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
pub fn open(location: &Path) -> Result<Box<dyn Ledger + Send>> {
    match location.to_str().filter(|l| redis::is_url(l)) {
        Some(url) => Ok(Box::new(redis::RedisLedger::open(url)?)),
        None => Ok(Box::new(sqlite::SqliteLedger::open(location)?)),
    }
}

/// A call in the ledger: a reservation (its estimate, open until settled) or a call made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub lease: String,
    pub endpoint: String,
    pub at: Millis,
    pub usage: Request,
    pub open: bool,
}

/// A change of usage, measure by measure ([`Request::measures`]): what a call adds, or what
/// a settle corrects (it may be negative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Change(pub [i64; MEASURES]);

impl Change {
    /// What `usage` adds.
    pub fn of(usage: Request) -> Change {
        Change(usage.measures().map(signed))
    }

    /// What turns `from` into `to`.
    pub fn between(from: Request, to: Request) -> Change {
        let (from, to) = (from.measures(), to.measures());
        Change(std::array::from_fn(|i| {
            signed(to[i]).saturating_sub(signed(from[i]))
        }))
    }

    pub fn negated(self) -> Change {
        Change(self.0.map(|n| n.saturating_neg()))
    }

    pub fn requests(&self) -> i64 {
        self.0[0]
    }

    /// `usage` changed by it, none below 0.
    pub fn applied_to(self, usage: Request) -> Request {
        let before = usage.measures();
        Request::from_measures(std::array::from_fn(|i| {
            let d = self.0[i];
            if d >= 0 {
                before[i].saturating_add(d.unsigned_abs())
            } else {
                before[i].saturating_sub(d.unsigned_abs())
            }
        }))
    }

    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|&n| n == 0)
    }
}

/// Counts are whole numbers up to i64::MAX (what SQLite stores); above, they saturate.
pub fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// An endpoint's counters since first use (or its last reset), which pruning never lowers;
/// as stored, or as a change to them. `counted` holds the usage of calls made and settled,
/// `pending` the estimates of open reservations (its requests stay 0: a reservation's
/// request counts at once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub counted: Change,
    pub pending: Change,
    pub rate_limited: i64,
    pub failed: i64,
}

/// What a provider's headers said of one limit, with the endpoint's running totals at that
/// moment: usage recorded later counts against `remaining`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Said {
    pub limit: Limit,
    pub remaining: u64,
    pub cap: Option<u64>,
    pub resets_at: Millis,
    pub base: Request,
}

/// The calendar month of a call: the instant it began for the call's row. Month totals
/// are kept under it; a read counts every total kept under a start after the previous
/// month's start, so a row whose zone or `day_reset` changed counts too much for a month,
/// never too little.
pub type MonthStart = Millis;

/// Which usage a read counts: the exact minute window (calls stamped after
/// `minute_after`), the minute buckets of the hour and day windows from their first, and
/// the reservations still open (stamped after `open_after`); and which parts of the
/// account the reader needs beyond its windows, cooldown and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub minute_after: Millis,
    pub hour_from: i64,
    pub day_from: i64,
    /// Month totals kept under a start after this count; `None` when the month is not
    /// asked for (it reads as nothing).
    pub month_after: Option<MonthStart>,
    pub open_after: Millis,
    pub parts: Parts,
}

/// The parts of an account a reader may do without: a ledger may leave those not asked
/// for at their defaults (the rules blank them for every ledger alike).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Parts {
    /// The reservations in flight: how many, and the oldest.
    pub in_flight: bool,
    pub last_call: bool,
    /// The counters, which the reports also need when there are any.
    pub counters: bool,
    /// The month's totals, for a row or pool with a monthly limit, and for `state`.
    pub months: bool,
}

impl Parts {
    pub const ALL: Parts = Parts {
        in_flight: true,
        last_call: true,
        counters: true,
        months: true,
    };

    /// Every part either asks for.
    pub fn with(self, other: Parts) -> Parts {
        Parts {
            in_flight: self.in_flight || other.in_flight,
            last_call: self.last_call || other.last_call,
            counters: self.counters || other.counters,
            months: self.months || other.months,
        }
    }

    pub fn covers(self, other: Parts) -> bool {
        self.with(other) == self
    }
}

/// Everything a ledger stores of one endpoint that a decision reads, as one value: the
/// answer to one question, so that a ledger across a network answers it for every
/// candidate of a step in one round trip.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    /// Usage in the minute, hour, day and month windows of the span.
    pub windows: [Request; 4],
    /// The reservations still open, and the oldest of them.
    pub open: u64,
    pub oldest_open: Option<Entry>,
    pub last_call: Option<Millis>,
    /// The counters (since first use or the last reset; pruning never lowers them), when
    /// asked for or when there are reports.
    pub counters: Counters,
    pub cooldown: Option<Cooldown>,
    /// Every report kept, reset or not.
    pub reports: Vec<Said>,
}

/// An endpoint's counters as stored, and the estimates of its reservations still open:
/// what its lifetime totals are made of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lifetime {
    pub counters: Counters,
    pub open: Request,
}

/// Where the usage that leaves a window is read from: the calls stamped after an instant,
/// or the minute buckets from the first one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Calls { after: Millis },
    Buckets { from: i64 },
}

/// One question for the departures of a window: the usage in `source`, each call or bucket
/// measured as the sum of its measures times `weights` (a unit, [`crate::quota::Unit::weights`]),
/// earliest first, `(at, amount)` for calls and `(minute, amount)` for buckets (a ledger
/// may leave out those of amount 0), at least until `enough` has left (it may stop there).
#[derive(Clone, Copy, Debug)]
pub struct Departing<'a> {
    pub endpoint: &'a str,
    pub source: Source,
    pub weights: [u64; MEASURES],
    pub enough: u64,
}

/// What pruning forgets: calls stamped at or before `calls_until`, buckets before
/// `first_minute`, hours of history before `first_hour`, month totals kept under a start
/// before `months_from`, reports reset by `reports_until`.
#[derive(Clone, Copy, Debug)]
pub struct Horizons {
    pub calls_until: Millis,
    /// The first second a minute window may still read (a ledger that keeps seconds).
    pub first_second: i64,
    pub first_minute: i64,
    pub first_hour: i64,
    pub months_from: MonthStart,
    pub reports_until: Millis,
}

/// One UTC hour of an endpoint's usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hourly {
    /// Hours since the Unix epoch.
    pub hour: i64,
    pub usage: Request,
}

/// How long the hourly history is kept.
pub const HISTORY_MS: Millis = 90 * 24 * 60 * MINUTE_MS;

/// What a ledger stores, as primitives: it keeps the values and sums windows the way its
/// storage allows, and decides nothing. The rules (what a reservation counts, when it
/// expires, what pruning keeps) are written once, over these, in [`crate::engine`].
pub trait Book {
    /// When the newest entry of the whole ledger was stamped.
    fn newest(&self) -> Result<Option<Millis>>;
    /// What each endpoint asked for holds, in the order asked.
    fn standings(&self, asks: &[(&str, Span)]) -> Result<Vec<Stored>>;
    /// The counters of each endpoint, with the estimates of its reservations stamped after
    /// the instant given (those still open), in the order asked.
    fn lifetimes(&self, asks: &[(&str, Millis)]) -> Result<Vec<Lifetime>>;
    /// The departures each question asks for, in the order asked.
    fn departures(&self, asks: &[Departing<'_>]) -> Result<Vec<Vec<(i64, u64)>>>;
    /// The reservation a lease names, settled or not, while it is in the ledger.
    fn by_lease(&self, lease: &str) -> Result<Option<Entry>>;
    /// Usage per UTC hour from `since_hour` (hours since the epoch) on.
    fn history(&self, endpoint: &str, since_hour: i64) -> Result<Vec<Hourly>>;
    /// Every endpoint id the ledger holds usage, counters or answers for, sorted.
    fn endpoints(&self) -> Result<Vec<String>>;
    /// Every endpoint id with history, sorted; a reset does not remove one.
    fn endpoints_with_history(&self) -> Result<Vec<String>>;
    /// The endpoint that took the last round-robin turn.
    fn last_turn(&self) -> Result<Option<String>>;
    /// Whether pruning at `horizon` is due: a ledger may wait until enough is due.
    fn prune_due(&self, horizon: Millis) -> Result<bool>;
    /// The estimates of reservations stamped at or before `until` still open, per endpoint.
    fn open_estimates_until(&self, until: Millis) -> Result<Vec<(String, Request)>>;
    /// Whether a note meant to be said once was said already.
    fn said_before(&self, note: &str) -> Result<bool>;
    /// The latencies (ms) of the successful calls of each endpoint stamped after the
    /// instant given, in the order asked.
    fn latencies(&self, asks: &[(&str, Millis)]) -> Result<Vec<Vec<u64>>>;

    /// Writes a call at `at`: a reservation (open) under `lease`, else a call already made.
    fn insert_call(
        &self,
        endpoint: &str,
        at: Millis,
        usage: Request,
        lease: Option<&str>,
    ) -> Result<()>;
    /// Closes a reservation with what it really used.
    fn close_call(&self, entry: &Entry, real: Request) -> Result<()>;
    /// Adds a change of usage at `at` to the windows' buckets, the running totals, the
    /// hourly history and the total of the month that began at `month`, saturating rather
    /// than overflowing.
    fn add_usage(
        &self,
        endpoint: &str,
        at: Millis,
        month: MonthStart,
        change: Change,
    ) -> Result<()>;
    /// Adds to the counters, saturating; none falls below 0.
    fn add_counters(&self, endpoint: &str, change: Counters) -> Result<()>;
    /// Stores the cooldown state of `endpoint`; `None` forgets it (a healthy endpoint).
    fn set_cooldown(&self, endpoint: &str, cooldown: Option<&Cooldown>) -> Result<()>;
    /// Takes the provider's word on one limit, replacing what it said before.
    fn set_report(&self, endpoint: &str, said: &Said) -> Result<()>;
    fn set_turn(&self, endpoint: &str) -> Result<()>;
    /// Keeps how long a successful call made at `at` took.
    fn add_latency(&self, endpoint: &str, at: Millis, ms: u64) -> Result<()>;
    /// Remembers that a note meant to be said once was said.
    fn set_said(&self, note: &str) -> Result<()>;
    /// Forgets what the horizons leave behind.
    fn drop_before(&self, horizons: &Horizons) -> Result<()>;
    /// Forgets everything of `endpoint` but its hourly history (a record of calls that were
    /// made); returns how many calls it held.
    fn forget(&self, endpoint: &str) -> Result<u64>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A consistent snapshot; nothing is written.
    Read,
    /// The ledger's write lock, held from before the first read until the step commits.
    Write,
}

/// One step over the ledger: what it reads and writes, at the time it is given.
pub type Step<'a> = dyn FnMut(&dyn Book, Millis) -> Result<()> + 'a;

/// One finding of `doctor`: what was looked at, what it is, and, when it is not as it
/// should be, what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub what: &'static str,
    pub value: String,
    pub advice: Option<String>,
}

impl Finding {
    pub fn fine(what: &'static str, value: impl Into<String>) -> Finding {
        Finding {
            what,
            value: value.into(),
            advice: None,
        }
    }

    pub fn wrong(
        what: &'static str,
        value: impl Into<String>,
        advice: impl Into<String>,
    ) -> Finding {
        Finding {
            what,
            value: value.into(),
            advice: Some(advice.into()),
        }
    }
}

/// What a step will read first, for [`Ledger::expect`]: the accounts of some endpoints
/// ([`crate::engine::choose::expected`]), and the reservations of some leases
/// ([`crate::engine::settle::first_read`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FirstRead {
    pub endpoints: Vec<String>,
    pub leases: Vec<String>,
}

impl FirstRead {
    pub fn of_endpoints(ids: &[&str]) -> FirstRead {
        FirstRead {
            endpoints: ids.iter().map(|&id| id.to_owned()).collect(),
            leases: Vec::new(),
        }
    }

    /// What `other` reads first too: steps that share a transaction.
    pub fn add(&mut self, other: &FirstRead) {
        self.endpoints.extend(other.endpoints.iter().cloned());
        self.leases.extend(other.leases.iter().cloned());
    }
}

pub trait Ledger {
    /// How the ledger's storage is set up, for `doctor`.
    fn findings(&mut self) -> Result<Vec<Finding>>;

    /// Runs `step` atomically: under the write lock for [`Access::Write`], on a snapshot for
    /// [`Access::Read`], with the time of the step from [`time_of_step`]. A ledger may run
    /// the step more than once (an optimistic one re-runs it on a conflict); only the last
    /// run's writes count. A step's reads are only promised the ledger as the step found
    /// it: the decisions read first and write last.
    fn run(&mut self, access: Access, step: &mut Step<'_>) -> Result<()>;

    /// What the next step will read first (see [`FirstRead`]): a ledger across a network
    /// reads it with its first look, and saves the step a round trip.
    fn expect(&mut self, _first: &FirstRead) {}

    /// Whether a step reads what an earlier step of the same transaction wrote, so that
    /// several steps may share one: true for SQLite; a Redis step reads only what the
    /// server held when it began.
    fn shares_transactions(&self) -> bool {
        false
    }

    /// For a process that lives long (`serve`): this connection leaves the ledger's upkeep
    /// (SQLite folding its log back into the file) to [`Ledger::upkeep`], run by another
    /// thread, so that no step waits for it.
    fn defer_upkeep(&mut self) -> Result<()> {
        Ok(())
    }

    /// The upkeep a connection with [`Ledger::defer_upkeep`] left, done without waiting
    /// for any step.
    fn upkeep(&mut self) -> Result<()> {
        Ok(())
    }

    /// For tests: what the server's clock reads, for a ledger whose server keeps time.
    #[cfg(test)]
    fn set_server_clock(&mut self, _at: Millis) {}
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
    Ok(step_time(clock, book.newest()?))
}

/// How far ahead of the clock the newest entry may be and still set the time of a step: a
/// process that waited for the lock, or a clock a little behind, is seconds behind. An
/// entry further ahead comes from a pinned `LLM_ROTATE_NOW` in the future or a clock that
/// jumped, and following it would shut every later step out until the clock caught up.
pub const FURTHEST_AHEAD_MS: Millis = 5 * MINUTE_MS;

/// The time of a step at `clock` in a ledger whose newest entry is `newest`: the later of
/// the two, unless the newest entry is more than [`FURTHEST_AHEAD_MS`] ahead; then the
/// clock stands and a note says so (once per process). Such an entry still counts in its
/// windows until it passes, and `reset` clears it.
pub fn step_time(clock: Millis, newest: Option<Millis>) -> Millis {
    match newest {
        Some(newest) if newest > clock.saturating_add(FURTHEST_AHEAD_MS) => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                crate::output::notes([format!(
                    "the ledger holds usage stamped {}, over 5 minutes ahead of this clock \
                     ({}); steps keep to the clock, and `reset` clears that usage",
                    crate::output::rfc3339_seconds(newest),
                    crate::output::rfc3339_seconds(clock)
                )]);
            });
            clock
        }
        Some(newest) => clock.max(newest),
        None => clock,
    }
}

/// The time of a step on the system clock (or `LLM_ROTATE_NOW`).
pub fn now_under_lock(book: &dyn Book) -> Result<Millis> {
    time_of_step(clock::now()?, book)
}
