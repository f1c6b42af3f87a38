//! How endpoints answered, in SQLite: the `cooldowns`, `reports` and `turns` tables.

use anyhow::Result;
use rusqlite::{OptionalExtension, params};

use super::{Tx, clamp, to_sql};
use crate::clock::Millis;
use crate::cooldown::Cooldown;
use crate::ledger::{Answers, Report};
use crate::quota::{Limit, Unit};

impl Answers for Tx<'_> {
    fn cooldown(&self, endpoint: &str) -> Result<Option<Cooldown>> {
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

    fn set_cooldown(&self, endpoint: &str, cooldown: Option<&Cooldown>) -> Result<()> {
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

    fn mark_probe(&self, endpoint: &str, now: Millis) -> Result<()> {
        self.0
            .prepare_cached("UPDATE cooldowns SET probe_at = ?2 WHERE endpoint = ?1")?
            .execute(params![endpoint, now])?;
        Ok(())
    }

    fn reports(&self, endpoint: &str, now: Millis) -> Result<Vec<Report>> {
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
        let latest = self.latest_total(endpoint)?.unwrap_or((0, 0));
        let mut reports = Vec::new();
        for (name, remaining, cap, resets_at, base_requests, base_tokens) in rows {
            let Some(limit) = Limit::from_name(&name) else {
                continue;
            };
            let since = match limit.unit {
                Unit::Requests => latest.0.saturating_sub(base_requests),
                Unit::Tokens => latest.1.saturating_sub(base_tokens),
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

    fn set_report(
        &self,
        endpoint: &str,
        limit: Limit,
        remaining: u64,
        cap: Option<u64>,
        resets_at: Millis,
        now: Millis,
    ) -> Result<()> {
        let base = self.latest_total(endpoint)?.unwrap_or((0, 0));
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

    fn last_turn(&self) -> Result<Option<String>> {
        Ok(self
            .0
            .prepare_cached("SELECT last FROM turns WHERE scope = ''")?
            .query_row([], |r| r.get(0))
            .optional()?)
    }

    fn set_turn(&self, endpoint: &str) -> Result<()> {
        self.0
            .prepare_cached("INSERT OR REPLACE INTO turns (scope, last) VALUES ('', ?1)")?
            .execute([endpoint])?;
        Ok(())
    }

    fn endpoints_answered(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .0
            .prepare("SELECT endpoint FROM cooldowns UNION SELECT endpoint FROM reports")?;
        let ids = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    fn forget_answers(&self, endpoint: &str) -> Result<()> {
        for table in ["cooldowns", "reports"] {
            self.0.execute(
                &format!("DELETE FROM {table} WHERE endpoint = ?1"),
                [endpoint],
            )?;
        }
        self.0
            .execute("DELETE FROM turns WHERE last = ?1", [endpoint])?;
        Ok(())
    }
}
