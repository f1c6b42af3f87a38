//! Recording a call: settle the reservation it was made under, or add it as new usage;
//! then learn from how it went (a 429, a failure, the provider's rate-limit headers). Plain
//! code over the ledger's book and the `now` of its step, so that Retry-After and the
//! provider's resets are measured from the moment the call was recorded.

use anyhow::{Context as _, Result, bail};

use super::account::{self, Ask, Tally};
use super::admit;
use crate::anchor::UTC_MONTHS;
use crate::clock::Millis;
use crate::cooldown::{self, Outcome};
use crate::duration::parse_retry_after;
use crate::endpoints::{Endpoint, shown};
use crate::ledger::{Book, Entry, FirstRead, Ledger, Parts};
use crate::quota::{CacheReads, Request};
use crate::response::{Dialect, Response, Told, Usage, Went};

/// How the caller says the call went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Said<'a> {
    /// Nothing beyond the usage: the response decides (a success without one).
    Nothing,
    /// Refused with 429; the wait the provider asked for, as written (seconds, a duration
    /// or an HTTP date), when given.
    RateLimited {
        retry_after: Option<&'a str>,
    },
    Failed,
    /// The call was cut short (a signal, or it never started): settle the usage and leave
    /// the cooldown as it was.
    Interrupted,
}

/// One `record`: which call, what it used, and how it went.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// The reservation's lease; with it, `id` is only checked against it.
    pub lease: Option<&'a str>,
    pub id: Option<&'a str>,
    /// A new call even when a reservation of `id` is open.
    pub add: bool,
    pub requests: Option<u64>,
    /// The tokens used, by kind; `None` keeps the estimate (or 0 for a call refused).
    pub usage: Option<Usage>,
    /// How long the call took, kept when it succeeded.
    pub latency_ms: Option<u64>,
    pub said: Said<'a>,
    /// The response's header dump, parsed before the step.
    pub response: Option<&'a Response>,
}

/// Records the call at `now` in a write step; returns notes about headers it could not use.
pub fn record(
    book: &dyn Book,
    call: &Record,
    endpoints: &[Endpoint],
    now: Millis,
) -> Result<Vec<String>> {
    account::prune(book, now)?;
    // Every read comes before the first write: a ledger across a network reads what the
    // step found, not what it has written.
    let (endpoint, leased) = which(book, call)?;
    let row = endpoints.iter().find(|e| e.id == endpoint);
    // The oldest reservation when the call names none; the counters when headers come,
    // for the report to count from.
    let ask = Ask {
        endpoint: &endpoint,
        day_start: None,
        month_after: UTC_MONTHS.previous_month_start(now),
        cache: row.map_or(CacheReads::Counted, |r| r.cache_reads),
        parts: Parts {
            in_flight: leased.is_none() && !call.add,
            last_call: false,
            counters: call.response.is_some(),
            months: false,
        },
    };
    let before = account::read(book, &[ask], now)?.remove(0);
    // A note that every call of the endpoint would repeat is said once per ledger.
    let once = match (call.response, row) {
        (Some(response), Some(row)) => match unknown_dialect(row, response) {
            Some(note) if !book.said_before(&note)? => Some(note),
            _ => None,
        },
        _ => None,
    };
    let reservation = match (leased, call.add) {
        (Some(entry), _) => Some(entry),
        // With only an id, the oldest reservation still open is the one settled.
        (None, false) => before.oldest_open.clone(),
        (None, true) => None,
    };
    // A call the provider refused used no tokens, unless the caller says otherwise.
    let refused = match call.said {
        Said::RateLimited { .. } => true,
        Said::Nothing => call.response.is_some_and(Response::refused),
        Said::Failed | Said::Interrupted => false,
    };
    // What the call used, priced at its row's prices: a refused call costs nothing.
    let used = |requests: u64, usage: Usage| {
        let used = Request {
            requests,
            input: usage.input,
            cached: usage.cached,
            output: usage.output,
            cost: 0,
        };
        match (refused && call.usage.is_none(), row) {
            (false, Some(row)) => row.prices.priced(used),
            _ => used,
        }
    };
    let zero = refused.then_some(Usage::default());
    let change = match reservation {
        Some(entry) => {
            let requests = call.requests.unwrap_or(entry.usage.requests);
            let real = match call.usage.or(zero) {
                Some(usage) => used(requests, usage),
                None => Request {
                    requests,
                    ..entry.usage
                },
            };
            let month = admit::month_of(row, entry.at);
            account::settle(book, &entry, real, month, now)?
        }
        None => {
            let usage = used(call.requests.unwrap_or(1), call.usage.unwrap_or_default());
            account::add(book, &endpoint, usage, admit::month_of(row, now), now)?
        }
    };
    // The provider's report counts from the usage that includes this call.
    let running = account::after(before.running, change);
    let told = match (call.response, row) {
        (Some(response), Some(row)) => {
            let mut told = read_headers(book, row, response, running, now)?;
            if let Some(note) = once {
                book.set_said(&note)?;
                told.notes.insert(0, note);
            }
            Some(told)
        }
        (Some(_), None) => Some(Told {
            notes: vec![format!(
                "{endpoint} is not in the endpoints file; headers ignored"
            )],
            ..Told::default()
        }),
        (None, _) => None,
    };
    let went = call.response.and_then(Response::went);
    let asked = told.as_ref().and_then(|told| told.retry_after);
    let outcome = outcome(call.said, went, asked, now)?;
    if let (Some(Outcome::Success), Some(ms)) = (&outcome, call.latency_ms) {
        book.add_latency(&endpoint, now, ms)?;
    }
    if let Some(outcome) = outcome {
        match outcome {
            Outcome::RateLimited { .. } => {
                account::count_outcome(book, &endpoint, Tally::RateLimited)?;
            }
            Outcome::Failed => account::count_outcome(book, &endpoint, Tally::Failed)?,
            Outcome::Success => {}
        }
        let next = cooldown::after(before.cooldown.as_ref(), outcome, now);
        if next != before.cooldown {
            book.set_cooldown(&endpoint, next.as_ref())?;
        }
    }
    Ok(told.map(|told| told.notes).unwrap_or_default())
}

