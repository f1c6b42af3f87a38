//! The `state` table, for people: a column per limited window, the pool, what is open, and
//! what blocks each endpoint and when that frees.

use comfy_table::{Cell, Color, ColumnConstraint, ContentArrangement, Table, presets};

use super::Row;
use crate::clock::Millis;
use crate::engine::admit::{Block, PoolStanding, Verdict};
use crate::output;
use crate::quota::{Limit, Limits, Used};

fn status(row: &Row, now: Millis) -> (String, Color) {
    match row.standing.verdict {
        // Ready for a request without tokens, but a full token window refuses any other.
        Verdict::Fits { probe: false } => match full_token_window(row) {
            Some(name) => (format!("ready, but {name} is full"), Color::Yellow),
            None => ("ready".into(), Color::Green),
        },
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Column {
    Endpoint,
    Priority,
    Window(Limit),
    /// Every window in one: the fullest limited one.
    Fullest,
    Pool,
    Open,
    Status,
}

impl Column {
    fn title(self) -> &'static str {
        match self {
            Column::Endpoint => "endpoint",
            Column::Priority => "priority",
            Column::Window(limit) => limit.name(),
            Column::Fullest => "fullest",
            Column::Pool => "pool",
            Column::Open => "open",
            Column::Status => "status",
        }
    }

    /// Numbers never wrap; names and sentences may.
    fn wraps(self) -> bool {
        matches!(self, Column::Endpoint | Column::Pool | Column::Status)
    }

    fn cell(self, row: &Row, now: Millis, colour: bool) -> Cell {
        let st = &row.standing;
        match self {
            Column::Endpoint => Cell::new(&row.endpoint.id),
            Column::Priority => Cell::new(row.endpoint.priority),
            Column::Window(limit) => {
                let used = amount(limit, st.used.get(limit));
                Cell::new(match st.limits.get(limit) {
                    Some(cap) => format!("{used}/{}", amount(limit, cap)),
                    None => used,
                })
            }
            Column::Fullest => Cell::new(
                fullest(&st.limits, &st.used)
                    .map(|(limit, cap)| {
                        let used = amount(limit, st.used.get(limit));
                        format!("{} {used}/{}", limit.name(), amount(limit, cap))
                    })
                    .unwrap_or_default(),
            ),
            Column::Pool => Cell::new(st.pool.as_ref().map_or_else(String::new, pool_cell)),
            Column::Open => Cell::new(row.open_reservations),
            Column::Status => {
                let (status, hue) = status(row, now);
                let cell = Cell::new(status);
                if colour { cell.fg(hue) } else { cell }
            }
        }
    }
}

/// The table, fitted to the terminal's width (`$COLUMNS`, else the terminal's, else 80
/// columns). When it is too wide, the columns people need least go first (priority, which
/// the row order already shows; then open reservations), then the windows fold into one
/// column with the fullest of them, then long ids, pools and statuses wrap within their
/// cells; numbers never wrap.
pub fn table(rows: &[Row], now: Millis, colour: bool) -> String {
    let width = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<u16>().ok())
        .or_else(|| Table::new().width())
        .unwrap_or(80);
    let mut columns = vec![Column::Endpoint, Column::Priority];
    // Only windows that some shown endpoint limits get a column.
    columns.extend(
        Limit::ALL
            .into_iter()
            .filter(|&l| rows.iter().any(|r| r.standing.limits.get(l).is_some()))
            .map(Column::Window),
    );
    if rows.iter().any(|r| r.standing.pool.is_some()) {
        columns.push(Column::Pool);
    }
    columns.extend([Column::Open, Column::Status]);

    let mut table = build(rows, &columns, now, colour);
    for dropped in [Column::Priority, Column::Open, Column::Fullest] {
        if widest_line(&table) <= usize::from(width) {
            break;
        }
        if dropped == Column::Fullest {
            // The window columns fold into one that shows the fullest of them.
            let first = columns.iter().position(|c| matches!(c, Column::Window(_)));
            columns.retain(|c| !matches!(c, Column::Window(_)));
            if let Some(at) = first {
                columns.insert(at, Column::Fullest);
            }
        } else {
            columns.retain(|&c| c != dropped);
        }
        table = build(rows, &columns, now, colour);
    }
    if widest_line(&table) > usize::from(width) {
        table
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_width(width);
        for (column, kind) in table.column_iter_mut().zip(&columns) {
            if !kind.wraps() {
                column.set_constraint(ColumnConstraint::ContentWidth);
            }
        }
    }
    format!("{table}\n")
}

fn build(rows: &[Row], columns: &[Column], now: Millis, colour: bool) -> Table {
    let mut table = Table::new();
    table.load_style(presets::UTF8_FULL_CONDENSED);
    if colour {
        table.enforce_styling();
    } else {
        table.force_no_tty();
    }
    table.set_header(columns.iter().map(|c| c.title()));
    for row in rows {
        table.add_row(columns.iter().map(|c| c.cell(row, now, colour)));
    }
    table
}

/// The width of the table as drawn, without colour codes.
fn widest_line(table: &Table) -> usize {
    table
        .lines()
        .map(|line| strip_escapes(&line).chars().count())
        .max()
        .unwrap_or(0)
}

fn strip_escapes(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequences end with a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// The first token window, the row's or its pool's, with nothing left.
fn full_token_window(row: &Row) -> Option<&'static str> {
    let st = &row.standing;
    let full = |limits: &crate::quota::Limits, used: &crate::quota::Used, l: Limit| {
        limits.get(l).is_some_and(|cap| used.get(l) >= cap)
    };
    Limit::ALL
        .into_iter()
        .filter(|l| l.unit == crate::quota::Unit::Tokens)
        .find_map(|l| {
            if full(&st.limits, &st.used, l) {
                Some(l.name())
            } else if st
                .pool
                .as_ref()
                .is_some_and(|p| full(&p.limits, &p.used, l))
            {
                Some(l.pool_name())
            } else {
                None
            }
        })
}

/// The limited window with the largest share used, and its limit.
fn fullest(limits: &Limits, used: &Used) -> Option<(Limit, u64)> {
    Limit::ALL
        .into_iter()
        .filter_map(|l| limits.get(l).map(|cap| (l, cap)))
        .max_by(|a, b| {
            let share = |(l, cap): (Limit, u64)| used.get(l) as f64 / cap.max(1) as f64;
            share(*a).total_cmp(&share(*b))
        })
}

/// A pool for people: its name and its fullest limited window, `free 12/50 rpd`.
fn pool_cell(pool: &PoolStanding) -> String {
    match fullest(&pool.limits, &pool.used) {
        Some((limit, cap)) => format!(
            "{} {}/{} {}",
            pool.name,
            amount(limit, pool.used.get(limit)),
            amount(limit, cap),
            limit.name()
        ),
        None => pool.name.clone(),
    }
}

/// A count as `output::count` writes it (`12k`), or money in dollars (`$0.25`).
fn amount(limit: Limit, n: u64) -> String {
    match limit.is_money() {
        true => format!("${}", crate::money::Money(n)),
        false => output::count(n),
    }
}
