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
    // 4: notes said once per ledger (an endpoint whose provider has no known headers
    // dialect), so that a fan-out of calls does not repeat them.
    "CREATE TABLE said (note TEXT PRIMARY KEY) WITHOUT ROWID;",
    // 5: what a call costs. Every table of usage keeps its `tokens` as input tokens (what
    // the calls of earlier versions count as) and adds cached and output tokens and cost
    // (pico-dollars), 0 for what was written before; the calendar months, totalled by the
    // start of the month a call's row counts it in, begun from the history in UTC months
    // (a row in another zone counts a little more than its month for its first month); and
    // the latency of successful calls.
    "ALTER TABLE usage ADD COLUMN cached INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage ADD COLUMN output INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage ADD COLUMN cost INTEGER NOT NULL DEFAULT 0;
    DROP INDEX usage_recent;
    CREATE INDEX usage_window ON usage (endpoint, at_ms, requests, tokens, cached, output, cost);
    ALTER TABLE minute_totals ADD COLUMN cached INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE minute_totals ADD COLUMN output INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE minute_totals ADD COLUMN cost INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE minute_totals ADD COLUMN cum_cached INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE minute_totals ADD COLUMN cum_output INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE minute_totals ADD COLUMN cum_cost INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE counters ADD COLUMN cached INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE counters ADD COLUMN output INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE counters ADD COLUMN cost INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE counters ADD COLUMN pending_cached INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE counters ADD COLUMN pending_output INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE counters ADD COLUMN pending_cost INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE hourly ADD COLUMN cached INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE hourly ADD COLUMN output INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE hourly ADD COLUMN cost INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE reports ADD COLUMN base_cached INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE reports ADD COLUMN base_output INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE reports ADD COLUMN base_cost INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE months (
        endpoint TEXT NOT NULL,
        start_ms INTEGER NOT NULL,
        requests INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        cached INTEGER NOT NULL,
        output INTEGER NOT NULL,
        cost INTEGER NOT NULL,
        PRIMARY KEY (endpoint, start_ms)
    ) WITHOUT ROWID;
    CREATE TABLE latencies (
        endpoint TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        ms INTEGER NOT NULL
    );
    CREATE INDEX latencies_recent ON latencies (endpoint, at_ms, ms);
    CREATE INDEX latencies_age ON latencies (at_ms);
    INSERT INTO months (endpoint, start_ms, requests, tokens, cached, output, cost)
        SELECT endpoint,
            CAST(strftime('%s', hour * 3600, 'unixepoch', 'start of month') AS INTEGER) * 1000,
            sum(requests), sum(tokens), 0, 0, 0
        FROM hourly GROUP BY 1, 2;",
    // 6: per-second totals with running sums, so that the minute window is two probes and
    // the calls of one second, not every call of the minute (at 1,000 calls a second, a
    // scan of 60,000). Begun from the calls kept.
    "CREATE TABLE second_totals (
        endpoint TEXT NOT NULL,
        second INTEGER NOT NULL,
        requests INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        cached INTEGER NOT NULL,
        output INTEGER NOT NULL,
        cost INTEGER NOT NULL,
        cum_requests INTEGER NOT NULL,
        cum_tokens INTEGER NOT NULL,
        cum_cached INTEGER NOT NULL,
        cum_output INTEGER NOT NULL,
        cum_cost INTEGER NOT NULL,
        PRIMARY KEY (endpoint, second)
    ) WITHOUT ROWID;
    INSERT INTO second_totals
        SELECT endpoint, second, requests, tokens, cached, output, cost,
            sum(requests) OVER running, sum(tokens) OVER running, sum(cached) OVER running,
            sum(output) OVER running, sum(cost) OVER running
        FROM (SELECT endpoint, at_ms / 1000 AS second, sum(requests) AS requests,
                  sum(tokens) AS tokens, sum(cached) AS cached, sum(output) AS output,
                  sum(cost) AS cost
              FROM usage GROUP BY 1, 2)
        WINDOW running AS (PARTITION BY endpoint ORDER BY second);",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::account;
    use crate::ledger::{Ledger, sqlite::SqliteLedger};

    const T0: i64 = 1_767_225_600_000;

    fn tables(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_schema ORDER BY name")
            .expect("schema");
        stmt.query_map([], |r| r.get(0))
            .expect("names")
            .collect::<rusqlite::Result<_>>()
            .expect("names")
    }

    #[test]
    fn migrating_twice_changes_nothing_the_second_time() {
        let mut conn = Connection::open_in_memory().expect("memory");
        assert!(migrate(&mut conn).expect("first"), "a new ledger");
        let first = tables(&conn);
        assert!(is_current(&conn).expect("header"));
        assert!(
            !migrate(&mut conn).expect("second"),
            "not new the second time"
        );
        assert_eq!(tables(&conn), first);
        assert_eq!(
            header(&conn).expect("header"),
            (MIGRATIONS.len() as i64, APPLICATION_ID)
        );
    }

    #[test]
    fn a_version_2_ledger_with_rows_upgrades_in_place() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("usage.sqlite3");
        {
            let conn = Connection::open(&path).expect("create");
            for step in &MIGRATIONS[..2] {
                conn.execute_batch(step).expect("an old step");
            }
            conn.pragma_update(None, "user_version", 2)
                .expect("version");
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .expect("id");
            // Two settled calls an hour apart and one reservation still open, with their
            // minute buckets, as version 2 wrote them.
            conn.execute_batch(&format!(
                "INSERT INTO usage (endpoint, at_ms, requests, tokens, lease, open) VALUES
                     ('p/m', {T0}, 1, 100, NULL, 0),
                     ('p/m', {t1}, 1, 50, 'aaaaaaaaaaaaaaaa', 0),
                     ('p/m', {t1}, 1, 70, 'bbbbbbbbbbbbbbbb', 1);
                 INSERT INTO minute_totals VALUES
                     ('p/m', {m0}, 1, 100, 1, 100),
                     ('p/m', {m1}, 2, 120, 3, 220);",
                t1 = T0 + 3_600_000,
                m0 = T0 / 60_000,
                m1 = (T0 + 3_600_000) / 60_000,
            ))
            .expect("old rows");
        }
        let mut sqlite = SqliteLedger::open(&path).expect("upgrade");
        let now = T0 + 3_600_000 + 1;
        let ledger: &mut dyn Ledger = &mut sqlite;
        let (open, expired, history) = ledger
            .read(|book, _| {
                let open = account::account(book, "p/m", now)?;
                let totals = account::totals(book, &["p/m"], now)?[0];
                let expired = account::totals(book, &["p/m"], now + 20 * 60_000)?[0];
                Ok(((open, totals), expired, book.history("p/m", 0)?))
            })
            .expect("read");
        let (open, totals) = open;
        assert_eq!((totals.usage.requests, totals.usage.tokens()), (3, 150));
        assert_eq!(open.open, 1);
        assert_eq!(open.used.get(crate::quota::Limit::ALL[4]), 3, "rpd");
        // The minute window reads the second buckets step 6 began from the calls kept.
        assert_eq!(open.used.get(crate::quota::Limit::ALL[0]), 2, "rpm");
        assert_eq!(open.used.get(crate::quota::Limit::ALL[1]), 120, "tpm");
        assert_eq!(expired.usage.tokens(), 220, "an expired estimate counts");
        let hours: Vec<(i64, u64, u64)> = history
            .iter()
            .map(|h| (h.hour - T0 / 3_600_000, h.usage.requests, h.usage.input))
            .collect();
        assert_eq!(hours, [(0, 1, 100), (1, 2, 120)]);
        // Opening it again migrates nothing more.
        drop(sqlite);
        let again = SqliteLedger::open(&path).expect("reopen");
        assert!(is_current(again.connection()).expect("header"));
    }

    #[test]
    fn a_version_4_ledger_reads_on_its_tokens_as_input_and_its_month_from_the_history() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("usage.sqlite3");
        let t1 = T0 + 3_600_000;
        {
            let mut conn = Connection::open(&path).expect("create");
            let tx = conn.transaction().expect("tx");
            for step in &MIGRATIONS[..4] {
                tx.execute_batch(step).expect("an old step");
            }
            tx.commit().expect("commit");
            conn.pragma_update(None, "user_version", 4)
                .expect("version");
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .expect("id");
            // What version 4 wrote of one settled call of 120 tokens an hour after T0.
            conn.execute_batch(&format!(
                "INSERT INTO usage (endpoint, at_ms, requests, tokens, lease, open) VALUES
                     ('p/m', {t1}, 1, 120, 'aaaaaaaaaaaaaaaa', 0);
                 INSERT INTO minute_totals VALUES ('p/m', {m1}, 1, 120, 1, 120);
                 INSERT INTO counters (endpoint, requests, tokens) VALUES ('p/m', 1, 120);
                 INSERT INTO hourly VALUES ('p/m', {h1}, 1, 120);",
                m1 = t1 / 60_000,
                h1 = t1 / 3_600_000,
            ))
            .expect("old rows");
        }
        let mut sqlite = SqliteLedger::open(&path).expect("upgrade");
        let ledger: &mut dyn Ledger = &mut sqlite;
        let now = t1 + 1;
        let (account, totals, history) = ledger
            .read(|book, _| {
                Ok((
                    account::account(book, "p/m", now)?,
                    account::totals(book, &["p/m"], now)?[0],
                    book.history("p/m", 0)?,
                ))
            })
            .expect("read");
        let input = crate::quota::Request {
            requests: 1,
            input: 120,
            ..crate::quota::Request::default()
        };
        assert_eq!(account.windows, [input; 4], "minute, hour, day and month");
        let itpm = crate::quota::Limit::from_name("itpm").expect("itpm");
        let rpmo = crate::quota::Limit::from_name("rpmo").expect("rpmo");
        assert_eq!((account.used.get(itpm), account.used.get(rpmo)), (120, 1));
        assert_eq!(totals.usage, input);
        assert_eq!(history[0].usage, input);
        assert!(is_current(sqlite.connection()).expect("header"));
    }
}
