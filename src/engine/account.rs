//! What the values a ledger stores mean, written once for every ledger: an endpoint's
//! account at an instant (its windows, open reservations, reports and lifetime totals),
//! what reserving, adding and settling write, and what pruning keeps.

use std::cell::RefCell;
use std::collections::HashMap;

use anyhow::Result;

use crate::clock::{HOUR_MS, Millis};
use crate::cooldown::Cooldown;
use crate::endpoints::Pool;
use crate::ledger::{
    Book, Change, Counters, Departing, Entry, HISTORY_MS, Horizons, Lifetime, Parts,
    RESERVATION_OPEN_MS, RETENTION_MS, Said, Source, Span, Stored,
};
use crate::quota::{self, Limit, Request, Used, Window};
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
    /// Requests and tokens counted since first use (or the last reset), open estimates
    /// included: what a provider's report counts usage from.
    pub running: Request,
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

/// An endpoint's counters over the long run: requests when reserved or added, tokens when
/// settled or added, and an open reservation's estimate once it has expired.
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

/// One endpoint whose account a step reads: the start of its calendar day (else its day
/// is rolling), and the parts of its account the step needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ask<'a> {
    pub endpoint: &'a str,
    pub day_start: Option<Millis>,
    pub parts: Parts,
}

impl<'a> Ask<'a> {
    /// Everything of `endpoint`, its day rolling.
    pub fn all(endpoint: &'a str) -> Ask<'a> {
        Ask {
            endpoint,
            day_start: None,
            parts: Parts::ALL,
        }
    }
}

/// The windows a read at `now` counts; the day window is the calendar day that began at
/// `day_start` when there is one, else rolling.
pub fn span(now: Millis, day_start: Option<Millis>, parts: Parts) -> Span {
    Span {
        parts,
        minute_after: quota::counted_after(Window::Minute, now),
        hour_from: quota::first_counted_minute(Window::Hour, now),
        day_from: day_start.map_or_else(
            || quota::first_counted_minute(Window::Day, now),
            quota::minute_of,
        ),
        open_after: now - RESERVATION_OPEN_MS,
    }
}

impl Account {
    fn of(mut stored: Stored, now: Millis, parts: Parts) -> Account {
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
        let mut used = Used::default();
        for limit in Limit::ALL {
            let window = Window::ALL
                .iter()
                .position(|&w| w == limit.window)
                .unwrap_or(0);
            used.set(limit, stored.windows[window].amount(limit.unit));
        }
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
                    .amount(said.limit.unit)
                    .saturating_sub(said.base.amount(said.limit.unit)),
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
        }
    }
}

/// The accounts of `asks` at `now`, in one question to the ledger.
pub fn read(book: &dyn Book, asks: &[Ask<'_>], now: Millis) -> Result<Vec<Account>> {
    let spans: Vec<(&str, Span)> = asks
        .iter()
        .map(|a| (a.endpoint, span(now, a.day_start, a.parts)))
        .collect();
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
        .map(|(s, a)| Account::of(s, now, a.parts))
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
        .map(
            |Lifetime {
                 counters: c,
                 open_tokens,
             }| {
                // Reservations that expired unsettled count at their estimate: every pending
                // estimate but those of the reservations still open.
                let expired = count(c.pending).saturating_sub(open_tokens);
                Totals {
                    requests: count(c.requests),
                    tokens: count(c.tokens).saturating_add(expired),
                    rate_limited: count(c.rate_limited),
                    failed: count(c.failed),
                }
            },
        )
        .collect())
}

