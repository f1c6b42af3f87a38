//! Whether an endpoint can take a request now, and if not, what blocks it and until when:
//! its windows (as the ledger and the provider's last report see them), a cooldown after
//! 429s or failures, smooth pacing, and its cap on calls in flight. `pick` and `state`
//! share it, so that what `state` says is what `pick` would do. Plain code over the accounts
//! the ledger holds and the `now` of its step; only dating a full window asks the ledger
//! again, for its departures, once for every standing that needs it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::Result;

use super::account::{self, Account, Accounts, Ask};
use crate::anchor::{DayAnchor, UTC_MONTHS};
use crate::clock::Millis;
use crate::cooldown::Cooldown;
use crate::endpoints::{DayReset, Endpoint, Pace, Pool};
use crate::ledger::{Book, Parts, RESERVATION_OPEN_MS};
use crate::quota::{self, CacheReads, Limit, Limits, Never, PerLimit, Request, Used, Window};

/// What keeps an endpoint from taking a request now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// A window is full.
    Limit(Limit),
    /// A window of the row's pool is full.
    PoolLimit(Limit),
    /// Skipped after a 429 or repeated failures.
    Cooldown,
    /// The single probe after a cooldown is out and not yet recorded.
    Probe,
    /// Smooth pacing: too soon after the last call.
    Pace,
    /// As many reservations open as its `concurrency` column allows.
    Concurrency,
}

impl Block {
    pub fn name(self) -> &'static str {
        match self {
            Block::Limit(limit) => limit.name(),
            Block::PoolLimit(limit) => limit.pool_name(),
            Block::Cooldown => "cooldown",
            Block::Probe => "probe",
            Block::Pace => "pace",
            Block::Concurrency => "concurrency",
        }
    }
}

impl std::fmt::Display for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Block::Limit(limit) => write!(f, "{} full", limit.name()),
            Block::PoolLimit(limit) => write!(f, "{} full", limit.pool_name()),
            Block::Cooldown => f.write_str("cooling down"),
            Block::Probe => f.write_str("its probe after a cooldown is out"),
            Block::Pace => f.write_str("paced"),
            Block::Concurrency => f.write_str("at its concurrency cap"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It fits; `probe` when this call would be the one probe after a cooldown.
    Fits { probe: bool },
    /// Blocked until `frees_at`, the latest of what blocks it; `block` is that one.
    Blocked { block: Block, frees_at: Millis },
    /// The request is larger than a limit of the file, or the endpoint is disabled.
    Never(Never),
}

/// When a block ends: at a known instant; when enough usage leaves a window, which the
/// ledger dates from its departures ([`date`]); or the later or the earlier of two.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum When {
    At(Millis),
    /// When `excess` of `limit` has left the windows of a row, or of a pool's rows.
    Departs {
        of: Of,
        limit: Limit,
        excess: u64,
    },
    Both(Box<When>, Box<When>),
    Either(Box<When>, Box<When>),
}

/// Whose usage leaves: one row's, or all the rows of a pool (shared, not copied per row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Of {
    Row(String, CacheReads),
    Pool(Arc<Pool>),
}

impl Of {
    fn ids(&self) -> Vec<(&str, CacheReads)> {
        match self {
            Of::Row(id, cache) => vec![(id.as_str(), *cache)],
            Of::Pool(pool) => pool
                .members
                .iter()
                .map(String::as_str)
                .zip(pool.caches.iter().copied())
                .collect(),
        }
    }

    /// What tells two apart: the row's id, or the pool's name.
    fn key(&self) -> (bool, &str) {
        match self {
            Of::Row(id, _) => (false, id),
            Of::Pool(pool) => (true, &pool.name),
        }
    }
}

impl When {
    /// The departures it waits for, in the order [`When::resolve`] takes their dates.
    fn departures<'w>(&'w self, out: &mut Vec<(&'w Of, Limit, u64)>) {
        match self {
            When::At(_) => {}
            When::Departs { of, limit, excess } => out.push((of, *limit, *excess)),
            When::Both(a, b) | When::Either(a, b) => {
                a.departures(out);
                b.departures(out);
            }
        }
    }

