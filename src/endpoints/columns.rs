//! What each column of an endpoints file means, and each row read into an `Endpoint`:
//! cells checked one by one, each problem reported with its line and column.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use jiff::tz::{TimeZone, TimeZoneDatabase};

use super::pools::{PoolCells, resolve_pools};
use super::rows::Row;
use super::{DayReset, Endpoint, Pace, Prices, Report, parse_count, shown};
use crate::anchor::DayAnchor;
use crate::env;
use crate::money::Money;
use crate::quota::{CacheReads, Limit, Limits};

/// What a column means; every column not recognised is a property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Provider,
    Model,
    Limit(Limit),
    Pool,
    PoolLimit(Limit),
    Id,
    Priority,
    Weight,
    Concurrency,
    Pace,
    DayReset,
    Headers,
    Key,
    Price(Price),
    CacheReads,
    Prop,
}

/// The `price_*` columns: dollars per million tokens of a kind, or per request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Price {
    Input,
    Output,
    Cached,
    Call,
}

impl Field {
    fn of(name: &str) -> Field {
        let name = name.to_ascii_lowercase();
        if let Some(limit) = Limit::from_name(&name) {
            return Field::Limit(limit);
        }
        if let Some(limit) = name.strip_prefix("pool_").and_then(Limit::from_name) {
            return Field::PoolLimit(limit);
        }
        match name.as_str() {
            "provider" => Field::Provider,
            "pool" => Field::Pool,
            "model" => Field::Model,
            "id" => Field::Id,
            "priority" => Field::Priority,
            "weight" => Field::Weight,
            "concurrency" => Field::Concurrency,
            "pace" => Field::Pace,
            "day_reset" => Field::DayReset,
            "headers" => Field::Headers,
            "key" => Field::Key,
            "price_in" => Field::Price(Price::Input),
            "price_out" => Field::Price(Price::Output),
            "price_cached" => Field::Price(Price::Cached),
            "price_call" => Field::Price(Price::Call),
            "cache_reads" => Field::CacheReads,
            _ => Field::Prop,
        }
    }
}

struct Column {
    /// As written in the header, trimmed: messages use the user's spelling.
    name: String,
    field: Field,
}

pub(super) fn build(header: &Row, rows: &[Row], report: &mut Report) -> Vec<Endpoint> {
    let Some(columns) = read_header(header, report) else {
        // Without a sound header every cell would be misread; report the header alone.
        return Vec::new();
    };
    let id_index = columns.iter().position(|c| c.field == Field::Id);
    let mut first_line_of: HashMap<String, usize> = HashMap::new();
    let mut pool_cells: Vec<PoolCells> = Vec::new();
    let mut endpoints = Vec::new();
    for row in rows {
        if row.cells.len() > columns.len() {
            // The first cell past the header is named by its position. Its value is shown
            // only when the file has no key column: a misplaced cell may well be the key.
            let extra = columns.len() + 1;
            let value = if columns.iter().any(|c| c.field == Field::Key) {
                "(not shown: the file has a key column)".to_owned()
            } else {
                shown(&row.cells[columns.len()])
            };
            report.line(
                row.line,
                format_args!(
                    "column {extra}: {value} is one of {} cells, but the header has {} columns",
                    row.cells.len(),
                    columns.len()
                ),
            );
            continue;
        }
        let (endpoint, cells) = read_row(&columns, row, report);
        pool_cells.push(cells);
        // An id stays empty when the cells it comes from are bad; those are reported.
        if !endpoint.id.is_empty() {
            match first_line_of.entry(endpoint.id.clone()) {
                Entry::Vacant(entry) => {
                    entry.insert(row.line);
                }
                Entry::Occupied(first) => {
                    let id_cell = id_index.map(|i| {
                        let value = row.cells.get(i).map_or("", String::as_str);
                        (columns[i].name.as_str(), value)
                    });
                    duplicate(report, &endpoint, *first.get(), id_cell);
                }
            }
        }
        endpoints.push(endpoint);
    }
    resolve_pools(&mut endpoints, &pool_cells, report);
    endpoints
}

/// Says how to tell the rows apart: by an `id` column, or by filling in its cell.
fn duplicate(
    report: &mut Report,
    endpoint: &Endpoint,
    first: usize,
    id_cell: Option<(&str, &str)>,
) {
    let (line, id) = (endpoint.line, &endpoint.id);
    match id_cell {
        Some((column, value)) if !value.is_empty() => {
            report.cell(
                line,
                column,
                value,
                &format!("is already the id on line {first}"),
            );
        }
        Some((column, _)) => report.line(
            line,
            format_args!(
                "column {column}: \"\" leaves the id {} (provider/model), which is already \
                 the id on line {first}; give one of the rows its own id",
                shown(id)
            ),
        ),
        None => report.line(
            line,
            format_args!(
                "column id: {} (provider/model) is already the id on line {first}; \
                 add an id column to tell the rows apart",
                shown(id)
            ),
        ),
    }
}

