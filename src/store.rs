//! The usage ledger: one SQLite file shared by every process. Opening creates and migrates
//! it; all reads and writes go through a transaction, and every write transaction takes the
//! lock up front so that checking and reserving is one atomic step across processes.
//!
//! Two tables hold usage. `usage` has a row per pick or record: it gives the exact minute
//! window and holds reservations. `minute_totals` sums usage per endpoint and calendar
//! minute, with running totals, so the hour and day windows cost two index look-ups each
//! however long the history is.

use std::fs::{DirBuilder, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::cooldown::Cooldown;
use crate::quota::{
    self, LONGEST_WINDOW_MS, Limit, MINUTE_MS, Millis, Request, Unit, Used, Window,
};

/// How long a reservation stays open for `record ID` to settle it.
pub const RESERVATION_OPEN_MS: Millis = 15 * MINUTE_MS;

/// How long usage is kept: the longest window, and an hour more for a calendar day that a
/// daylight-saving change makes 25 hours long.
const RETENTION_MS: Millis = LONGEST_WINDOW_MS + 60 * MINUTE_MS;

/// How much expired usage waits before it is pruned in one go.
const PRUNE_BATCH_MS: Millis = 60 * MINUTE_MS;

/// How long a process waits for another one's lock before it gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Marks the file as ours (`PRAGMA application_id`), so another program's database is
/// never migrated into an llm-rotate ledger.
const APPLICATION_ID: i32 = 0x4c4c_4d52; // "LLMR"

/// Schema steps, applied in order; `PRAGMA user_version` counts those applied. Append only:
/// never edit or reorder a step once released.
const MIGRATIONS: &[&str] = &[
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
];

/// Where the ledger lives when neither `--db` nor `LLM_ROTATE_DB` says.
pub fn default_path() -> Result<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "llm-rotate")
        .context("cannot find the user cache directory (is HOME set?); pass --db FILE")?;
    Ok(dirs.cache_dir().join("usage.sqlite3"))
}

pub struct Ledger {
    conn: Connection,
    path: PathBuf,
}

/// A reservation or recorded call in the ledger.
#[derive(Debug)]
pub struct Entry {
    id: i64,
    pub endpoint: String,
    pub at: Millis,
    pub requests: u64,
    pub tokens: u64,
    pub open: bool,
}

impl Ledger {
    /// Opens the ledger at `path`, creating it (and its folders) on first use, readable by
    /// the user alone. A file that is not a usable ledger is an error, never replaced.
    pub fn open(path: &Path) -> Result<Ledger> {
        create_private(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| explain(e.into(), path))?;
        let mut ledger = Ledger {
            conn,
            path: path.to_owned(),
        };
        ledger.prepare().map_err(|e| explain(e, path))?;
        Ok(ledger)
    }

    fn prepare(&mut self) -> Result<()> {
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL commits reach the OS before a command returns, so they survive the crash of
        // any process; NORMAL skips the per-commit fsync that only a power cut would need,
        // and never risks corruption. The last process out folds the log back into the
        // file (SQLite's checkpoint on close), so the next one starts from a clean file
        // instead of replaying a long log.
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let (version, app) = header(&self.conn)?;
        if version == MIGRATIONS.len() as i64 && app == APPLICATION_ID {
            return Ok(());
        }
        if self.migrate()? {
            self.enter_wal();
        }
        Ok(())
    }

    /// Brings the schema up to date under the write lock, so that processes meeting on a
    /// new file migrate it once; true when this process created the ledger.
    fn migrate(&mut self) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
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

