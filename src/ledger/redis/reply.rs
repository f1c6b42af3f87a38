//! The values of a Redis namespace as stored (a call, the hashes) and the standings
//! script's reply, read into the ledger's types.

use std::collections::HashMap;

use anyhow::{Context as _, Result};
use redis::Value;

use super::buckets::{Bucket, since};
use super::keys::{Cool, Life};
use crate::clock::Millis;
use crate::cooldown::Cooldown;
use crate::ledger::{Change, Counters, Entry, Said, Stored, signed};
use crate::quota::{Limit, MEASURES, Request};

/// A call as stored: `at`, its measures, `open`.
pub fn call_value(at: Millis, usage: Request, open: bool) -> String {
    let [r, i, c, o, d] = usage.measures();
    format!("{at} {r} {i} {c} {o} {d} {}", u8::from(open))
}

/// A call as [`call_value`] writes it, or as layout 1 did (`at requests tokens open`).
pub fn parse_call(id: &str, endpoint: &str, value: &str) -> Option<Entry> {
    let (at, measures, open) = call_parts(value)?;
    Some(Entry {
        lease: id.to_owned(),
        endpoint: endpoint.to_owned(),
        at,
        usage: Request::from_measures(measures),
        open,
    })
}

/// A call's instant, measures and whether it is open, read without allocating: a busy
/// minute's account sums some thousands of them.
fn call_parts(value: &str) -> Option<(Millis, [u64; MEASURES], bool)> {
    let mut parts = value.split(' ');
    let at = parts.next()?.parse().ok()?;
    let mut numbers = [""; MEASURES + 1];
    let mut n = 0;
    for part in parts {
        *numbers.get_mut(n)? = part;
        n += 1;
    }
    let (measures, open): (&[&str], &str) = match n {
        // Layout 1: requests and tokens, which read as input tokens.
        3 => (&numbers[..2], numbers[2]),
        n if n == MEASURES + 1 => (&numbers[..MEASURES], numbers[MEASURES]),
        _ => return None,
    };
    let mut out = [0u64; MEASURES];
    for (n, text) in out.iter_mut().zip(measures) {
        *n = text.parse().ok()?;
    }
    Some((at, out, open == "1"))
}

/// Measures from `texts`, those missing 0.
pub fn measures(texts: &[String]) -> Request {
    let mut measures = [0u64; MEASURES];
    for (n, text) in measures.iter_mut().zip(texts) {
        *n = count(text);
    }
    Request::from_measures(measures)
}

/// A number as a script or a hash writes it (`"12"`, `"1.2e+19"`), as a count.
pub fn count(text: &str) -> u64 {
    text.parse::<f64>().map_or(0, |f| f.max(0.0) as u64)
}

/// Counts above 10^15 a call (a million dollars of cost) are refused: the server's
/// counters are 64-bit integers that must not overflow in the middle of a transaction.
pub fn stored(usage: Request) -> Result<()> {
    const MOST: u64 = 1_000_000_000_000_000;
    let n = usage.requests.max(usage.tokens());
    anyhow::ensure!(
        n <= MOST,
        "{n} is more than the Redis ledger counts in one call ({MOST})"
    );
    anyhow::ensure!(
        usage.cost <= MOST * 1000,
        "a call costing more than a million dollars is more than the Redis ledger counts"
    );
    Ok(())
}

fn pairs(value: Value) -> Result<HashMap<String, String>> {
    let items: Vec<String> = redis::from_redis_value(value)?;
    Ok(items
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect())
}

/// What a step that holds the lock learns of an endpoint's buckets from its standings, so
/// that it updates them without reading them again.
pub struct Seen {
    pub first_second: Option<i64>,
    pub newest_second: Option<Bucket>,
    pub newest_minute: Option<Bucket>,
    /// How far its calls were looked at for forgetting (`kept` in its counters).
    pub kept: Option<Millis>,
    /// Its last call, if any.
    pub last_call: Option<Millis>,
}

