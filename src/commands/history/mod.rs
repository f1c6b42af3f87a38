//! `history`: requests and tokens per endpoint per UTC hour or day, from the 90 days of
//! hourly totals the ledger keeps, as bars in the terminal, JSON, CSV or an SVG chart.

mod chart;

use std::collections::HashSet;
use std::process::ExitCode;

use anyhow::{Result, bail};
use serde::Serialize;

use super::Context;
use crate::cli::{HistoryArgs, HistoryFormat, Metric, Period};
use crate::clock::{HOUR_MS, Millis};
use crate::endpoints::Endpoint;
use crate::glob;
use crate::ledger::{HISTORY_MS, Hourly, Ledger};
use crate::money::Money;
use crate::output;
use crate::quota::{Limit, Request, Unit, Window};
use chart::{Chart, Series};

/// One endpoint's periods, oldest first, every period of the range present.
#[derive(Serialize)]
struct Line {
    endpoint: String,
    /// Its `rph` (by hour) or `rpd` (by day), when the endpoints file gives one.
    limit: Option<u64>,
    periods: Vec<Period_>,
}

#[derive(Serialize)]
struct Period_ {
    #[serde(skip)]
    start_ms: Millis,
    start: String,
    requests: u64,
    tokens: u64,
    input: u64,
    output: u64,
    cached: u64,
    cost_usd: f64,
    /// In pico-dollars, exact.
    #[serde(skip)]
    cost: u64,
}

impl Period_ {
    /// What the table and the chart show of it: spend in micro-dollars.
    fn value(&self, metric: Metric) -> u64 {
        match metric {
            Metric::Requests => self.requests,
            Metric::Tokens => self.tokens,
            Metric::Spend => self.cost.div_ceil(1_000_000),
        }
    }
}

/// A value of `metric` as the table and the chart write it.
fn shown(metric: Metric) -> fn(u64) -> String {
    match metric {
        Metric::Requests | Metric::Tokens => output::count,
        Metric::Spend => |micro| format!("${}", Money(micro.saturating_mul(1_000_000))),
    }
}

pub fn run(ctx: &Context, args: &HistoryArgs) -> Result<ExitCode> {
    let file = ctx.endpoints_if_any()?.unwrap_or_default();
    let mut ledger = ctx.ledger()?;
    output::data(&render(&file, ledger.as_mut(), args)?)?;
    Ok(ExitCode::SUCCESS)
}

/// The history `args` ask for, of the file's endpoints and any others the ledger
/// remembers, read in one step: for `history`, and live for `serve`'s page.
pub fn render(file: &[Endpoint], ledger: &mut dyn Ledger, args: &HistoryArgs) -> Result<String> {
    let period_ms = match args.by {
        Period::Hour => HOUR_MS,
        Period::Day => 24 * HOUR_MS,
    };
    let since = args.since.unwrap_or(match args.by {
        Period::Hour => 24 * HOUR_MS,
        Period::Day => 30 * 24 * HOUR_MS,
    });
    // Nothing older is kept: a longer span would only list empty periods, as many as asked.
    if since > HISTORY_MS {
        output::message("note: history is kept 90 days; showing the 90 days kept");
    }
    let since = since.min(HISTORY_MS);
    let window = match args.by {
        Period::Hour => Window::Hour,
        Period::Day => Window::Day,
    };
    // The limit drawn with a line: the window's, of the unit shown (spend: micro-dollars).
    let unit = match args.metric {
        Metric::Requests => Unit::Requests,
        Metric::Tokens => Unit::Tokens,
        Metric::Spend => Unit::Dollars,
    };
    let limit_of = |e: &Endpoint| {
        let cap = e.limits.get(Limit::new(unit, window))?;
        Some(match args.metric {
            Metric::Spend => cap.div_ceil(1_000_000),
            _ => cap,
        })
    };
    let (lines, now) = ledger.read(|book, now| {
        // The file's endpoints in file order, then any the ledger remembers that the file
        // no longer lists.
        let mut listed: HashSet<String> = file.iter().map(|e| e.id.clone()).collect();
        let mut ids: Vec<(String, Option<u64>)> =
            file.iter().map(|e| (e.id.clone(), limit_of(e))).collect();
        for id in book.endpoints_with_history()? {
            // The file's ids were checked when it was read; a shared ledger's may be anything.
            if listed.insert(id.clone()) {
                ids.push((id, None));
            }
        }
        let first = (now - since).div_euclid(period_ms);
        let last = now.div_euclid(period_ms);
        let mut lines = Vec::new();
        for (id, limit) in ids {
            if !args.patterns.is_empty() && !args.patterns.iter().any(|p| glob::matches(p, &id)) {
                continue;
            }
            let hours = book.history(&id, first * period_ms / HOUR_MS)?;
            lines.push(Line {
                periods: periods(&hours, first, last, period_ms),
                endpoint: output::plain(&id),
                limit,
            });
        }
        Ok((lines, now))
    })?;
    if lines.is_empty() && !args.patterns.is_empty() {
        bail!("no endpoint matches {}", args.patterns.join(" "));
    }
    Ok(match args.format {
        HistoryFormat::Table => table(&lines, args.by, args.metric),
        HistoryFormat::Json => format!("{}\n", serde_json::to_string_pretty(&lines)?),
        HistoryFormat::Csv => csv(&lines)?,
        HistoryFormat::Svg => svg(&lines, args.by, args.metric, now),
    })
}