    /// Switches a new ledger to write-ahead logging (a setting kept in the file). SQLite
    /// needs the file to itself for that and does not wait for it, so keep trying for a
    /// while; a ledger left in rollback mode is just as correct, only slower.
    fn enter_wal(&self) {
        let deadline = Instant::now() + BUSY_TIMEOUT;
        loop {
            let mode: rusqlite::Result<String> =
                self.conn
                    .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0));
            match mode {
                Ok(mode) if mode.eq_ignore_ascii_case("wal") => return,
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                _ => return,
            }
        }
    }

    /// Runs `f` under the write lock, taken before the first read: what `f` sees cannot
    /// change before it commits.
    pub fn write<T>(&mut self, f: impl FnOnce(&Tx) -> Result<T>) -> Result<T> {
        self.run(TransactionBehavior::Immediate, f)
    }

    /// Runs `f` on one consistent snapshot of the ledger.
    pub fn read<T>(&mut self, f: impl FnOnce(&Tx) -> Result<T>) -> Result<T> {
        self.run(TransactionBehavior::Deferred, f)
    }

    fn run<T>(
        &mut self,
        behavior: TransactionBehavior,
        f: impl FnOnce(&Tx) -> Result<T>,
    ) -> Result<T> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(behavior)
            .map_err(|e| explain(e.into(), &path))?;
        let tx = Tx(tx);
        let value = f(&tx).map_err(|e| explain(e, &path))?;
        tx.0.commit().map_err(|e| explain(e.into(), &path))?;
        Ok(value)
    }
}

fn header(conn: &Connection) -> rusqlite::Result<(i64, i32)> {
    conn.query_row(
        "SELECT user_version, application_id FROM pragma_user_version, pragma_application_id",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// Creates the folders (0700) and an empty file (0600) so that SQLite, and its -wal and
/// -shm companions, which copy the file's mode, are private from the start.
fn create_private(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| {
                format!(
                    "cannot create the folder {} for the database",
                    dir.display()
                )
            })?;
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create the database {}", path.display())),
    }
}

/// Names the database and says what to do about the SQLite errors a user can meet; other
/// errors (the caller's own) pass through unchanged.
fn explain(err: anyhow::Error, path: &Path) -> anyhow::Error {
    let Some(sqlite) = err.downcast_ref::<rusqlite::Error>() else {
        return err.context(format!("database {}", path.display()));
    };
    let hint = match sqlite.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            "; llm-rotate leaves the file as it is: move it aside (or point --db elsewhere) to \
             start a new ledger"
        }
        Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
            "; make the file and its folder writable, or point --db elsewhere"
        }
        Some(ErrorCode::DiskFull) => "; the disk is full, and nothing was changed",
        // A write-ahead log that cannot grow on a full disk surfaces as an I/O error.
        Some(ErrorCode::SystemIoFailure) => {
            "; it could not be written (is the disk full?), and nothing was changed"
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "; another process held its lock too long, try again"
        }
        _ => "",
    };
    anyhow::anyhow!("database {}: {sqlite}{hint}", path.display())
}

/// An open transaction on the ledger, with the ledger's operations.
pub struct Tx<'c>(rusqlite::Transaction<'c>);

