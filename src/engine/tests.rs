//! Properties of the decisions over every ledger: when a standing says an endpoint is
//! blocked until T, it is at T − 1 ms and is not for that reason at T; and the ledgers
//! agree on everything a step can read after any mix of picks, records, 429s, reports,
//! round-robin turns, resets and pruning.

use proptest::prelude::*;

use super::account::{self, Ask};
use super::admit::{self, Verdict};
use super::choose::{self, Strategy as Picking};
use super::settle::{self, Record, Said};
use crate::clock::{MINUTE_MS, Millis, SECOND_MS};
use crate::endpoints::{self, Endpoint};
use crate::estimate::Estimate;
use crate::ledger::tests::ledgers;
use crate::ledger::{Book, FirstRead, Ledger, Parts};
use crate::quota::{CacheReads, Request};

const T0: Millis = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// Rows with every kind of block: windows, a pool, pacing, a cap on calls in flight, a
/// calendar day, and Groq's headers for reports.
const ROWS: &str =
    "provider,model,rpm,tpm,rph,rpd,concurrency,pace,day_reset,pool,pool_rpm,pool_tph
groq,a,3,300,8,,2,,,shared,4,900
groq,b,2,,,5,,smooth,,shared,,
groq,c,4,200,,6,,,07:30 Asia/Kolkata,,,
";

/// One thing done to the ledger at `offset` ms after the previous one.
#[derive(Clone, Debug)]
enum Op {
    Pick {
        row: usize,
        tokens: u64,
    },
    RoundRobin,
    Add {
        row: usize,
        tokens: u64,
    },
    /// Settles the row's oldest reservation: by the endpoint, or by its lease (naming the
    /// endpoint too, or not).
    Settle {
        row: usize,
        tokens: u64,
        lease: Option<bool>,
    },
    RateLimited {
        row: usize,
    },
    Report {
        row: usize,
        remaining: u64,
        reset_s: u64,
    },
    Reset {
        row: usize,
    },
    Later {
        hours: u64,
    },
}

fn op() -> impl Strategy<Value = (Millis, Op)> {
    let row = 0usize..3;
    let op = prop_oneof![
        4 => (row.clone(), 0u64..150).prop_map(|(row, tokens)| Op::Pick { row, tokens }),
        1 => Just(Op::RoundRobin),
        2 => (row.clone(), 0u64..150).prop_map(|(row, tokens)| Op::Add { row, tokens }),
        2 => (row.clone(), 0u64..150, prop::option::of(any::<bool>()))
            .prop_map(|(row, tokens, lease)| Op::Settle { row, tokens, lease }),
        1 => row.clone().prop_map(|row| Op::RateLimited { row }),
        1 => (row.clone(), 0u64..6, 1u64..600)
            .prop_map(|(row, remaining, reset_s)| Op::Report { row, remaining, reset_s }),
        1 => row.prop_map(|row| Op::Reset { row }),
        1 => (1u64..30).prop_map(|hours| Op::Later { hours }),
    ];
    (0..40 * SECOND_MS, op)
}

fn rows() -> Vec<Endpoint> {
    endpoints::parse(ROWS, "endpoints.csv").expect("the rows")
}

