//! `record`: settle a reservation with what the call really used, or add a call that was
//! made without `pick`.

use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};

use super::{Context, find};
use crate::cli::RecordArgs;
use crate::clock;
use crate::quota::Request;

pub fn run(ctx: &Context, args: &RecordArgs) -> Result<ExitCode> {
    let now = clock::now()?;
    // A lease names its endpoint in the ledger; an id is checked against the file so that a
    // typo is an error rather than usage recorded for an endpoint that does not exist.
    if let Some(id) = &args.id {
        find(&ctx.endpoints()?, id)?;
    }
    let mut ledger = ctx.ledger()?;
    ledger.write(|tx| {
        tx.prune(now)?;
        let reservation = match (&args.lease, &args.id) {
            (Some(lease), id) => {
                let entry = tx.by_lease(lease)?.with_context(|| {
                    format!("unknown lease {lease:?}: mistyped, reset, or older than a day")
                })?;
                if id.as_ref().is_some_and(|id| *id != entry.endpoint) {
                    bail!(
                        "lease {lease:?} belongs to {}, not {}",
                        entry.endpoint,
                        id.as_deref().unwrap_or_default()
                    );
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
                tx.settle(&entry, real)
            }
            None => {
                let id = args
                    .id
                    .as_deref()
                    .context("record needs an endpoint id or --lease")?;
                let call = Request {
                    requests: args.requests.unwrap_or(1),
                    tokens: args.tokens.unwrap_or(0),
                };
                tx.add(id, call, now)
            }
        }
    })?;
    Ok(ExitCode::SUCCESS)
}