impl Tx<'_> {
    /// What `endpoint` has used in each window at `now`. `day_start`, for an endpoint whose
    /// day is a calendar day, is when that day began; else the day window is rolling.
    pub fn used(&self, endpoint: &str, now: Millis, day_start: Option<Millis>) -> Result<Used> {
        let mut used = Used::default();
        let (requests, tokens): (i64, i64) = self
            .0
            .prepare_cached(
                "SELECT coalesce(sum(requests), 0), coalesce(sum(tokens), 0) FROM usage
                 WHERE endpoint = ?1 AND at_ms > ?2 AND at_ms <= ?3",
            )?
            .query_row(
                params![endpoint, quota::counted_after(Window::Minute, now), now],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
        used.set(Limit::new(Unit::Requests, Window::Minute), clamp(requests));
        used.set(Limit::new(Unit::Tokens, Window::Minute), clamp(tokens));

        let now_minute = quota::minute_of(now);
        let Some(latest) = self.latest_total(endpoint, now_minute)? else {
            return Ok(used);
        };
        for window in [Window::Hour, Window::Day] {
            let first = match day_start {
                Some(start) if window == Window::Day => quota::minute_of(start),
                _ => quota::first_counted_minute(window, now),
            };
            if let Some(base) = self.total_before(endpoint, first, now_minute)? {
                used.set(Limit::new(Unit::Requests, window), clamp(latest.0 - base.0));
                used.set(Limit::new(Unit::Tokens, window), clamp(latest.1 - base.1));
            }
        }
        Ok(used)
    }

    /// Running totals at the last minute bucket at or before `minute`.
    fn latest_total(&self, endpoint: &str, minute: i64) -> Result<Option<(i64, i64)>> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT cum_requests, cum_tokens FROM minute_totals
                 WHERE endpoint = ?1 AND minute <= ?2 ORDER BY minute DESC LIMIT 1",
            )?
            .query_row(params![endpoint, minute], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// Running totals just before the first bucket in `[first, last]`; `None` when there is
    /// no bucket in that range.
    fn total_before(&self, endpoint: &str, first: i64, last: i64) -> Result<Option<(i64, i64)>> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT cum_requests - requests, cum_tokens - tokens FROM minute_totals
                 WHERE endpoint = ?1 AND minute >= ?2 AND minute <= ?3 ORDER BY minute LIMIT 1",
            )?
            .query_row(params![endpoint, first, last], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }

    /// When enough of `limit`'s usage has left its window for `excess` more to fit.
    pub fn frees_at(
        &self,
        endpoint: &str,
        limit: Limit,
        excess: u64,
        now: Millis,
    ) -> Result<Option<Millis>> {
        let column = match limit.unit {
            Unit::Requests => "requests",
            Unit::Tokens => "tokens",
        };
        if limit.window == Window::Minute {
            let mut stmt = self.0.prepare_cached(&format!(
                "SELECT at_ms, {column} FROM usage
                 WHERE endpoint = ?1 AND at_ms > ?2 AND at_ms <= ?3 ORDER BY at_ms"
            ))?;
            let rows = stmt
                .query_map(
                    params![endpoint, quota::counted_after(Window::Minute, now), now],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let departures = rows
                .into_iter()
                .map(|(at, n)| (quota::row_leaves_at(at, Window::Minute), clamp(n)));
            return Ok(quota::freed_by(departures, excess));
        }
        let first = quota::first_counted_minute(limit.window, now);
        let now_minute = quota::minute_of(now);
        let Some(base) = self.total_before(endpoint, first, now_minute)? else {
            return Ok(None);
        };
        let base = match limit.unit {
            Unit::Requests => base.0,
            Unit::Tokens => base.1,
        };
        // Running totals only grow with the minute, so the first bucket whose total reaches
        // base + excess is the one whose departure frees enough.
        let minute: Option<i64> = self
            .0
            .prepare_cached(&format!(
                "SELECT minute FROM minute_totals
                 WHERE endpoint = ?1 AND minute >= ?2 AND minute <= ?3 AND cum_{column} >= ?4
                 ORDER BY minute LIMIT 1"
            ))?
            .query_row(
                params![
                    endpoint,
                    first,
                    now_minute,
                    base.saturating_add(excess as i64)
                ],
                |r| r.get(0),
            )
            .optional()?;
        Ok(minute.map(|m| quota::bucket_leaves_at(m, limit.window)))
    }

    /// Reserves `request` for `endpoint` at `now`, as an open reservation; returns its lease.
    pub fn reserve(&self, endpoint: &str, request: Request, now: Millis) -> Result<String> {
        let lease = new_lease(endpoint, now);
        self.insert(endpoint, request, now, Some(&lease))?;
        Ok(lease)
    }

    /// Adds usage made at `now` without a reservation.
    pub fn add(&self, endpoint: &str, request: Request, now: Millis) -> Result<()> {
        self.insert(endpoint, request, now, None)
    }

    fn insert(
        &self,
        endpoint: &str,
        request: Request,
        now: Millis,
        lease: Option<&str>,
    ) -> Result<()> {
        self.0
            .prepare_cached(
                "INSERT INTO usage (endpoint, at_ms, requests, tokens, lease, open)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                endpoint,
                now,
                to_sql(request.requests),
                to_sql(request.tokens),
                lease,
                lease.is_some()
            ])?;
        self.add_to_minute(
            endpoint,
            quota::minute_of(now),
            to_sql(request.requests),
            to_sql(request.tokens),
        )
    }

    /// Adds a change of usage to a minute bucket and to the running totals after it.
    fn add_to_minute(&self, endpoint: &str, minute: i64, requests: i64, tokens: i64) -> Result<()> {
        let updated = self
            .0
            .prepare_cached(
                "UPDATE minute_totals SET requests = requests + ?3, tokens = tokens + ?4,
                     cum_requests = cum_requests + ?3, cum_tokens = cum_tokens + ?4
                 WHERE endpoint = ?1 AND minute = ?2",
            )?
            .execute(params![endpoint, minute, requests, tokens])?;
        if updated == 0 {
            // A new bucket continues the running totals of the bucket before it; with none
            // (older ones pruned), it starts where the next bucket's totals begin.
            self.0
                .prepare_cached(
                    "INSERT INTO minute_totals
                         (endpoint, minute, requests, tokens, cum_requests, cum_tokens)
                     SELECT ?1, ?2, ?3, ?4,
                       ?3 + coalesce(
                         (SELECT cum_requests FROM minute_totals
                          WHERE endpoint = ?1 AND minute < ?2 ORDER BY minute DESC LIMIT 1),
                         (SELECT cum_requests - requests FROM minute_totals
                          WHERE endpoint = ?1 AND minute > ?2 ORDER BY minute LIMIT 1), 0),
                       ?4 + coalesce(
                         (SELECT cum_tokens FROM minute_totals
                          WHERE endpoint = ?1 AND minute < ?2 ORDER BY minute DESC LIMIT 1),
                         (SELECT cum_tokens - tokens FROM minute_totals
                          WHERE endpoint = ?1 AND minute > ?2 ORDER BY minute LIMIT 1), 0)",
                )?
                .execute(params![endpoint, minute, requests, tokens])?;
        }
        // Usage normally lands in the newest bucket and this touches nothing; a settle of an
        // older reservation (or a clock moved back) carries into the later running totals.
        self.0
            .prepare_cached(
                "UPDATE minute_totals SET cum_requests = cum_requests + ?3,
                     cum_tokens = cum_tokens + ?4
                 WHERE endpoint = ?1 AND minute > ?2",
            )?
            .execute(params![endpoint, minute, requests, tokens])?;
        Ok(())
    }

    /// The entry a lease names, settled or not, while it is in the ledger.
    pub fn by_lease(&self, lease: &str) -> Result<Option<Entry>> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT id, endpoint, at_ms, requests, tokens, open FROM usage WHERE lease = ?1",
            )?
            .query_row([lease], entry)
            .optional()?)
    }

    /// The oldest reservation of `endpoint` still open at `now`.
    pub fn oldest_open(&self, endpoint: &str, now: Millis) -> Result<Option<Entry>> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT id, endpoint, at_ms, requests, tokens, open FROM usage
                 WHERE endpoint = ?1 AND open = 1 AND at_ms > ?2 AND at_ms <= ?3
                 ORDER BY at_ms, id LIMIT 1",
            )?
            .query_row(params![endpoint, now - RESERVATION_OPEN_MS, now], entry)
            .optional()?)
    }

    /// How many reservations of `endpoint` are open (in flight) at `now`.
    pub fn open_reservations(&self, endpoint: &str, now: Millis) -> Result<u64> {
        let n: i64 = self
            .0
            .prepare_cached(
                "SELECT count(*) FROM usage
                 WHERE endpoint = ?1 AND open = 1 AND at_ms > ?2 AND at_ms <= ?3",
            )?
            .query_row(params![endpoint, now - RESERVATION_OPEN_MS, now], |r| {
                r.get(0)
            })?;
        Ok(clamp(n))
    }

    /// Closes a reservation, replacing its estimate by what was really used.
    pub fn settle(&self, entry: &Entry, real: Request) -> Result<()> {
        self.0
            .prepare_cached("UPDATE usage SET requests = ?2, tokens = ?3, open = 0 WHERE id = ?1")?
            .execute(params![
                entry.id,
                to_sql(real.requests),
                to_sql(real.tokens)
            ])?;
        self.add_to_minute(
            &entry.endpoint,
            quota::minute_of(entry.at),
            to_sql(real.requests) - to_sql(entry.requests),
            to_sql(real.tokens) - to_sql(entry.tokens),
        )
    }

    /// Forgets what no window can count any more, so the file does not grow with time.
    /// It waits until an hour's worth is due and takes it in one go: deleting a little at
    /// every pick would touch old pages, and so write more, in every transaction.
    pub fn prune(&self, now: Millis) -> Result<()> {
        let horizon = now - RETENTION_MS;
        let oldest: Option<Millis> = self
            .0
            .prepare_cached("SELECT min(at_ms) FROM usage")?
            .query_row([], |r| r.get(0))?;
        if oldest.is_none_or(|at| at > horizon - PRUNE_BATCH_MS) {
            return Ok(());
        }
        self.0
            .prepare_cached("DELETE FROM usage WHERE at_ms <= ?1")?
            .execute([horizon])?;
        self.0
            .prepare_cached("DELETE FROM minute_totals WHERE minute < ?1")?
            .execute([quota::minute_of(horizon + 1)])?;
        self.0
            .prepare_cached("DELETE FROM reports WHERE resets_at <= ?1")?
            .execute([now])?;
        Ok(())
    }

    /// Every endpoint id the ledger holds anything for.
    pub fn endpoints(&self) -> Result<Vec<String>> {
        let mut stmt = self.0.prepare(
            "SELECT endpoint FROM usage UNION SELECT endpoint FROM minute_totals
             UNION SELECT endpoint FROM cooldowns UNION SELECT endpoint FROM reports ORDER BY 1",
        )?;
        let ids = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    /// Forgets all usage, reservations, cooldowns and provider reports of `endpoint`;
    /// returns how many calls it held.
    pub fn reset(&self, endpoint: &str) -> Result<u64> {
        let calls = self
            .0
            .execute("DELETE FROM usage WHERE endpoint = ?1", [endpoint])?;
        for table in ["minute_totals", "cooldowns", "reports"] {
            self.0.execute(
                &format!("DELETE FROM {table} WHERE endpoint = ?1"),
                [endpoint],
            )?;
        }
        self.0
            .execute("DELETE FROM turns WHERE last = ?1", [endpoint])?;
        Ok(calls as u64)
    }

    /// When the endpoint last took a call (pick or record), for pacing.
    pub fn last_call(&self, endpoint: &str, now: Millis) -> Result<Option<Millis>> {
        Ok(self
            .0
            .prepare_cached("SELECT max(at_ms) FROM usage WHERE endpoint = ?1 AND at_ms <= ?2")?
            .query_row(params![endpoint, now], |r| r.get(0))?)
    }

    /// When the oldest open reservation of `endpoint` expires, if one is open.
    pub fn first_expiry(&self, endpoint: &str, now: Millis) -> Result<Option<Millis>> {
        let oldest: Option<Millis> = self
            .0
            .prepare_cached(
                "SELECT min(at_ms) FROM usage
                 WHERE endpoint = ?1 AND open = 1 AND at_ms > ?2 AND at_ms <= ?3",
            )?
            .query_row(params![endpoint, now - RESERVATION_OPEN_MS, now], |r| {
                r.get(0)
            })?;
        Ok(oldest.map(|at| at + RESERVATION_OPEN_MS))
    }

    pub fn cooldown(&self, endpoint: &str) -> Result<Option<Cooldown>> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT until_ms, reason, strikes, failures, probe_at FROM cooldowns
                 WHERE endpoint = ?1",
            )?
            .query_row([endpoint], |r| {
                Ok(Cooldown {
                    until: r.get(0)?,
                    reason: r.get(1)?,
                    strikes: r.get(2)?,
                    failures: r.get(3)?,
                    probe_at: r.get(4)?,
                })
            })
            .optional()?)
    }

    /// Stores the cooldown state of `endpoint`; `None` forgets it (a healthy endpoint).
    pub fn set_cooldown(&self, endpoint: &str, cooldown: Option<&Cooldown>) -> Result<()> {
        match cooldown {
            None => {
                self.0
                    .prepare_cached("DELETE FROM cooldowns WHERE endpoint = ?1")?
                    .execute([endpoint])?;
            }
            Some(c) => {
                self.0
                    .prepare_cached(
                        "INSERT OR REPLACE INTO cooldowns
                         (endpoint, until_ms, reason, strikes, failures, probe_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![
                        endpoint, c.until, c.reason, c.strikes, c.failures, c.probe_at
                    ])?;
            }
        }
        Ok(())
    }

    /// The provider's word on each limit of `endpoint` that has not reset by `now`, with
    /// how much was used locally since it was given.
    pub fn reports(&self, endpoint: &str, now: Millis) -> Result<Vec<Report>> {
        let mut stmt = self.0.prepare_cached(
            "SELECT limit_name, remaining, cap, resets_at, base_requests, base_tokens
             FROM reports WHERE endpoint = ?1 AND resets_at > ?2",
        )?;
        let rows = stmt.query_map(params![endpoint, now], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?;
        let rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let latest = self.latest_total(endpoint, i64::MAX)?.unwrap_or((0, 0));
        let mut reports = Vec::new();
        for (name, remaining, cap, resets_at, base_requests, base_tokens) in rows {
            let Some(limit) = Limit::from_name(&name) else {
                continue;
            };
            let since = match limit.unit {
                Unit::Requests => latest.0 - base_requests,
                Unit::Tokens => latest.1 - base_tokens,
            };
            reports.push(Report {
                limit,
                remaining: clamp(remaining),
                cap: cap.map(clamp),
                resets_at,
                used_since: clamp(since),
            });
        }
        Ok(reports)
    }

    /// Takes the provider's word on one limit, replacing what it said before; usage
    /// recorded after this moment counts against `remaining`.
    pub fn set_report(
        &self,
        endpoint: &str,
        limit: Limit,
        remaining: u64,
        cap: Option<u64>,
        resets_at: Millis,
        now: Millis,
    ) -> Result<()> {
        let base = self.latest_total(endpoint, i64::MAX)?.unwrap_or((0, 0));
        self.0
            .prepare_cached(
                "INSERT OR REPLACE INTO reports
                 (endpoint, limit_name, reported_at, remaining, cap, resets_at,
                  base_requests, base_tokens)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                endpoint,
                limit.name(),
                now,
                to_sql(remaining),
                cap.map(to_sql),
                resets_at,
                base.0,
                base.1
            ])?;
        Ok(())
    }

    /// Notes that the one probe after a cooldown was handed out.
    pub fn mark_probe(&self, endpoint: &str, now: Millis) -> Result<()> {
        self.0
            .prepare_cached("UPDATE cooldowns SET probe_at = ?2 WHERE endpoint = ?1")?
            .execute(params![endpoint, now])?;
        Ok(())
    }

    /// The endpoint that took the last round-robin turn.
    pub fn last_turn(&self) -> Result<Option<String>> {
        Ok(self
            .0
            .prepare_cached("SELECT last FROM turns WHERE scope = ''")?
            .query_row([], |r| r.get(0))
            .optional()?)
    }

    pub fn set_turn(&self, endpoint: &str) -> Result<()> {
        self.0
            .prepare_cached("INSERT OR REPLACE INTO turns (scope, last) VALUES ('', ?1)")?
            .execute([endpoint])?;
        Ok(())
    }
}

