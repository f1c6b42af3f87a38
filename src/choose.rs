//! Choosing an endpoint: the candidates a request could ever fit, then, at the ledger's
//! `now`, the first priority group with an endpoint that fits, and the strategy's pick among
//! them, reserved in the same step that checked it.

use anyhow::{Result, bail};

use crate::admit::{self, Block, Standing, Verdict};
use crate::clock::Millis;
use crate::endpoints::Endpoint;
use crate::glob;
use crate::ledger::Book;
use crate::quota::Request;

/// How to choose among the fitting endpoints of the highest priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The first in file order.
    Order,
    /// At random, in proportion to the `weight` column.
    Weighted,
    /// The one with the most of its tightest limit left.
    Spread,
    /// Each in turn, in file order; the turn is kept in the ledger.
    RoundRobin,
}

/// Why an endpoint cannot take the request now, and when it can.
pub struct Blocked<'e> {
    pub endpoint: &'e Endpoint,
    pub block: Block,
    pub frees_at: Millis,
}

pub enum Choice<'e> {
    /// `lease` is `None` when nothing was reserved (a dry run).
    Chosen {
        endpoint: &'e Endpoint,
        lease: Option<String>,
    },
    Exhausted(Vec<Blocked<'e>>),
}

/// The endpoints whose id matches any of `only` (all when empty) and none of `exclude`.
pub fn filter<'e>(all: &'e [Endpoint], only: &[String], exclude: &[String]) -> Vec<&'e Endpoint> {
    all.iter()
        .filter(|e| only.is_empty() || only.iter().any(|p| glob::matches(p, &e.id)))
        .filter(|e| !exclude.iter().any(|p| glob::matches(p, &e.id)))
        .collect()
}

/// The endpoints the filters allow that could ever take the request, best first, and why
/// each of the others never can. An error when none could.
pub fn candidates<'e>(
    all: &'e [Endpoint],
    only: &[String],
    exclude: &[String],
    request: Request,
) -> Result<(Vec<&'e Endpoint>, Vec<String>)> {
    if all.is_empty() {
        bail!("the endpoints file lists no endpoints");
    }
    let mut matched = filter(all, only, exclude);
    if matched.is_empty() {
        bail!("no endpoint matches --only/--exclude");
    }
    let never: Vec<String> = matched
        .iter()
        .filter_map(|e| admit::never(e, request).map(|why| format!("{}: never fits ({why})", e.id)))
        .collect();
    matched.retain(|e| admit::never(e, request).is_none());
    if matched.is_empty() {
        bail!(
            "no endpoint can ever take {}:\n  {}",
            describe(request),
            never.join("\n  ")
        );
    }
    // Stable: equal priorities keep the file's row order.
    matched.sort_by_key(|e| std::cmp::Reverse(e.priority));
    Ok((matched, never))
}

pub fn describe(request: Request) -> String {
    format!("1 request and {} tokens", request.tokens)
}

/// Chooses among `candidates` (best first) at `now`, and reserves the choice unless
/// `reserve` is false. Must run in a write step of the ledger when it reserves.
pub fn choose<'e>(
    book: &dyn Book,
    candidates: &[&'e Endpoint],
    request: Request,
    strategy: Strategy,
    reserve: bool,
    now: Millis,
) -> Result<Choice<'e>> {
    if reserve {
        book.prune(now)?;
    }
    // A ledger across a network reads the candidates in one round trip: all of them at
    // once when a strategy looks at every one, else the rest once the first does not fit.
    let mut prefetched = strategy != Strategy::Order;
    if prefetched {
        prefetch(book, candidates, now)?;
    }
    let mut blocked = Vec::new();
    // Candidates are sorted by priority, so each run of equal priority is a group; a lower
    // group is looked at only when nothing in a higher one fits.
    for group in candidates.chunk_by(|a, b| a.priority == b.priority) {
        let mut fits: Vec<(usize, Standing)> = Vec::new();
        for (position, &endpoint) in group.iter().enumerate() {
            let standing = admit::assess(book, endpoint, request, now)?;
            if !prefetched && !matches!(standing.verdict, Verdict::Fits { .. }) {
                prefetched = true;
                prefetch(book, candidates, now)?;
            }
            match standing.verdict {
                Verdict::Fits { .. } => {
                    fits.push((position, standing));
                    if strategy == Strategy::Order {
                        break;
                    }
                }
                Verdict::Blocked { block, frees_at } => blocked.push(Blocked {
                    endpoint,
                    block,
                    frees_at,
                }),
                Verdict::Never(_) => {}
            }
        }
        let Some((position, standing)) = select(book, strategy, group, fits, request)? else {
            continue;
        };
        let endpoint = group[position];
        let lease = if reserve {
            let lease = book.reserve(&endpoint.id, request, now)?;
            if standing.verdict == (Verdict::Fits { probe: true }) {
                book.mark_probe(&endpoint.id, now)?;
            }
            if strategy == Strategy::RoundRobin {
                book.set_turn(&endpoint.id)?;
            }
            Some(lease)
        } else {
            None
        };
        return Ok(Choice::Chosen { endpoint, lease });
    }
    Ok(Choice::Exhausted(blocked))
}

/// Tells the ledger which endpoints (and pool members) the step is about to read.
pub fn prefetch(book: &dyn Book, candidates: &[&Endpoint], now: Millis) -> Result<()> {
    let wanted: Vec<(&str, Option<Millis>)> = candidates
        .iter()
        .flat_map(|e| {
            let day = admit::day_start(e, now);
            let members = e.pool.iter().flat_map(|p| p.members.iter());
            std::iter::once(e.id.as_str())
                .chain(members.map(String::as_str))
                .map(move |id| (id, day))
        })
        .collect();
    book.prefetch(&wanted, now)
}

/// Which of the fitting endpoints of one priority group the strategy takes.
fn select(
    book: &dyn Book,
    strategy: Strategy,
    group: &[&Endpoint],
    mut fits: Vec<(usize, Standing)>,
    request: Request,
) -> Result<Option<(usize, Standing)>> {
    if fits.is_empty() {
        return Ok(None);
    }
    let index = match strategy {
        Strategy::Order => 0,
        Strategy::Weighted => {
            let weights: Vec<u64> = fits
                .iter()
                .map(|(p, _)| u64::from(group[*p].weight))
                .collect();
            let mut ticket = random_below(weights.iter().sum());
            weights
                .iter()
                .position(|&w| {
                    let hit = ticket < w;
                    ticket = ticket.saturating_sub(w);
                    hit
                })
                .unwrap_or(0)
        }
        Strategy::Spread => {
            let headroom = |s: &Standing| s.headroom(request);
            let mut best = 0;
            for (i, (_, standing)) in fits.iter().enumerate() {
                if headroom(standing) > headroom(&fits[best].1) {
                    best = i;
                }
            }
            best
        }
        Strategy::RoundRobin => {
            // The next fitting endpoint after the last one served, in file order, wrapping.
            let last = book.last_turn()?;
            let after = last
                .and_then(|id| group.iter().position(|e| e.id == id))
                .map_or(0, |p| p + 1);
            fits.iter().position(|(p, _)| *p >= after).unwrap_or(0)
        }
    };
    Ok(Some(fits.swap_remove(index)))
}

/// A number in `0..n` (0 when n is 0), from std's per-process random hash keys.
fn random_below(n: u64) -> u64 {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    if n == 0 { 0 } else { random % n }
}