/// Records the call in a write step of `ledger`, told first what the step reads.
pub fn record_in(
    ledger: &mut dyn Ledger,
    call: &Record,
    endpoints: &[Endpoint],
) -> Result<Vec<String>> {
    ledger.expect(&first_read(call));
    ledger.write(|book, now| record(book, call, endpoints, now))
}

/// What [`record`] reads first, for [`crate::ledger::Ledger::expect`]: the reservation the
/// lease names, and the account of the endpoint the call names.
pub fn first_read(call: &Record) -> FirstRead {
    FirstRead {
        endpoints: call.id.iter().map(|&id| id.to_owned()).collect(),
        leases: call.lease.iter().map(|&lease| lease.to_owned()).collect(),
    }
}

/// The endpoint the call names, and the reservation its lease names, if it has one.
fn which(book: &dyn Book, call: &Record) -> Result<(String, Option<Entry>)> {
    let Some(lease) = call.lease else {
        let id = call.id.context("record needs an endpoint id or --lease")?;
        return Ok((id.to_owned(), None));
    };
    let entry = book.by_lease(lease)?.with_context(|| {
        format!(
            "unknown lease {}: mistyped, reset, or older than a day",
            shown(lease)
        )
    })?;
    if let Some(id) = call.id.filter(|id| *id != entry.endpoint) {
        bail!(
            "lease {} belongs to {}, not {}",
            shown(lease),
            entry.endpoint,
            shown(id)
        );
    }
    if !entry.open {
        bail!("lease {} was already settled", shown(lease));
    }
    Ok((entry.endpoint.clone(), Some(entry)))
}

