//! `state`: each endpoint's usage against its limits, whether it could take a request now,
//! and when its fullest window frees. Read-only: it never prunes or reserves.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Result, bail};
use comfy_table::{Cell, Color, Table, presets};
use serde::Serialize;
use serde::ser::SerializeMap;

use super::{Context, filter};
use crate::cli::{StateArgs, StateFormat};
use crate::clock;
use crate::endpoints::Endpoint;
use crate::output;
use crate::quota::{self, Limit, Limits, Millis, Request, Used};

/// One endpoint's standing at `now`.
struct Standing<'e> {
    endpoint: &'e Endpoint,
    used: Used,
    /// `None` when it can take a request now.
    blocked: Option<Blocked>,
    open_reservations: u64,
}

enum Blocked {
    Never(quota::Never),
    Until(Millis),
}

pub fn run(ctx: &Context, args: &StateArgs) -> Result<ExitCode> {
    let now = clock::now()?;
    let all = ctx.endpoints()?;
    let shown = filter(&all, &args.patterns, &[]);
    if shown.is_empty() && !args.patterns.is_empty() {
        bail!("no endpoint matches {}", args.patterns.join(" "));
    }
    let probe = Request::new(0);
    let mut ledger = ctx.ledger()?;
    let standings = ledger.read(|tx| {
        shown
            .iter()
            .map(|&endpoint| {
                let used = tx.used(&endpoint.id, now)?;
                let blocked = match quota::never_fits(&endpoint.limits, probe) {
                    Some(never) => Some(Blocked::Never(never)),
                    None => {
                        let mut latest = None;
                        for short in quota::shortfalls(&endpoint.limits, &used, probe) {
                            let at = tx.frees_at(&endpoint.id, short.limit, short.excess, now)?;
                            latest = latest.max(Some(at.unwrap_or(now)));
                        }
                        latest.map(Blocked::Until)
                    }
                };
                Ok(Standing {
                    endpoint,
                    used,
                    blocked,
                    open_reservations: tx.open_reservations(&endpoint.id, now)?,
                })
            })
            .collect::<Result<Vec<_>>>()
    })?;

    let text = match args.format {
        StateFormat::Table => table(&standings, now),
        StateFormat::Json => json(&standings, now)?,
        StateFormat::Csv => csv(&standings, now)?,
    };
    output::data(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn frees_in(standing: &Standing, now: Millis) -> Option<f64> {
    match standing.blocked {
        Some(Blocked::Until(at)) => Some(output::seconds((at - now).max(0))),
        _ => None,
    }
}

fn table(standings: &[Standing], now: Millis) -> String {
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    // Only windows that some shown endpoint limits get a column.
    let limits: Vec<Limit> = Limit::ALL
        .into_iter()
        .filter(|&l| standings.iter().any(|s| s.endpoint.limits.get(l).is_some()))
        .collect();
    let mut table = Table::new();
    table.load_style(presets::UTF8_FULL_CONDENSED);
    if colour {
        table.enforce_styling();
    } else {
        table.force_no_tty();
    }
    let mut header = vec!["endpoint".to_string(), "priority".to_string()];
    header.extend(limits.iter().map(|l| l.name().to_string()));
    header.extend(["open".to_string(), "status".to_string()]);
    table.set_header(header);
    for s in standings {
        let mut row = vec![Cell::new(&s.endpoint.id), Cell::new(s.endpoint.priority)];
        for &limit in &limits {
            let used = output::count(s.used.get(limit));
            row.push(Cell::new(match s.endpoint.limits.get(limit) {
                Some(cap) => format!("{used}/{}", output::count(cap)),
                None => used,
            }));
        }
        row.push(Cell::new(s.open_reservations));
        let (status, hue) = match &s.blocked {
            None => ("ready".to_string(), Color::Green),
            Some(Blocked::Until(at)) => (
                format!("full, frees in {}", output::duration(at - now)),
                Color::Red,
            ),
            Some(Blocked::Never(never)) => (never.to_string(), Color::DarkGrey),
        };
        let status = Cell::new(status);
        row.push(if colour { status.fg(hue) } else { status });
        table.add_row(row);
    }
    format!("{table}\n")
}

/// One endpoint as a JSON object, with the numbers of SPEC section 4.
struct JsonStanding<'a> {
    standing: &'a Standing<'a>,
    now: Millis,
}

/// A JSON object with one entry per window, in column order.
struct PerWindow<F: Fn(Limit) -> Option<u64>>(F);

impl<F: Fn(Limit) -> Option<u64>> Serialize for PerWindow<F> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(Limit::ALL.into_iter().map(|l| (l.name(), (self.0)(l))))
    }
}

impl Serialize for JsonStanding<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let st = self.standing;
        let e = st.endpoint;
        let limits: &Limits = &e.limits;
        let mut map = s.serialize_map(Some(10))?;
        map.serialize_entry("id", &e.id)?;
        map.serialize_entry("provider", &e.provider)?;
        map.serialize_entry("model", &e.model)?;
        map.serialize_entry("priority", &e.priority)?;
        map.serialize_entry("available", &st.blocked.is_none())?;
        map.serialize_entry("frees_in_s", &frees_in(st, self.now))?;
        map.serialize_entry("limits", &PerWindow(|l| limits.get(l)))?;
        map.serialize_entry("used", &PerWindow(|l| Some(st.used.get(l))))?;
        map.serialize_entry(
            "remaining",
            &PerWindow(|l| limits.get(l).map(|cap| cap.saturating_sub(st.used.get(l)))),
        )?;
        map.serialize_entry("open_reservations", &st.open_reservations)?;
        map.end()
    }
}

fn json(standings: &[Standing], now: Millis) -> Result<String> {
    let rows: Vec<JsonStanding> = standings
        .iter()
        .map(|standing| JsonStanding { standing, now })
        .collect();
    Ok(format!("{}\n", serde_json::to_string_pretty(&rows)?))
}

fn csv(standings: &[Standing], now: Millis) -> Result<String> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = [
        "id",
        "provider",
        "model",
        "priority",
        "available",
        "frees_in_s",
    ]
    .map(String::from)
    .to_vec();
    for limit in Limit::ALL {
        header.push(format!("{}_used", limit.name()));
        header.push(format!("{}_limit", limit.name()));
    }
    header.push("open_reservations".into());
    out.write_record(&header)?;
    for s in standings {
        let e = s.endpoint;
        let mut row = vec![
            e.id.clone(),
            e.provider.clone(),
            e.model.clone(),
            e.priority.to_string(),
            s.blocked.is_none().to_string(),
            frees_in(s, now).map(|f| f.to_string()).unwrap_or_default(),
        ];
        for limit in Limit::ALL {
            row.push(s.used.get(limit).to_string());
            row.push(
                e.limits
                    .get(limit)
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
            );
        }
        row.push(s.open_reservations.to_string());
        out.write_record(&row)?;
    }
    Ok(String::from_utf8(out.into_inner()?)?)
}
