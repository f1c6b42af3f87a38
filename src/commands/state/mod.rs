//! `state`: each endpoint's usage against its limits, whether it could take a request now,
//! what blocks it and when that frees, and any cooldown. Read-only: it never prunes or
//! reserves. It asks the same question `pick` asks, for 1 request and 0 tokens.

mod metrics;
mod records;
mod table;

use std::process::ExitCode;

use anyhow::{Result, bail};

use super::Context;
use crate::cli::{StateArgs, StateFormat};
use crate::clock::Millis;
use crate::endpoints::Endpoint;
use crate::engine::account::{self, Totals};
use crate::engine::admit::{self, Standing, Verdict};
use crate::engine::choose::filter;
use crate::engine::latency::{self, Speed};
use crate::ledger::{Ledger, Parts};
use crate::output;
use crate::quota::Request;

/// One endpoint at `now`.
struct Row<'e> {
    endpoint: &'e Endpoint,
    standing: Standing,
    open_reservations: u64,
    totals: Totals,
    speed: Option<Speed>,
}

impl Row<'_> {
    fn available(&self) -> bool {
        matches!(self.standing.verdict, Verdict::Fits { .. })
    }

    fn frees_in(&self, now: Millis) -> Option<f64> {
        match self.standing.verdict {
            Verdict::Blocked { frees_at, .. } => Some(output::seconds((frees_at - now).max(0))),
            _ => None,
        }
    }

    fn blocked_by(&self) -> Option<&'static str> {
        match self.standing.verdict {
            Verdict::Blocked { block, .. } => Some(block.name()),
            Verdict::Never(_) => Some("never"),
            Verdict::Fits { .. } => None,
        }
    }

    /// Seconds until a running cooldown ends; 0 when none runs.
    fn cooldown_left(&self, now: Millis) -> f64 {
        self.cooldown()
            .map_or(0.0, |c| output::seconds((c.until - now).max(0)))
    }

    /// The cooldown worth showing: one that is running or still waits for its probe.
    fn cooldown(&self) -> Option<&crate::cooldown::Cooldown> {
        self.standing.cooldown.as_ref().filter(|c| c.strikes > 0)
    }
}

pub fn run(ctx: &Context, args: &StateArgs) -> Result<ExitCode> {
    let all = ctx.endpoints()?;
    let mut ledger = ctx.ledger()?;
    let text = render(
        &all,
        ledger.as_mut(),
        &args.patterns,
        args.format,
        Shown {
            header: !args.no_header,
            colour: ctx.colour(args.output.is_none()),
        },
    )?;
    match &args.output {
        Some(path) => output::replace_file(path, text.as_bytes())?,
        None => output::data(&text)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// How a table or a CSV is written.
pub struct Shown {
    /// The CSV's header row.
    pub header: bool,
    /// The table's colours.
    pub colour: bool,
}

/// The endpoints that match `patterns` (all when none) as `format` writes them, read in one
/// step of the ledger: for `state`, and live for `serve`'s `/metrics` and page.
pub fn render(
    all: &[Endpoint],
    ledger: &mut dyn Ledger,
    patterns: &[String],
    format: StateFormat,
    shown_as: Shown,
) -> Result<String> {
    let shown = filter(all, patterns, &[]);
    if shown.is_empty() && !patterns.is_empty() {
        bail!("no endpoint matches {}", patterns.join(" "));
    }
    let (rows, now) = ledger.read(|book, now| {
        // The table shows every row's reservations in flight, and json its month's spend.
        let in_flight = Parts {
            in_flight: true,
            months: true,
            ..Parts::default()
        };
        let (standings, accounts) =
            admit::assess_all(book, &shown, Request::new(0), now, in_flight)?;
        let ids: Vec<&str> = shown.iter().map(|e| e.id.as_str()).collect();
        let totals = account::totals(book, &ids, now)?;
        let speeds = latency::speeds(book, &ids, now)?;
        let rows = shown
            .iter()
            .zip(standings)
            .zip(totals)
            .zip(speeds)
            .map(|(((&endpoint, standing), totals), speed)| {
                let own = accounts
                    .get(&endpoint.id, admit::day_start(endpoint, now))
                    .cloned()
                    .unwrap_or_default();
                Row {
                    endpoint,
                    standing,
                    open_reservations: own.open,
                    totals,
                    speed,
                }
            })
            .collect::<Vec<_>>();
        Ok((rows, now))
    })?;

    Ok(match format {
        StateFormat::Table => table::table(&rows, now, shown_as.colour),
        StateFormat::Json => records::json(&rows, now)?,
        StateFormat::Csv => records::csv(&rows, now, shown_as.header)?,
        StateFormat::Prometheus => metrics::prometheus(&rows, now),
    })
}
