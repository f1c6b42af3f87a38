//! Usage in SQLite: a row per call in `usage`, and per-minute buckets with running totals
//! in `minute_totals`, so that the hour and day windows cost two index look-ups each
//! however long the history is. Windows count every row stamped after their start,
//! including rows stamped after `now`.

use anyhow::Result;
use rusqlite::{OptionalExtension, params};

use super::{SATURATED, Tx, clamp, to_sql};
use crate::clock::{MINUTE_MS, Millis, SECOND_MS};
use crate::ledger::{Change, Departing, Entry, Horizons, MonthStart, Source, Span};
use crate::quota::{MEASURES, Request};

/// The columns of each measure ([`Request::measures`]) in every table of usage; `tokens`
/// are input tokens (what earlier versions counted).
pub(super) const MEASURED: [&str; MEASURES] = ["requests", "tokens", "cached", "output", "cost"];

/// `column` of every measure, each prefixed: `cum_requests, cum_tokens, ...`.
pub(super) fn columns(prefix: &str) -> String {
    MEASURED.map(|c| format!("{prefix}{c}")).join(", ")
}

/// The usage in `MEASURES` columns of `row` from `first` on.
pub(super) fn usage_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Request> {
    let mut n = [0u64; MEASURES];
    for (i, value) in n.iter_mut().enumerate() {
        *value = clamp(row.get(first + i)?);
    }
    Ok(Request::from_measures(n))
}

/// The same from columns SQLite summed with total(), a float that never overflows.
fn summed_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Request> {
    let mut n = [0u64; MEASURES];
    for (i, value) in n.iter_mut().enumerate() {
        *value = row.get::<_, f64>(first + i)? as u64;
    }
    Ok(Request::from_measures(n))
}

fn signed_params(usage: Request) -> [i64; MEASURES] {
    usage.measures().map(to_sql)
}

/// How much expired usage waits before it is pruned in one go.
const PRUNE_BATCH_MS: Millis = 60 * MINUTE_MS;