/// One endpoint's part of the standings script's reply: the windows summed from the
/// buckets' running totals and the calls read one by one, and the rest as stored.
pub fn parse_standing(
    endpoint: &str,
    month_after: Option<i64>,
    reply: Value,
) -> Result<(Stored, Seen)> {
    let parts: Vec<Value> = redis::from_redis_value(reply).context("an unexpected reply")?;
    let [
        first_second,
        newest_second,
        from_second,
        calls,
        newest_minute,
        hour_from,
        day_from,
        months,
        open,
        oldest,
        last,
        life,
        cool,
        rep,
    ] = <[Value; 14]>::try_from(parts)
        .map_err(|_| anyhow::anyhow!("an unexpected reply to the standings script"))?;
    let bucket = |value: Value| -> Result<Option<Bucket>> {
        let members: Vec<String> = redis::from_redis_value(value)?;
        members.first().map(|m| Bucket::read(m)).transpose()
    };
    let first_second: Vec<(String, f64)> = redis::from_redis_value(first_second)?;
    let newest_second = bucket(newest_second)?;
    let newest_minute = bucket(newest_minute)?;
    let mut minute = since(newest_second.as_ref(), bucket(from_second)?.as_ref());
    if let Value::Array(calls) = calls {
        for call in calls {
            let Value::BulkString(bytes) = call else {
                continue;
            };
            let Some((_, measures, _)) = std::str::from_utf8(&bytes).ok().and_then(call_parts)
            else {
                continue;
            };
            for (n, c) in minute.iter_mut().zip(measures) {
                *n = n.saturating_add(signed(c));
            }
        }
    }
    let hour = since(newest_minute.as_ref(), bucket(hour_from)?.as_ref());
    let day = since(newest_minute.as_ref(), bucket(day_from)?.as_ref());
    // Month totals are kept under `"start measure"`; those of a start after the month
    // before count.
    let mut month = [0i64; MEASURES];
    for (field, total) in pairs(months)? {
        let Some((start, k)) = field.split_once(' ') else {
            continue;
        };
        let (Ok(start), Ok(k)) = (start.parse::<f64>(), k.parse::<usize>()) else {
            continue;
        };
        if month_after.is_some_and(|after| start > after as f64) && (1..=MEASURES).contains(&k) {
            month[k - 1] = month[k - 1].saturating_add(count(&total) as i64);
        }
    }
    let open: i64 = redis::from_redis_value(open)?;
    let oldest: Vec<String> = redis::from_redis_value(oldest)?;
    let last: Vec<String> = redis::from_redis_value(last)?;
    let life = pairs(life)?;
    let cool = pairs(cool)?;
    let cooldown = cool
        .get(Cool::Until.field())
        .and_then(|v| v.parse().ok())
        .map(|until| {
            let number = |field: Cool| cool.get(field.field()).and_then(|v| v.parse().ok());
            Cooldown {
                until,
                reason: cool.get(Cool::Reason.field()).cloned().unwrap_or_default(),
                strikes: number(Cool::Strikes).unwrap_or(0) as u32,
                failures: number(Cool::Failures).unwrap_or(0) as u32,
                probe_at: number(Cool::Probe),
            }
        });
    let reports = pairs(rep)?
        .into_iter()
        .filter_map(|(name, value)| {
            let limit = Limit::from_name(&name)?;
            let parts: Vec<String> = value.split(' ').map(str::to_owned).collect();
            let [remaining, cap, resets_at, base @ ..] = &parts[..] else {
                return None;
            };
            (2..=MEASURES).contains(&base.len()).then_some(())?;
            Some(Said {
                limit,
                remaining: count(remaining),
                cap: cap.parse().ok(),
                resets_at: resets_at.parse().ok()?,
                base: measures(base),
            })
        })
        .collect();
    let stored = Stored {
        windows: [minute, hour, day, month]
            .map(|w| Request::from_measures(w.map(|n| n.max(0) as u64))),
        open: open.max(0) as u64,
        oldest_open: oldest
            .chunks(2)
            .find_map(|c| parse_call(&c[0], endpoint, c.get(1)?)),
        last_call: last.get(1).map(|s| count(s) as Millis),
        counters: counters_of(&life),
        cooldown,
        reports,
    };
    let seen = Seen {
        first_second: first_second.first().map(|(_, s)| *s as i64),
        newest_second,
        newest_minute,
        kept: life.get(Life::Kept.field()).and_then(|v| v.parse().ok()),
        last_call: stored.last_call,
    };
    Ok((stored, seen))
}

/// An endpoint's [`Life`] hash as counters.
pub fn counters(life: Value) -> Result<Counters> {
    Ok(counters_of(&pairs(life)?))
}

fn counters_of(life: &HashMap<String, String>) -> Counters {
    let field = |f: Life| life.get(f.field()).map_or(0, |v| count(v) as i64);
    let mut pending = Change::default();
    for (n, f) in pending.0[1..].iter_mut().zip(Life::PENDING) {
        *n = field(f);
    }
    Counters {
        counted: Change(Life::COUNTED.map(field)),
        pending,
        rate_limited: field(Life::RateLimited),
        failed: field(Life::Failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_of_both_layouts_read_and_layout_1_counts_its_tokens_as_input() {
        let old = parse_call("l", "p/m", "1000 1 120 0").expect("layout 1");
        assert_eq!(
            (old.at, old.usage, old.open),
            (1000, Request::new(120), false)
        );
        let usage = Request {
            requests: 1,
            input: 2,
            cached: 3,
            output: 4,
            cost: 5,
        };
        let value = call_value(1000, usage, true);
        let new = parse_call("l", "p/m", &value).expect("layout 2");
        assert_eq!((new.usage, new.open), (usage, true));
        assert_eq!(parse_call("l", "p/m", "1000 1 2 3 0"), None);
    }
}