/// Every period from `first` to `last` (in periods since the epoch), the hours summed in.
fn periods(hours: &[Hourly], first: i64, last: i64, period_ms: Millis) -> Vec<Period_> {
    (first..=last)
        .map(|p| {
            let start_ms = p * period_ms;
            let within = hours
                .iter()
                .filter(|h| (h.hour * HOUR_MS).div_euclid(period_ms) == p);
            let usage = within.fold(Request::default(), |sum, h| sum.plus(h.usage));
            Period_ {
                start_ms,
                start: output::rfc3339_seconds(start_ms),
                requests: usage.requests,
                tokens: usage.tokens(),
                input: usage.input,
                output: usage.output,
                cached: usage.cached,
                cost_usd: Money(usage.cost).dollars(),
                cost: usage.cost,
            }
        })
        .collect()
}

fn label(at: Millis, by: Period) -> String {
    let text = output::rfc3339_seconds(at);
    match by {
        // 2026-11-30T13:00:00Z -> 2026-11-30 13:00
        Period::Hour => text[..16].replace('T', " "),
        Period::Day => text[..10].to_owned(),
    }
}

const BAR: usize = 36;

/// A bar per period, scaled to the endpoint's busiest period or its limit, 80 columns wide.
fn table(lines: &[Line], by: Period, metric: Metric) -> String {
    let mut out = String::new();
    let window = match by {
        Period::Hour => Window::Hour,
        Period::Day => Window::Day,
    };
    let unit = match metric {
        Metric::Requests => Unit::Requests,
        Metric::Tokens => Unit::Tokens,
        Metric::Spend => Unit::Dollars,
    };
    let name = Limit::new(unit, window).name();
    let shown = shown(metric);
    for line in lines {
        match line.limit {
            Some(limit) => out.push_str(&format!("{}  ({name} {})\n", line.endpoint, shown(limit))),
            None => out.push_str(&format!("{}\n", line.endpoint)),
        }
        let top = line
            .periods
            .iter()
            .map(|p| p.value(metric))
            .chain(line.limit)
            .max()
            .unwrap_or(0)
            .max(1);
        for p in &line.periods {
            let filled = ((p.value(metric) as f64 / top as f64) * BAR as f64).ceil() as usize;
            let spend = match metric {
                Metric::Spend => format!(" {:>10}", format!("${}", Money(p.cost))),
                _ => String::new(),
            };
            out.push_str(&format!(
                "  {:<16} {:<BAR$} {:>6} req {:>6} tok{spend}\n",
                label(p.start_ms, by),
                "█".repeat(filled.min(BAR)),
                output::count(p.requests),
                output::count(p.tokens)
            ));
        }
    }
    out
}

/// SPEC section 11's four columns, then the kinds of tokens and the cost.
fn csv(lines: &[Line]) -> Result<String> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([
        "endpoint",
        "period_start",
        "requests",
        "tokens",
        "input",
        "output",
        "cached",
        "cost_usd",
    ])?;
    for line in lines {
        for p in &line.periods {
            out.write_record([
                line.endpoint.as_str(),
                p.start.as_str(),
                &p.requests.to_string(),
                &p.tokens.to_string(),
                &p.input.to_string(),
                &p.output.to_string(),
                &p.cached.to_string(),
                &Money(p.cost).to_string(),
            ])?;
        }
    }
    Ok(String::from_utf8(out.into_inner()?)?)
}

fn svg(lines: &[Line], by: Period, metric: Metric, to: Millis) -> String {
    let starts: Vec<Millis> = lines
        .first()
        .map(|l| l.periods.iter().map(|p| p.start_ms).collect())
        .unwrap_or_default();
    let first = starts.first().copied().unwrap_or(to);
    let last = starts.last().copied().unwrap_or(to);
    // At most seven ticks, a whole number of periods apart, from the first period on.
    let every = starts.len().div_ceil(7).max(1);
    let x_ticks = starts
        .iter()
        .step_by(every)
        .map(|&at| (at, tick(at, by)))
        .collect();
    let chart = Chart {
        title: match (metric, by) {
            (Metric::Requests, Period::Hour) => "Requests per hour (UTC)",
            (Metric::Requests, Period::Day) => "Requests per day (UTC)",
            (Metric::Tokens, Period::Hour) => "Tokens per hour (UTC)",
            (Metric::Tokens, Period::Day) => "Tokens per day (UTC)",
            (Metric::Spend, Period::Hour) => "Spend per hour (UTC)",
            (Metric::Spend, Period::Day) => "Spend per day (UTC)",
        },
        y_label: match metric {
            Metric::Requests => "requests",
            Metric::Tokens => "tokens",
            Metric::Spend => "US dollars",
        },
        shown: shown(metric),
        x_range: (first, last),
        x_ticks,
        series: lines
            .iter()
            .map(|l| Series {
                name: l.endpoint.clone(),
                points: l
                    .periods
                    .iter()
                    .map(|p| (p.start_ms, p.value(metric)))
                    .collect(),
                limit: l.limit,
            })
            .collect(),
    };
    chart.svg()
}

/// A short label for the chart's axis: `01-01 05:00` by hour, `2026-01-01` by day.
fn tick(at: Millis, by: Period) -> String {
    let text = output::rfc3339_seconds(at);
    match by {
        Period::Hour => text[5..16].replace('T', " "),
        Period::Day => text[..10].to_owned(),
    }
}