    /// The instant it comes, `None` for never, the departures dated by `dates` (in the
    /// order of [`When::departures`]), or taken as now when there are none.
    fn resolve(
        &self,
        dates: &mut dyn Iterator<Item = Option<Millis>>,
        now: Millis,
    ) -> Option<Millis> {
        match self {
            When::At(at) => Some(*at),
            When::Departs { .. } => dates.next().unwrap_or(Some(now)),
            When::Both(a, b) => {
                let (a, b) = (a.resolve(dates, now), b.resolve(dates, now));
                a.zip(b).map(|(a, b)| a.max(b))
            }
            When::Either(a, b) => {
                let (a, b) = (a.resolve(dates, now), b.resolve(dates, now));
                a.min(b).or(a).or(b)
            }
        }
    }

    fn both(a: When, b: When) -> When {
        When::Both(Box::new(a), Box::new(b))
    }

    fn either(a: When, b: When) -> When {
        When::Either(Box::new(a), Box::new(b))
    }
}

/// An endpoint at one instant.
#[derive(Debug)]
pub struct Standing {
    /// The file's limits, tightened by what the provider reported.
    pub limits: Limits,
    /// Usage in each window, raised to what the provider reported.
    pub used: Used,
    pub cooldown: Option<Cooldown>,
    /// The row's pool: its limits and the usage of all its rows.
    pub pool: Option<PoolStanding>,
    pub verdict: Verdict,
    /// What blocks it, in the order judged; empty when it fits or never can.
    blocks: Vec<(Block, When)>,
}

#[derive(Debug)]
pub struct PoolStanding {
    pub name: String,
    pub limits: Limits,
    pub used: Used,
}

impl Standing {
    /// The smallest fraction left of any limit, the pool's included, after `request`.
    pub fn headroom(&self, request: Request) -> f64 {
        let own = quota::headroom(&self.limits, &self.used, request);
        self.pool.as_ref().map_or(own, |pool| {
            own.min(quota::headroom(&pool.limits, &pool.used, request))
        })
    }

    /// Whether a block waits for [`date`] to say when it ends.
    pub fn undated(&self) -> bool {
        let mut departures = Vec::new();
        for (_, when) in &self.blocks {
            when.departures(&mut departures);
        }
        !departures.is_empty()
    }

    /// The verdict from the blocks: the one that ends last; of equal ends the later judged
    /// (a pool's full window over its row's own). Until [`date`] has run, a departure
    /// counts as now.
    fn judge(&mut self, now: Millis) {
        let latest = self
            .blocks
            .iter()
            .map(|(block, when)| {
                let at = when.resolve(&mut std::iter::empty(), now).unwrap_or(now);
                (*block, at.max(now))
            })
            .max_by_key(|&(_, at)| at);
        if let Some((block, frees_at)) = latest {
            self.verdict = Verdict::Blocked { block, frees_at };
        }
    }
}

/// Why `request` can never fit `endpoint`, whatever the ledger holds: a limit (its own or
/// its pool's) of 0 or smaller than the request.
pub fn never(endpoint: &Endpoint, request: Request) -> Option<Never> {
    let request = endpoint.prices.priced(request);
    quota::never_fits(&endpoint.limits, request).or_else(|| {
        let pool = endpoint.pool.as_ref()?;
        match quota::never_fits(&pool.limits, request)? {
            Never::Disabled(limit) => Some(Never::Pool { limit, cap: 0 }),
            Never::TooLarge { limit, cap } | Never::Pool { limit, cap } => {
                Some(Never::Pool { limit, cap })
            }
        }
    })
}

/// The account an assessment of `endpoint` at `now` reads of the row itself: with its
/// reservations in flight when it caps them, its last call when it is paced, and `extra`.
pub fn own_ask(endpoint: &Endpoint, now: Millis, extra: Parts) -> Ask<'_> {
    let own = Parts {
        in_flight: endpoint.concurrency.is_some(),
        last_call: endpoint.pace == Pace::Smooth,
        counters: false,
        months: monthly(&endpoint.limits)
            || endpoint.pool.as_ref().is_some_and(|p| monthly(&p.limits)),
    };
    Ask {
        endpoint: &endpoint.id,
        day_start: day_start(endpoint, now),
        month_after: months(endpoint).previous_month_start(now),
        cache: endpoint.cache_reads,
        parts: own.with(extra),
    }
}

