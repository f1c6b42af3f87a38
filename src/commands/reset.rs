//! `reset`: forget the usage and reservations of some endpoints, or of all of them.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::{Result, bail};

use super::Context;
use crate::glob;
use crate::output;

pub fn run(ctx: &Context, args: &crate::cli::ResetArgs) -> Result<ExitCode> {
    // Names match the ids the ledger holds and, when there is a file, the ids it lists, so
    // that resetting an endpoint with nothing recorded is not an error.
    let from_file: Vec<String> = match ctx.endpoints_if_any()? {
        Some(all) if !args.all => all.into_iter().map(|e| e.id).collect(),
        _ => Vec::new(),
    };
    let mut ledger = ctx.ledger()?;
    let cleared = ledger.write(|book, _now| {
        let mut known: BTreeSet<String> = book.endpoints()?.into_iter().collect();
        let chosen: BTreeSet<String> = if args.all {
            known
        } else {
            known.extend(from_file.iter().cloned());
            let unmatched: Vec<&str> = args
                .names
                .iter()
                .filter(|n| !known.iter().any(|id| glob::matches(n, id)))
                .map(String::as_str)
                .collect();
            if !unmatched.is_empty() {
                bail!(
                    "no endpoint matches {}; nothing was reset",
                    unmatched.join(" ")
                );
            }
            known
                .into_iter()
                .filter(|id| args.names.iter().any(|n| glob::matches(n, id)))
                .collect()
        };
        chosen
            .into_iter()
            .map(|id| Ok((book.forget(&id)?, id)))
            .collect::<Result<Vec<_>>>()
    })?;
    if cleared.is_empty() {
        output::message("the ledger was already empty");
    }
    for (calls, id) in cleared {
        let plural = if calls == 1 { "" } else { "s" };
        let id = output::plain(&id);
        output::message(&format!("reset {id}: forgot {calls} recorded call{plural}"));
    }
    Ok(ExitCode::SUCCESS)
}
