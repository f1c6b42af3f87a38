//! `state` for programs: JSON with the numbers of SPEC section 4, and CSV rows a cron job
//! can append to one file.

use anyhow::Result;
use serde::Serialize;
use serde::ser::SerializeMap;

use super::Row;
use crate::clock::Millis;
use crate::engine::admit::PoolStanding;
use crate::output;
use crate::quota::Limit;

/// A JSON object with one entry per window, in column order.
struct PerWindow<F: Fn(Limit) -> Option<u64>>(F);

impl<F: Fn(Limit) -> Option<u64>> Serialize for PerWindow<F> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(Limit::ALL.into_iter().map(|l| (l.name(), (self.0)(l))))
    }
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
        let mut map = s.serialize_map(Some(13))?;
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
        let mut map = s.serialize_map(Some(4))?;
        map.serialize_entry("name", &pool.name)?;
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
    for limit in Limit::ALL {
        header.push(format!("{}_used", limit.name()));
        header.push(format!("{}_limit", limit.name()));
    }
    header.extend(["open_reservations", "blocked_by", "cooldown_ends_in_s"].map(String::from));
    header.push("pool".into());
    for limit in Limit::ALL {
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
        for limit in Limit::ALL {
            record.push(row.standing.used.get(limit).to_string());
            let cap = row.standing.limits.get(limit);
            record.push(cap.map(|c| c.to_string()).unwrap_or_default());
        }
        record.push(row.open_reservations.to_string());
        record.push(row.blocked_by().unwrap_or_default().to_string());
        let ends = row
            .cooldown()
            .map(|c| output::seconds((c.until - now).max(0)));
        record.push(ends.map(|f| f.to_string()).unwrap_or_default());
        let pool = row.standing.pool.as_ref();
        record.push(pool.map(|p| p.name.clone()).unwrap_or_default());
        for limit in Limit::ALL {
            record.push(
                pool.map(|p| p.used.get(limit).to_string())
                    .unwrap_or_default(),
            );
            let cap = pool.and_then(|p| p.limits.get(limit));
            record.push(cap.map(|c| c.to_string()).unwrap_or_default());
        }
        out.write_record(&record)?;
    }
    Ok(String::from_utf8(out.into_inner()?)?)
}
