//! Usage in SQLite: a row per call in `usage`, and per-minute buckets with running totals
//! in `minute_totals`, so that the hour and day windows cost two index look-ups each
//! however long the history is. Windows count every row stamped after their start,
//! including rows stamped after `now`.

use anyhow::Result;
use rusqlite::{OptionalExtension, params};

use super::{SATURATED, Tx, clamp, to_sql};
use crate::clock::{MINUTE_MS, Millis};
use crate::ledger::{Change, Departing, Entry, Horizons, Source, Span};
use crate::quota::{Request, Unit};

/// How much expired usage waits before it is pruned in one go.
const PRUNE_BATCH_MS: Millis = 60 * MINUTE_MS;

impl Tx<'_> {
    pub(super) fn newest_call(&self) -> Result<Option<Millis>> {
        Ok(self
            .0
            .prepare_cached("SELECT max(at_ms) FROM usage")?
            .query_row([], |r| r.get(0))?)
    }

    /// Running totals at the newest minute bucket of `endpoint`: what the hour and day
    /// windows subtract from.
    pub(super) fn running(&self, endpoint: &str) -> Result<Request> {
        let latest: Option<(i64, i64)> = self
            .0
            .prepare_cached(
                "SELECT cum_requests, cum_tokens FROM minute_totals
                 WHERE endpoint = ?1 ORDER BY minute DESC LIMIT 1",
            )?
            .query_row([endpoint], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let (requests, tokens) = latest.unwrap_or_default();
        Ok(Request {
            requests: clamp(requests),
            tokens: clamp(tokens),
        })
    }

    /// Running totals just before the first bucket at or after `first`; `None` when there
    /// is no such bucket.
    fn total_before(&self, endpoint: &str, first: i64) -> Result<Option<(i64, i64)>> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT cum_requests - requests, cum_tokens - tokens FROM minute_totals
                 WHERE endpoint = ?1 AND minute >= ?2 ORDER BY minute LIMIT 1",
            )?
            .query_row(params![endpoint, first], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// Requests and tokens in the minute, hour and day windows of `span`.
    pub(super) fn windows(
        &self,
        endpoint: &str,
        span: &Span,
        running: Request,
    ) -> Result<[Request; 3]> {
        // total() is a float and never overflows; the sums saturate when cast back.
        let (requests, tokens): (f64, f64) = self
            .0
            .prepare_cached(
                "SELECT total(requests), total(tokens) FROM usage
                 WHERE endpoint = ?1 AND at_ms > ?2",
            )?
            .query_row(params![endpoint, span.minute_after], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        let minute = Request {
            requests: requests as u64,
            tokens: tokens as u64,
        };
        let since = |first: i64| -> Result<Request> {
            Ok(match self.total_before(endpoint, first)? {
                Some((r, t)) => Request {
                    requests: running.requests.saturating_sub(clamp(r)),
                    tokens: running.tokens.saturating_sub(clamp(t)),
                },
                None => Request::default(),
            })
        };
        Ok([minute, since(span.hour_from)?, since(span.day_from)?])
    }

    /// The reservations of `endpoint` still open after `after`: how many, and the oldest.
    pub(super) fn in_flight(&self, endpoint: &str, after: Millis) -> Result<(u64, Option<Entry>)> {
        let count: i64 = self
            .0
            .prepare_cached(
                "SELECT count(*) FROM usage WHERE endpoint = ?1 AND open = 1 AND at_ms > ?2",
            )?
            .query_row(params![endpoint, after], |r| r.get(0))?;
        let oldest = if count == 0 {
            None
        } else {
            self.0
                .prepare_cached(
                    "SELECT lease, endpoint, at_ms, requests, tokens, open FROM usage
                     WHERE endpoint = ?1 AND open = 1 AND at_ms > ?2
                     ORDER BY at_ms, id LIMIT 1",
                )?
                .query_row(params![endpoint, after], entry)
                .optional()?
        };
        Ok((clamp(count), oldest))
    }

    pub(super) fn last_call(&self, endpoint: &str) -> Result<Option<Millis>> {
        Ok(self
            .0
            .prepare_cached("SELECT max(at_ms) FROM usage WHERE endpoint = ?1")?
            .query_row([endpoint], |r| r.get(0))?)
    }

    /// The estimated tokens of the reservations of `endpoint` still open after `after`.
    pub(super) fn open_tokens(&self, endpoint: &str, after: Millis) -> Result<u64> {
        let tokens: f64 = self
            .0
            .prepare_cached(
                "SELECT total(tokens) FROM usage WHERE endpoint = ?1 AND open = 1 AND at_ms > ?2",
            )?
            .query_row(params![endpoint, after], |r| r.get(0))?;
        Ok(tokens as u64)
    }

    /// What leaves the window `ask` names, earliest first, until `enough` has left.
    pub(super) fn leaving(&self, ask: &Departing<'_>) -> Result<Vec<(i64, u64)>> {
        let column = match ask.unit {
            Unit::Requests => "requests",
            Unit::Tokens => "tokens",
        };
        let (sql, from) = match ask.source {
            Source::Calls { after } => (
                format!(
                    "SELECT at_ms, {column} FROM usage
                     WHERE endpoint = ?1 AND at_ms > ?2 ORDER BY at_ms"
                ),
                after,
            ),
            Source::Buckets { from } => (
                format!(
                    "SELECT minute, {column} FROM minute_totals
                     WHERE endpoint = ?1 AND minute >= ?2 ORDER BY minute"
                ),
                from,
            ),
        };
        let mut stmt = self.0.prepare_cached(&sql)?;
        let mut rows = stmt.query(params![ask.endpoint, from])?;
        let (mut out, mut freed) = (Vec::new(), 0u64);
        while freed < ask.enough
            && let Some(row) = rows.next()?
        {
            let n = clamp(row.get(1)?);
            freed = freed.saturating_add(n);
            out.push((row.get(0)?, n));
        }
        Ok(out)
    }

    pub(super) fn by_lease(&self, lease: &str) -> Result<Option<Entry>> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT lease, endpoint, at_ms, requests, tokens, open FROM usage WHERE lease = ?1",
            )?
            .query_row([lease], entry)
            .optional()?)
    }

    pub(super) fn insert_call(
        &self,
        endpoint: &str,
        at: Millis,
        usage: Request,
        lease: Option<&str>,
    ) -> Result<()> {
        self.0
            .prepare_cached(
                "INSERT INTO usage (endpoint, at_ms, requests, tokens, lease, open)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                endpoint,
                at,
                to_sql(usage.requests),
                to_sql(usage.tokens),
                lease,
                lease.is_some()
            ])?;
        Ok(())
    }

    pub(super) fn close_call(&self, entry: &Entry, real: Request) -> Result<()> {
        self.0
            .prepare_cached(
                "UPDATE usage SET requests = ?2, tokens = ?3, open = 0 WHERE lease = ?1",
            )?
            .execute(params![
                entry.lease,
                to_sql(real.requests),
                to_sql(real.tokens)
            ])?;
        Ok(())
    }

    /// Adds a change of usage to a minute bucket and to the running totals after it.
    /// Totals saturate at SQLite's largest integer rather than overflow.
    pub(super) fn add_to_minute(&self, endpoint: &str, minute: i64, change: Change) -> Result<()> {
        let (requests, tokens) = (change.requests, change.tokens);
        let updated = self
            .0
            .prepare_cached(&format!(
                "UPDATE minute_totals SET
                     requests = min(requests + ?3, {SATURATED}),
                     tokens = min(tokens + ?4, {SATURATED}),
                     cum_requests = min(cum_requests + ?3, {SATURATED}),
                     cum_tokens = min(cum_tokens + ?4, {SATURATED})
                 WHERE endpoint = ?1 AND minute = ?2"
            ))?
            .execute(params![endpoint, minute, requests, tokens])?;
        if updated == 0 {
            // A new bucket continues the running totals of the bucket before it; with none
            // (older ones pruned), it starts where the next bucket's totals begin.
            self.0
                .prepare_cached(&format!(
                    "INSERT INTO minute_totals
                         (endpoint, minute, requests, tokens, cum_requests, cum_tokens)
                     SELECT ?1, ?2, ?3, ?4,
                       min(?3 + coalesce(
                         (SELECT cum_requests FROM minute_totals
                          WHERE endpoint = ?1 AND minute < ?2 ORDER BY minute DESC LIMIT 1),
                         (SELECT cum_requests - requests FROM minute_totals
                          WHERE endpoint = ?1 AND minute > ?2 ORDER BY minute LIMIT 1), 0),
                         {SATURATED}),
                       min(?4 + coalesce(
                         (SELECT cum_tokens FROM minute_totals
                          WHERE endpoint = ?1 AND minute < ?2 ORDER BY minute DESC LIMIT 1),
                         (SELECT cum_tokens - tokens FROM minute_totals
                          WHERE endpoint = ?1 AND minute > ?2 ORDER BY minute LIMIT 1), 0),
                         {SATURATED})"
                ))?
                .execute(params![endpoint, minute, requests, tokens])?;
        }
        // Usage normally lands in the newest bucket and this touches nothing; a settle of an
        // older reservation carries into the later running totals.
        self.0
            .prepare_cached(&format!(
                "UPDATE minute_totals SET cum_requests = min(cum_requests + ?3, {SATURATED}),
                     cum_tokens = min(cum_tokens + ?4, {SATURATED})
                 WHERE endpoint = ?1 AND minute > ?2"
            ))?
            .execute(params![endpoint, minute, requests, tokens])?;
        Ok(())
    }

    /// Pruning waits until an hour's worth is due and takes it in one go: deleting a little
    /// at every pick would touch old pages, and so write more, in every transaction.
    pub(super) fn prune_due(&self, horizon: Millis) -> Result<bool> {
        let oldest: Option<Millis> = self
            .0
            .prepare_cached("SELECT min(at_ms) FROM usage")?
            .query_row([], |r| r.get(0))?;
        Ok(oldest.is_some_and(|at| at <= horizon - PRUNE_BATCH_MS))
    }

    pub(super) fn open_estimates_until(&self, until: Millis) -> Result<Vec<(String, u64)>> {
        let mut stmt = self.0.prepare_cached(
            "SELECT endpoint, total(tokens) FROM usage
             WHERE open = 1 AND at_ms <= ?1 GROUP BY endpoint ORDER BY endpoint",
        )?;
        let rows = stmt.query_map([until], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)? as u64))
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    pub(super) fn drop_usage_before(&self, horizons: &Horizons) -> Result<()> {
        self.0
            .prepare_cached("DELETE FROM usage WHERE at_ms <= ?1")?
            .execute([horizons.calls_until])?;
        self.0
            .prepare_cached("DELETE FROM minute_totals WHERE minute < ?1")?
            .execute([horizons.first_minute])?;
        Ok(())
    }

    pub(super) fn endpoints_used(&self) -> Result<Vec<String>> {
        let mut stmt = self.0.prepare(
            "SELECT endpoint FROM usage UNION SELECT endpoint FROM minute_totals
             UNION SELECT endpoint FROM counters ORDER BY 1",
        )?;
        let ids = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    pub(super) fn forget_usage(&self, endpoint: &str) -> Result<u64> {
        let calls = self
            .0
            .execute("DELETE FROM usage WHERE endpoint = ?1", [endpoint])?;
        self.0
            .execute("DELETE FROM minute_totals WHERE endpoint = ?1", [endpoint])?;
        Ok(calls as u64)
    }
}

fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        lease: r.get(0)?,
        endpoint: r.get(1)?,
        at: r.get(2)?,
        requests: clamp(r.get(3)?),
        tokens: clamp(r.get(4)?),
        open: r.get(5)?,
    })
}
