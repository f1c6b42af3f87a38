//! What each endpoint used over the long run, in SQLite: the `counters` table (since first
//! use or the last reset) and the `hourly` table (90 days, kept through resets).

use anyhow::Result;
use rusqlite::{OptionalExtension, params};

use super::{SATURATED, Tx, clamp};
use crate::clock::{HOUR_MS, Millis};
use crate::ledger::{Change, Counters, Hourly};

impl Tx<'_> {
    pub(super) fn counters(&self, endpoint: &str) -> Result<Counters> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT requests, tokens, pending, rate_limited, failed FROM counters
                 WHERE endpoint = ?1",
            )?
            .query_row([endpoint], |r| {
                Ok(Counters {
                    requests: r.get(0)?,
                    tokens: r.get(1)?,
                    pending: r.get(2)?,
                    rate_limited: r.get(3)?,
                    failed: r.get(4)?,
                })
            })
            .optional()?
            .unwrap_or_default())
    }

    /// Adds to the counters of `endpoint`, none falling below 0 or rising past SQLite's
    /// largest integer.
    pub(super) fn add_counters(&self, endpoint: &str, change: Counters) -> Result<()> {
        self.0
            .prepare_cached(&format!(
                "INSERT INTO counters (endpoint, requests, tokens, pending, rate_limited, failed)
                 VALUES (?1, max(?2, 0), max(?3, 0), max(?4, 0), max(?5, 0), max(?6, 0))
                 ON CONFLICT (endpoint) DO UPDATE SET
                     requests = max(min(requests + ?2, {SATURATED}), 0),
                     tokens = max(min(tokens + ?3, {SATURATED}), 0),
                     pending = max(min(pending + ?4, {SATURATED}), 0),
                     rate_limited = max(min(rate_limited + ?5, {SATURATED}), 0),
                     failed = max(min(failed + ?6, {SATURATED}), 0)"
            ))?
            .execute(params![
                endpoint,
                change.requests,
                change.tokens,
                change.pending,
                change.rate_limited,
                change.failed
            ])?;
        Ok(())
    }

    /// Adds a change of usage to the hour of `at`.
    pub(super) fn add_to_hour(&self, endpoint: &str, at: Millis, change: Change) -> Result<()> {
        self.0
            .prepare_cached(&format!(
                "INSERT INTO hourly (endpoint, hour, requests, tokens)
                 VALUES (?1, ?2, max(?3, 0), max(?4, 0))
                 ON CONFLICT (endpoint, hour) DO UPDATE SET
                     requests = max(min(requests + ?3, {SATURATED}), 0),
                     tokens = max(min(tokens + ?4, {SATURATED}), 0)"
            ))?
            .execute(params![
                endpoint,
                at.div_euclid(HOUR_MS),
                change.requests,
                change.tokens
            ])?;
        Ok(())
    }

    pub(super) fn history(&self, endpoint: &str, since_hour: i64) -> Result<Vec<Hourly>> {
        let mut stmt = self.0.prepare_cached(
            "SELECT hour, requests, tokens FROM hourly
             WHERE endpoint = ?1 AND hour >= ?2 ORDER BY hour",
        )?;
        let rows = stmt.query_map(params![endpoint, since_hour], |r| {
            Ok(Hourly {
                hour: r.get(0)?,
                requests: clamp(r.get(1)?),
                tokens: clamp(r.get(2)?),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    pub(super) fn endpoints_with_history(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .0
            .prepare("SELECT DISTINCT endpoint FROM hourly ORDER BY 1")?;
        let ids = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    pub(super) fn drop_history_before(&self, first_hour: i64) -> Result<()> {
        self.0
            .prepare_cached("DELETE FROM hourly WHERE hour < ?1")?
            .execute([first_hour])?;
        Ok(())
    }

    pub(super) fn forget_counters(&self, endpoint: &str) -> Result<()> {
        self.0
            .execute("DELETE FROM counters WHERE endpoint = ?1", [endpoint])?;
        Ok(())
    }
}