/// How the call went: as the caller says, else as its response shows ([`Went`]). An
/// explicit Retry-After wins over the one the response asked for (`asked`, an instant).
fn outcome(
    said: Said,
    went: Option<Went>,
    asked: Option<Millis>,
    now: Millis,
) -> Result<Option<Outcome>> {
    let asked = asked.map(|at| (at - now).max(0));
    Ok(Some(match said {
        Said::Interrupted => return Ok(None),
        Said::Failed => Outcome::Failed,
        Said::RateLimited { retry_after } => {
            let given = retry_after
                .map(|text| parse_retry_after(text).map_err(anyhow::Error::msg))
                .transpose()?;
            Outcome::RateLimited {
                retry_after: given.map(|later| later.wait_from(now)).or(asked),
            }
        }
        Said::Nothing => match went {
            Some(Went::Refused) => Outcome::RateLimited { retry_after: asked },
            Some(Went::Failed) => Outcome::Failed,
            Some(Went::Success) | None => Outcome::Success,
        },
    }))
}

/// The dialect an endpoint's rate-limit headers are read in: its `headers` column, else
/// its provider's.
fn dialect_of(endpoint: &Endpoint) -> Option<Dialect> {
    match endpoint.headers.as_deref() {
        Some(name) => Dialect::from_name(name),
        None => Dialect::for_provider(&endpoint.provider),
    }
}

/// The note for rate-limit headers that no known dialect reads. Retry-After and the status
/// mean the same everywhere; the limits do not.
fn unknown_dialect(endpoint: &Endpoint, response: &Response) -> Option<String> {
    if dialect_of(endpoint).is_some() || !response.has_limits() {
        return None;
    }
    Some(match endpoint.headers.as_deref() {
        Some(name) => format!(
            "{}: unknown headers dialect {name:?}; rate-limit headers ignored (use openai, groq, anthropic or cerebras); said once",
            endpoint.id
        ),
        None => format!(
            "{}: no known headers dialect for provider {:?}; rate-limit headers ignored (add a headers column: openai, groq, anthropic or cerebras); said once",
            endpoint.id, endpoint.provider
        ),
    })
}

