//! The SQLite ledger: one file shared by every process on a machine. Opening creates and
//! migrates it; every step runs in a transaction, and a write step takes the lock up front
//! (`BEGIN IMMEDIATE`) and only then reads the time, so that checking and reserving is one
//! atomic step across processes.
//!
//! Two tables hold usage (`usage.rs`): `usage` has a row per pick or record, for the exact
//! minute window and the reservations; `minute_totals` sums usage per endpoint and calendar
//! minute with running totals, so the hour and day windows cost two index look-ups each
//! however long the history is. `lifetime.rs` keeps the counters and the hourly history,
//! `answers.rs` cooldowns, reports and the turn; `book.rs` puts them behind the
//! [`Book`](super::Book)'s primitives.

mod answers;
mod book;
mod lifetime;
mod schema;
mod usage;

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use super::{Access, Finding, Ledger, Step, now_under_lock};
use crate::clock::Millis;

/// How long a process waits for another one's lock before it gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The first bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

pub struct SqliteLedger {
    conn: Connection,
    path: PathBuf,
}

/// An open transaction on the ledger, and the time of its step: the
/// [`Book`](super::Book) a step works on.
pub struct Tx<'c>(rusqlite::Transaction<'c>, Millis);

/// The largest integer SQLite holds: sums stop there instead of overflowing.
const SATURATED: &str = "9223372036854775807";

impl SqliteLedger {
    /// Opens the ledger at `path`, creating it (and its folders) on first use, readable by
    /// the user alone. A file that is not a usable ledger is an error, never replaced.
    pub fn open(path: &Path) -> Result<SqliteLedger> {
        create_private(path)?;
        refuse_foreign(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| explain(e.into(), path))?;
        let mut ledger = SqliteLedger {
            conn,
            path: path.to_owned(),
        };
        ledger.prepare().map_err(|e| explain(e, path))?;
        Ok(ledger)
    }

    fn prepare(&mut self) -> Result<()> {
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        // Every statement a step runs stays prepared for the next one, as it is: by
        // default SQLite plans some statements (max(), ORDER BY .. LIMIT) for the values
        // bound to them and prepares them again whenever those change, which for a step
        // that reads many endpoints costs more than the reads. The plans need no values.
        self.conn.set_prepared_statement_cache_capacity(64);
        self.conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        // WAL commits reach the OS before a command returns, so they survive the crash of
        // any process; NORMAL skips the per-commit fsync that only a power cut would need,
        // and never risks corruption. The last process out folds the log back into the
        // file (SQLite's checkpoint on close), so the next one starts from a clean file
        // instead of replaying a long log.
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        if schema::is_current(&self.conn)? {
            return Ok(());
        }
        if schema::migrate(&mut self.conn)? {
            schema::enter_wal(&self.conn, BUSY_TIMEOUT);
        }
        Ok(())
    }

    /// The raw connection, for tests that inspect or hold the file.
    #[cfg(test)]
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

impl Ledger for SqliteLedger {
    fn shares_transactions(&self) -> bool {
        true
    }

    fn defer_upkeep(&mut self) -> Result<()> {
        // A commit that fills the log past 1,000 pages folds it back into the file, with
        // an fsync, before it returns: milliseconds in the middle of a request.
        self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(())
    }

    fn upkeep(&mut self) -> Result<()> {
        // PASSIVE: copies what no reader still needs, and waits for no one.
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }

    fn findings(&mut self) -> Result<Vec<Finding>> {
        let mode: String = self
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))?;
        let (version, _) = schema::header(&self.conn)?;
        let size = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        let mut findings = vec![
            Finding::fine("ledger", format!("SQLite file {}", self.path.display())),
            Finding::fine("size", format!("{} KiB", size.div_ceil(1024))),
            Finding::fine(
                "schema",
                format!("{version} of {}", schema::MIGRATIONS.len()),
            ),
        ];
        findings.push(if mode.eq_ignore_ascii_case("wal") {
            Finding::fine("journal", "write-ahead log")
        } else {
            Finding::wrong(
                "journal",
                mode,
                "the file is not in WAL mode: readers wait on writers; a process alone with \
                 the file switches it on first use",
            )
        });
        Ok(findings)
    }

    fn run(&mut self, access: Access, step: &mut Step<'_>) -> Result<()> {
        let behavior = match access {
            Access::Read => TransactionBehavior::Deferred,
            Access::Write => TransactionBehavior::Immediate,
        };
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(behavior)
            .map_err(|e| explain(e.into(), &path))?;
        let mut tx = Tx(tx, 0);
        // The lock is held (a write) or the snapshot fixed (a read) from here on, and only
        // now is the time read.
        let now = now_under_lock(&tx).map_err(|e| explain(e, &path))?;
        tx.1 = now;
        step(&tx, now).map_err(|e| explain(e, &path))?;
        tx.0.commit().map_err(|e| explain(e.into(), &path))?;
        Ok(())
    }
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

/// SQLite takes a file shorter than its header for an empty database and would write a new
/// ledger over it. Only an empty file (the one `create_private` makes) is new; anything
/// else must start as an SQLite database does.
fn refuse_foreign(path: &Path) -> Result<()> {
    let mut head = Vec::with_capacity(SQLITE_MAGIC.len());
    let read = File::open(path)
        .and_then(|file| file.take(SQLITE_MAGIC.len() as u64).read_to_end(&mut head));
    if let Err(e) = read {
        // An unreadable file is explained by SQLite's own error when it opens it.
        if e.kind() != ErrorKind::PermissionDenied {
            return Err(e).with_context(|| format!("cannot read the database {}", path.display()));
        }
        return Ok(());
    }
    if !head.is_empty() && head != SQLITE_MAGIC {
        bail!(
            "database {}: is not an SQLite database (damaged or another kind of file); \
             llm-rotate leaves the file as it is: move it aside (or point --db elsewhere) to \
             start a new ledger",
            path.display()
        );
    }
    Ok(())
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

/// SQLite integers are signed; counts above i64::MAX are refused at the command line.
fn to_sql(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn clamp(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
