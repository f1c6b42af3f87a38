//! How endpoints answered, in SQLite: the `cooldowns`, `reports` and `turns` tables.

use anyhow::Result;
use rusqlite::{OptionalExtension, params};

use super::usage::usage_at;
use super::{Tx, clamp, to_sql};
use crate::clock::Millis;
use crate::cooldown::Cooldown;
use crate::ledger::Said;
use crate::quota::Limit;

impl Tx<'_> {
    pub(super) fn cooldown(&self, endpoint: &str) -> Result<Option<Cooldown>> {
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

    pub(super) fn set_cooldown(&self, endpoint: &str, cooldown: Option<&Cooldown>) -> Result<()> {
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

    pub(super) fn reports(&self, endpoint: &str) -> Result<Vec<Said>> {
        let mut stmt = self.0.prepare_cached(
            "SELECT limit_name, remaining, cap, resets_at,
                 base_requests, base_tokens, base_cached, base_output, base_cost
             FROM reports WHERE endpoint = ?1",
        )?;
        let rows = stmt.query_map([endpoint], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Said {
                    limit: Limit::ALL[0],
                    remaining: clamp(r.get(1)?),
                    cap: r.get::<_, Option<i64>>(2)?.map(clamp),
                    resets_at: r.get(3)?,
                    base: usage_at(r, 4)?,
                },
            ))
        })?;
        let mut reports = Vec::new();
        for row in rows {
            let (name, said) = row?;
            // A limit this build does not know is left alone.
            if let Some(limit) = Limit::from_name(&name) {
                reports.push(Said { limit, ..said });
            }
        }
        Ok(reports)
    }

    pub(super) fn set_report(&self, endpoint: &str, said: &Said, now: Millis) -> Result<()> {
        self.0
            .prepare_cached(
                "INSERT OR REPLACE INTO reports
                 (endpoint, limit_name, reported_at, remaining, cap, resets_at,
                  base_requests, base_tokens, base_cached, base_output, base_cost)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                endpoint,
                said.limit.name(),
                now,
                to_sql(said.remaining),
                said.cap.map(to_sql),
                said.resets_at,
                to_sql(said.base.requests),
                to_sql(said.base.input),
                to_sql(said.base.cached),
                to_sql(said.base.output),
                to_sql(said.base.cost)
            ])?;
        Ok(())
    }

    pub(super) fn last_turn(&self) -> Result<Option<String>> {
        Ok(self
            .0
            .prepare_cached("SELECT last FROM turns WHERE scope = ''")?
            .query_row([], |r| r.get(0))
            .optional()?)
    }

    pub(super) fn set_turn(&self, endpoint: &str) -> Result<()> {
        self.0
            .prepare_cached("INSERT OR REPLACE INTO turns (scope, last) VALUES ('', ?1)")?
            .execute([endpoint])?;
        Ok(())
    }

    pub(super) fn said_before(&self, note: &str) -> Result<bool> {
        Ok(self
            .0
            .prepare_cached("SELECT 1 FROM said WHERE note = ?1")?
            .exists([note])?)
    }

    pub(super) fn set_said(&self, note: &str) -> Result<()> {
        self.0
            .prepare_cached("INSERT OR IGNORE INTO said (note) VALUES (?1)")?
            .execute([note])?;
        Ok(())
    }

    pub(super) fn endpoints_answered(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .0
            .prepare("SELECT endpoint FROM cooldowns UNION SELECT endpoint FROM reports")?;
        let ids = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    pub(super) fn drop_reports_until(&self, until: Millis) -> Result<()> {
        self.0
            .prepare_cached("DELETE FROM reports WHERE resets_at <= ?1")?
            .execute([until])?;
        Ok(())
    }

    pub(super) fn forget_answers(&self, endpoint: &str) -> Result<()> {
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
