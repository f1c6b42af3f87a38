//! `record`: settle a reservation with what the call really used, or add a call that was
//! made without `pick`; and learn from how the call went (a 429, a failure, the provider's
//! rate-limit headers).

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};

use super::{Context, find};
use crate::cli::RecordArgs;
use crate::clock;
use crate::cooldown::{self, Outcome};
use crate::duration::parse_retry_after;
use crate::endpoints::Endpoint;
use crate::headers::{self, Dialect, Response};
use crate::output;
use crate::quota::{Millis, Request};
use crate::store::{Entry, Tx};

pub fn run(ctx: &Context, args: &RecordArgs) -> Result<ExitCode> {
    let now = clock::now()?;
    // An id is checked against the file, so that a typo is an error rather than usage of
    // an endpoint that does not exist; a lease names its endpoint in the ledger. Headers
    // are read in the dialect of the endpoint's provider, which only the file tells.
    // Headers only inform the ledger: a dump that cannot be read, or read without the file
    // to tell its dialect, costs a note, not the record.
    let mut notes = Vec::new();
    let all = match (&args.id, &args.headers) {
        (Some(_), _) => ctx.endpoints()?,
        (None, Some(_)) => ctx.endpoints().unwrap_or_else(|e| {
            notes.push(format!("{e:#}; headers ignored"));
            Vec::new()
        }),
        (None, None) => Vec::new(),
    };
    if let Some(id) = &args.id {
        find(&all, id)?;
    }
    let dump = args
        .headers
        .as_deref()
        .filter(|_| notes.is_empty())
        .and_then(|path| {
            read_dump(path)
                .map_err(|e| notes.push(format!("{e:#}; headers ignored")))
                .ok()
        });
    let retry_after = args
        .retry_after
        .as_deref()
        .map(|text| parse_retry_after(text, now).map_err(anyhow::Error::msg))
        .transpose()?;

    let mut ledger = ctx.ledger()?;
    let header_notes = ledger.write(|tx| {
        tx.prune(now)?;
        let endpoint = settle_or_add(tx, args, now)?;
        let response = match (&dump, all.iter().find(|e| e.id == endpoint)) {
            (Some(dump), Some(row)) => Some(read_headers(tx, row, dump, now)?),
            (Some(_), None) => Some(Response {
                notes: vec![format!(
                    "{endpoint} is not in the endpoints file; headers ignored"
                )],
                ..Response::default()
            }),
            (None, _) => None,
        };
        let outcome = outcome(args, retry_after, response.as_ref(), now);
        let next = cooldown::after(tx.cooldown(&endpoint)?.as_ref(), outcome, now);
        tx.set_cooldown(&endpoint, next.as_ref())?;
        Ok(response.map(|r| r.notes).unwrap_or_default())
    })?;
    for note in notes.into_iter().chain(header_notes) {
        output::message(&format!("note: {note}"));
    }
    Ok(ExitCode::SUCCESS)
}

/// Settles the reservation the arguments name, or adds a call; returns the endpoint id.
fn settle_or_add(tx: &Tx, args: &RecordArgs, now: Millis) -> Result<String> {
    let reservation: Option<Entry> = match (&args.lease, &args.id) {
        (Some(lease), id) => {
            let entry = tx.by_lease(lease)?.with_context(|| {
                format!("unknown lease {lease:?}: mistyped, reset, or older than a day")
            })?;
            if let Some(id) = id.as_ref().filter(|id| **id != entry.endpoint) {
                bail!("lease {lease:?} belongs to {}, not {id}", entry.endpoint);
            }
            if !entry.open {
                bail!("lease {lease:?} was already settled");
            }
            Some(entry)
        }
        (None, Some(id)) if !args.add => tx.oldest_open(id, now)?,
        _ => None,
    };
    match reservation {
        Some(entry) => {
            let real = Request {
                requests: args.requests.unwrap_or(entry.requests),
                tokens: args.tokens.unwrap_or(entry.tokens),
            };
            tx.settle(&entry, real)?;
            Ok(entry.endpoint)
        }
        None => {
            let id = args
                .id
                .clone()
                .context("record needs an endpoint id or --lease")?;
            let call = Request {
                requests: args.requests.unwrap_or(1),
                tokens: args.tokens.unwrap_or(0),
            };
            tx.add(&id, call, now)?;
            Ok(id)
        }
    }
}

/// How the call went: as the flags say, else as its headers show (a 429 status or a
/// Retry-After means the provider refused it).
fn outcome(
    args: &RecordArgs,
    retry_after: Option<Millis>,
    response: Option<&Response>,
    now: Millis,
) -> Outcome {
    let asked = response
        .and_then(|r| r.retry_after)
        .map(|at| (at - now).max(0));
    let refused = response.is_some_and(|r| r.status == Some(429) || r.retry_after.is_some());
    if args.failed {
        Outcome::Failed
    } else if args.rate_limited || refused {
        Outcome::RateLimited {
            retry_after: retry_after.or(asked),
        }
    } else {
        Outcome::Success
    }
}

/// Takes the provider's word on each limit its headers report. Usage recorded from now on
/// counts against what it said remains.
fn read_headers(tx: &Tx, endpoint: &Endpoint, dump: &str, now: Millis) -> Result<Response> {
    let named = endpoint.headers.as_deref();
    let dialect = match named {
        Some(name) => Dialect::from_name(name),
        None => Dialect::for_provider(&endpoint.provider),
    };
    let Some(dialect) = dialect else {
        // Retry-After and the status mean the same everywhere; the limits do not.
        let mut response = headers::read(dump, Dialect::OpenAi, now);
        response.readings.clear();
        response.notes.insert(
            0,
            match named {
                Some(name) => format!("{}: unknown headers dialect {name:?}; rate-limit headers ignored (use openai, groq, anthropic or cerebras)", endpoint.id),
                None => format!("{}: no known headers dialect for provider {:?}; rate-limit headers ignored (add a headers column: openai, groq, anthropic or cerebras)", endpoint.id, endpoint.provider),
            },
        );
        return Ok(response);
    };
    let response = headers::read(dump, dialect, now);
    for reading in &response.readings {
        tx.set_report(
            &endpoint.id,
            reading.limit,
            reading.remaining,
            reading.cap,
            reading.resets_at,
            now,
        )?;
    }
    Ok(response)
}

fn read_dump(path: &std::path::Path) -> Result<String> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read the headers from stdin")?;
    } else {
        bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the headers file {}", path.display()))?;
    }
    // Header values are ASCII; a stray byte must not cost the record.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
