//! Choosing an endpoint: the candidates a request could ever fit, then, at the ledger's
//! `now`, the first priority group with an endpoint that fits, and the strategy's pick among
//! them, reserved in the same step that checked it.

use anyhow::{Result, bail};

use super::account::{self, Accounts, Ask};
use super::admit::{self, Block, Standing, Verdict};
use super::latency;
use crate::clock::Millis;
use crate::cooldown::Cooldown;
use crate::endpoints::Endpoint;
use crate::estimate::Estimate;
use crate::glob;
use crate::ledger::{Book, FirstRead, Parts};
use crate::quota::Request;
use crate::random;

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
    /// The lowest estimated cost of the request (its prices); ties in file order.
    Cheapest,
    /// The lowest median latency of its successful calls in the last hour; one with none
    /// first, so that each gets measured; ties in file order.
    Fastest,
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
    let matched = filter(all, only, exclude);
    if matched.is_empty() {
        bail!("no endpoint matches --only/--exclude");
    }
    fitting(matched, request)
}

/// Of `matched`, those that could ever take the request, best first, and why each of the
/// others never can. An error when none could.
pub fn fitting(
    mut matched: Vec<&Endpoint>,
    request: Request,
) -> Result<(Vec<&Endpoint>, Vec<String>)> {
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

/// Why nothing fits now, as `pick` and `serve` say it: how long until the first of
/// `blocked` frees (at least 0), the headline, and one line per endpoint.
pub fn why_exhausted(
    blocked: &[Blocked],
    request: Request,
    now: Millis,
) -> (Millis, String, Vec<String>) {
    let retry = blocked
        .iter()
        .map(|b| b.frees_at - now)
        .min()
        .unwrap_or(0)
        .max(0);
    let headline = format!(
        "no endpoint has quota for {} now; retry in {}",
        describe(request),
        crate::output::duration(retry)
    );
    let reasons = blocked
        .iter()
        .map(|b| {
            format!(
                "{}: {}, frees in {}",
                b.endpoint.id,
                b.block,
                crate::output::duration(b.frees_at - now)
            )
        })
        .collect();
    (retry, headline, reasons)
}

pub fn describe(request: Request) -> String {
    match request.output {
        0 => format!("1 request and {} tokens", request.tokens()),
        output => format!(
            "1 request and {} tokens ({} input, {output} output)",
            request.tokens(),
            request.input
        ),
    }
}

/// Chooses among `candidates` (best first) at `now`, and reserves the choice unless
/// `reserve` is false. Must run in a write step of the ledger when it reserves.
/// The candidates a choice reads first. Each question to the ledger reads a batch of
/// accounts (one round trip on a ledger across a network): every candidate when the
/// strategy weighs them all; in file order, the first alone, and the rest only when it does
/// not fit.
pub fn first_read<'c, 'e>(
    candidates: &'c [&'e Endpoint],
    strategy: Strategy,
) -> &'c [&'e Endpoint] {
    match strategy {
        Strategy::Order => &candidates[..candidates.len().min(1)],
        _ => candidates,
    }
}

/// The endpoints whose accounts a choice reads first (a pool's members with its rows), for
/// [`Ledger::expect`].
pub fn expected(candidates: &[&Endpoint], strategy: Strategy) -> FirstRead {
    // Which accounts a row needs does not depend on the time, only their spans do.
    let mut ids: Vec<&str> = admit::asks(first_read(candidates, strategy), 0, Parts::default())
        .iter()
        .map(|ask| ask.endpoint)
        .collect();
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(*id));
    FirstRead::of_endpoints(&ids)
}

