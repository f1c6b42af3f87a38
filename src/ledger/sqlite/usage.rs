//! Usage in SQLite: a row per call in `usage`, and per-minute buckets with running totals
//! in `minute_totals`. Windows count every row stamped after their start, including rows
//! stamped after `now`.

use anyhow::Result;
use rusqlite::{OptionalExtension, params};

use super::{Tx, clamp, to_sql};
use crate::clock::{HOUR_MS, MINUTE_MS, Millis};
use crate::ledger::{Entry, HISTORY_MS, RESERVATION_OPEN_MS, RETENTION_MS, Usage};
use crate::quota::{self, Limit, Request, Unit, Used, Window};

/// How much expired usage waits before it is pruned in one go.
const PRUNE_BATCH_MS: Millis = 60 * MINUTE_MS;

/// The largest integer SQLite holds: running totals stop there instead of overflowing.
const SATURATED: &str = "9223372036854775807";

impl Tx<'_> {
    /// Running totals at the newest minute bucket of `endpoint`: its usage since records
    /// began, which provider reports count from.
    pub(super) fn latest_total(&self, endpoint: &str) -> Result<Option<(i64, i64)>> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT cum_requests, cum_tokens FROM minute_totals
                 WHERE endpoint = ?1 ORDER BY minute DESC LIMIT 1",
            )?
            .query_row([endpoint], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
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

    fn insert(
        &self,
        endpoint: &str,
        request: Request,
        at: Millis,
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
                to_sql(request.requests),
                to_sql(request.tokens),
                lease,
                lease.is_some()
            ])?;
        let (requests, tokens) = (to_sql(request.requests), to_sql(request.tokens));
        self.add_to_minute(endpoint, quota::minute_of(at), requests, tokens)?;
        self.add_to_hour(endpoint, at, requests, tokens)?;
        // Counters take a reservation's tokens when it is settled, an added call's at once.
        match lease {
            Some(_) => self.add_to_counters(endpoint, requests, 0, tokens),
            None => self.add_to_counters(endpoint, requests, tokens, 0),
        }
    }

    /// Adds a change of usage to a minute bucket and to the running totals after it.
    /// Totals saturate at SQLite's largest integer rather than overflow.
    fn add_to_minute(&self, endpoint: &str, minute: i64, requests: i64, tokens: i64) -> Result<()> {
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
}

