//! The values of a Redis namespace as stored (a call, the hashes) and the standings
//! script's reply, read into the ledger's types.

use std::collections::HashMap;

use anyhow::{Context as _, Result};
use redis::Value;

use super::keys::{Cool, Life};
use crate::clock::Millis;
use crate::cooldown::Cooldown;
use crate::ledger::{Counters, Entry, Said, Stored};
use crate::quota::{Limit, Request};

/// A call as stored: `at requests tokens open`.
pub fn call_value(at: Millis, usage: Request, open: bool) -> String {
    format!(
        "{at} {} {} {}",
        usage.requests,
        usage.tokens,
        u8::from(open)
    )
}

pub fn parse_call(id: &str, endpoint: &str, value: &str) -> Option<Entry> {
    let mut parts = value.split(' ');
    let at = parts.next()?.parse().ok()?;
    let requests = parts.next()?.parse().ok()?;
    let tokens = parts.next()?.parse().ok()?;
    let open = parts.next()? == "1";
    Some(Entry {
        lease: id.to_owned(),
        endpoint: endpoint.to_owned(),
        at,
        requests,
        tokens,
        open,
    })
}

/// A number as a script or a hash writes it (`"12"`, `"1.2e+19"`), as a count.
pub fn count(text: &str) -> u64 {
    text.parse::<f64>().map_or(0, |f| f.max(0.0) as u64)
}

/// Counts above 10^15 a call are refused: the server's counters are 64-bit integers that
/// must not overflow in the middle of a transaction.
pub fn stored(usage: Request) -> Result<()> {
    const MOST: u64 = 1_000_000_000_000_000;
    let n = usage.requests.max(usage.tokens);
    anyhow::ensure!(
        n <= MOST,
        "{n} is more than the Redis ledger counts in one call ({MOST})"
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

/// One endpoint's part of the standings script's reply.
pub fn parse_standing(endpoint: &str, reply: Value) -> Result<Stored> {
    let parts: Vec<Value> = redis::from_redis_value(reply).context("an unexpected reply")?;
    let [sums, oldest, last, life, cool, rep] = <[Value; 6]>::try_from(parts)
        .map_err(|_| anyhow::anyhow!("an unexpected reply to the standings script"))?;
    let sums: Vec<String> = redis::from_redis_value(sums)?;
    let n = |i: usize| sums.get(i).map_or(0, |s| count(s));
    let pair = |i: usize| Request {
        requests: n(i),
        tokens: n(i + 1),
    };
    let oldest: Vec<String> = redis::from_redis_value(oldest)?;
    let last: Vec<String> = redis::from_redis_value(last)?;
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
            let parts: Vec<&str> = value.split(' ').collect();
            let [remaining, cap, resets_at, base_r, base_t] = parts[..] else {
                return None;
            };
            Some(Said {
                limit,
                remaining: count(remaining),
                cap: cap.parse().ok(),
                resets_at: resets_at.parse().ok()?,
                base: Request {
                    requests: count(base_r),
                    tokens: count(base_t),
                },
            })
        })
        .collect();
    Ok(Stored {
        windows: [pair(0), pair(2), pair(4)],
        open: n(6),
        oldest_open: oldest
            .chunks(2)
            .find_map(|c| parse_call(&c[0], endpoint, c.get(1)?)),
        last_call: last.get(1).map(|s| count(s) as Millis),
        counters: counters(life)?,
        cooldown,
        reports,
    })
}

/// An endpoint's [`Life`] hash as counters.
pub fn counters(life: Value) -> Result<Counters> {
    let life = pairs(life)?;
    let field = |f: Life| life.get(f.field()).map_or(0, |v| count(v) as i64);
    Ok(Counters {
        requests: field(Life::Requests),
        tokens: field(Life::Tokens),
        pending: field(Life::Pending),
        rate_limited: field(Life::RateLimited),
        failed: field(Life::Failed),
    })
}
