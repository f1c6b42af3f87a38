//! `state` for programs: JSON with the numbers of SPEC section 4, and CSV rows a cron job
//! can append to one file.

use anyhow::Result;
use serde::Serialize;
use serde::ser::SerializeMap;

use super::Row;
use crate::clock::Millis;
use crate::engine::admit::PoolStanding;
use crate::money::Money;
use crate::output;
use crate::quota::{Limit, Unit, Window};

/// A JSON object with one entry per limit, in column order; budgets in dollars.
struct PerWindow<F: Fn(Limit) -> Option<u64>>(F);

impl<F: Fn(Limit) -> Option<u64>> Serialize for PerWindow<F> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(Limit::ALL.into_iter().map(|l| {
            let value = (self.0)(l).map(|n| match l.is_money() {
                true => serde_json::json!(Money(n).dollars()),
                false => serde_json::json!(n),
            });
            (l.name(), value)
        }))
    }
}

/// Spend over the day and month windows, in dollars.
#[derive(Serialize)]
struct Spend {
    day: f64,
    month: f64,
}

impl Spend {
    fn of(used: &crate::quota::Used) -> Spend {
        let spent = |window| Money(used.get(Limit::new(Unit::Dollars, window))).dollars();
        Spend {
            day: spent(Window::Day),
            month: spent(Window::Month),
        }
    }
}

#[derive(Serialize)]
struct Latency {
    p50: u64,
    p90: u64,
    calls: u64,
}

#[derive(Serialize)]
struct JsonCooldown<'a> {
    reason: &'a str,
    ends_in_s: f64,
    strikes: u32,
    probe_out: bool,
}

/// One endpoint as a JSON object, with the numbers of SPEC section 4.
struct JsonRow<'a> {
    row: &'a Row<'a>,
    now: Millis,
}

impl Serialize for JsonRow<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (row, now) = (self.row, self.now);
        let (e, st) = (row.endpoint, &row.standing);
        let mut map = s.serialize_map(Some(15))?;
        map.serialize_entry("id", &e.id)?;
        map.serialize_entry("provider", &e.provider)?;
        map.serialize_entry("model", &e.model)?;
        map.serialize_entry("priority", &e.priority)?;
        map.serialize_entry("available", &row.available())?;
        map.serialize_entry("frees_in_s", &row.frees_in(now))?;
        map.serialize_entry("blocked_by", &row.blocked_by())?;
        map.serialize_entry("limits", &PerWindow(|l| st.limits.get(l)))?;
        map.serialize_entry("used", &PerWindow(|l| Some(st.used.get(l))))?;
        map.serialize_entry(
            "remaining",
            &PerWindow(|l| {
                st.limits
                    .get(l)
                    .map(|cap| cap.saturating_sub(st.used.get(l)))
            }),
        )?;
        map.serialize_entry("spend_usd", &Spend::of(&st.used))?;
        let latency = row.speed.map(|s| Latency {
            p50: s.p50,
            p90: s.p90,
            calls: s.calls,
        });
        map.serialize_entry("latency_ms", &latency)?;
        map.serialize_entry("open_reservations", &row.open_reservations)?;
        let cooldown = row.cooldown().map(|c| JsonCooldown {
            reason: &c.reason,
            ends_in_s: output::seconds((c.until - now).max(0)),
            strikes: c.strikes,
            probe_out: c.probe_at.is_some(),
        });
        map.serialize_entry("cooldown", &cooldown)?;
        let pool = st.pool.as_ref().map(|pool| JsonPool { pool });
        map.serialize_entry("pool", &pool)?;
        map.end()
    }
}

/// A row's pool: its name, and its limits, usage and what remains, keyed as the row's own.
struct JsonPool<'a> {
    pool: &'a PoolStanding,
}

