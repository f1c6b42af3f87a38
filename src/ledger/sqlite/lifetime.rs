//! What each endpoint used over the long run, in SQLite: the `counters` table (since first
//! use or the last reset) and the `hourly` table (90 days). `usage.rs` keeps both current
//! as it writes calls.

use anyhow::Result;
use rusqlite::{OptionalExtension, params};

use super::{Tx, clamp};
use crate::clock::{HOUR_MS, Millis};
use crate::ledger::{Hourly, Lifetime, RESERVATION_OPEN_MS, Tally, Totals};

const SATURATED: &str = "9223372036854775807";

impl Tx<'_> {
    /// Adds to the counters of `endpoint`, and to the estimates its open reservations hold.
    pub(super) fn add_to_counters(
        &self,
        endpoint: &str,
        requests: i64,
        tokens: i64,
        pending: i64,
    ) -> Result<()> {
        self.0
            .prepare_cached(&format!(
                "INSERT INTO counters (endpoint, requests, tokens, pending)
                 VALUES (?1, ?2, ?3, max(?4, 0))
                 ON CONFLICT (endpoint) DO UPDATE SET
                     requests = min(requests + ?2, {SATURATED}),
                     tokens = min(tokens + ?3, {SATURATED}),
                     pending = max(min(pending + ?4, {SATURATED}), 0)"
            ))?
            .execute(params![endpoint, requests, tokens, pending])?;
        Ok(())
    }

    /// Adds a change of usage to the hour of `at`.
    pub(super) fn add_to_hour(
        &self,
        endpoint: &str,
        at: Millis,
        requests: i64,
        tokens: i64,
    ) -> Result<()> {
        self.0
            .prepare_cached(&format!(
                "INSERT INTO hourly (endpoint, hour, requests, tokens) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (endpoint, hour) DO UPDATE SET
                     requests = max(min(requests + ?3, {SATURATED}), 0),
                     tokens = max(min(tokens + ?4, {SATURATED}), 0)"
            ))?
            .execute(params![endpoint, at.div_euclid(HOUR_MS), requests, tokens])?;
        Ok(())
    }
}

impl Lifetime for Tx<'_> {
    fn totals(&self, endpoint: &str, now: Millis) -> Result<Totals> {
        let counted: Option<(i64, i64, i64, i64, i64)> = self
            .0
            .prepare_cached(
                "SELECT requests, tokens, rate_limited, failed, pending FROM counters
                 WHERE endpoint = ?1",
            )?
            .query_row([endpoint], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()?;
        let (requests, tokens, rate_limited, failed, pending) = counted.unwrap_or_default();
        // Reservations that expired unsettled count at their estimate: every open one's
        // estimate but those still open, the last 15 minutes' few (no scan of the day).
        let unexpired: f64 = self
            .0
            .prepare_cached(
                "SELECT total(tokens) FROM usage
                 WHERE endpoint = ?1 AND open = 1 AND at_ms > ?2",
            )?
            .query_row(params![endpoint, now - RESERVATION_OPEN_MS], |r| r.get(0))?;
        let expired = clamp(pending).saturating_sub(unexpired as u64);
        Ok(Totals {
            requests: clamp(requests),
            tokens: clamp(tokens).saturating_add(expired),
            rate_limited: clamp(rate_limited),
            failed: clamp(failed),
        })
    }

    fn count_outcome(&self, endpoint: &str, outcome: Tally) -> Result<()> {
        let column = match outcome {
            Tally::RateLimited => "rate_limited",
            Tally::Failed => "failed",
        };
        self.0
            .prepare_cached(&format!(
                "INSERT INTO counters (endpoint, {column}) VALUES (?1, 1)
                 ON CONFLICT (endpoint) DO UPDATE SET {column} = {column} + 1"
            ))?
            .execute([endpoint])?;
        Ok(())
    }

    fn history(&self, endpoint: &str, since_hour: i64) -> Result<Vec<Hourly>> {
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

    fn endpoints_with_history(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .0
            .prepare("SELECT DISTINCT endpoint FROM hourly ORDER BY 1")?;
        let ids = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }
}
