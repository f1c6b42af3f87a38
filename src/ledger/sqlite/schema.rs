//! The SQLite ledger's schema: an append-only list of steps counted by `PRAGMA
//! user_version`, applied under the write lock so that processes meeting on a new file
//! migrate it once, and an `application_id` that keeps other programs' databases out.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use rusqlite::{Connection, TransactionBehavior};

/// Marks the file as ours (`PRAGMA application_id`), so another program's database is
/// never migrated into an llm-rotate ledger.
pub const APPLICATION_ID: i32 = 0x4c4c_4d52; // "LLMR"

/// Schema steps, applied in order; `PRAGMA user_version` counts those applied. Append only:
/// never edit or reorder a step once released.
pub const MIGRATIONS: &[&str] = &[
    // 1: the ledger.
    "CREATE TABLE usage (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        endpoint TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        requests INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        lease TEXT UNIQUE,
        open INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX usage_recent ON usage (endpoint, at_ms, requests, tokens);
    CREATE INDEX usage_age ON usage (at_ms);
    CREATE INDEX usage_open ON usage (endpoint, at_ms) WHERE open = 1;
    CREATE TABLE minute_totals (
        endpoint TEXT NOT NULL,
        minute INTEGER NOT NULL,
        requests INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        cum_requests INTEGER NOT NULL,
        cum_tokens INTEGER NOT NULL,
        PRIMARY KEY (endpoint, minute)
    ) WITHOUT ROWID;
    CREATE INDEX minute_totals_age ON minute_totals (minute);",
    // 2: how endpoints answered: cooldowns after 429s and failures, what the provider's
    // headers reported, and whose turn it is for round-robin.
    "CREATE TABLE cooldowns (
        endpoint TEXT PRIMARY KEY,
        until_ms INTEGER NOT NULL,
        reason TEXT NOT NULL,
        strikes INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        probe_at INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE reports (
        endpoint TEXT NOT NULL,
        limit_name TEXT NOT NULL,
        reported_at INTEGER NOT NULL,
        remaining INTEGER NOT NULL,
        cap INTEGER,
        resets_at INTEGER NOT NULL,
        base_requests INTEGER NOT NULL,
        base_tokens INTEGER NOT NULL,
        PRIMARY KEY (endpoint, limit_name)
    ) WITHOUT ROWID;
    CREATE TABLE turns (
        scope TEXT PRIMARY KEY,
        last TEXT NOT NULL
    ) WITHOUT ROWID;",
    // 3: counters since first use (pruning never lowers them) and the hourly history,
    // started from what the ledger already holds. `pending` sums the estimates of open
    // reservations, so that those that expired unsettled count without a scan.
    "CREATE TABLE counters (
        endpoint TEXT PRIMARY KEY,
        requests INTEGER NOT NULL DEFAULT 0,
        tokens INTEGER NOT NULL DEFAULT 0,
        rate_limited INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        pending INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE TABLE hourly (
        endpoint TEXT NOT NULL,
        hour INTEGER NOT NULL,
        requests INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        PRIMARY KEY (endpoint, hour)
    ) WITHOUT ROWID;
    CREATE INDEX hourly_age ON hourly (hour);
    INSERT INTO counters (endpoint, requests, tokens, pending)
        SELECT endpoint, sum(requests), sum(CASE WHEN open = 0 THEN tokens ELSE 0 END),
            sum(CASE WHEN open = 1 THEN tokens ELSE 0 END)
        FROM usage GROUP BY endpoint;
    INSERT INTO hourly (endpoint, hour, requests, tokens)
        SELECT endpoint, at_ms / 3600000, sum(requests), sum(tokens)
        FROM usage GROUP BY 1, 2;",
];

/// True when the file holds the current schema and nothing needs doing.
pub fn is_current(conn: &Connection) -> rusqlite::Result<bool> {
    Ok(header(conn)? == (MIGRATIONS.len() as i64, APPLICATION_ID))
}

pub fn header(conn: &Connection) -> rusqlite::Result<(i64, i32)> {
    conn.query_row(
        "SELECT user_version, application_id FROM pragma_user_version, pragma_application_id",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// Brings the schema up to date under the write lock; true when this process created the
/// ledger.
pub fn migrate(conn: &mut Connection) -> Result<bool> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (version, app) = header(&tx)?;
    let tables: i64 = tx.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
    let latest = MIGRATIONS.len() as i64;
    if app != APPLICATION_ID && (app != 0 || tables > 0) {
        bail!("it is an SQLite database of another program; point --db at another file");
    }
    if version > latest {
        bail!(
            "it was written by a newer llm-rotate (schema {version}, this one knows \
             {latest}); upgrade llm-rotate or use another --db"
        );
    }
    for step in MIGRATIONS.iter().skip(version.max(0) as usize) {
        tx.execute_batch(step)?;
    }
    tx.pragma_update(None, "user_version", latest)?;
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.commit()?;
    Ok(version == 0)
}

/// Switches a new ledger to write-ahead logging (a setting kept in the file). SQLite needs
/// the file to itself for that and does not wait for it, so keep trying for a while; a
/// ledger left in rollback mode is just as correct, only slower.
pub fn enter_wal(conn: &Connection, patience: Duration) {
    let deadline = Instant::now() + patience;
    loop {
        let mode: rusqlite::Result<String> =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0));
        match mode {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => return,
        }
    }
}