/// The accounts the assessments of `endpoints` at `now` read: each row's own, and the
/// windows of the rows of each pool over its calendar day, once per pool however many of
/// its rows are judged.
pub fn asks<'e>(endpoints: &[&'e Endpoint], now: Millis, extra: Parts) -> Vec<Ask<'e>> {
    let mut asks: Vec<Ask<'e>> = Vec::with_capacity(endpoints.len());
    let mut pools: HashSet<(&str, Option<Millis>)> = HashSet::new();
    for &endpoint in endpoints {
        let own = own_ask(endpoint, now, extra);
        asks.push(own);
        if let Some(pool) = &endpoint.pool
            && pools.insert((&pool.name, own.day_start))
        {
            asks.extend(
                pool.members
                    .iter()
                    .zip(&pool.caches)
                    .map(|(id, &cache)| Ask {
                        endpoint: id,
                        day_start: own.day_start,
                        month_after: own.month_after,
                        cache,
                        parts: Parts {
                            months: monthly(&pool.limits),
                            ..Parts::default()
                        },
                    }),
            );
        }
    }
    asks
}

/// Whether `endpoint` can take `request` at `now`, from the accounts [`asks`] names (an
/// account missing from `accounts` reads as empty). A blocked standing may wait for
/// [`date`] to say when its windows free.
pub fn assess(endpoint: &Endpoint, request: Request, now: Millis, accounts: &Accounts) -> Standing {
    // A budget weighs the request at this row's prices.
    let request = endpoint.prices.priced(request);
    let anchor = day_anchor(endpoint);
    let day_start = anchor.map(|a| a.day_start(now));
    let empty = Account::default();
    let own = accounts.get(&endpoint.id, day_start).unwrap_or(&empty);
    let local = own.used;
    let (limits, used, reports) = with_reports(endpoint, own);
    let pool = endpoint.pool.as_ref().map(|pool| PoolStanding {
        name: pool.name.clone(),
        limits: pool.limits,
        used: accounts.pool_used(pool, day_start),
    });
    let mut standing = Standing {
        limits,
        used,
        cooldown: own.cooldown.clone(),
        pool,
        verdict: Verdict::Fits { probe: false },
        blocks: Vec::new(),
    };
    if let Some(never) = never(endpoint, request) {
        standing.verdict = Verdict::Never(never);
        return standing;
    }

    let blocks = &mut standing.blocks;
    let mut probe = false;
    if let Some(c) = own.cooldown.as_ref().filter(|c| c.strikes > 0) {
        if now < c.until {
            blocks.push((Block::Cooldown, When::At(c.until)));
        } else if let Some(out) = c.probe_at.filter(|&p| p + RESERVATION_OPEN_MS > now) {
            // Had the probe's caller vanished, its reservation expiring lets another go.
            blocks.push((Block::Probe, When::At(out + RESERVATION_OPEN_MS)));
        } else {
            probe = true;
        }
    }
    if let Some(cap) = endpoint.concurrency
        && own.open >= cap
    {
        let frees = own
            .oldest_open
            .as_ref()
            .map_or(now, |e| e.at + RESERVATION_OPEN_MS);
        blocks.push((Block::Concurrency, When::At(frees)));
    }
    if endpoint.pace == Pace::Smooth
        && let Some(spacing) = quota::pace_spacing(&endpoint.limits)
        && let Some(last) = own.last_call
        && now < last + spacing
    {
        blocks.push((Block::Pace, When::At(last + spacing)));
    }
    // A full window has room again once local usage fits its limit: at once, at the end of
    // a calendar day, or as enough leaves the rolling window. Under a provider's report it
    // fits the report's limit that way, unless the provider counts more than was used here
    // (then only the report's reset helps); and after the reset, the file's limit.
    for short in quota::shortfalls(&limits, &used, request) {
        let limit = short.limit;
        let after = local.get(limit) + request.amount(limit.unit);
        let under = |cap: Option<u64>| match cap {
            Some(cap) if after > cap => match (anchor, limit.window) {
                (_, Window::Month) => When::At(months(endpoint).next_month_start(now)),
                (Some(anchor), Window::Day) => When::At(anchor.next_reset(now)),
                _ => When::Departs {
                    of: Of::Row(endpoint.id.clone(), endpoint.cache_reads),
                    limit,
                    excess: after - cap,
                },
            },
            _ => When::At(now),
        };
        let when = match reports.get(limit) {
            None => under(endpoint.limits.get(limit)),
            Some((reset, raised)) => {
                let after_reset = When::both(When::At(reset), under(endpoint.limits.get(limit)));
                match raised {
                    true => after_reset,
                    false => When::either(under(limits.get(limit)), after_reset),
                }
            }
        };
        blocks.push((Block::Limit(limit), when));
    }

    // A full pool frees as its rows' usage leaves the window, or at the end of their
    // calendar day.
    if let (Some(shared), Some(pool)) = (&endpoint.pool, &standing.pool) {
        for short in quota::shortfalls(&pool.limits, &pool.used, request) {
            let when = match (anchor, short.limit.window) {
                (_, Window::Month) => When::At(months(endpoint).next_month_start(now)),
                (Some(anchor), Window::Day) => When::At(anchor.next_reset(now)),
                _ => When::Departs {
                    of: Of::Pool(Arc::clone(shared)),
                    limit: short.limit,
                    excess: short.excess,
                },
            };
            blocks.push((Block::PoolLimit(short.limit), when));
        }
    }
    standing.verdict = Verdict::Fits { probe };
    standing.judge(now);
    standing
}