/// All of the account of one endpoint at `now`, its day window rolling.
#[cfg(test)]
pub fn account(book: &dyn Book, endpoint: &str, now: Millis) -> Result<Account> {
    Ok(read(book, &[Ask::all(endpoint)], now)?.remove(0))
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

/// When enough of `limit`'s usage has left the windows of `endpoints` (a row, or the rows
/// of a pool, merged) for `excess` more to fit; one question to the ledger for all of
/// `wanted`. `None` for one that nothing leaving can free.
pub fn frees_at(
    book: &dyn Book,
    wanted: &[(Vec<&str>, Limit, u64)],
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
        asks.extend(endpoints.iter().map(|&endpoint| Departing {
            endpoint,
            source,
            unit: limit.unit,
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

/// Reserves `request` for `endpoint` at `now`, as an open reservation; returns its lease.
pub fn reserve(book: &dyn Book, endpoint: &str, request: Request, now: Millis) -> Result<String> {
    let lease = random::id();
    book.insert_call(endpoint, now, request, Some(&lease))?;
    book.add_usage(endpoint, now, change(request))?;
    // Counters take a reservation's requests at once and its tokens when it is settled;
    // until then its estimate is pending.
    book.add_counters(
        endpoint,
        Counters {
            requests: signed(request.requests),
            pending: signed(request.tokens),
            ..Counters::default()
        },
    )?;
    Ok(lease)
}

/// Adds usage made at `now` without a reservation; returns the change to the counters.
pub fn add(book: &dyn Book, endpoint: &str, usage: Request, now: Millis) -> Result<Counters> {
    book.insert_call(endpoint, now, usage, None)?;
    book.add_usage(endpoint, now, change(usage))?;
    let counted = Counters {
        requests: signed(usage.requests),
        tokens: signed(usage.tokens),
        ..Counters::default()
    };
    book.add_counters(endpoint, counted)?;
    Ok(counted)
}

/// Closes a reservation at `now`, replacing its estimate by what was really used; returns
/// the change to the counters.
pub fn settle(book: &dyn Book, entry: &Entry, real: Request, now: Millis) -> Result<Counters> {
    book.close_call(entry, real)?;
    let correction = Change {
        requests: signed(real.requests) - signed(entry.requests),
        tokens: signed(real.tokens) - signed(entry.tokens),
    };
    book.add_usage(&entry.endpoint, entry.at, correction)?;
    // A reservation that expired already counts at its estimate: settling it below that
    // must not lower the counter.
    let expired = now >= entry.at + RESERVATION_OPEN_MS;
    let counted = if expired {
        real.tokens.max(entry.tokens)
    } else {
        real.tokens
    };
    let counted = Counters {
        requests: correction.requests.max(0),
        tokens: signed(counted),
        pending: -signed(entry.tokens),
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

/// The running totals that counters make: requests, and tokens counted or pending.
fn running(c: Counters) -> Request {
    Request {
        requests: u64::try_from(c.requests).unwrap_or(0),
        tokens: u64::try_from(c.tokens.saturating_add(c.pending)).unwrap_or(0),
    }
}

/// Running totals after a change of the counters.
pub fn after(before: Request, change: Counters) -> Request {
    let apply = |n: u64, d: i64| {
        if d >= 0 {
            n.saturating_add(d as u64)
        } else {
            n.saturating_sub(d.unsigned_abs())
        }
    };
    Request {
        requests: apply(before.requests, change.requests),
        tokens: apply(before.tokens, change.tokens.saturating_add(change.pending)),
    }
}

/// Forgets what no window can count any more, so the ledger does not grow with time; a
/// reservation that expired unsettled keeps counting at its estimate.
pub fn prune(book: &dyn Book, now: Millis) -> Result<()> {
    let horizon = now - RETENTION_MS;
    if !book.prune_due(horizon)? {
        return Ok(());
    }
    for (endpoint, estimate) in book.open_estimates_until(horizon)? {
        let estimate = signed(estimate);
        book.add_counters(
            &endpoint,
            Counters {
                tokens: estimate,
                pending: -estimate,
                ..Counters::default()
            },
        )?;
    }
    book.drop_before(&Horizons {
        calls_until: horizon,
        first_minute: quota::minute_of(horizon + 1),
        first_hour: (now - HISTORY_MS).div_euclid(HOUR_MS),
        reports_until: now,
    })
}

fn change(usage: Request) -> Change {
    Change {
        requests: signed(usage.requests),
        tokens: signed(usage.tokens),
    }
}

/// Counts are whole numbers up to i64::MAX (what SQLite stores); above, they saturate.
pub fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