/// Runs `op` at `at` through the same code the commands run.
fn apply(ledger: &mut dyn Ledger, rows: &[Endpoint], at: Millis, op: &Op) {
    let id = |row: usize| rows[row].id.as_str();
    let record = |ledger: &mut dyn Ledger, call: Record| {
        ledger.expect(&settle::first_read(&call));
        ledger
            .write(|book, _| settle::record(book, &call, rows, at))
            .map(|_| ())
    };
    let base = Record {
        lease: None,
        id: None,
        add: false,
        requests: None,
        usage: None,
        latency_ms: None,
        said: Said::Nothing,
        response: None,
    };
    // The ledger's own time is the op's, so that a Redis ledger's first look reads what the
    // step then asks (its standings, for the span the step asks), as on the real clock.
    ledger.set_server_clock(at);
    let done = match op {
        Op::Pick { row, tokens } => {
            ledger.expect(&choose::expected(&[&rows[*row]], Picking::Order));
            ledger.write(|book, _| {
                choose::choose(
                    book,
                    &[&rows[*row]],
                    Estimate {
                        input: *tokens,
                        output: 0,
                    },
                    Picking::Order,
                    true,
                    at,
                )
                .map(|_| ())
            })
        }
        Op::RoundRobin => {
            let all: Vec<&Endpoint> = rows.iter().collect();
            ledger.expect(&choose::expected(&all, Picking::RoundRobin));
            ledger.write(|book, _| {
                choose::choose(
                    book,
                    &all,
                    Estimate::default(),
                    Picking::RoundRobin,
                    true,
                    at,
                )
                .map(|_| ())
            })
        }
        Op::Add { row, tokens } => record(
            ledger,
            Record {
                id: Some(id(*row)),
                add: true,
                usage: Some(crate::response::Usage {
                    input: *tokens,
                    ..Default::default()
                }),
                latency_ms: None,
                ..base
            },
        ),
        Op::Settle { row, tokens, lease } => {
            // A lease is each ledger's own: the oldest open reservation's, as this one has it.
            let oldest = match lease {
                Some(_) => ledger.read(|book, _| {
                    let ask = Ask {
                        endpoint: id(*row),
                        day_start: None,
                        month_after: 0,
                        cache: CacheReads::Counted,
                        parts: Parts {
                            in_flight: true,
                            ..Parts::default()
                        },
                    };
                    let account = account::read(book, &[ask], at)?.remove(0);
                    Ok(account.oldest_open.map(|entry| entry.lease))
                }),
                None => Ok(None),
            };
            let oldest = oldest.expect("a read");
            record(
                ledger,
                Record {
                    lease: oldest.as_deref(),
                    id: (oldest.is_none() || *lease == Some(true)).then(|| id(*row)),
                    usage: Some(crate::response::Usage {
                        input: *tokens,
                        ..Default::default()
                    }),
                    latency_ms: None,
                    ..base
                },
            )
        }
        Op::RateLimited { row } => record(
            ledger,
            Record {
                id: Some(id(*row)),
                said: Said::RateLimited { retry_after: None },
                ..base
            },
        ),
        Op::Report {
            row,
            remaining,
            reset_s,
        } => {
            let dump = crate::response::Response::parse(&format!(
                "HTTP/1.1 200 OK\r\nx-ratelimit-limit-requests: 9\r\n\
                 x-ratelimit-remaining-requests: {remaining}\r\nx-ratelimit-reset-requests: {reset_s}s\r\n\r\n"
            ));
            record(
                ledger,
                Record {
                    id: Some(id(*row)),
                    add: true,
                    response: Some(&dump),
                    ..base
                },
            )
        }
        Op::Reset { row } => ledger.write(|book, _| book.forget(id(*row)).map(|_| ())),
        Op::Later { .. } => ledger.write(|book, _| account::prune(book, at)),
    };
    done.expect("a step");
}

/// The instant of each op: offsets add up, and `Later` jumps hours ahead.
fn timeline(ops: &[(Millis, Op)]) -> Vec<Millis> {
    let mut at = T0;
    ops.iter()
        .map(|(offset, op)| {
            at += offset;
            if let Op::Later { hours } = op {
                at += *hours as Millis * 60 * MINUTE_MS;
            }
            at
        })
        .collect()
}