fn read_header(header: &Row, report: &mut Report) -> Option<Vec<Column>> {
    let before = report.problems.len();
    let mut columns: Vec<Column> = Vec::new();
    // A set, not a scan of the columns so far: a header of 100,000 columns loads at once.
    let mut seen: HashSet<String> = HashSet::new();
    for (index, name) in header.cells.iter().enumerate() {
        let field = Field::of(name);
        if name.is_empty() {
            report.line(
                header.line,
                format_args!("column {} of the header has no name", index + 1),
            );
        } else if !seen.insert(name.to_ascii_lowercase()) {
            report.line(
                header.line,
                format_args!("column {} appears twice in the header", shown(name)),
            );
        } else if field == Field::Prop && env::OWN.contains(&env::exported_name(name).as_str()) {
            report.line(
                header.line,
                format_args!(
                    "column {name}: would be exported by `pick --format shell` as {}, one of \
                     llm-rotate's own variables, and re-point later calls; rename the column",
                    env::exported_name(name)
                ),
            );
        }
        columns.push(Column {
            name: name.clone(),
            field,
        });
    }
    for (field, name) in [(Field::Provider, "provider"), (Field::Model, "model")] {
        if !columns.iter().any(|c| c.field == field) {
            report.line(
                header.line,
                format_args!("the header has no {name} column; provider and model are required"),
            );
        }
    }
    (report.problems.len() == before).then_some(columns)
}

/// The row's endpoint; each bad cell is reported and leaves its field at the default.
fn read_row(columns: &[Column], row: &Row, report: &mut Report) -> (Endpoint, PoolCells) {
    let mut pool = PoolCells::default();
    let mut endpoint = Endpoint {
        id: String::new(),
        provider: String::new(),
        model: String::new(),
        limits: Limits::default(),
        priority: 2,
        weight: 1,
        concurrency: None,
        pace: Pace::Burst,
        day_reset: DayReset::Rolling,
        headers: None,
        key: None,
        prices: Prices::default(),
        cache_reads: CacheReads::Counted,
        props: Vec::new(),
        line: row.line,
        pool: None,
    };
    for (index, column) in columns.iter().enumerate() {
        // A short row ends with empty cells.
        let value = row.cells.get(index).map_or("", String::as_str);
        if value.len() > LONGEST_CELL {
            // Said without the value: it may be the key, and it is long.
            let reason = format!(
                "is {} bytes, more than a cell may hold (64 KiB)",
                value.len()
            );
            report.line(row.line, format_args!("column {}: {reason}", column.name));
            continue;
        }
        let read = match column.field {
            Field::Pool if value.is_empty() => Ok(()),
            Field::Pool => name(value).map(|name| pool.name = Some(name)),
            Field::PoolLimit(limit) => optional(value, |v| limit_value(limit, v)).map(|n| {
                if let Some(n) = n {
                    let cell = (limit, n, value.to_owned(), column.name.clone());
                    pool.limits.push(cell);
                }
            }),
            _ => read_cell(&mut endpoint, column, value),
        };
        if let Err(reason) = read {
            report.cell(row.line, &column.name, value, &reason);
        }
    }
    if endpoint.id.is_empty() && !endpoint.provider.is_empty() && !endpoint.model.is_empty() {
        endpoint.id = format!("{}/{}", endpoint.provider, endpoint.model);
    }
    if endpoint.id.len() > LONGEST_ID {
        let reason = format!(
            "is {} bytes, more than an id may be (1 KiB); give the row a shorter id",
            endpoint.id.len()
        );
        report.line(row.line, format_args!("id: {reason}"));
    }
    (endpoint, pool)
}

fn read_cell(endpoint: &mut Endpoint, column: &Column, value: &str) -> Result<(), String> {
    let lower = value.to_ascii_lowercase();
    match column.field {
        Field::Provider => endpoint.provider = name(value)?,
        Field::Model => endpoint.model = name(value)?,
        Field::Id if value.is_empty() => {}
        Field::Id => endpoint.id = name(value)?,
        Field::Limit(limit) => {
            let cap = optional(value, |v| limit_value(limit, v))?;
            endpoint.limits.set(limit, cap);
        }
        Field::CacheReads => {
            endpoint.cache_reads = match lower.as_str() {
                "" | "counted" => CacheReads::Counted,
                "free" => CacheReads::Free,
                _ => return Err("is not free or counted".to_owned()),
            }
        }
        Field::Priority => endpoint.priority = priority(&lower)?,
        Field::Weight if value.is_empty() => {}
        Field::Weight => endpoint.weight = weight(value)?,
        Field::Concurrency => endpoint.concurrency = optional(value, concurrency)?,
        Field::Pace => {
            endpoint.pace = match lower.as_str() {
                "" | "burst" => Pace::Burst,
                "smooth" => Pace::Smooth,
                _ => return Err("is not smooth or burst".to_owned()),
            }
        }
        Field::DayReset => endpoint.day_reset = day_reset(&lower, value)?,
        Field::Headers => endpoint.headers = Some(lower).filter(|h| !h.is_empty()),
        // Never fails, so the secret can never reach a message.
        Field::Key => endpoint.key = Some(value.to_owned()).filter(|k| !k.is_empty()),
        Field::Price(_) if value.is_empty() => {}
        Field::Price(kind) => {
            let prices = &mut endpoint.prices;
            match kind {
                Price::Input => prices.input = Money::parse_per_million(value)?,
                Price::Output => prices.output = Money::parse_per_million(value)?,
                Price::Cached => prices.cached = Some(Money::parse_per_million(value)?),
                Price::Call => prices.call = Money::parse_dollars(value)?,
            }
        }
        Field::Prop => endpoint.props.push((column.name.clone(), value.to_owned())),
        // Read by `read_row`, for `resolve_pools`.
        Field::Pool | Field::PoolLimit(_) => {}
    }
    Ok(())
}

