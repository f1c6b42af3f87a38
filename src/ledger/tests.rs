//! The same properties, run against the SQLite ledger, the Redis ledger (when redis-server
//! is installed) and the in-memory one: the windows agree with a plain sum over every
//! call, the ledgers answer alike, and admitting only what fits, at the time each step is
//! handed, never overfills a window, whatever order the clocks of the steps read in.
//!
//! A step's reads are promised the ledger as the step found it, so every write that a
//! later read depends on is a step of its own, as in the commands.

use proptest::prelude::*;

use super::memory::MemoryLedger;
use super::redis::{RedisLedger, test_server};
use super::sqlite::SqliteLedger;
use super::{
    Book, Departing, FURTHEST_AHEAD_MS, Ledger, RESERVATION_OPEN_MS, RETENTION_MS, Source,
    time_of_step,
};
use crate::anchor::UTC_MONTHS;
use crate::clock::{HOUR_MS, MINUTE_MS, Millis};
use crate::engine::account::{self, Ask, Tally, Totals};
use crate::quota::{self, CacheReads, Limit, Limits, Request, Window, shortfalls};

const T0: Millis = 1_767_225_600_000; // 2026-01-01T00:00:00Z

pub(crate) type Named = (&'static str, Box<dyn Ledger>);

/// A fresh ledger of each kind; the folder holds the SQLite file.
pub(crate) fn ledgers() -> (tempfile::TempDir, Vec<Named>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = SqliteLedger::open(&dir.path().join("usage.sqlite3")).expect("open");
    let mut ledgers: Vec<Named> = vec![
        ("sqlite", Box::new(sqlite)),
        ("memory", Box::new(MemoryLedger::default())),
    ];
    if let Some(url) = test_server::fresh_url() {
        ledgers.push((
            "redis",
            Box::new(RedisLedger::open(&url).expect("open redis")),
        ));
    }
    (dir, ledgers)
}

/// Everything of `limit` that leaves the window of "e" at `now`, `(at or minute, amount)`.
fn leaving(book: &dyn Book, limit: Limit, now: Millis) -> anyhow::Result<Vec<(Millis, u64)>> {
    let source = match limit.window {
        Window::Minute => Source::Calls {
            after: quota::counted_after(Window::Minute, now),
        },
        window => Source::Buckets {
            from: quota::first_counted_minute(window, now),
        },
    };
    let ask = Departing {
        endpoint: "e",
        source,
        weights: limit.unit.weights(crate::quota::CacheReads::Counted),
        enough: u64::MAX,
    };
    Ok(book.departures(&[ask])?.remove(0))
}

/// Runs `f` as one write step.
fn write<T>(
    ledger: &mut Box<dyn Ledger>,
    f: impl FnMut(&dyn Book, Millis) -> anyhow::Result<T>,
) -> T {
    ledger.as_mut().write(f).expect("a write step")
}

fn limit(name: &str) -> Limit {
    Limit::from_name(name).expect("a limit name")
}

/// What the ledger must report, summed the slow way from every call.
fn expected(calls: &[(Millis, Request)], limit: Limit, now: Millis, cache: CacheReads) -> u64 {
    calls
        .iter()
        .filter(|&&(at, _)| match limit.window {
            Window::Minute => at > quota::counted_after(Window::Minute, now),
            Window::Month => UTC_MONTHS.month_start(at) > UTC_MONTHS.previous_month_start(now),
            window => quota::minute_of(at) >= quota::first_counted_minute(window, now),
        })
        .map(|(_, usage)| usage.measured(limit.unit, cache))
        .sum()
}

#[test]
fn the_time_of_a_step_is_never_before_the_newest_entry() {
    for (name, mut ledger) in ledgers().1 {
        ledger
            .write(|book, _| account::add(book, "e", Request::new(1), 0, T0 + 5_000).map(|_| ()))
            .expect("add");
        ledger
            .write(|book, _| {
                assert_eq!(time_of_step(T0, book)?, T0 + 5_000, "{name}: clock behind");
                assert_eq!(time_of_step(T0 + 9_000, book)?, T0 + 9_000, "{name}: ahead");
                Ok(())
            })
            .expect("step");
    }
}

#[test]
fn a_clock_that_steps_back_does_not_take_the_ledger_back() {
    let mut memory = MemoryLedger::default();
    memory.clock.set(T0 + 10_000);
    let ledger: &mut dyn Ledger = &mut memory;
    let first = ledger
        .write(|book, now| account::add(book, "e", Request::new(1), 0, now).map(|_| now))
        .expect("add");
    assert_eq!(first, T0 + 10_000);
    memory.clock.set(T0);
    let ledger: &mut dyn Ledger = &mut memory;
    assert_eq!(ledger.read(|_, now| Ok(now)).expect("read"), T0 + 10_000);
}

#[test]
fn entries_stamped_after_now_still_count() {
    for (name, mut ledger) in ledgers().1 {
        write(&mut ledger, |book, _| {
            account::reserve(book, "e", Request::new(40), 0, T0 + 30_000)
        });
        write(&mut ledger, |book, _| {
            let used = account::account(book, "e", T0)?.used;
            assert_eq!(used.get(limit("rpm")), 1, "{name}");
            assert_eq!(used.get(limit("tph")), 40, "{name}");
            assert_eq!(account::account(book, "e", T0)?.open, 1, "{name}");
            assert!(
                account::account(book, "e", T0)?.oldest_open.is_some(),
                "{name}"
            );
            Ok(())
        });
    }
}

#[test]
fn settling_an_old_reservation_corrects_later_running_totals() {
    for (name, mut ledger) in ledgers().1 {
        write(&mut ledger, |book, _| {
            account::reserve(book, "e", Request::new(100), 0, T0)
        });
        write(&mut ledger, |book, _| {
            account::add(book, "e", Request::new(10), 0, T0 + 5 * MINUTE_MS)
        });
        write(&mut ledger, |book, _| {
            let entry = account::account(book, "e", T0 + 6 * MINUTE_MS)?
                .oldest_open
                .expect("open");
            let real = Request {
                requests: 2,
                input: 7,
                ..Request::default()
            };
            account::settle(book, &entry, real, 0, T0 + 6 * MINUTE_MS).map(|_| ())
        });
        write(&mut ledger, |book, _| {
            let used = account::account(book, "e", T0 + 6 * MINUTE_MS)?.used;
            assert_eq!(used.get(limit("tph")), 17, "{name}");
            assert_eq!(used.get(limit("rph")), 3, "{name}");
            // After the first minute's bucket leaves the hour, only the later call counts.
            let used = account::account(book, "e", T0 + HOUR_MS + MINUTE_MS - 1)?.used;
            assert_eq!(used.get(limit("tph")), 10, "{name}");
            Ok(())
        });
    }
}

#[test]
fn sums_saturate_instead_of_overflowing() {
    for (name, mut ledger) in ledgers().1 {
        let most = Request::new(i64::MAX as u64);
        if name == "redis" {
            // The server's counters are 64-bit integers: a count that could overflow them
            // in the middle of a transaction is refused before anything is written.
            let refused = ledger
                .as_mut()
                .write(|book, now| account::reserve(book, "e", most, 0, now).map(|_| ()));
            let err = refused.expect_err("refused");
            assert!(
                err.to_string()
                    .contains("more than the Redis ledger counts"),
                "{err}"
            );
            continue;
        }
        for _ in 0..3 {
            write(&mut ledger, |book, now| {
                account::reserve(book, "e", most, 0, now)
            });
        }
        write(&mut ledger, |book, now| {
            let used = account::account(book, "e", now)?.used;
            for window in ["tpm", "tph", "tpd"] {
                assert!(
                    used.get(limit(window)) >= i64::MAX as u64,
                    "{name} {window}"
                );
            }
            Ok(())
        });
    }
}

#[test]
fn sqlite_prunes_an_hour_of_expired_usage_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sqlite = SqliteLedger::open(&dir.path().join("usage.sqlite3")).expect("open");
    let count = |sqlite: &SqliteLedger| -> (i64, i64) {
        let conn = sqlite.connection();
        let n = conn
            .query_row("SELECT count(*) FROM usage", [], |r| r.get(0))
            .expect("count");
        let m = conn
            .query_row("SELECT count(*) FROM minute_totals", [], |r| r.get(0))
            .expect("count");
        (n, m)
    };
    let ledger: &mut dyn Ledger = &mut sqlite;
    ledger
        .write(|book, _| {
            account::add(book, "e", Request::new(1), 0, T0)?;
            account::add(book, "e", Request::new(1), 0, T0 + 2 * HOUR_MS)
        })
        .expect("add");
    let due = T0 + RETENTION_MS + HOUR_MS;
    ledger
        .write(|book, _| account::prune(book, due - 1))
        .expect("prune");
    assert_eq!(count(&sqlite), (2, 2), "not an hour's worth due yet");
    let ledger: &mut dyn Ledger = &mut sqlite;
    ledger
        .write(|book, _| account::prune(book, due))
        .expect("prune");
    assert_eq!(count(&sqlite), (1, 1));
    // Usage landing before the oldest bucket left continues its running totals.
    let ledger: &mut dyn Ledger = &mut sqlite;
    ledger
        .write(|book, _| {
            account::add(book, "e", Request::new(5), 0, T0 + HOUR_MS)?;
            let used = account::account(book, "e", T0 + 2 * HOUR_MS)?.used;
            assert_eq!(used.get(limit("tph")), 6);
            Ok(())
        })
        .expect("add before");
}

