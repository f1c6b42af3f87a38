//! What each endpoint used over the long run, in SQLite: the `counters` table (since first
//! use or the last reset) and the `hourly` table (90 days, kept through resets).

use anyhow::Result;
use rusqlite::{OptionalExtension, params};

use super::usage::{MEASURED, columns, usage_at};
use super::{SATURATED, Tx};
use crate::clock::{HOUR_MS, Millis};
use crate::ledger::{Change, Counters, Hourly};
use crate::quota::MEASURES;

/// The counters' columns: the usage counted ([`MEASURED`]), then the pending estimates
/// (their requests are never pending), then the outcomes.
const PENDING: [&str; MEASURES - 1] = [
    "pending",
    "pending_cached",
    "pending_output",
    "pending_cost",
];

impl Tx<'_> {
    pub(super) fn counters(&self, endpoint: &str) -> Result<Counters> {
        Ok(self
            .0
            .prepare_cached(&format!(
                "SELECT {}, {}, rate_limited, failed FROM counters WHERE endpoint = ?1",
                columns(""),
                PENDING.join(", ")
            ))?
            .query_row([endpoint], |r| {
                let mut counted = [0i64; MEASURES];
                let mut pending = [0i64; MEASURES];
                for (i, n) in counted.iter_mut().enumerate() {
                    *n = r.get(i)?;
                }
                for (i, n) in pending.iter_mut().skip(1).enumerate() {
                    *n = r.get(MEASURES + i)?;
                }
                Ok(Counters {
                    counted: Change(counted),
                    pending: Change(pending),
                    rate_limited: r.get(2 * MEASURES - 1)?,
                    failed: r.get(2 * MEASURES)?,
                })
            })
            .optional()?
            .unwrap_or_default())
    }

    /// Adds to the counters of `endpoint`, none falling below 0 or rising past SQLite's
    /// largest integer.
    pub(super) fn add_counters(&self, endpoint: &str, change: Counters) -> Result<()> {
        let names: Vec<&str> = MEASURED
            .iter()
            .chain(&PENDING)
            .copied()
            .chain(["rate_limited", "failed"])
            .collect();
        let values: Vec<i64> = change
            .counted
            .0
            .iter()
            .chain(&change.pending.0[1..])
            .copied()
            .chain([change.rate_limited, change.failed])
            .collect();
        let params: Vec<String> = (2..2 + names.len())
            .map(|n| format!("max(?{n}, 0)"))
            .collect();
        let sets: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} = max(min({c} + ?{n}, {SATURATED}), 0)", n = i + 2))
            .collect();
        let sql = format!(
            "INSERT INTO counters (endpoint, {}) VALUES (?1, {})
             ON CONFLICT (endpoint) DO UPDATE SET {}",
            names.join(", "),
            params.join(", "),
            sets.join(", ")
        );
        let mut stmt = self.0.prepare_cached(&sql)?;
        stmt.raw_bind_parameter(1, endpoint)?;
        for (i, value) in values.iter().enumerate() {
            stmt.raw_bind_parameter(i + 2, value)?;
        }
        stmt.raw_execute()?;
        Ok(())
    }

    /// Adds a change of usage to the hour of `at`.
    pub(super) fn add_to_hour(&self, endpoint: &str, at: Millis, change: Change) -> Result<()> {
        self.add_to_total("hourly", "hour", endpoint, at.div_euclid(HOUR_MS), change)
    }

    /// Adds a change of usage to the row of `table` keyed by `endpoint` and `column` =
    /// `key` (an hour of the history, a month's start), none below 0.
    pub(super) fn add_to_total(
        &self,
        table: &str,
        column: &str,
        endpoint: &str,
        key: i64,
        change: Change,
    ) -> Result<()> {
        let sets = MEASURED
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} = max(min({c} + ?{n}, {SATURATED}), 0)", n = i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let [a, b, c, d, e] = change.0;
        self.0
            .prepare_cached(&format!(
                "INSERT INTO {table} (endpoint, {column}, {})
                 VALUES (?1, ?2, max(?3, 0), max(?4, 0), max(?5, 0), max(?6, 0), max(?7, 0))
                 ON CONFLICT (endpoint, {column}) DO UPDATE SET {sets}",
                columns("")
            ))?
            .execute(params![endpoint, key, a, b, c, d, e])?;
        Ok(())
    }

    pub(super) fn history(&self, endpoint: &str, since_hour: i64) -> Result<Vec<Hourly>> {
        let mut stmt = self.0.prepare_cached(&format!(
            "SELECT hour, {} FROM hourly WHERE endpoint = ?1 AND hour >= ?2 ORDER BY hour",
            columns("")
        ))?;
        let rows = stmt.query_map(params![endpoint, since_hour], |r| {
            Ok(Hourly {
                hour: r.get(0)?,
                usage: usage_at(r, 1)?,
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