/// Takes the provider's word on each limit its headers report. Usage recorded from now on
/// counts against what it said remains.
fn read_headers(
    book: &dyn Book,
    endpoint: &Endpoint,
    response: &Response,
    running: Request,
    now: Millis,
) -> Result<Told> {
    let dialect = dialect_of(endpoint);
    let told = response.at(dialect, now);
    for reading in &told.readings {
        account::take_report(book, &endpoint.id, reading, running)?;
    }
    Ok(told)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SECOND_MS;
    use crate::engine::account;
    use crate::ledger::Ledger;
    use crate::ledger::memory::MemoryLedger;

    const T0: Millis = 1_767_225_600_000;

    fn call<'a>() -> Record<'a> {
        Record {
            lease: None,
            id: Some("groq/m"),
            add: false,
            requests: None,
            usage: None,
            latency_ms: None,
            said: Said::Nothing,
            response: None,
        }
    }

    #[test]
    fn how_a_call_went_is_what_the_caller_says_else_what_the_response_shows() {
        let how = |said: Said, dump: Option<&str>| {
            let response = dump.map(Response::parse);
            let went = response.as_ref().and_then(Response::went);
            let asked = response.and_then(|r| r.at(None, T0).retry_after);
            outcome(said, went, asked, T0)
        };
        let limited = |seconds: i64| {
            Some(Outcome::RateLimited {
                retry_after: Some(seconds * SECOND_MS),
            })
        };
        let refused = "HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\n\r\n";
        let cases = [
            (Said::Nothing, None, Some(Outcome::Success)),
            (Said::Interrupted, Some(refused), None),
            (Said::Failed, None, Some(Outcome::Failed)),
            (Said::Failed, Some("HTTP/2 200\r\n"), Some(Outcome::Failed)),
            (Said::Nothing, Some(refused), limited(7)),
            (
                Said::RateLimited {
                    retry_after: Some("30"),
                },
                Some(refused),
                limited(30),
            ),
            // Every status reads the same for every caller: a 503 with a Retry-After is a
            // refusal, any other non-2xx a failure, and a 2xx's Retry-After means nothing.
            (
                Said::Nothing,
                Some("HTTP/2 503\nretry-after: 20\n"),
                limited(20),
            ),
            (Said::Nothing, Some("retry-after: 4\n"), limited(4)),
            (Said::Nothing, Some("HTTP/2 503\n"), Some(Outcome::Failed)),
            (Said::Nothing, Some("HTTP/2 500\n"), Some(Outcome::Failed)),
            (Said::Nothing, Some("HTTP/2 408\n"), Some(Outcome::Failed)),
            (
                Said::Nothing,
                Some("HTTP/2 200\nretry-after: 60\n"),
                Some(Outcome::Success),
            ),
            (
                Said::Nothing,
                Some("x-request-id: 1\n"),
                Some(Outcome::Success),
            ),
        ];
        for (said, dump, expected) in cases {
            assert_eq!(
                how(said, dump).expect("read"),
                expected,
                "{said:?} {dump:?}"
            );
        }
        let bad = Said::RateLimited {
            retry_after: Some("soon"),
        };
        assert!(how(bad, None).is_err());
    }

    #[test]
    fn a_record_settles_the_oldest_open_reservation_else_adds_a_call() {
        let rows = crate::endpoints::parse("provider,model\ngroq,m\n", "e.csv").expect("rows");
        let mut memory = MemoryLedger::default();
        memory.clock.set(T0);
        let ledger: &mut dyn Ledger = &mut memory;
        let lease = ledger
            .write(|book, now| account::reserve(book, "groq/m", Request::new(100), 0, now))
            .expect("reserve");
        let settled = Record {
            usage: Some(crate::response::Usage {
                input: 40,
                ..Default::default()
            }),
            latency_ms: None,
            ..call()
        };
        ledger
            .write(|book, now| record(book, &settled, &rows, now))
            .expect("settle");
        let (totals, open) = ledger
            .read(|book, now| {
                let a = account::account(book, "groq/m", now)?;
                Ok((account::totals(book, &["groq/m"], now)?[0], a.open))
            })
            .expect("read");
        assert_eq!(
            (totals.usage.requests, totals.usage.tokens(), open),
            (1, 40, 0)
        );
        // Nothing open: the same record adds a call.
        ledger
            .write(|book, now| record(book, &settled, &rows, now))
            .expect("add");
        let used = ledger
            .read(|book, now| Ok(account::totals(book, &["groq/m"], now)?[0]))
            .expect("read");
        assert_eq!((used.usage.requests, used.usage.tokens()), (2, 80));
        // A lease settles once.
        let again = Record {
            lease: Some(&lease),
            id: None,
            ..call()
        };
        let err = ledger
            .write(|book, now| record(book, &again, &rows, now))
            .expect_err("settled twice");
        assert!(err.to_string().contains("already settled"), "{err}");
        let wrong = Record {
            lease: Some(&lease),
            id: Some("other/m"),
            ..call()
        };
        let err = ledger
            .write(|book, now| record(book, &wrong, &rows, now))
            .expect_err("another endpoint's lease");
        assert!(err.to_string().contains("belongs to groq/m"), "{err}");
    }

    #[test]
    fn a_report_counts_from_the_usage_that_includes_the_call_it_came_with() {
        let rows = crate::endpoints::parse("provider,model\ngroq,m\n", "e.csv").expect("rows");
        let mut memory = MemoryLedger::default();
        memory.clock.set(T0);
        let ledger: &mut dyn Ledger = &mut memory;
        let dump = Response::parse(
            "HTTP/1.1 200 OK\r\nx-ratelimit-limit-requests: 100\r\n\
             x-ratelimit-remaining-requests: 10\r\nx-ratelimit-reset-requests: 1h\r\n\r\n",
        );
        let with_headers = Record {
            add: true,
            response: Some(&dump),
            ..call()
        };
        let notes = ledger
            .write(|book, now| record(book, &with_headers, &rows, now))
            .expect("record");
        assert!(notes.is_empty(), "{notes:?}");
        let reports = ledger
            .read(|book, now| Ok(account::account(book, "groq/m", now)?.reports))
            .expect("read");
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(
            (reports[0].remaining, reports[0].used_since),
            (10, 0),
            "the call the headers came with is already in the provider's count"
        );
        ledger
            .write(|book, now| account::add(book, "groq/m", Request::new(0), 0, now).map(|_| ()))
            .expect("one more");
        let reports = ledger
            .read(|book, now| Ok(account::account(book, "groq/m", now)?.reports))
            .expect("read");
        assert_eq!(reports[0].used_since, 1);
    }
}