impl Tx<'_> {
    pub(super) fn newest_call(&self) -> Result<Option<Millis>> {
        Ok(self
            .0
            .prepare_cached("SELECT max(at_ms) FROM usage")?
            .query_row([], |r| r.get(0))?)
    }

    /// Running totals at the newest bucket of `endpoint`: what the windows subtract from.
    pub(super) fn running(&self, of: Buckets, endpoint: &str) -> Result<Request> {
        let sql = match of {
            Buckets::Minutes => {
                "SELECT cum_requests, cum_tokens, cum_cached, cum_output, cum_cost
                 FROM minute_totals WHERE endpoint = ?1 ORDER BY minute DESC LIMIT 1"
            }
            Buckets::Seconds => {
                "SELECT cum_requests, cum_tokens, cum_cached, cum_output, cum_cost
                 FROM second_totals WHERE endpoint = ?1 ORDER BY second DESC LIMIT 1"
            }
        };
        let latest = self
            .0
            .prepare_cached(sql)?
            .query_row([endpoint], |r| usage_at(r, 0))
            .optional()?;
        Ok(latest.unwrap_or_default())
    }

    /// Running totals just before the first bucket at or after `first`; `None` when there
    /// is no such bucket.
    fn total_before(&self, of: Buckets, endpoint: &str, first: i64) -> Result<Option<Request>> {
        // The read statements are written out whole: a pick over many rows runs them once a
        // row, and building their text each time cost as much as running them.
        let sql = match of {
            Buckets::Minutes => {
                "SELECT cum_requests - requests, cum_tokens - tokens, cum_cached - cached,
                     cum_output - output, cum_cost - cost
                 FROM minute_totals
                 WHERE endpoint = ?1 AND minute >= ?2 ORDER BY minute LIMIT 1"
            }
            Buckets::Seconds => {
                "SELECT cum_requests - requests, cum_tokens - tokens, cum_cached - cached,
                     cum_output - output, cum_cost - cost
                 FROM second_totals
                 WHERE endpoint = ?1 AND second >= ?2 ORDER BY second LIMIT 1"
            }
        };
        Ok(self
            .0
            .prepare_cached(sql)?
            .query_row(params![endpoint, first], |r| usage_at(r, 0))
            .optional()?)
    }

    /// Usage in the minute, hour, day and month windows of `span`.
    pub(super) fn windows(
        &self,
        endpoint: &str,
        span: &Span,
        running: Request,
    ) -> Result<[Request; 4]> {
        // total() is a float and never overflows; the sums saturate when cast back.
        let since = |of: Buckets, first: i64, running: Request| -> Result<Request> {
            Ok(match self.total_before(of, endpoint, first)? {
                Some(before) => Change::between(before, running).applied_to(Request::default()),
                None => Request::default(),
            })
        };
        // The minute: the calls of the second it begins in, one by one, then whole seconds.
        let first_second = span.minute_after.div_euclid(SECOND_MS) + 1;
        let partly = self
            .0
            .prepare_cached(
                "SELECT total(requests), total(tokens), total(cached), total(output),
                     total(cost)
                 FROM usage WHERE endpoint = ?1 AND at_ms > ?2 AND at_ms < ?3",
            )?
            .query_row(
                params![endpoint, span.minute_after, first_second * SECOND_MS],
                |r| summed_at(r, 0),
            )?;
        let seconds = since(
            Buckets::Seconds,
            first_second,
            self.running(Buckets::Seconds, endpoint)?,
        )?;
        let minute = Change::of(seconds).applied_to(partly);
        let month = match span.month_after {
            Some(after) => self
                .0
                .prepare_cached(
                    "SELECT total(requests), total(tokens), total(cached), total(output),
                         total(cost)
                     FROM months WHERE endpoint = ?1 AND start_ms > ?2",
                )?
                .query_row(params![endpoint, after], |r| summed_at(r, 0))?,
            None => Request::default(),
        };
        Ok([
            minute,
            since(Buckets::Minutes, span.hour_from, running)?,
            since(Buckets::Minutes, span.day_from, running)?,
            month,
        ])
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
                    "SELECT lease, endpoint, at_ms, open, requests, tokens, cached, output, cost
                     FROM usage WHERE endpoint = ?1 AND open = 1 AND at_ms > ?2
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

    /// The estimates of the reservations of `endpoint` still open after `after`.
    pub(super) fn open_estimates(&self, endpoint: &str, after: Millis) -> Result<Request> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT total(requests), total(tokens), total(cached), total(output),
                     total(cost)
                 FROM usage WHERE endpoint = ?1 AND open = 1 AND at_ms > ?2",
            )?
            .query_row(params![endpoint, after], |r| summed_at(r, 0))?)
    }

    /// What leaves the window `ask` names, earliest first, until `enough` has left.
    pub(super) fn leaving(&self, ask: &Departing<'_>) -> Result<Vec<(i64, u64)>> {
        let (sql, from) = match ask.source {
            Source::Calls { after } => (
                "SELECT at_ms, requests, tokens, cached, output, cost FROM usage
                 WHERE endpoint = ?1 AND at_ms > ?2 ORDER BY at_ms",
                after,
            ),
            Source::Buckets { from } => (
                "SELECT minute, requests, tokens, cached, output, cost FROM minute_totals
                 WHERE endpoint = ?1 AND minute >= ?2 ORDER BY minute",
                from,
            ),
        };
        let mut stmt = self.0.prepare_cached(sql)?;
        let mut rows = stmt.query(params![ask.endpoint, from])?;
        let (mut out, mut freed) = (Vec::new(), 0u64);
        while freed < ask.enough
            && let Some(row) = rows.next()?
        {
            let n = usage_at(row, 1)?
                .measures()
                .iter()
                .zip(ask.weights)
                .fold(0u64, |sum, (&n, w)| sum.saturating_add(n.saturating_mul(w)));
            freed = freed.saturating_add(n);
            out.push((row.get(0)?, n));
        }
        Ok(out)
    }

    pub(super) fn by_lease(&self, lease: &str) -> Result<Option<Entry>> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT lease, endpoint, at_ms, open, requests, tokens, cached, output, cost
                 FROM usage WHERE lease = ?1",
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
        let [r, i, c, o, d] = signed_params(usage);
        self.0
            .prepare_cached(
                "INSERT INTO usage
                     (endpoint, at_ms, lease, open, requests, tokens, cached, output, cost)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![endpoint, at, lease, lease.is_some(), r, i, c, o, d])?;
        Ok(())
    }

    pub(super) fn close_call(&self, entry: &Entry, real: Request) -> Result<()> {
        let [r, i, c, o, d] = signed_params(real);
        self.0
            .prepare_cached(
                "UPDATE usage SET open = 0, requests = ?2, tokens = ?3, cached = ?4,
                     output = ?5, cost = ?6
                 WHERE lease = ?1",
            )?
            .execute(params![entry.lease, r, i, c, o, d])?;
        Ok(())
    }

    /// Adds a change of usage to a bucket (a minute or a second) and to the running totals
    /// after it. Totals saturate at SQLite's largest integer rather than overflow.
    pub(super) fn add_to_bucket(
        &self,
        of: Buckets,
        endpoint: &str,
        bucket: i64,
        change: Change,
    ) -> Result<()> {
        let (table, key) = of.names();
        // ?3.. are the change of each measure, in MEASURED order.
        let each = |f: &dyn Fn(&str, usize) -> String| {
            MEASURED
                .iter()
                .enumerate()
                .map(|(i, c)| f(c, i + 3))
                .collect::<Vec<_>>()
                .join(",\n")
        };
        let sets = each(&|c, n| {
            format!(
                "{c} = min({c} + ?{n}, {SATURATED}), cum_{c} = min(cum_{c} + ?{n}, {SATURATED})"
            )
        });
        let [a, b, c, d, e] = change.0;
        let updated = self
            .0
            .prepare_cached(&format!(
                "UPDATE {table} SET {sets} WHERE endpoint = ?1 AND {key} = ?2"
            ))?
            .execute(params![endpoint, bucket, a, b, c, d, e])?;
        if updated == 0 {
            // A new bucket continues the running totals of the bucket before it; with none
            // (older ones pruned), it starts where the next bucket's totals begin.
            let running = each(&|c, n| {
                format!(
                    "min(?{n} + coalesce(
                       (SELECT cum_{c} FROM {table}
                        WHERE endpoint = ?1 AND {key} < ?2 ORDER BY {key} DESC LIMIT 1),
                       (SELECT cum_{c} - {c} FROM {table}
                        WHERE endpoint = ?1 AND {key} > ?2 ORDER BY {key} LIMIT 1), 0),
                       {SATURATED})"
                )
            });
            self.0
                .prepare_cached(&format!(
                    "INSERT INTO {table} (endpoint, {key}, {}, {})
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, {running}",
                    columns(""),
                    columns("cum_")
                ))?
                .execute(params![endpoint, bucket, a, b, c, d, e])?;
        }
        // Usage normally lands in the newest bucket and this touches nothing; a settle of an
        // older reservation carries into the later running totals.
        let carried = each(&|c, n| format!("cum_{c} = min(cum_{c} + ?{n}, {SATURATED})"));
        self.0
            .prepare_cached(&format!(
                "UPDATE {table} SET {carried} WHERE endpoint = ?1 AND {key} > ?2"
            ))?
            .execute(params![endpoint, bucket, a, b, c, d, e])?;
        Ok(())
    }

    /// Adds a change of usage to the total of the month that began at `month`, none below 0.
    pub(super) fn add_to_month(
        &self,
        endpoint: &str,
        month: MonthStart,
        change: Change,
    ) -> Result<()> {
        self.add_to_total("months", "start_ms", endpoint, month, change)
    }

    pub(super) fn add_latency(&self, endpoint: &str, at: Millis, ms: u64) -> Result<()> {
        self.0
            .prepare_cached("INSERT INTO latencies (endpoint, at_ms, ms) VALUES (?1, ?2, ?3)")?
            .execute(params![endpoint, at, to_sql(ms)])?;
        Ok(())
    }

    pub(super) fn latencies(&self, endpoint: &str, after: Millis) -> Result<Vec<u64>> {
        let mut stmt = self
            .0
            .prepare_cached("SELECT ms FROM latencies WHERE endpoint = ?1 AND at_ms > ?2")?;
        let rows = stmt.query_map(params![endpoint, after], |r| r.get::<_, i64>(0))?;
        Ok(rows
            .map(|r| r.map(clamp))
            .collect::<rusqlite::Result<Vec<_>>>()?)
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

    pub(super) fn open_estimates_until(&self, until: Millis) -> Result<Vec<(String, Request)>> {
        let totals = MEASURED.map(|c| format!("total({c})")).join(", ");
        let mut stmt = self.0.prepare_cached(&format!(
            "SELECT endpoint, {totals} FROM usage
             WHERE open = 1 AND at_ms <= ?1 GROUP BY endpoint ORDER BY endpoint"
        ))?;
        let rows = stmt.query_map([until], |r| Ok((r.get::<_, String>(0)?, summed_at(r, 1)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    pub(super) fn drop_usage_before(&self, horizons: &Horizons) -> Result<()> {
        self.0
            .prepare_cached("DELETE FROM usage WHERE at_ms <= ?1")?
            .execute([horizons.calls_until])?;
        self.0
            .prepare_cached("DELETE FROM minute_totals WHERE minute < ?1")?
            .execute([horizons.first_minute])?;
        self.0
            .prepare_cached("DELETE FROM second_totals WHERE second < ?1")?
            .execute([horizons.first_second])?;
        self.0
            .prepare_cached("DELETE FROM latencies WHERE at_ms <= ?1")?
            .execute([horizons.calls_until])?;
        self.0
            .prepare_cached("DELETE FROM months WHERE start_ms < ?1")?
            .execute([horizons.months_from])?;
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
        for table in ["minute_totals", "second_totals", "months", "latencies"] {
            self.0.execute(
                &format!("DELETE FROM {table} WHERE endpoint = ?1"),
                [endpoint],
            )?;
        }
        Ok(calls as u64)
    }
}

/// The buckets of usage kept with running totals: minutes for the hour and day windows,
/// seconds for the minute window.
#[derive(Clone, Copy)]
pub(super) enum Buckets {
    Minutes,
    Seconds,
}

impl Buckets {
    /// The table and its key column.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Buckets::Minutes => ("minute_totals", "minute"),
            Buckets::Seconds => ("second_totals", "second"),
        }
    }
}

/// A call read as `lease, endpoint, at_ms, open` and its measures.
fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        lease: r.get(0)?,
        endpoint: r.get(1)?,
        at: r.get(2)?,
        open: r.get(3)?,
        usage: usage_at(r, 4)?,
    })
}