impl Serialize for JsonPool<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let pool = self.pool;
        let mut map = s.serialize_map(Some(5))?;
        map.serialize_entry("name", &pool.name)?;
        map.serialize_entry("spend_usd", &Spend::of(&pool.used))?;
        map.serialize_entry("limits", &PerWindow(|l| pool.limits.get(l)))?;
        map.serialize_entry("used", &PerWindow(|l| Some(pool.used.get(l))))?;
        map.serialize_entry(
            "remaining",
            &PerWindow(|l| {
                pool.limits
                    .get(l)
                    .map(|cap| cap.saturating_sub(pool.used.get(l)))
            }),
        )?;
        map.end()
    }
}

pub fn json(rows: &[Row], now: Millis) -> Result<String> {
    let rows: Vec<JsonRow> = rows.iter().map(|row| JsonRow { row, now }).collect();
    Ok(format!("{}\n", serde_json::to_string_pretty(&rows)?))
}

/// One line per endpoint, each with `at`, the time of the reading; without the header
/// row when appending to a file that has one.
pub fn csv(rows: &[Row], now: Millis, with_header: bool) -> Result<String> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let at = output::rfc3339(now);
    let mut header: Vec<String> = [
        "at",
        "id",
        "provider",
        "model",
        "priority",
        "available",
        "frees_in_s",
    ]
    .map(String::from)
    .to_vec();
    // The six limits of old keep their places; the others come after every column of old,
    // so that a file appended to by an earlier version lines up.
    let (old, new) = Limit::ALL.split_at(6);
    for limit in old {
        header.push(format!("{}_used", limit.name()));
        header.push(format!("{}_limit", limit.name()));
    }
    header.extend(["open_reservations", "blocked_by", "cooldown_ends_in_s"].map(String::from));
    header.push("pool".into());
    for limit in old {
        header.push(format!("pool_{}_used", limit.name()));
        header.push(format!("pool_{}_limit", limit.name()));
    }
    for limit in new {
        header.push(format!("{}_used", limit.name()));
        header.push(format!("{}_limit", limit.name()));
    }
    for limit in new {
        header.push(format!("pool_{}_used", limit.name()));
        header.push(format!("pool_{}_limit", limit.name()));
    }
    if with_header {
        out.write_record(&header)?;
    }
    for row in rows {
        let e = row.endpoint;
        let mut record = vec![
            at.clone(),
            e.id.clone(),
            e.provider.clone(),
            e.model.clone(),
            e.priority.to_string(),
            row.available().to_string(),
            row.frees_in(now).map(|f| f.to_string()).unwrap_or_default(),
        ];
        let value = |limit: Limit, n: u64| match limit.is_money() {
            true => Money(n).to_string(),
            false => n.to_string(),
        };
        let own = |record: &mut Vec<String>, limits: &[Limit]| {
            for &limit in limits {
                record.push(value(limit, row.standing.used.get(limit)));
                let cap = row.standing.limits.get(limit);
                record.push(cap.map(|c| value(limit, c)).unwrap_or_default());
            }
        };
        let pooled = |record: &mut Vec<String>, limits: &[Limit]| {
            let pool = row.standing.pool.as_ref();
            for &limit in limits {
                let used = pool.map(|p| value(limit, p.used.get(limit)));
                record.push(used.unwrap_or_default());
                let cap = pool.and_then(|p| p.limits.get(limit));
                record.push(cap.map(|c| value(limit, c)).unwrap_or_default());
            }
        };
        own(&mut record, old);
        record.push(row.open_reservations.to_string());
        record.push(row.blocked_by().unwrap_or_default().to_string());
        let ends = row
            .cooldown()
            .map(|c| output::seconds((c.until - now).max(0)));
        record.push(ends.map(|f| f.to_string()).unwrap_or_default());
        let pool = row.standing.pool.as_ref();
        record.push(pool.map(|p| p.name.clone()).unwrap_or_default());
        pooled(&mut record, old);
        own(&mut record, new);
        pooled(&mut record, new);
        out.write_record(&record)?;
    }
    Ok(String::from_utf8(out.into_inner()?)?)
}