pub fn choose<'e>(
    book: &dyn Book,
    candidates: &[&'e Endpoint],
    estimate: Estimate,
    strategy: Strategy,
    reserve: bool,
    now: Millis,
) -> Result<Choice<'e>> {
    let request = estimate.request();
    if reserve {
        account::prune(book, now)?;
    }
    let everyone: Vec<Ask<'_>> = admit::asks(candidates, now, Parts::default());
    let mut accounts = Accounts::default();
    let first = first_read(candidates, strategy);
    accounts.fill(book, &admit::asks(first, now, Parts::default()), now)?;
    let mut all_read = first.len() == candidates.len();
    let turn = match strategy {
        Strategy::RoundRobin => book.last_turn()?,
        _ => None,
    };
    let medians = match strategy {
        Strategy::Fastest => latency::medians(book, candidates, now)?,
        _ => Vec::new(),
    };
    let mut blocked: Vec<(&'e Endpoint, Standing)> = Vec::new();
    // Candidates are sorted by priority, so each run of equal priority is a group; a lower
    // group is looked at only when nothing in a higher one fits.
    let mut next = 0;
    for group in candidates.chunk_by(|a, b| a.priority == b.priority) {
        let start = next;
        next += group.len();
        let mut fits: Vec<(usize, Standing)> = Vec::new();
        for (position, &endpoint) in group.iter().enumerate() {
            // A row read as another's pool member was read with its pool: only its own
            // parts may be missing.
            if !all_read && !accounts.has(&admit::own_ask(endpoint, now, Parts::default())) {
                accounts.fill(book, &everyone, now)?;
                all_read = true;
            }
            let standing = admit::assess(endpoint, request, now, &accounts);
            match standing.verdict {
                Verdict::Fits { .. } => {
                    fits.push((position, standing));
                    if strategy == Strategy::Order {
                        break;
                    }
                }
                Verdict::Blocked { .. } => blocked.push((endpoint, standing)),
                Verdict::Never(_) => {}
            }
        }
        let ticket = random::draw();
        let how = Select {
            estimate,
            turn: turn.as_deref(),
            ticket,
            medians: medians.get(start..start + group.len()).unwrap_or(&[]),
        };
        let Some((position, standing)) = select(strategy, group, fits, &how) else {
            continue;
        };
        let endpoint = group[position];
        let lease = if reserve {
            let priced = endpoint.prices.priced(request);
            let month = admit::months(endpoint).month_start(now);
            let lease = account::reserve(book, &endpoint.id, priced, month, now)?;
            if let (Verdict::Fits { probe: true }, Some(cooldown)) =
                (standing.verdict, &standing.cooldown)
            {
                let out = Cooldown {
                    probe_at: Some(now),
                    ..cooldown.clone()
                };
                book.set_cooldown(&endpoint.id, Some(&out))?;
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
    // Nothing fits: say when each frees, dated in one question.
    let mut standings: Vec<&mut Standing> = blocked.iter_mut().map(|(_, s)| s).collect();
    admit::date(book, &mut standings, now)?;
    let blocked = blocked
        .into_iter()
        .filter_map(|(endpoint, standing)| match standing.verdict {
            Verdict::Blocked { block, frees_at } => Some(Blocked {
                endpoint,
                block,
                frees_at,
            }),
            _ => None,
        })
        .collect();
    Ok(Choice::Exhausted(blocked))
}

/// What a strategy weighs beyond the standings: `turn` is the endpoint that took the last
/// round-robin turn, `ticket` a random number for `weighted`, `medians` the median latency
/// of each endpoint of the group (for `fastest`).
struct Select<'a> {
    estimate: Estimate,
    turn: Option<&'a str>,
    ticket: u64,
    medians: &'a [Option<u64>],
}

/// Which of the fitting endpoints of one priority group the strategy takes.
fn select(
    strategy: Strategy,
    group: &[&Endpoint],
    mut fits: Vec<(usize, Standing)>,
    how: &Select<'_>,
) -> Option<(usize, Standing)> {
    let (estimate, turn, ticket) = (how.estimate, how.turn, how.ticket);
    if fits.is_empty() {
        return None;
    }
    let index = match strategy {
        Strategy::Order => 0,
        Strategy::Weighted => {
            let weights: Vec<u64> = fits
                .iter()
                .map(|(p, _)| u64::from(group[*p].weight))
                .collect();
            let total: u64 = weights.iter().sum();
            let mut ticket = if total == 0 { 0 } else { ticket % total };
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
            let request = estimate.request();
            let headroom =
                |(p, s): &(usize, Standing)| s.headroom(group[*p].prices.priced(request));
            let mut best = 0;
            for (i, fit) in fits.iter().enumerate() {
                if headroom(fit) > headroom(&fits[best]) {
                    best = i;
                }
            }
            best
        }
        Strategy::RoundRobin => {
            // The next fitting endpoint after the last one served, in file order, wrapping.
            let after = turn
                .and_then(|id| group.iter().position(|e| e.id == id))
                .map_or(0, |p| p + 1);
            fits.iter().position(|(p, _)| *p >= after).unwrap_or(0)
        }
        Strategy::Cheapest => {
            // The first of the lowest: a tie goes to file order.
            let cost = |p: usize| group[p].prices.cost(&estimate.request());
            (0..fits.len())
                .min_by_key(|&i| cost(fits[i].0))
                .unwrap_or(0)
        }
        Strategy::Fastest => {
            // Unmeasured first (None sorts below every Some), then the lowest median.
            let median = |p: usize| how.medians.get(p).copied().flatten();
            (0..fits.len())
                .min_by_key(|&i| median(fits[i].0))
                .unwrap_or(0)
        }
    };
    Some(fits.swap_remove(index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::account::Account;
    use crate::ledger::memory::MemoryLedger;
    use crate::ledger::{Ledger, RESERVATION_OPEN_MS};
    use crate::quota::{Limit, Used};

    const T0: Millis = 1_767_225_600_000;

    fn rows(csv: &str) -> Vec<Endpoint> {
        crate::endpoints::parse(csv, "endpoints.csv").expect("a good file")
    }

    /// Every row fits, with `rpm` used as given, in file order.
    fn fitting(rows: &[Endpoint], rpm_used: &[u64]) -> Vec<(usize, Standing)> {
        let mut accounts = Accounts::default();
        for (row, &n) in rows.iter().zip(rpm_used) {
            let mut used = Used::default();
            used.set(Limit::from_name("rpm").expect("rpm"), n);
            accounts.insert(
                &Ask::all(&row.id, T0),
                Account {
                    used,
                    ..Account::default()
                },
            );
        }
        rows.iter()
            .enumerate()
            .map(|(i, row)| (i, admit::assess(row, Request::new(0), T0, &accounts)))
            .collect()
    }

    fn picked(strategy: Strategy, rows: &[Endpoint], turn: Option<&str>, ticket: u64) -> usize {
        let group: Vec<&Endpoint> = rows.iter().collect();
        let fits = fitting(rows, &[5, 1, 3]);
        let how = Select {
            estimate: Estimate::default(),
            turn,
            ticket,
            medians: &[],
        };
        select(strategy, &group, fits, &how).expect("one fits").0
    }

    #[test]
    fn each_strategy_picks_among_the_fitting_of_a_group() {
        let rows = rows("provider,model,rpm,weight\np,a,10,1\np,b,10,3\np,c,10,1\n");
        assert_eq!(picked(Strategy::Order, &rows, None, 0), 0);
        // The most of its tightest limit left.
        assert_eq!(picked(Strategy::Spread, &rows, None, 0), 1);
        // After the last turn, wrapping.
        assert_eq!(picked(Strategy::RoundRobin, &rows, None, 0), 0);
        assert_eq!(picked(Strategy::RoundRobin, &rows, Some("p/a"), 0), 1);
        assert_eq!(picked(Strategy::RoundRobin, &rows, Some("p/c"), 0), 0);
        assert_eq!(picked(Strategy::RoundRobin, &rows, Some("gone"), 0), 0);
        // Tickets fall into the weights 1, 3, 1 in turn.
        let weighted: Vec<usize> = (0..6)
            .map(|ticket| picked(Strategy::Weighted, &rows, None, ticket))
            .collect();
        assert_eq!(weighted, [0, 1, 1, 1, 2, 0]);
        let group: Vec<&Endpoint> = rows.iter().collect();
        assert!(
            select(
                Strategy::Order,
                &group,
                Vec::new(),
                &Select {
                    estimate: Estimate::default(),
                    turn: None,
                    ticket: 0,
                    medians: &[],
                }
            )
            .is_none()
        );
    }

    #[test]
    fn a_pick_reserves_the_first_that_fits_by_priority_and_dates_what_is_full() {
        let rows = rows("provider,model,rpm,priority\np,low,5,low\np,full,1,high\np,next,1,high\n");
        let (candidates, never) = candidates(&rows, &[], &[], Request::new(0)).expect("some");
        assert!(never.is_empty());
        let ids: Vec<&str> = candidates.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["p/full", "p/next", "p/low"]);
        let mut memory = MemoryLedger::default();
        memory.clock.set(T0);
        let ledger: &mut dyn Ledger = &mut memory;
        let mut pick = |reserve| {
            ledger
                .write(|book, now| {
                    Ok(
                        match choose(
                            book,
                            &candidates,
                            Estimate::default(),
                            Strategy::Order,
                            reserve,
                            now,
                        )? {
                            Choice::Chosen { endpoint, lease } => {
                                Ok((endpoint.id.clone(), lease.is_some()))
                            }
                            Choice::Exhausted(blocked) => Err(blocked
                                .iter()
                                .map(|b| (b.endpoint.id.clone(), b.block.name(), b.frees_at - now))
                                .collect::<Vec<_>>()),
                        },
                    )
                })
                .expect("a step")
        };
        assert_eq!(pick(false), Ok(("p/full".to_owned(), false)), "a dry run");
        assert_eq!(pick(true), Ok(("p/full".to_owned(), true)));
        assert_eq!(pick(true), Ok(("p/next".to_owned(), true)));
        for _ in 0..5 {
            assert_eq!(pick(true), Ok(("p/low".to_owned(), true)));
        }
        let minute = 60_000;
        assert_eq!(
            pick(true),
            Err(vec![
                ("p/full".to_owned(), "rpm", minute),
                ("p/next".to_owned(), "rpm", minute),
                ("p/low".to_owned(), "rpm", minute),
            ])
        );
        assert!(RESERVATION_OPEN_MS > minute);
    }

    #[test]
    fn candidates_say_why_some_never_fit() {
        let rows = rows("provider,model,tpm\np,small,10\np,big,1000\np,off,0\n");
        let (candidates, never) = candidates(&rows, &[], &[], Request::new(100)).expect("one");
        assert_eq!(candidates.len(), 1);
        assert_eq!(never.len(), 2, "{never:?}");
        let err = candidates_error(&rows, &["p/small"]);
        assert!(err.contains("no endpoint can ever take"), "{err}");
        let err = candidates_error(&rows, &["nothing*"]);
        assert!(err.contains("no endpoint matches"), "{err}");
    }

    fn candidates_error(rows: &[Endpoint], only: &[&str]) -> String {
        let only: Vec<String> = only.iter().map(|s| (*s).to_owned()).collect();
        match candidates(rows, &only, &[], Request::new(100)) {
            Ok(_) => String::new(),
            Err(err) => err.to_string(),
        }
    }
}