impl Usage for Tx<'_> {
    fn newest(&self) -> Result<Option<Millis>> {
        Ok(self
            .0
            .prepare_cached("SELECT max(at_ms) FROM usage")?
            .query_row([], |r| r.get(0))?)
    }

    fn used(&self, endpoint: &str, now: Millis, day_start: Option<Millis>) -> Result<Used> {
        let mut used = Used::default();
        // total() is a float and never overflows; the sums saturate when cast back.
        let (requests, tokens): (f64, f64) = self
            .0
            .prepare_cached(
                "SELECT total(requests), total(tokens) FROM usage
                 WHERE endpoint = ?1 AND at_ms > ?2",
            )?
            .query_row(
                params![endpoint, quota::counted_after(Window::Minute, now)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
        used.set(Limit::new(Unit::Requests, Window::Minute), requests as u64);
        used.set(Limit::new(Unit::Tokens, Window::Minute), tokens as u64);

        let Some(latest) = self.latest_total(endpoint)? else {
            return Ok(used);
        };
        for window in [Window::Hour, Window::Day] {
            let first = match day_start {
                Some(start) if window == Window::Day => quota::minute_of(start),
                _ => quota::first_counted_minute(window, now),
            };
            if let Some(base) = self.total_before(endpoint, first)? {
                let requests = latest.0.saturating_sub(base.0);
                let tokens = latest.1.saturating_sub(base.1);
                used.set(Limit::new(Unit::Requests, window), clamp(requests));
                used.set(Limit::new(Unit::Tokens, window), clamp(tokens));
            }
        }
        Ok(used)
    }

    fn frees_at(
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
            return Ok(quota::freed_by(
                self.departures(endpoint, limit, now, excess)?,
                excess,
            ));
        }
        let first = quota::first_counted_minute(limit.window, now);
        let Some(base) = self.total_before(endpoint, first)? else {
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
                 WHERE endpoint = ?1 AND minute >= ?2 AND cum_{column} >= ?3
                 ORDER BY minute LIMIT 1"
            ))?
            .query_row(
                params![endpoint, first, base.saturating_add(to_sql(excess))],
                |r| r.get(0),
            )
            .optional()?;
        Ok(minute.map(|m| quota::bucket_leaves_at(m, limit.window)))
    }

    fn departures(
        &self,
        endpoint: &str,
        limit: Limit,
        now: Millis,
        _enough: u64,
    ) -> Result<Vec<(Millis, u64)>> {
        let column = match limit.unit {
            Unit::Requests => "requests",
            Unit::Tokens => "tokens",
        };
        let (sql, from) = if limit.window == Window::Minute {
            (
                format!(
                    "SELECT at_ms, {column} FROM usage
                     WHERE endpoint = ?1 AND at_ms > ?2 ORDER BY at_ms"
                ),
                quota::counted_after(Window::Minute, now),
            )
        } else {
            (
                format!(
                    "SELECT minute, {column} FROM minute_totals
                     WHERE endpoint = ?1 AND minute >= ?2 ORDER BY minute"
                ),
                quota::first_counted_minute(limit.window, now),
            )
        };
        let mut stmt = self.0.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![endpoint, from], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })?;
        rows.map(|row| {
            let (at, n) = row?;
            let leaves = match limit.window {
                Window::Minute => quota::row_leaves_at(at, Window::Minute),
                window => quota::bucket_leaves_at(at, window),
            };
            Ok((leaves, clamp(n)))
        })
        .collect()
    }

    fn last_call(&self, endpoint: &str) -> Result<Option<Millis>> {
        Ok(self
            .0
            .prepare_cached("SELECT max(at_ms) FROM usage WHERE endpoint = ?1")?
            .query_row([endpoint], |r| r.get(0))?)
    }

    fn open_reservations(&self, endpoint: &str, now: Millis) -> Result<u64> {
        let n: i64 = self
            .0
            .prepare_cached(
                "SELECT count(*) FROM usage WHERE endpoint = ?1 AND open = 1 AND at_ms > ?2",
            )?
            .query_row(params![endpoint, now - RESERVATION_OPEN_MS], |r| r.get(0))?;
        Ok(clamp(n))
    }

    fn first_expiry(&self, endpoint: &str, now: Millis) -> Result<Option<Millis>> {
        let oldest: Option<Millis> = self
            .0
            .prepare_cached(
                "SELECT min(at_ms) FROM usage WHERE endpoint = ?1 AND open = 1 AND at_ms > ?2",
            )?
            .query_row(params![endpoint, now - RESERVATION_OPEN_MS], |r| r.get(0))?;
        Ok(oldest.map(|at| at + RESERVATION_OPEN_MS))
    }

    fn reserve(&self, endpoint: &str, request: Request, now: Millis) -> Result<String> {
        let lease = new_lease(endpoint, now);
        self.insert(endpoint, request, now, Some(&lease))?;
        Ok(lease)
    }

    fn add(&self, endpoint: &str, request: Request, now: Millis) -> Result<()> {
        self.insert(endpoint, request, now, None)
    }

    fn by_lease(&self, lease: &str) -> Result<Option<Entry>> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT lease, endpoint, at_ms, requests, tokens, open FROM usage WHERE lease = ?1",
            )?
            .query_row([lease], entry)
            .optional()?)
    }

    fn oldest_open(&self, endpoint: &str, now: Millis) -> Result<Option<Entry>> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT lease, endpoint, at_ms, requests, tokens, open FROM usage
                 WHERE endpoint = ?1 AND open = 1 AND at_ms > ?2
                 ORDER BY at_ms, id LIMIT 1",
            )?
            .query_row(params![endpoint, now - RESERVATION_OPEN_MS], entry)
            .optional()?)
    }

    fn settle(&self, entry: &Entry, real: Request, now: Millis) -> Result<()> {
        self.0
            .prepare_cached(
                "UPDATE usage SET requests = ?2, tokens = ?3, open = 0 WHERE lease = ?1",
            )?
            .execute(params![
                entry.lease,
                to_sql(real.requests),
                to_sql(real.tokens)
            ])?;
        let requests = to_sql(real.requests) - to_sql(entry.requests);
        let tokens = to_sql(real.tokens) - to_sql(entry.tokens);
        self.add_to_minute(
            &entry.endpoint,
            quota::minute_of(entry.at),
            requests,
            tokens,
        )?;
        self.add_to_hour(&entry.endpoint, entry.at, requests, tokens)?;
        // A reservation that expired already counts at its estimate: settling it below
        // that must not lower the counter.
        let expired = now >= entry.at + RESERVATION_OPEN_MS;
        let counted = if expired {
            real.tokens.max(entry.tokens)
        } else {
            real.tokens
        };
        self.add_to_counters(
            &entry.endpoint,
            requests.max(0),
            to_sql(counted),
            -to_sql(entry.tokens),
        )
    }

    /// It waits until an hour's worth is due and takes it in one go: deleting a little at
    /// every pick would touch old pages, and so write more, in every transaction.
    fn prune(&self, now: Millis) -> Result<()> {
        let horizon = now - RETENTION_MS;
        let oldest: Option<Millis> = self
            .0
            .prepare_cached("SELECT min(at_ms) FROM usage")?
            .query_row([], |r| r.get(0))?;
        if oldest.is_none_or(|at| at > horizon - PRUNE_BATCH_MS) {
            return Ok(());
        }
        // Reservations that expired unsettled count at their estimate: keep that count
        // when their rows go.
        self.0
            .prepare_cached(&format!(
                "INSERT INTO counters (endpoint, tokens)
                     SELECT endpoint, sum(tokens) FROM usage
                     WHERE open = 1 AND at_ms <= ?1 GROUP BY endpoint
                 ON CONFLICT (endpoint) DO UPDATE SET
                     tokens = min(tokens + excluded.tokens, {SATURATED}),
                     pending = max(pending - excluded.tokens, 0)"
            ))?
            .execute([horizon])?;
        self.0
            .prepare_cached("DELETE FROM usage WHERE at_ms <= ?1")?
            .execute([horizon])?;
        self.0
            .prepare_cached("DELETE FROM hourly WHERE hour < ?1")?
            .execute([(now - HISTORY_MS).div_euclid(HOUR_MS)])?;
        self.0
            .prepare_cached("DELETE FROM minute_totals WHERE minute < ?1")?
            .execute([quota::minute_of(horizon + 1)])?;
        self.0
            .prepare_cached("DELETE FROM reports WHERE resets_at <= ?1")?
            .execute([now])?;
        Ok(())
    }

    fn endpoints_used(&self) -> Result<Vec<String>> {
        let mut stmt = self.0.prepare(
            "SELECT endpoint FROM usage UNION SELECT endpoint FROM minute_totals ORDER BY 1",
        )?;
        let ids = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    fn forget_usage(&self, endpoint: &str) -> Result<u64> {
        let calls = self
            .0
            .execute("DELETE FROM usage WHERE endpoint = ?1", [endpoint])?;
        self.0
            .execute("DELETE FROM minute_totals WHERE endpoint = ?1", [endpoint])?;
        self.0
            .execute("DELETE FROM counters WHERE endpoint = ?1", [endpoint])?;
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