/// What a provider's headers said of one limit, and what was used here since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    pub limit: Limit,
    pub remaining: u64,
    pub cap: Option<u64>,
    pub resets_at: Millis,
    pub used_since: u64,
}

fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        id: r.get(0)?,
        endpoint: r.get(1)?,
        at: r.get(2)?,
        requests: clamp(r.get(3)?),
        tokens: clamp(r.get(4)?),
        open: r.get(5)?,
    })
}

/// SQLite integers are signed; counts above i64::MAX are refused at the command line.
fn to_sql(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn clamp(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A lease id that no other process will hand out: 64 bits from std's per-process random
/// hash keys, mixed with the endpoint, the time and the process id.
fn new_lease(endpoint: &str, now: Millis) -> String {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new();
    format!(
        "{:016x}",
        random.hash_one((endpoint, now, std::process::id()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::{Limits, shortfalls};
    use proptest::prelude::*;

    const T0: Millis = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    const HOUR: Millis = 60 * MINUTE_MS;

    fn ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger = Ledger::open(&dir.path().join("usage.sqlite3")).expect("open");
        (dir, ledger)
    }

    fn rpm() -> Limit {
        Limit::new(Unit::Requests, Window::Minute)
    }

    fn tph() -> Limit {
        Limit::new(Unit::Tokens, Window::Hour)
    }

    #[test]
    fn opening_again_finds_the_schema_migrated() {
        let (dir, _first) = ledger();
        let path = dir.path().join("usage.sqlite3");
        let again = Ledger::open(&path).expect("second open");
        assert_eq!(
            header(&again.conn).expect("header"),
            (MIGRATIONS.len() as i64, APPLICATION_ID)
        );
        let mode: String = again
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("journal mode");
        assert_eq!(mode, "wal");
    }

    #[test]
    fn settling_an_old_reservation_corrects_later_running_totals() {
        let (_dir, mut ledger) = ledger();
        ledger
            .write(|tx| {
                tx.reserve("e", Request::new(100), T0)?;
                tx.add("e", Request::new(10), T0 + 5 * MINUTE_MS)?;
                let entry = tx.oldest_open("e", T0 + 6 * MINUTE_MS)?.expect("open");
                tx.settle(
                    &entry,
                    Request {
                        requests: 2,
                        tokens: 7,
                    },
                )?;
                let used = tx.used("e", T0 + 6 * MINUTE_MS, None)?;
                assert_eq!(used.get(tph()), 17);
                assert_eq!(used.get(Limit::new(Unit::Requests, Window::Hour)), 3);
                // After the first minute's bucket leaves the hour, only the later call counts.
                let used = tx.used("e", T0 + HOUR + MINUTE_MS - 1, None)?;
                assert_eq!(used.get(tph()), 10);
                Ok(())
            })
            .expect("ledger");
    }

    #[test]
    fn pruning_waits_for_an_hour_of_expired_usage_then_forgets_it() {
        let (_dir, mut ledger) = ledger();
        let count = |ledger: &mut Ledger| {
            ledger
                .read(|tx| {
                    let n: i64 =
                        tx.0.query_row("SELECT count(*) FROM usage", [], |r| r.get(0))?;
                    let m: i64 =
                        tx.0.query_row("SELECT count(*) FROM minute_totals", [], |r| r.get(0))?;
                    Ok((n, m))
                })
                .expect("count")
        };
        ledger
            .write(|tx| {
                tx.add("e", Request::new(1), T0)?;
                tx.add("e", Request::new(1), T0 + 2 * HOUR)
            })
            .expect("add");
        let due = T0 + RETENTION_MS + HOUR;
        ledger.write(|tx| tx.prune(due - 1)).expect("prune");
        assert_eq!(count(&mut ledger), (2, 2), "not an hour's worth due yet");
        ledger.write(|tx| tx.prune(due)).expect("prune");
        assert_eq!(count(&mut ledger), (1, 1));
        // Usage landing before the oldest bucket left continues its running totals.
        ledger
            .write(|tx| {
                tx.add("e", Request::new(5), T0 + HOUR)?;
                let used = tx.used("e", T0 + 2 * HOUR, None)?;
                assert_eq!(used.get(tph()), 6);
                Ok(())
            })
            .expect("add before");
    }

    /// What the ledger must report, summed the slow way from every call.
    fn expected(calls: &[(Millis, u64, u64)], limit: Limit, now: Millis) -> u64 {
        calls
            .iter()
            .filter(|&&(at, _, _)| match limit.window {
                Window::Minute => at > quota::counted_after(Window::Minute, now) && at <= now,
                window => {
                    let minute = quota::minute_of(at);
                    minute >= quota::first_counted_minute(window, now)
                        && minute <= quota::minute_of(now)
                }
            })
            .map(|&(_, r, t)| if limit.unit == Unit::Requests { r } else { t })
            .sum()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Running totals, settles included, agree with a plain sum over every call.
        #[test]
        fn windows_agree_with_a_plain_sum(
            ops in prop::collection::vec((0..3 * HOUR, 0u64..3, 0u64..500, any::<bool>()), 1..25),
            probes in prop::collection::vec(0..4 * HOUR, 1..6),
        ) {
            let (_dir, mut ledger) = ledger();
            // (at, requests, tokens, open) in insertion order, like the table's ids.
            let mut calls: Vec<(Millis, u64, u64, bool)> = Vec::new();
            for &(offset, requests, tokens, settle) in &ops {
                let at = T0 + offset;
                ledger.write(|tx| {
                    tx.reserve("e", Request { requests, tokens }, at)?;
                    calls.push((at, requests, tokens, true));
                    if settle {
                        let entry = tx.oldest_open("e", at)?.expect("one was just reserved");
                        tx.settle(&entry, Request { requests: entry.requests, tokens: 7 })?;
                        let oldest = (0..calls.len())
                            .filter(|&i| calls[i].3 && calls[i].0 > at - RESERVATION_OPEN_MS && calls[i].0 <= at)
                            .min_by_key(|&i| (calls[i].0, i))
                            .expect("model has it too");
                        assert_eq!(calls[oldest].0, entry.at);
                        calls[oldest].2 = 7;
                        calls[oldest].3 = false;
                    }
                    Ok(())
                }).expect("write");
            }
            let calls: Vec<(Millis, u64, u64)> = calls.iter().map(|&(a, r, t, _)| (a, r, t)).collect();
            for probe in probes {
                let now = T0 + probe;
                let used = ledger.read(|tx| tx.used("e", now, None)).expect("used");
                for limit in Limit::ALL {
                    prop_assert_eq!(used.get(limit), expected(&calls, limit, now), "{} at +{}", limit.name(), probe);
                }
            }
        }

        /// Admitting only what fits never lets any window hold more than its limit.
        #[test]
        fn never_more_than_the_limit_in_any_window(
            gaps in prop::collection::vec(0..20 * 1000i64, 1..120),
            sizes in prop::collection::vec(0u64..40, 120),
        ) {
            let mut limits = Limits::default();
            limits.set(rpm(), Some(5));
            limits.set(Limit::new(Unit::Tokens, Window::Minute), Some(100));
            limits.set(Limit::new(Unit::Requests, Window::Hour), Some(40));
            let (_dir, mut ledger) = ledger();
            let mut admitted: Vec<(Millis, u64)> = Vec::new();
            let mut now = T0;
            for (gap, &tokens) in gaps.iter().zip(&sizes) {
                now += gap;
                let request = Request::new(tokens);
                ledger.write(|tx| {
                    if shortfalls(&limits, &tx.used("e", now, None)?, request).is_empty() {
                        tx.reserve("e", request, now)?;
                        admitted.push((now, tokens));
                    }
                    Ok(())
                }).expect("pick");
            }
            for &(t, _) in &admitted {
                let in_window = |w: Millis| -> Vec<u64> {
                    admitted.iter().filter(|&&(a, _)| a > t - w && a <= t).map(|&(_, k)| k).collect()
                };
                prop_assert!(in_window(MINUTE_MS).len() <= 5);
                prop_assert!(in_window(MINUTE_MS).iter().sum::<u64>() <= 100);
                prop_assert!(in_window(HOUR).len() <= 40);
            }
        }
    }
}