/// Applies `ops` to a ledger, a step each: (offset, requests, tokens, settle to 7 tokens in
/// a step of its own).
/// Reserves each call of `ops` at its offset from T0, settling those marked at what a
/// call of 7 input, 3 cached and 5 output tokens costing 11 uses; `calls` gets what each
/// counts in the end.
fn apply(
    ledger: &mut Box<dyn Ledger>,
    ops: &[(Millis, u64, u64, bool)],
    calls: &mut Vec<(Millis, Request)>,
) {
    for &(offset, requests, tokens, settle) in ops {
        let at = T0 + offset;
        let estimate = Request {
            requests,
            input: tokens,
            output: tokens / 3,
            cost: tokens * 1_000_001,
            ..Request::default()
        };
        let month = UTC_MONTHS.month_start(at);
        write(ledger, |book, _| {
            account::reserve(book, "e", estimate, month, at)
        });
        calls.push((at, estimate));
        if settle {
            let entry = write(ledger, |book, _| {
                let entry = account::account(book, "e", at)?
                    .oldest_open
                    .expect("one was just reserved");
                let real = Request {
                    requests: entry.usage.requests,
                    input: 7,
                    cached: 3,
                    output: 5,
                    cost: 11,
                };
                account::settle(book, &entry, real, month, at)?;
                Ok((entry, real))
            });
            let (entry, real) = entry;
            let settled = calls
                .iter_mut()
                .rev()
                .find(|c| c.0 == entry.at && c.1 == entry.usage)
                .expect("the settled call is one of ours");
            settled.1 = real;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Running totals, settles included, agree with a plain sum over every call, and the
    /// two ledgers agree on every question a decision asks.
    #[test]
    fn both_ledgers_agree_with_a_plain_sum(
        ops in prop::collection::vec((0..3 * HOUR_MS, 0u64..3, 0u64..500, any::<bool>()), 1..25),
        probes in prop::collection::vec(0..4 * HOUR_MS, 1..6),
        busy in any::<bool>(),
    ) {
        // Busy: every call within three minutes, probed around the newest, where the minute
        // window holds many of them.
        let mut ops = ops;
        let mut probes = probes;
        if busy {
            for op in &mut ops {
                op.0 %= 3 * MINUTE_MS;
            }
        }
        let newest = T0 + ops.iter().map(|op| op.0).max().unwrap_or(0);
        if busy {
            for probe in &mut probes {
                *probe = newest - T0 - MINUTE_MS + *probe % (2 * MINUTE_MS);
            }
        }
        let (_dir, mut all) = ledgers();
        let mut answers = Vec::new();
        for (name, ledger) in &mut all {
            let mut calls = Vec::new();
            apply(ledger, &ops, &mut calls);
            let seen = ledger.read(|book, _| {
                let mut seen = Vec::new();
                for &probe in &probes {
                    let now = T0 + probe;
                    // A shared ledger keeps a call one by one for two minutes after the
                    // newest: a minute window that ended earlier is not read any more.
                    let minute_kept = now >= newest - MINUTE_MS;
                    let used = account::account(book, "e", now)?.used;
                    let free = account::read(book, &[Ask {
                        cache: CacheReads::Free,
                        ..Ask::all("e", now)
                    }], now)?.remove(0).used;
                    for limit in Limit::ALL {
                        if limit.window == Window::Minute && !minute_kept {
                            continue;
                        }
                        assert_eq!(used.get(limit), expected(&calls, limit, now, CacheReads::Counted),
                            "{name}: {} at +{probe}", limit.name());
                        assert_eq!(free.get(limit), expected(&calls, limit, now, CacheReads::Free),
                            "{name}: {} at +{probe}, cache reads free", limit.name());
                        seen.push(account::frees_at(
                            book,
                            &[(vec![("e", crate::quota::CacheReads::Counted)], limit, 3)],
                            now,
                        )?[0]);
                        // What leaves, and when; a ledger may leave out what frees nothing.
                        let departures: Vec<(Millis, u64)> = leaving(book, limit, now)?
                            .into_iter()
                            .filter(|&(_, n)| n > 0)
                            .collect();
                        seen.push(Some(departures.len() as Millis));
                        seen.extend(departures.into_iter().map(|(at, n)| Some(at + n as Millis)));
                    }
                    seen.push(Some(account::account(book, "e", now)?.open as Millis));
                    let totals = account::totals(book, &["e"], now)?[0];
                    seen.push(Some(totals.usage.requests as Millis));
                    seen.extend(totals.usage.measures().map(|n| Some(n as Millis)));
                    for hour in book.history("e", 0)? {
                        seen.push(Some(hour.hour));
                        seen.extend(hour.usage.measures().map(|n| Some(n as Millis)));
                    }
                    seen.push(account::account(book, "e", now)?.oldest_open.map(|e| e.at + RESERVATION_OPEN_MS));
                    seen.push(account::account(book, "e", now)?.oldest_open.map(|e| e.at));
                }
                Ok(seen)
            }).expect("read");
            answers.push(seen);
        }
        for (i, seen) in answers.iter().enumerate().skip(1) {
            prop_assert_eq!(&answers[0], seen, "{} and {} disagree", all[0].0, all[i].0);
        }
    }

    /// Steps whose clocks read in any order (within the 5 minutes a step follows the newest
    /// entry), each admitting only what fits at the time it is handed, never let a rolling
    /// window hold more than its limit, and stamp in order.
    #[test]
    fn no_window_overfills_whatever_order_the_clocks_read(
        clocks in prop::collection::vec(0..FURTHEST_AHEAD_MS, 1..80),
        sizes in prop::collection::vec(0u64..40, 80),
    ) {
        let clocks: Vec<(Millis, Millis)> = clocks.iter().map(|&c| (c, c)).collect();
        overfill_and_order(&clocks, &sizes, true)?;
    }

    /// Entries far ahead of the clock (a what-if with `LLM_ROTATE_NOW` in the future, a
    /// clock that jumped) among steps on a clock that goes on: a step behind the newest
    /// entry by more than 5 minutes keeps to its clock, so stamps go back, but what is
    /// ahead still counts and no rolling window holds more than its limit. (The clock goes
    /// on: a shared ledger keeps a call one by one for two minutes after the step that
    /// wrote, so a step back in time further than that is a what-if in the past, which
    /// may not see that minute whole.)
    #[test]
    fn no_window_overfills_when_a_clock_is_far_behind_the_newest_entry(
        clocks in prop::collection::vec(0..30 * MINUTE_MS, 1..80),
        ahead in prop::collection::vec(prop::option::weighted(0.2, 6 * MINUTE_MS..60 * MINUTE_MS), 80),
        sizes in prop::collection::vec(0u64..40, 80),
    ) {
        let mut clocks = clocks;
        clocks.sort_unstable();
        let clocks: Vec<(Millis, Millis)> = clocks
            .iter()
            .zip(ahead)
            .map(|(&clock, ahead)| (clock, clock + ahead.unwrap_or(0)))
            .collect();
        overfill_and_order(&clocks, &sizes, false)?;
    }
}

/// Runs one step per `(present, clock)` on every ledger, the step's clock reading `clock`
/// (ahead of the present for a what-if) and a server's the present; checks the windows,
/// and the order of the stamps when `in_order`.
fn overfill_and_order(
    clocks: &[(Millis, Millis)],
    sizes: &[u64],
    in_order: bool,
) -> Result<(), proptest::test_runner::TestCaseError> {
    let mut limits = Limits::default();
    limits.set(limit("rpm"), Some(5));
    limits.set(limit("tpm"), Some(100));
    limits.set(limit("rph"), Some(40));
    let (_dir, mut all) = ledgers();
    for (name, ledger) in &mut all {
        let mut admitted: Vec<(Millis, u64)> = Vec::new();
        for (&(present, clock), &tokens) in clocks.iter().zip(sizes) {
            let request = Request::new(tokens);
            ledger.set_server_clock(T0 + present);
            ledger
                .write(|book, _| {
                    let now = time_of_step(T0 + clock, book)?;
                    if shortfalls(&limits, &account::account(book, "e", now)?.used, request)
                        .is_empty()
                    {
                        account::reserve(book, "e", request, 0, now)?;
                        admitted.push((now, tokens));
                    }
                    Ok(())
                })
                .expect("pick");
        }
        if in_order {
            prop_assert!(
                admitted.windows(2).all(|w| w[0].0 <= w[1].0),
                "{name}: out of order"
            );
        }
        for &(t, _) in &admitted {
            let within = |w: Millis| admitted.iter().filter(move |&&(a, _)| a > t - w && a <= t);
            prop_assert!(within(MINUTE_MS).count() <= 5, "{name}");
            prop_assert!(
                within(MINUTE_MS).map(|&(_, k)| k).sum::<u64>() <= 100,
                "{name}"
            );
            prop_assert!(within(HOUR_MS).count() <= 40, "{name}");
        }
    }
    Ok(())
}

#[test]
fn counters_count_what_is_final_and_never_drop_with_pruning() {
    for (name, mut ledger) in ledgers().1 {
        let expired = T0 + RESERVATION_OPEN_MS;
        write(&mut ledger, |book, _| {
            account::reserve(book, "e", Request::new(100), 0, T0)
        });
        write(&mut ledger, |book, _| {
            account::add(book, "e", Request::new(5), 0, T0).map(|_| ())
        });
        write(&mut ledger, |book, _| {
            let totals = account::totals(book, &["e"], T0)?[0];
            assert_eq!(
                (totals.usage.requests, totals.usage.tokens()),
                (2, 5),
                "{name}: open"
            );
            assert_eq!(
                account::totals(book, &["e"], expired)?[0].usage.tokens(),
                105,
                "{name}: expired"
            );
            Ok(())
        });
        // Settling below the estimate after it counted does not lower the counter.
        write(&mut ledger, |book, _| {
            let lease = account::account(book, "e", T0)?
                .oldest_open
                .expect("open")
                .lease;
            let entry = book.by_lease(&lease)?.expect("by lease");
            let real = Request {
                requests: 1,
                input: 40,
                ..Request::default()
            };
            account::settle(book, &entry, real, 0, expired).map(|_| ())
        });
        write(&mut ledger, |book, _| {
            assert_eq!(
                account::totals(book, &["e"], expired)?[0].usage.tokens(),
                105,
                "{name}: settled"
            );
            account::count_outcome(book, "e", Tally::RateLimited)?;
            account::count_outcome(book, "e", Tally::Failed)
        });
        write(&mut ledger, |book, _| {
            account::count_outcome(book, "e", Tally::Failed)
        });
        // An unsettled reservation pruned away keeps counting at its estimate.
        write(&mut ledger, |book, _| {
            account::reserve(book, "e", Request::new(1_000), 0, T0 + HOUR_MS)
        });
        let later = T0 + RETENTION_MS + 3 * HOUR_MS;
        write(&mut ledger, |book, _| account::prune(book, later));
        write(&mut ledger, |book, _| {
            let totals = account::totals(book, &["e"], later)?[0];
            let expected = Totals {
                usage: Request {
                    requests: 3,
                    input: 1_105,
                    ..Request::default()
                },
                rate_limited: 1,
                failed: 2,
            };
            assert_eq!(totals, expected, "{name}");
            assert_eq!(
                account::account(book, "e", later)?.used.get(limit("rpd")),
                0,
                "{name}: pruned"
            );
            let hours: Vec<(i64, u64, u64)> = book
                .history("e", 0)?
                .iter()
                .map(|h| (h.hour - T0 / HOUR_MS, h.usage.requests, h.usage.input))
                .collect();
            assert_eq!(hours, [(0, 2, 45), (1, 1, 1_000)], "{name}: history");
            Ok(())
        });
        write(&mut ledger, |book, _| book.forget("e").map(|_| ()));
        write(&mut ledger, |book, _| {
            assert_eq!(
                account::totals(book, &["e"], later)?[0],
                Totals::default(),
                "{name}: reset"
            );
            assert_eq!(book.history("e", 0)?.len(), 2, "{name}: history stays");
            Ok(())
        });
    }
}

#[test]
fn reservations_stay_open_for_fifteen_minutes() {
    for (name, mut ledger) in ledgers().1 {
        write(&mut ledger, |book, _| {
            account::reserve(book, "e", Request::new(1), 0, T0)
        });
        write(&mut ledger, |book, _| {
            let last = T0 + RESERVATION_OPEN_MS - 1;
            assert_eq!(account::account(book, "e", last)?.open, 1, "{name}");
            assert_eq!(account::account(book, "e", last + 1)?.open, 0, "{name}");
            assert_eq!(
                account::account(book, "e", T0)?
                    .oldest_open
                    .map(|e| e.at + RESERVATION_OPEN_MS),
                Some(T0 + RESERVATION_OPEN_MS)
            );
            Ok(())
        });
    }
}

#[test]
fn usage_written_after_a_reset_in_the_same_step_counts_from_nothing() {
    for (name, mut ledger) in ledgers().1 {
        write(&mut ledger, |book, _| {
            account::add(book, "e", Request::new(30), 0, T0 - 5_000).map(|_| ())
        });
        write(&mut ledger, |book, _| {
            account::add(book, "e", Request::new(20), 0, T0 - 1_000)?;
            book.forget("e")?;
            account::add(book, "e", Request::new(7), 0, T0).map(|_| ())
        });
        let used = write(&mut ledger, |book, _| {
            Ok(account::account(book, "e", T0)?.used)
        });
        for window in ["tpm", "tph", "tpd"] {
            assert_eq!(used.get(limit(window)), 7, "{name} {window}");
        }
    }
}