/// Provider, model and id are printed one per line by `pick` and in tables, and end up in
/// XML and in metrics, so they must stay one line of plain text: no control characters, no
/// bidirectional overrides (which would show another id than the one in the file), no
/// non-characters (which XML refuses).
fn name(value: &str) -> Result<String, String> {
    let overrides = |c: char| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    let non_character =
        |c: char| matches!(c, '\u{fdd0}'..='\u{fdef}') || (c as u32) & 0xfffe == 0xfffe;
    if value.is_empty() {
        Err("is empty".to_owned())
    } else if value.contains(char::is_control) {
        Err("contains a control character".to_owned())
    } else if value.contains(overrides) {
        Err("contains a bidirectional override".to_owned())
    } else if value.contains(non_character) {
        Err("contains a Unicode non-character".to_owned())
    } else {
        Ok(value.to_owned())
    }
}

/// The most a cell may hold, and an id (SPEC 15): enough for any real value, and a bound
/// on what one hostile row can cost.
const LONGEST_CELL: usize = 64 * 1024;
const LONGEST_ID: usize = 1024;

/// A limit's cell: a count (`90k`), or dollars for a budget (`5`, `0.25`), kept in
/// pico-dollars.
fn limit_value(limit: Limit, value: &str) -> Result<u64, String> {
    match limit.is_money() {
        true => Money::parse_dollars(value).map(|money| money.0),
        false => parse_count(value),
    }
}

fn optional<T>(
    value: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    if value.is_empty() {
        Ok(None)
    } else {
        parse(value).map(Some)
    }
}

fn priority(lower: &str) -> Result<i64, String> {
    match lower {
        "high" => Ok(3),
        "" | "medium" => Ok(2),
        "low" => Ok(1),
        _ => {
            let n = parse_count(lower).map_err(|reason| match reason.as_str() {
                "is not a whole number" => "is not high, medium, low or a whole number".to_owned(),
                _ => reason,
            })?;
            i64::try_from(n).map_err(|_| "is too large".to_owned())
        }
    }
}

fn weight(value: &str) -> Result<u32, String> {
    match parse_count(value)? {
        0 => Err("must be at least 1".to_owned()),
        n => u32::try_from(n).map_err(|_| format!("is too large (the most is {})", u32::MAX)),
    }
}

fn concurrency(value: &str) -> Result<u64, String> {
    match parse_count(value)? {
        0 => Err("must be at least 1 (leave it empty for no limit)".to_owned()),
        n => Ok(n),
    }
}

fn day_reset(lower: &str, value: &str) -> Result<DayReset, String> {
    if matches!(lower, "" | "rolling") {
        return Ok(DayReset::Rolling);
    }
    let shape = || "is not rolling or HH:MM Area/City (like 00:00 America/Los_Angeles)".to_owned();
    let two_digits = |s: &str| {
        (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    let mut parts = value.split_whitespace();
    let (Some(time), Some(zone), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(shape());
    };
    let (hour, minute) = time.split_once(':').ok_or_else(shape)?;
    let (Some(hour), Some(minute)) = (two_digits(hour), two_digits(minute)) else {
        return Err(shape());
    };
    if hour > 23 {
        return Err("has an hour above 23".to_owned());
    }
    if minute > 59 {
        return Err("has minutes above 59".to_owned());
    }
    let zone = time_zone(zone).ok_or_else(|| {
        "has an unknown time zone (use an IANA name like America/Los_Angeles)".to_owned()
    })?;
    Ok(DayReset::At(DayAnchor {
        minute_of_day: hour * 60 + minute,
        zone,
    }))
}

/// An IANA zone name; like the file's other words, in any case (`america/los_angeles`). The
/// zone keeps its canonical spelling (`America/Los_Angeles`) and comes from the database bundled
/// into the binary, never from the system's. jiff's `Etc/Unknown` stands for no zone and has
/// no IANA name, so it is not one.
fn time_zone(name: &str) -> Option<TimeZone> {
    TimeZoneDatabase::bundled()
        .get(name)
        .ok()
        .filter(|zone| zone.iana_name().is_some())
}
