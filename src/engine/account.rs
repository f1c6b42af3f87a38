//! What the values a ledger stores mean, written once for every ledger: an endpoint's
//! account at an instant (its windows, open reservations, reports and lifetime totals),
//! what reserving, adding and settling write, and what pruning keeps.

use std::cell::RefCell;
use std::collections::HashMap;

use anyhow::Result;

use crate::clock::{HOUR_MS, MINUTE_MS, Millis, SECOND_MS};
use crate::cooldown::Cooldown;
use crate::endpoints::Pool;
use crate::ledger::{
    Book, Change, Counters, Departing, Entry, HISTORY_MS, Horizons, Lifetime, MonthStart, Parts,
    RESERVATION_OPEN_MS, RETENTION_MS, Said, Source, Span, Stored,
};
use crate::quota::{self, CacheReads, Limit, Request, Used, Window};
use crate::random;

/// Everything a decision reads of one endpoint at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    /// Usage in each window, counting every entry stamped after the window's start.
    pub used: Used,
    /// Reservations still open (in flight), and the oldest of them.
    pub open: u64,
    pub oldest_open: Option<Entry>,
    /// When the endpoint last took a call (pick or record), for pacing.
    pub last_call: Option<Millis>,
    pub cooldown: Option<Cooldown>,
    /// The provider's word on each limit that has not reset.
    pub reports: Vec<Report>,
    /// Usage counted since first use (or the last reset), open estimates included: what a
    /// provider's report counts usage from.
    pub running: Request,
    /// Usage in the minute, hour, day and month windows, every kind apart.
    pub windows: [Request; 4],
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

/// An endpoint's counters over the long run: requests when reserved or added, tokens and
/// cost when settled or added, and an open reservation's estimate once it has expired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub usage: Request,
    pub rate_limited: u64,
    pub failed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tally {
    RateLimited,
    Failed,
}

/// One endpoint whose account a step reads: the start of its calendar day (else its day
/// is rolling), the start of the month before its current one, whether it reads its
/// cache free, and the parts of its account the step needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ask<'a> {
    pub endpoint: &'a str,
    pub day_start: Option<Millis>,
    pub month_after: MonthStart,
    pub cache: CacheReads,
    pub parts: Parts,
}

