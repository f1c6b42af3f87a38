//! `record`: read what the call left (the endpoints file, the header dump), then settle or
//! add it in one step of the ledger, at the ledger's time.

use std::process::ExitCode;

use anyhow::{Context as _, Result};

use super::{Context, find};
use crate::cli::RecordArgs;
use crate::engine::settle::{self, Record, Said};
use crate::output;
use crate::response::{Response, Usage, Went, usage};

pub fn run(ctx: &Context, args: &RecordArgs) -> Result<ExitCode> {
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
    let stdin = |path: &Option<std::path::PathBuf>| path.as_ref().is_some_and(|p| p == "-");
    anyhow::ensure!(
        !(stdin(&args.headers) && stdin(&args.usage)),
        "--headers - and --usage - cannot both read stdin; give one of them a file"
    );
    // Every input is read before the ledger is locked: the lock is held for the step
    // alone, and the time of the record is the moment the call's outcome was all in.
    let response = args
        .headers
        .as_deref()
        .filter(|_| notes.is_empty())
        .and_then(|path| match read_dump(path) {
            Ok(response) => Some(response),
            Err(e) => {
                notes.push(format!("{e:#}; headers ignored"));
                None
            }
        });
    let split = [args.input_tokens, args.output_tokens, args.cached_tokens];
    let usage = match &args.usage {
        Some(path) => read_usage(path, response.as_ref(), args.rate_limited, &mut notes),
        // By kind: the kinds not given count 0.
        None if split.iter().any(Option::is_some) => Some(Usage {
            input: args.input_tokens.unwrap_or(0),
            output: args.output_tokens.unwrap_or(0),
            cached: args.cached_tokens.unwrap_or(0),
        }),
        // Tokens of no kind are input tokens.
        None => args.tokens.map(|input| Usage {
            input,
            ..Usage::default()
        }),
    };
    let said = if args.failed {
        Said::Failed
    } else if args.rate_limited {
        Said::RateLimited {
            retry_after: args.retry_after.as_deref(),
        }
    } else {
        Said::Nothing
    };
    let call = Record {
        lease: args.lease.as_deref(),
        id: args.id.as_deref(),
        add: args.add,
        requests: args.requests,
        usage,
        latency_ms: args.latency.map(|ms| u64::try_from(ms).unwrap_or(0)),
        said,
        response: response.as_ref(),
    };
    let mut ledger = ctx.ledger()?;
    let header_notes = settle::record_in(ledger.as_mut(), &call, &all)?;
    output::notes(notes.into_iter().chain(header_notes));
    Ok(ExitCode::SUCCESS)
}

/// The dump at `path` (`-`: stdin; a pipe such as `<(curl ...)` is read as it comes), its
/// first MiB, parsed.
fn read_dump(path: &std::path::Path) -> Result<Response> {
    if path.as_os_str() == "-" {
        Response::read_from(std::io::stdin().lock()).context("cannot read the headers from stdin")
    } else {
        std::fs::File::open(path)
            .and_then(Response::read_from)
            .with_context(|| format!("cannot read the headers file {}", path.display()))
    }
}

/// The tokens a usage file at `path` reports (`-`: stdin), read as `exec` reads its usage
/// file. A file that cannot be read or reports none leaves the estimate, with a note unless
/// the call was refused (an error body has no usage, and a refusal counts none anyway).
fn read_usage(
    path: &std::path::Path,
    response: Option<&Response>,
    rate_limited: bool,
    notes: &mut Vec<String>,
) -> Option<Usage> {
    let read = if path.as_os_str() == "-" {
        usage::read(std::io::stdin().lock(), None)
    } else {
        std::fs::File::open(path).and_then(|file| {
            let size = file.metadata()?;
            usage::read(file, size.is_file().then_some(size.len()))
        })
    };
    let shown = if path.as_os_str() == "-" {
        "stdin".to_owned()
    } else {
        path.display().to_string()
    };
    match read {
        Ok(Some(bytes)) => {
            let used = usage::in_file(&bytes);
            let refused = rate_limited || response.is_some_and(Response::refused);
            if used.is_none() && !refused {
                notes.push(format!("no usage in {shown}; the estimate stands"));
            }
            // A 429 used nothing, whatever its body says (SPEC 14); a 408 or 5xx with
            // usage counts it.
            let said_429 = rate_limited || response.and_then(Response::went) == Some(Went::Refused);
            used.filter(|_| !said_429)
        }
        Ok(None) => {
            notes.push(usage::TOO_LARGE.to_owned());
            None
        }
        Err(e) => {
            notes.push(format!(
                "cannot read the usage file {shown}: {e}; the estimate stands"
            ));
            None
        }
    }
}