/// Each row's verdict at `now`, dated.
fn verdicts(book: &dyn Book, rows: &[Endpoint], now: Millis) -> anyhow::Result<Vec<Verdict>> {
    let rows: Vec<&Endpoint> = rows.iter().collect();
    let (standings, _) = admit::assess_all(book, &rows, Request::new(0), now, Parts::ALL)?;
    Ok(standings.into_iter().map(|s| s.verdict).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// An endpoint blocked until T is still blocked at T − 1 ms, and not for the same
    /// reason at T: windows, pools, reports, cooldowns, probes, pacing and calendar days.
    #[test]
    fn blocked_until_t_means_blocked_just_before_and_not_for_that_at_t(
        ops in prop::collection::vec(op(), 1..40),
        probe in 0..20 * MINUTE_MS,
    ) {
        let rows = rows();
        let times = timeline(&ops);
        let (_dir, mut all) = ledgers();
        for (name, ledger) in &mut all {
            for ((_, op), &at) in ops.iter().zip(&times) {
                apply(ledger.as_mut(), &rows, at, op);
            }
            let now = times.last().copied().unwrap_or(T0) + probe;
            let (before, just_before, at_t) = ledger.read(|book, _| {
                let before = verdicts(book, &rows, now)?;
                let mut just_before = Vec::new();
                let mut at_t = Vec::new();
                for verdict in &before {
                    if let Verdict::Blocked { frees_at, .. } = *verdict {
                        just_before.push(verdicts(book, &rows, (frees_at - 1).max(now))?);
                        at_t.push(verdicts(book, &rows, frees_at)?);
                    } else {
                        just_before.push(Vec::new());
                        at_t.push(Vec::new());
                    }
                }
                Ok((before, just_before, at_t))
            }).expect("read");
            for (i, verdict) in before.iter().enumerate() {
                let Verdict::Blocked { block, frees_at } = *verdict else { continue };
                prop_assert!(frees_at >= now, "{name}: row {i} frees in the past: {verdict:?}");
                prop_assert!(
                    matches!(just_before[i][i], Verdict::Blocked { .. }),
                    "{name}: row {i} {verdict:?} at {now}, but at T-1 {:?}", just_before[i][i]
                );
                let later = at_t[i][i];
                prop_assert!(
                    !matches!(later, Verdict::Blocked { block: b, .. } if b == block),
                    "{name}: row {i} {verdict:?} at {now}, and at T {later:?}"
                );
            }
        }
    }

    /// After any mix of steps, the ledgers agree on every account, history, listing and
    /// turn (leases apart, which are random).
    #[test]
    fn the_ledgers_agree_on_everything_a_step_reads(
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let rows = rows();
        let times = timeline(&ops);
        let (_dir, mut all) = ledgers();
        let mut seen = Vec::new();
        for (name, ledger) in &mut all {
            for ((_, op), &at) in ops.iter().zip(&times) {
                apply(ledger.as_mut(), &rows, at, op);
            }
            let now = times.last().copied().unwrap_or(T0);
            ledger.set_server_clock(now);
            let ids: Vec<&str> = rows.iter().map(|e| e.id.as_str()).collect();
            ledger.expect(&FirstRead::of_endpoints(&ids));
            let read = ledger.read(|book, _| {
                let all: Vec<&Endpoint> = rows.iter().collect();
                let asks: Vec<Ask<'_>> = admit::asks(&all, now, Parts::ALL);
                let mut accounts = account::read(book, &asks, now)?;
                for a in &mut accounts {
                    if let Some(e) = &mut a.oldest_open {
                        e.lease.clear();
                    }
                }
                let ids: Vec<&str> = rows.iter().map(|e| e.id.as_str()).collect();
                let totals = account::totals(book, &ids, now)?;
                let history: Vec<_> = rows
                    .iter()
                    .map(|e| book.history(&e.id, 0))
                    .collect::<anyhow::Result<_>>()?;
                Ok(format!(
                    "{accounts:?}\n{totals:?}\n{history:?}\n{:?}\n{:?}\n{:?}\n{:?}",
                    book.endpoints()?,
                    book.endpoints_with_history()?,
                    book.last_turn()?,
                    verdicts(book, &rows, now)?,
                ))
            }).expect("read");
            seen.push((*name, read));
        }
        for (name, read) in &seen[1..] {
            prop_assert_eq!(&seen[0].1, read, "{} and {} disagree", seen[0].0, name);
        }
    }
}