/// Every endpoint's standing for `request` at `now`, dated, and the accounts (with `extra`
/// parts) it was judged from: one question for the accounts and one for the departures of
/// the full windows.
pub fn assess_all(
    book: &dyn Book,
    endpoints: &[&Endpoint],
    request: Request,
    now: Millis,
    extra: Parts,
) -> Result<(Vec<Standing>, Accounts)> {
    let mut accounts = Accounts::default();
    let asks = asks(endpoints, now, extra);
    accounts.fill(book, &asks, now)?;
    let mut standings: Vec<Standing> = endpoints
        .iter()
        .map(|e| assess(e, request, now, &accounts))
        .collect();
    date(book, &mut standings.iter_mut().collect::<Vec<_>>(), now)?;
    Ok((standings, accounts))
}

/// Says when each undated block of `standings` ends, from the ledger's departures: one
/// question for all of them.
pub fn date(book: &dyn Book, standings: &mut [&mut Standing], now: Millis) -> Result<()> {
    let mut leaves: Vec<(&Of, Limit, u64)> = Vec::new();
    for standing in standings.iter() {
        for (_, when) in &standing.blocks {
            when.departures(&mut leaves);
        }
    }
    if leaves.is_empty() {
        return Ok(());
    }
    // The rows of a pool all wait for the same departures: each is asked for once.
    let mut wanted: Vec<account::Awaited<'_>> = Vec::new();
    let mut index: HashMap<((bool, &str), &str, u64), usize> = HashMap::new();
    let mut which = Vec::with_capacity(leaves.len());
    for &(of, limit, excess) in &leaves {
        let i = *index
            .entry((of.key(), limit.name(), excess))
            .or_insert_with(|| {
                wanted.push((of.ids(), limit, excess));
                wanted.len() - 1
            });
        which.push(i);
    }
    let answers = account::frees_at(book, &wanted, now)?;
    let mut dates = which.into_iter().map(|i| answers[i]);
    for standing in standings.iter_mut() {
        for (_, when) in &mut standing.blocks {
            // What nothing leaving can free is looked at again soon, as now.
            *when = When::At(when.resolve(&mut dates, now).unwrap_or(now));
        }
        standing.judge(now);
    }
    Ok(())
}

/// Applies the provider's reports that have not reset: a reported limit caps the window
/// (even one the file leaves open), and usage rises to what the provider counts — its
/// limit less its remaining, less what was used here since — never below the local count.
/// Returns, per limit with a report, when it resets and whether it raised the usage.
fn with_reports(
    endpoint: &Endpoint,
    own: &Account,
) -> (Limits, Used, PerLimit<Option<(Millis, bool)>>) {
    let local = own.used;
    let mut limits = endpoint.limits;
    let mut used = local;
    let mut reports = PerLimit::default();
    for report in &own.reports {
        let limit = report.limit;
        let remaining = report.remaining.saturating_sub(report.used_since);
        let cap = match (limits.get(limit), report.cap) {
            (Some(file), Some(said)) => file.min(said),
            (file, said) => file.or(said).unwrap_or(local.get(limit) + remaining),
        };
        limits.set(limit, Some(cap));
        let counted = cap.saturating_sub(remaining);
        let raised = counted >= local.get(limit);
        if raised {
            used.set(limit, counted);
        }
        reports.set(limit, Some((report.resets_at, raised)));
    }
    (limits, used, reports)
}

/// When the endpoint's calendar day began, for an endpoint whose day is one.
pub fn day_start(endpoint: &Endpoint, now: Millis) -> Option<Millis> {
    day_anchor(endpoint).map(|a| a.day_start(now))
}

