//! `state`: each endpoint's usage against its limits, whether it could take a request now,
//! what blocks it and when that frees, and any cooldown. Read-only: it never prunes or
//! reserves. It asks the same question `pick` asks, for 1 request and 0 tokens.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Result, bail};
use comfy_table::{Cell, Color, Table, presets};
use serde::Serialize;
use serde::ser::SerializeMap;

use super::Context;
use crate::admit::{self, Block, PoolStanding, Standing, Verdict};
use crate::choose::filter;
use crate::cli::{StateArgs, StateFormat};
use crate::clock::Millis;
use crate::endpoints::Endpoint;
use crate::output;
use crate::quota::{Limit, Request};

/// One endpoint at `now`.
struct Row<'e> {
    endpoint: &'e Endpoint,
    standing: Standing,
    open_reservations: u64,
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

    /// The cooldown worth showing: one that is running or still waits for its probe.
    fn cooldown(&self) -> Option<&crate::cooldown::Cooldown> {
        self.standing.cooldown.as_ref().filter(|c| c.strikes > 0)
    }
}

pub fn run(ctx: &Context, args: &StateArgs) -> Result<ExitCode> {
    let all = ctx.endpoints()?;
    let shown = filter(&all, &args.patterns, &[]);
    if shown.is_empty() && !args.patterns.is_empty() {
        bail!("no endpoint matches {}", args.patterns.join(" "));
    }
    let mut ledger = ctx.ledger()?;
    let (rows, now) = ledger.read(|book, now| {
        let rows = shown
            .iter()
            .map(|&endpoint| {
                Ok(Row {
                    endpoint,
                    standing: admit::assess(book, endpoint, Request::new(0), now)?,
                    open_reservations: book.open_reservations(&endpoint.id, now)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((rows, now))
    })?;

    let text = match args.format {
        StateFormat::Table => table(&rows, now),
        StateFormat::Json => json(&rows, now)?,
        StateFormat::Csv => csv(&rows, now)?,
    };
    output::data(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn status(row: &Row, now: Millis) -> (String, Color) {
    match row.standing.verdict {
        Verdict::Fits { probe: false } => ("ready".into(), Color::Green),
        Verdict::Fits { probe: true } => ("ready for one probe".into(), Color::Yellow),
        Verdict::Blocked { block, frees_at } => {
            let what = match (block, row.cooldown()) {
                (Block::Cooldown, Some(c)) => format!("cooling down ({})", c.reason),
                _ => block.to_string(),
            };
            let wait = output::duration(frees_at - now);
            (format!("{what}, frees in {wait}"), Color::Red)
        }
        Verdict::Never(never) => (never.to_string(), Color::DarkGrey),
    }
}

fn table(rows: &[Row], now: Millis) -> String {
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    // Only windows that some shown endpoint limits get a column.
    let limits: Vec<Limit> = Limit::ALL
        .into_iter()
        .filter(|&l| rows.iter().any(|r| r.standing.limits.get(l).is_some()))
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
    let pools = rows.iter().any(|r| r.standing.pool.is_some());
    if pools {
        header.push("pool".to_string());
    }
    header.extend(["open".to_string(), "status".to_string()]);
    table.set_header(header);
    for row in rows {
        let mut cells = vec![
            Cell::new(&row.endpoint.id),
            Cell::new(row.endpoint.priority),
        ];
        for &limit in &limits {
            let used = output::count(row.standing.used.get(limit));
            cells.push(Cell::new(match row.standing.limits.get(limit) {
                Some(cap) => format!("{used}/{}", output::count(cap)),
                None => used,
            }));
        }
        if pools {
            cells.push(Cell::new(
                row.standing
                    .pool
                    .as_ref()
                    .map_or_else(String::new, pool_cell),
            ));
        }
        cells.push(Cell::new(row.open_reservations));
        let (status, hue) = status(row, now);
        let status = Cell::new(status);
        cells.push(if colour { status.fg(hue) } else { status });
        table.add_row(cells);
    }
    format!("{table}\n")
}

/// A pool for people: its name and its fullest limited window, `free 12/50 rpd`.
fn pool_cell(pool: &PoolStanding) -> String {
    let fullest = Limit::ALL
        .into_iter()
        .filter_map(|l| pool.limits.get(l).map(|cap| (l, cap)))
        .max_by(|a, b| {
            let share = |(l, cap): (Limit, u64)| pool.used.get(l) as f64 / cap.max(1) as f64;
            share(*a).total_cmp(&share(*b))
        });
    match fullest {
        Some((limit, cap)) => format!(
            "{} {}/{} {}",
            pool.name,
            output::count(pool.used.get(limit)),
            output::count(cap),
            limit.name()
        ),
        None => pool.name.clone(),
    }
}

/// A JSON object with one entry per window, in column order.
struct PerWindow<F: Fn(Limit) -> Option<u64>>(F);

impl<F: Fn(Limit) -> Option<u64>> Serialize for PerWindow<F> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(Limit::ALL.into_iter().map(|l| (l.name(), (self.0)(l))))
    }
}

#[derive(Serialize)]
struct JsonCooldown<'a> {
    reason: &'a str,
    ends_in_s: f64,
    strikes: u32,
    probe_out: bool,
}

/// One endpoint as a JSON object, with the numbers of SPEC section 4.
struct JsonRow<'a> {
    row: &'a Row<'a>,
    now: Millis,
}

impl Serialize for JsonRow<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (row, now) = (self.row, self.now);
        let (e, st) = (row.endpoint, &row.standing);
        let mut map = s.serialize_map(Some(13))?;
        map.serialize_entry("id", &e.id)?;
        map.serialize_entry("provider", &e.provider)?;
        map.serialize_entry("model", &e.model)?;
        map.serialize_entry("priority", &e.priority)?;
        map.serialize_entry("available", &row.available())?;
        map.serialize_entry("frees_in_s", &row.frees_in(now))?;
        map.serialize_entry("blocked_by", &row.blocked_by())?;
        map.serialize_entry("limits", &PerWindow(|l| st.limits.get(l)))?;
        map.serialize_entry("used", &PerWindow(|l| Some(st.used.get(l))))?;
        map.serialize_entry(
            "remaining",
            &PerWindow(|l| {
                st.limits
                    .get(l)
                    .map(|cap| cap.saturating_sub(st.used.get(l)))
            }),
        )?;
        map.serialize_entry("open_reservations", &row.open_reservations)?;
        let cooldown = row.cooldown().map(|c| JsonCooldown {
            reason: &c.reason,
            ends_in_s: output::seconds((c.until - now).max(0)),
            strikes: c.strikes,
            probe_out: c.probe_at.is_some(),
        });
        map.serialize_entry("cooldown", &cooldown)?;
        let pool = st.pool.as_ref().map(|pool| JsonPool { pool });
        map.serialize_entry("pool", &pool)?;
        map.end()
    }
}