impl<'a> Ask<'a> {
    /// Everything of `endpoint` at `now`, its day rolling and its month the UTC one.
    pub fn all(endpoint: &'a str, now: Millis) -> Ask<'a> {
        Ask {
            endpoint,
            day_start: None,
            month_after: crate::anchor::UTC_MONTHS.previous_month_start(now),
            cache: CacheReads::Counted,
            parts: Parts::ALL,
        }
    }
}

/// The windows a read at `now` counts; the day window is the calendar day that began at
/// `day_start` when there is one, else rolling.
pub fn span(now: Millis, ask: &Ask<'_>) -> Span {
    Span {
        parts: ask.parts,
        minute_after: quota::counted_after(Window::Minute, now),
        hour_from: quota::first_counted_minute(Window::Hour, now),
        day_from: ask.day_start.map_or_else(
            || quota::first_counted_minute(Window::Day, now),
            quota::minute_of,
        ),
        month_after: ask.parts.months.then_some(ask.month_after),
        open_after: now - RESERVATION_OPEN_MS,
    }
}

/// What each limit of a row whose cache reads are `cache` counts of `windows`.
pub fn used_of(windows: &[Request; 4], cache: CacheReads) -> Used {
    let mut used = Used::default();
    for limit in Limit::ALL {
        used.set(
            limit,
            windows[limit.window.index()].measured(limit.unit, cache),
        );
    }
    used
}

impl Account {
    fn of(mut stored: Stored, now: Millis, parts: Parts, cache: CacheReads) -> Account {
        // What was not asked for reads the same from every ledger: as nothing.
        if !parts.in_flight {
            (stored.open, stored.oldest_open) = (0, None);
        }
        if !parts.last_call {
            stored.last_call = None;
        }
        if !parts.counters && stored.reports.iter().all(|said| said.resets_at <= now) {
            stored.counters = Counters::default();
        }
        let used = used_of(&stored.windows, cache);
        let running = running(stored.counters);
        let reports = stored
            .reports
            .iter()
            .filter(|said| said.resets_at > now)
            .map(|said| Report {
                limit: said.limit,
                remaining: said.remaining,
                cap: said.cap,
                resets_at: said.resets_at,
                used_since: running
                    .measured(said.limit.unit, cache)
                    .saturating_sub(said.base.measured(said.limit.unit, cache)),
            })
            .collect();
        Account {
            used,
            open: stored.open,
            oldest_open: stored.oldest_open,
            // A ledger prunes when it suits its storage; what pruning may take counts nowhere.
            last_call: stored.last_call.filter(|&at| at > now - RETENTION_MS),
            cooldown: stored.cooldown,
            reports,
            running,
            windows: stored.windows,
        }
    }
}

/// The accounts of `asks` at `now`, in one question to the ledger.
pub fn read(book: &dyn Book, asks: &[Ask<'_>], now: Millis) -> Result<Vec<Account>> {
    let spans: Vec<(&str, Span)> = asks.iter().map(|a| (a.endpoint, span(now, a))).collect();
    let stored = book.standings(&spans)?;
    anyhow::ensure!(
        stored.len() == asks.len(),
        "the ledger answered {} of {} endpoints",
        stored.len(),
        asks.len()
    );
    Ok(stored
        .into_iter()
        .zip(asks)
        .map(|(s, a)| Account::of(s, now, a.parts, a.cache))
        .collect())
}

/// The lifetime totals of `endpoints` at `now`, in one question to the ledger.
pub fn totals(book: &dyn Book, endpoints: &[&str], now: Millis) -> Result<Vec<Totals>> {
    let asks: Vec<(&str, Millis)> = endpoints
        .iter()
        .map(|&id| (id, now - RESERVATION_OPEN_MS))
        .collect();
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(book
        .lifetimes(&asks)?
        .into_iter()
        .map(|Lifetime { counters: c, open }| {
            // Reservations that expired unsettled count at their estimate: every pending
            // estimate but those of the reservations still open.
            let pending = usage_of(c.pending);
            let expired = Change::between(open, pending).applied_to(Request::default());
            Totals {
                usage: usage_of(c.counted).plus(expired),
                rate_limited: count(c.rate_limited),
                failed: count(c.failed),
            }
        })
        .collect())
}

/// All of the account of one endpoint at `now`, its day window rolling.
#[cfg(test)]
pub fn account(book: &dyn Book, endpoint: &str, now: Millis) -> Result<Account> {
    Ok(read(book, &[Ask::all(endpoint, now)], now)?.remove(0))
}

/// Accounts read in a step, by endpoint and calendar day (a pool's members are read with
/// the day of the row that is being judged), with the parts each was read with.
#[derive(Default)]
pub struct Accounts {
    read: HashMap<(String, Option<Millis>), (Parts, Account)>,
    /// Each pool's usage over a calendar day, summed once however many rows ask.
    pools: RefCell<HashMap<(String, Option<Millis>), Used>>,
}

impl Accounts {
    pub fn get(&self, endpoint: &str, day_start: Option<Millis>) -> Option<&Account> {
        self.read
            .get(&(endpoint.to_owned(), day_start))
            .map(|(_, account)| account)
    }

    /// Whether `ask` was read, with every part it needs.
    pub fn has(&self, ask: &Ask<'_>) -> bool {
        self.read
            .get(&(ask.endpoint.to_owned(), ask.day_start))
            .is_some_and(|(parts, _)| parts.covers(ask.parts))
    }

    pub fn insert(&mut self, ask: &Ask<'_>, account: Account) {
        let key = (ask.endpoint.to_owned(), ask.day_start);
        self.read.insert(key, (ask.parts, account));
        self.pools.borrow_mut().clear();
    }

    /// The usage of all the rows of `pool` over the calendar day from `day_start`: windows
    /// are sums, so the pool's is the sum of its rows'.
    pub fn pool_used(&self, pool: &Pool, day_start: Option<Millis>) -> Used {
        let key = (pool.name.clone(), day_start);
        if let Some(used) = self.pools.borrow().get(&key) {
            return *used;
        }
        let mut total = Used::default();
        for account in pool.members.iter().filter_map(|m| self.get(m, day_start)) {
            for limit in Limit::ALL {
                let sum = total.get(limit).saturating_add(account.used.get(limit));
                total.set(limit, sum);
            }
        }
        self.pools.borrow_mut().insert(key, total);
        total
    }

    /// Reads every ask not read yet (or read without a part it needs), in one question to
    /// the ledger.
    pub fn fill(&mut self, book: &dyn Book, asks: &[Ask<'_>], now: Millis) -> Result<()> {
        let mut missing: Vec<Ask<'_>> = Vec::new();
        let mut index: HashMap<(&str, Option<Millis>), usize> = HashMap::new();
        for ask in asks.iter().filter(|a| !self.has(a)) {
            match index.get(&(ask.endpoint, ask.day_start)) {
                Some(&i) => missing[i].parts = missing[i].parts.with(ask.parts),
                None => {
                    index.insert((ask.endpoint, ask.day_start), missing.len());
                    missing.push(*ask);
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        for (ask, account) in missing.iter().zip(read(book, &missing, now)?) {
            self.insert(ask, account);
        }
        Ok(())
    }
}

/// Rows (each with its `cache_reads`) whose usage of a limit must shed an excess.
pub type Awaited<'a> = (Vec<(&'a str, CacheReads)>, Limit, u64);

/// When enough of `limit`'s usage has left the rolling windows of `endpoints` (a row, or
/// the rows of a pool, merged; each measured with its `cache_reads`) for `excess` more to
/// fit; one question to the ledger for all of `wanted`. `None` for one that nothing
/// leaving can free.
pub fn frees_at(
    book: &dyn Book,
    wanted: &[Awaited<'_>],
    now: Millis,
) -> Result<Vec<Option<Millis>>> {
    let mut asks = Vec::new();
    for (endpoints, limit, excess) in wanted {
        let source = match limit.window {
            Window::Minute => Source::Calls {
                after: quota::counted_after(Window::Minute, now),
            },
            window => Source::Buckets {
                from: quota::first_counted_minute(window, now),
            },
        };
        asks.extend(endpoints.iter().map(|&(endpoint, cache)| Departing {
            endpoint,
            source,
            weights: limit.unit.weights(cache),
            enough: *excess,
        }));
    }
    let mut answers = book.departures(&asks)?.into_iter();
    let mut dates = Vec::with_capacity(wanted.len());
    for (endpoints, limit, excess) in wanted {
        let mut departures: Vec<(Millis, u64)> = Vec::new();
        for _ in endpoints {
            let leaving = answers.next().unwrap_or_default();
            departures.extend(leaving.into_iter().map(|(at, n)| match limit.window {
                Window::Minute => (quota::row_leaves_at(at, Window::Minute), n),
                window => (quota::bucket_leaves_at(at, window), n),
            }));
        }
        departures.sort_unstable_by_key(|&(at, _)| at);
        dates.push(quota::freed_by(departures, *excess));
    }
    Ok(dates)
}

/// Reserves `request` for `endpoint` at `now` (in the month that began at `month`), as an
/// open reservation; returns its lease.
pub fn reserve(
    book: &dyn Book,
    endpoint: &str,
    request: Request,
    month: MonthStart,
    now: Millis,
) -> Result<String> {
    let lease = random::id();
    book.insert_call(endpoint, now, request, Some(&lease))?;
    book.add_usage(endpoint, now, month, Change::of(request))?;
    // Counters take a reservation's request at once and the rest when it is settled;
    // until then its estimate is pending.
    let estimate = Change::of(request);
    let mut pending = estimate;
    pending.0[0] = 0;
    book.add_counters(
        endpoint,
        Counters {
            counted: Change::of(Request {
                requests: request.requests,
                ..Request::default()
            }),
            pending,
            ..Counters::default()
        },
    )?;
    Ok(lease)
}

/// Adds usage made at `now` (in the month that began at `month`) without a reservation;
/// returns the change to the counters.
pub fn add(
    book: &dyn Book,
    endpoint: &str,
    usage: Request,
    month: MonthStart,
    now: Millis,
) -> Result<Counters> {
    book.insert_call(endpoint, now, usage, None)?;
    book.add_usage(endpoint, now, month, Change::of(usage))?;
    let counted = Counters {
        counted: Change::of(usage),
        ..Counters::default()
    };
    book.add_counters(endpoint, counted)?;
    Ok(counted)
}

/// Closes a reservation at `now`, replacing its estimate by what was really used (`month`
/// is the month its call was made in); returns the change to the counters.
pub fn settle(
    book: &dyn Book,
    entry: &Entry,
    real: Request,
    month: MonthStart,
    now: Millis,
) -> Result<Counters> {
    book.close_call(entry, real)?;
    let correction = Change::between(entry.usage, real);
    book.add_usage(&entry.endpoint, entry.at, month, correction)?;
    // A reservation that expired already counts at its estimate: settling it below that
    // must not lower the counters.
    let expired = now >= entry.at + RESERVATION_OPEN_MS;
    let counted = match expired {
        true => Request::from_measures({
            let (real, estimate) = (real.measures(), entry.usage.measures());
            std::array::from_fn(|i| real[i].max(estimate[i]))
        }),
        false => real,
    };
    let mut pending = Change::of(entry.usage).negated();
    pending.0[0] = 0;
    let counted = Counters {
        counted: Change::of(Request {
            requests: u64::try_from(correction.requests().max(0)).unwrap_or(0),
            ..counted
        }),
        pending,
        ..Counters::default()
    };
    book.add_counters(&entry.endpoint, counted)?;
    Ok(counted)
}

/// Counts a refused (429) or failed call.
pub fn count_outcome(book: &dyn Book, endpoint: &str, outcome: Tally) -> Result<()> {
    let change = match outcome {
        Tally::RateLimited => Counters {
            rate_limited: 1,
            ..Counters::default()
        },
        Tally::Failed => Counters {
            failed: 1,
            ..Counters::default()
        },
    };
    book.add_counters(endpoint, change)
}

/// Takes the provider's word on one limit at the running totals `running`.
pub fn take_report(
    book: &dyn Book,
    endpoint: &str,
    reading: &crate::response::Reading,
    running: Request,
) -> Result<()> {
    book.set_report(
        endpoint,
        &Said {
            limit: reading.limit,
            remaining: reading.remaining,
            cap: reading.cap,
            resets_at: reading.resets_at,
            base: running,
        },
    )
}

/// Counters as usage, none below 0.
fn usage_of(change: Change) -> Request {
    change.applied_to(Request::default())
}

/// The running totals that counters make: usage counted or pending.
fn running(c: Counters) -> Request {
    usage_of(c.counted).plus(usage_of(c.pending))
}

/// Running totals after a change of the counters.
pub fn after(before: Request, change: Counters) -> Request {
    change.pending.applied_to(change.counted.applied_to(before))
}

/// Forgets what no window can count any more, so the ledger does not grow with time; a
/// reservation that expired unsettled keeps counting at its estimate.
pub fn prune(book: &dyn Book, now: Millis) -> Result<()> {
    let horizon = now - RETENTION_MS;
    if !book.prune_due(horizon)? {
        return Ok(());
    }
    for (endpoint, estimate) in book.open_estimates_until(horizon)? {
        let mut estimate = Change::of(estimate);
        estimate.0[0] = 0;
        book.add_counters(
            &endpoint,
            Counters {
                counted: estimate,
                pending: estimate.negated(),
                ..Counters::default()
            },
        )?;
    }
    book.drop_before(&Horizons {
        calls_until: horizon,
        first_second: (now - 2 * MINUTE_MS).div_euclid(SECOND_MS),
        first_minute: quota::minute_of(horizon + 1),
        first_hour: (now - HISTORY_MS).div_euclid(HOUR_MS),
        // Two months back: the previous month still counts toward nothing, but a row whose
        // zone changed may still read it.
        months_from: now - 64 * 24 * HOUR_MS,
        reports_until: now,
    })
}