/// Whether any of `limits` counts a calendar month.
fn monthly(limits: &Limits) -> bool {
    limits
        .set_ones()
        .any(|(limit, _)| limit.window == Window::Month)
}

/// The calendar months of an endpoint: from its day's reset on the 1st, or from 00:00 UTC
/// on the 1st when its day is rolling.
pub fn months(endpoint: &Endpoint) -> &DayAnchor {
    day_anchor(endpoint).unwrap_or(&UTC_MONTHS)
}

/// The month a call of `endpoint` made at `at` counts in (UTC months for a row the file
/// no longer has).
pub fn month_of(endpoint: Option<&Endpoint>, at: Millis) -> crate::ledger::MonthStart {
    endpoint.map_or(&UTC_MONTHS, months).month_start(at)
}

/// The calendar day of an endpoint whose daily quota resets at a local time.
fn day_anchor(endpoint: &Endpoint) -> Option<&DayAnchor> {
    match &endpoint.day_reset {
        DayReset::At(anchor) => Some(anchor),
        DayReset::Rolling => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{MINUTE_MS, SECOND_MS};
    use crate::engine::account::Report;
    use crate::ledger::Entry;

    const T0: Millis = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn rows(csv: &str) -> Vec<Endpoint> {
        crate::endpoints::parse(csv, "endpoints.csv").expect("a good file")
    }

    fn used(pairs: &[(&str, u64)]) -> Used {
        let mut used = Used::default();
        for &(name, n) in pairs {
            used.set(Limit::from_name(name).expect("a limit"), n);
        }
        used
    }

    /// Accounts of `(id, account)` over rolling days.
    fn accounts(list: Vec<(&str, Account)>) -> Accounts {
        let mut accounts = Accounts::default();
        for (id, account) in list {
            accounts.insert(&Ask::all(id, T0), account);
        }
        accounts
    }

    fn limit(name: &str) -> Limit {
        Limit::from_name(name).expect("a limit")
    }

    #[test]
    fn filling_a_window_exactly_fits_and_one_more_waits_for_the_ledger_to_date_it() {
        let rows = rows("provider,model,rpm,tpm\np,m,2,100\n");
        let one = Account {
            used: used(&[("rpm", 1), ("tpm", 60)]),
            ..Account::default()
        };
        let fits = assess(
            &rows[0],
            Request::new(40),
            T0,
            &accounts(vec![("p/m", one.clone())]),
        );
        assert_eq!(fits.verdict, Verdict::Fits { probe: false });
        assert!(!fits.undated());
        let full = assess(
            &rows[0],
            Request::new(41),
            T0,
            &accounts(vec![("p/m", one)]),
        );
        assert!(
            full.undated(),
            "a rolling window is dated from its departures"
        );
        assert_eq!(
            full.verdict,
            Verdict::Blocked {
                block: Block::Limit(limit("tpm")),
                frees_at: T0
            }
        );
    }

    #[test]
    fn a_cooldown_blocks_until_it_ends_then_lets_one_probe_through() {
        let rows = rows("provider,model\np,m\n");
        let cooling = |probe_at| Account {
            cooldown: Some(Cooldown {
                until: T0 + 5 * SECOND_MS,
                reason: "rate-limited".into(),
                strikes: 1,
                failures: 0,
                probe_at,
            }),
            ..Account::default()
        };
        let during = assess(
            &rows[0],
            Request::new(0),
            T0,
            &accounts(vec![("p/m", cooling(None))]),
        );
        assert_eq!(
            during.verdict,
            Verdict::Blocked {
                block: Block::Cooldown,
                frees_at: T0 + 5 * SECOND_MS
            }
        );
        let after = T0 + 5 * SECOND_MS;
        let probe = assess(
            &rows[0],
            Request::new(0),
            after,
            &accounts(vec![("p/m", cooling(None))]),
        );
        assert_eq!(probe.verdict, Verdict::Fits { probe: true });
        let out = accounts(vec![("p/m", cooling(Some(after)))]);
        assert_eq!(
            assess(&rows[0], Request::new(0), after + 1, &out).verdict,
            Verdict::Blocked {
                block: Block::Probe,
                frees_at: after + RESERVATION_OPEN_MS
            }
        );
    }

    #[test]
    fn concurrency_and_pacing_block_until_the_oldest_expires_and_the_spacing_passes() {
        let rows = rows("provider,model,rpm,concurrency,pace\np,m,60,2,smooth\n");
        let oldest = Entry {
            lease: "a".into(),
            endpoint: "p/m".into(),
            at: T0 - MINUTE_MS,
            usage: Request::new(0),
            open: true,
        };
        let busy = Account {
            open: 2,
            oldest_open: Some(oldest),
            last_call: Some(T0 - 10),
            ..Account::default()
        };
        let standing = assess(
            &rows[0],
            Request::new(0),
            T0,
            &accounts(vec![("p/m", busy)]),
        );
        // Both block; the verdict is the one that ends last.
        assert_eq!(
            standing.verdict,
            Verdict::Blocked {
                block: Block::Concurrency,
                frees_at: T0 - MINUTE_MS + RESERVATION_OPEN_MS
            }
        );
        let paced = Account {
            last_call: Some(T0 - 10),
            ..Account::default()
        };
        assert_eq!(
            assess(
                &rows[0],
                Request::new(0),
                T0,
                &accounts(vec![("p/m", paced)])
            )
            .verdict,
            Verdict::Blocked {
                block: Block::Pace,
                frees_at: T0 - 10 + SECOND_MS
            }
        );
    }

    #[test]
    fn a_report_caps_a_window_the_file_leaves_open_until_it_resets() {
        let rows = rows("provider,model\np,m\n");
        let reported = Account {
            used: used(&[("rpd", 3)]),
            reports: vec![Report {
                limit: limit("rpd"),
                remaining: 1,
                cap: Some(10),
                resets_at: T0 + MINUTE_MS,
                used_since: 1,
            }],
            ..Account::default()
        };
        let standing = assess(
            &rows[0],
            Request::new(0),
            T0,
            &accounts(vec![("p/m", reported)]),
        );
        assert_eq!(standing.limits.get(limit("rpd")), Some(10));
        assert_eq!(standing.used.get(limit("rpd")), 10, "the provider's count");
        assert_eq!(
            standing.verdict,
            Verdict::Blocked {
                block: Block::Limit(limit("rpd")),
                frees_at: T0 + MINUTE_MS
            }
        );
        assert!(!standing.undated(), "the report's reset dates it");
    }

    #[test]
    fn a_pool_sums_its_rows_and_a_tie_is_the_pools() {
        let rows = rows("provider,model,rpm,pool,pool_rpm\np,a,5,shared,3\np,b,,shared,\n");
        let list = accounts(vec![
            (
                "p/a",
                Account {
                    used: used(&[("rpm", 1)]),
                    ..Account::default()
                },
            ),
            (
                "p/b",
                Account {
                    used: used(&[("rpm", 2)]),
                    ..Account::default()
                },
            ),
        ]);
        let ids: Vec<&str> = asks(&[&rows[0], &rows[1]], T0, Parts::default())
            .iter()
            .map(|a| a.endpoint)
            .collect();
        assert_eq!(
            ids,
            ["p/a", "p/a", "p/b", "p/b"],
            "each row, and the pool once"
        );
        let standing = assess(&rows[0], Request::new(0), T0, &list);
        assert_eq!(
            standing.pool.as_ref().map(|p| p.used.get(limit("rpm"))),
            Some(3)
        );
        assert_eq!(
            standing.verdict,
            Verdict::Blocked {
                block: Block::PoolLimit(limit("rpm")),
                frees_at: T0
            }
        );
    }

    #[test]
    fn a_calendar_day_frees_at_its_reset_and_a_request_too_large_never_fits() {
        let rows = rows("provider,model,rpd,tpm,day_reset\np,m,2,100,00:00 UTC\n");
        let day = day_start(&rows[0], T0 + MINUTE_MS);
        assert_eq!(day, Some(T0));
        let mut list = Accounts::default();
        let ask = Ask {
            day_start: day,
            ..Ask::all("p/m", T0)
        };
        list.insert(
            &ask,
            Account {
                used: used(&[("rpd", 2)]),
                ..Account::default()
            },
        );
        let standing = assess(&rows[0], Request::new(0), T0 + MINUTE_MS, &list);
        assert_eq!(
            standing.verdict,
            Verdict::Blocked {
                block: Block::Limit(limit("rpd")),
                frees_at: T0 + 24 * 60 * MINUTE_MS
            }
        );
        assert!(matches!(
            assess(&rows[0], Request::new(101), T0, &list).verdict,
            Verdict::Never(Never::TooLarge { cap: 100, .. })
        ));
    }
}