/// A row's pool: its name, and its limits, usage and what remains, keyed as the row's own.
struct JsonPool<'a> {
    pool: &'a PoolStanding,
}

impl Serialize for JsonPool<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let pool = self.pool;
        let mut map = s.serialize_map(Some(4))?;
        map.serialize_entry("name", &pool.name)?;
        map.serialize_entry("limits", &PerWindow(|l| pool.limits.get(l)))?;
        map.serialize_entry("used", &PerWindow(|l| Some(pool.used.get(l))))?;
        map.serialize_entry(
            "remaining",
            &PerWindow(|l| {
                pool.limits
                    .get(l)
                    .map(|cap| cap.saturating_sub(pool.used.get(l)))
            }),
        )?;
        map.end()
    }
}

fn json(rows: &[Row], now: Millis) -> Result<String> {
    let rows: Vec<JsonRow> = rows.iter().map(|row| JsonRow { row, now }).collect();
    Ok(format!("{}\n", serde_json::to_string_pretty(&rows)?))
}

fn csv(rows: &[Row], now: Millis) -> Result<String> {
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
    header.extend(["open_reservations", "blocked_by", "cooldown_ends_in_s"].map(String::from));
    header.push("pool".into());
    for limit in Limit::ALL {
        header.push(format!("pool_{}_used", limit.name()));
        header.push(format!("pool_{}_limit", limit.name()));
    }
    out.write_record(&header)?;
    for row in rows {
        let e = row.endpoint;
        let mut record = vec![
            e.id.clone(),
            e.provider.clone(),
            e.model.clone(),
            e.priority.to_string(),
            row.available().to_string(),
            row.frees_in(now).map(|f| f.to_string()).unwrap_or_default(),
        ];
        for limit in Limit::ALL {
            record.push(row.standing.used.get(limit).to_string());
            let cap = row.standing.limits.get(limit);
            record.push(cap.map(|c| c.to_string()).unwrap_or_default());
        }
        record.push(row.open_reservations.to_string());
        record.push(row.blocked_by().unwrap_or_default().to_string());
        let ends = row
            .cooldown()
            .map(|c| output::seconds((c.until - now).max(0)));
        record.push(ends.map(|f| f.to_string()).unwrap_or_default());
        let pool = row.standing.pool.as_ref();
        record.push(pool.map(|p| p.name.clone()).unwrap_or_default());
        for limit in Limit::ALL {
            record.push(
                pool.map(|p| p.used.get(limit).to_string())
                    .unwrap_or_default(),
            );
            let cap = pool.and_then(|p| p.limits.get(limit));
            record.push(cap.map(|c| c.to_string()).unwrap_or_default());
        }
        out.write_record(&record)?;
    }
    Ok(String::from_utf8(out.into_inner()?)?)
}
