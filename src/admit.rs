//! Whether an endpoint can take a request now, and if not, what blocks it and until when:
//! its windows (as the ledger and the provider's last report see them), a cooldown after
//! 429s or failures, smooth pacing, and its cap on calls in flight. `pick` and `state`
//! share it, so that what `state` says is what `pick` would do. Plain code over what the
//! ledger reports and the `now` of the ledger's step.

use anyhow::Result;

use crate::anchor::DayAnchor;
use crate::clock::Millis;
use crate::cooldown::Cooldown;
use crate::endpoints::{DayReset, Endpoint, Pace};
use crate::ledger::{Book, RESERVATION_OPEN_MS};
use crate::quota::{self, Limit, Limits, Never, PerLimit, Request, Used, Window};

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
}

/// Why `request` can never fit `endpoint`, whatever the ledger holds: a limit (its own or
/// its pool's) of 0 or smaller than the request.
pub fn never(endpoint: &Endpoint, request: Request) -> Option<Never> {
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

pub fn assess(
    book: &dyn Book,
    endpoint: &Endpoint,
    request: Request,
    now: Millis,
) -> Result<Standing> {
    let anchor = day_anchor(endpoint);
    let local = book.used(&endpoint.id, now, anchor.map(|a| a.day_start(now)))?;
    let (limits, used, resets) = with_reports(book, endpoint, local, now)?;
    let cooldown = book.cooldown(&endpoint.id)?;
    let day_start = anchor.map(|a| a.day_start(now));
    let pool = match &endpoint.pool {
        Some(pool) => Some(PoolStanding {
            name: pool.name.clone(),
            limits: pool.limits,
            used: pool_used(book, &pool.members, now, day_start)?,
        }),
        None => None,
    };
    if let Some(never) = never(endpoint, request) {
        return Ok(Standing {
            limits,
            used,
            cooldown,
            pool,
            verdict: Verdict::Never(never),
        });
    }

    let mut blocks: Vec<(Block, Millis)> = Vec::new();
    let mut probe = false;
    if let Some(c) = cooldown.as_ref().filter(|c| c.strikes > 0) {
        if now < c.until {
            blocks.push((Block::Cooldown, c.until));
        } else if let Some(out) = c.probe_at.filter(|&p| p + RESERVATION_OPEN_MS > now) {
            // Had the probe's caller vanished, its reservation expiring lets another go.
            blocks.push((Block::Probe, out + RESERVATION_OPEN_MS));
        } else {
            probe = true;
        }
    }
    if let Some(cap) = endpoint.concurrency
        && book.open_reservations(&endpoint.id, now)? >= cap
    {
        let frees = book.first_expiry(&endpoint.id, now)?.unwrap_or(now);
        blocks.push((Block::Concurrency, frees));
    }
    if endpoint.pace == Pace::Smooth
        && let Some(spacing) = quota::pace_spacing(&endpoint.limits)
        && let Some(last) = book.last_call(&endpoint.id)?
        && now < last + spacing
    {
        blocks.push((Block::Pace, last + spacing));
    }
    // A full window has room again: when a provider's report that alone blocks it resets;
    // at the end of a calendar day; else when enough local usage leaves the rolling window.
    for short in quota::shortfalls(&limits, &used, request) {
        let limit = short.limit;
        let after = local.get(limit) + request.amount(limit.unit);
        let file_short = endpoint.limits.get(limit).is_some_and(|cap| after > cap);
        let local_frees = if !file_short && resets.get(limit).is_some() {
            None
        } else if let (Some(anchor), Window::Day) = (anchor, limit.window) {
            Some(anchor.next_reset(now))
        } else {
            let excess = after.saturating_sub(limits.get(limit).unwrap_or(0)).max(1);
            Some(
                book.frees_at(&endpoint.id, limit, excess, now)?
                    .unwrap_or(now),
            )
        };
        let frees = local_frees.max(resets.get(limit)).unwrap_or(now);
        blocks.push((Block::Limit(limit), frees));
    }

    // A full pool frees as its rows' usage leaves the window, or at the end of their
    // calendar day.
    if let (Some(members), Some(standing)) = (endpoint.pool.as_ref().map(|p| &p.members), &pool) {
        for short in quota::shortfalls(&standing.limits, &standing.used, request) {
            let frees = match (anchor, short.limit.window) {
                (Some(anchor), Window::Day) => Some(anchor.next_reset(now)),
                _ => pool_frees_at(book, members, short.limit, short.excess, now)?,
            };
            blocks.push((Block::PoolLimit(short.limit), frees.unwrap_or(now)));
        }
    }

    let verdict = match blocks.into_iter().max_by_key(|&(_, at)| at) {
        Some((block, frees_at)) => Verdict::Blocked { block, frees_at },
        None => Verdict::Fits { probe },
    };
    Ok(Standing {
        limits,
        used,
        cooldown,
        pool,
        verdict,
    })
}

/// The usage of all the rows of a pool: windows are sums, so the pool's is the sum of its
/// rows'.
fn pool_used(
    book: &dyn Book,
    members: &[String],
    now: Millis,
    day_start: Option<Millis>,
) -> Result<Used> {
    let mut total = Used::default();
    for member in members {
        let used = book.used(member, now, day_start)?;
        for limit in Limit::ALL {
            total.set(limit, total.get(limit).saturating_add(used.get(limit)));
        }
    }
    Ok(total)
}

/// When enough of the pool's usage has left the window for `excess` more to fit.
fn pool_frees_at(
    book: &dyn Book,
    members: &[String],
    limit: Limit,
    excess: u64,
    now: Millis,
) -> Result<Option<Millis>> {
    let mut departures = Vec::new();
    for member in members {
        departures.extend(book.departures(member, limit, now, excess)?);
    }
    departures.sort_unstable_by_key(|&(at, _)| at);
    Ok(quota::freed_by(departures, excess))
}

/// Applies the provider's reports that have not reset: a reported limit caps the window
/// (even one the file leaves open), and usage rises to what the provider counts — its
/// limit less its remaining, less what was used here since — never below the local count.
/// Returns, per limit, when a report that raised it resets.
fn with_reports(
    book: &dyn Book,
    endpoint: &Endpoint,
    local: Used,
    now: Millis,
) -> Result<(Limits, Used, PerLimit<Option<Millis>>)> {
    let mut limits = endpoint.limits;
    let mut used = local;
    let mut resets = PerLimit::default();
    for report in book.reports(&endpoint.id, now)? {
        let limit = report.limit;
        let remaining = report.remaining.saturating_sub(report.used_since);
        let cap = match (limits.get(limit), report.cap) {
            (Some(file), Some(said)) => file.min(said),
            (file, said) => file.or(said).unwrap_or(local.get(limit) + remaining),
        };
        limits.set(limit, Some(cap));
        let counted = cap.saturating_sub(remaining);
        if counted >= local.get(limit) {
            used.set(limit, counted);
            resets.set(limit, Some(report.resets_at));
        }
    }
    Ok((limits, used, resets))
}

/// When the endpoint's calendar day began, for an endpoint whose day is one.
pub fn day_start(endpoint: &Endpoint, now: Millis) -> Option<Millis> {
    day_anchor(endpoint).map(|a| a.day_start(now))
}

/// The calendar day of an endpoint whose daily quota resets at a local time.
fn day_anchor(endpoint: &Endpoint) -> Option<&DayAnchor> {
    match &endpoint.day_reset {
        DayReset::At(anchor) => Some(anchor),
        DayReset::Rolling => None,
    }
}
