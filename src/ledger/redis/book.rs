//! One step over the Redis ledger: reads go to the server as the decisions ask (a script
//! gathers all of one endpoint in one round trip, cached for the step), writes wait in the
//! step's journal and reach the server together, in MULTI/EXEC, only if nothing changed
//! since the step's WATCH.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use anyhow::{Context as _, Result};
use redis::{Connection, Pipeline, Value};

use super::Keys;
use super::scripts;
use crate::clock::{HOUR_MS, Millis};
use crate::cooldown::Cooldown;
use crate::ledger::{
    Answers, Entry, HISTORY_MS, Hourly, Lifetime, RESERVATION_OPEN_MS, RETENTION_MS, Report, Tally,
    Totals, Usage,
};
use crate::quota::{self, Limit, Request, Unit, Used, Window};

/// Calls, reservations and minute buckets outlive the longest window by this margin.
const CALLS_TTL_S: i64 = (RETENTION_MS / 1000) + 3_600;
const HISTORY_TTL_S: i64 = HISTORY_MS / 1000 + 86_400;
/// Lifetime counters of an endpoint unused for this long are forgotten.
const LIFE_TTL_S: i64 = 400 * 86_400;
const ANSWERS_TTL_S: i64 = 7 * 86_400;
/// Pruning runs at most once an hour: what it removes is an hour's worth.
const PRUNE_EVERY_MS: Millis = HOUR_MS;

/// Everything a step's decisions ask of one endpoint, read in one round trip.
struct Standing {
    used: Used,
    /// How many reservations are open (newer than `now - 15 min`), and the oldest.
    open_count: u64,
    oldest_open: Option<Entry>,
    last: Option<Millis>,
    life: HashMap<String, i64>,
    cool: HashMap<String, String>,
    rep: HashMap<String, String>,
    /// The minute window's calls, `(at, requests, tokens)`, for dating when it frees.
    minute_calls: Vec<(Millis, u64, u64)>,
    /// The first buckets of the hour and the day window, `(minute, requests, tokens)`,
    /// and whether that is all of them.
    first_buckets: [FirstBuckets; 2],
}

/// `(minute, requests, tokens)` of a window's first buckets, and whether that is all.
type FirstBuckets = (Vec<(i64, u64, u64)>, bool);

/// How many buckets of a window the standing script returns.
const FIRST_BUCKETS: usize = 16;

impl Standing {
    /// The window's departures, earliest first, when what the standing holds says enough.
    fn departures(&self, limit: Limit, enough: u64) -> Option<Vec<(Millis, u64)>> {
        let amount = |r: u64, t: u64| if limit.unit == Unit::Requests { r } else { t };
        let mut out: Vec<(Millis, u64)> = match limit.window {
            Window::Minute => self
                .minute_calls
                .iter()
                .map(|&(at, r, t)| (quota::row_leaves_at(at, Window::Minute), amount(r, t)))
                .collect(),
            window => {
                let (buckets, complete) = &self.first_buckets[usize::from(window == Window::Day)];
                let list: Vec<(Millis, u64)> = buckets
                    .iter()
                    .map(|&(m, r, t)| (quota::bucket_leaves_at(m, window), amount(r, t)))
                    .collect();
                let freed: u64 = list.iter().map(|&(_, n)| n).sum();
                if !complete && freed < enough {
                    return None;
                }
                list
            }
        };
        out.sort_unstable_by_key(|&(at, _)| at);
        Some(out)
    }
}

pub struct RedisBook<'c> {
    con: RefCell<&'c mut Connection>,
    keys: &'c Keys,
    now: Millis,
    newest: Cell<Option<Millis>>,
    journal: RefCell<Pipeline>,
    wrote: Cell<bool>,
    standings: RefCell<HashMap<(String, Millis, i64), Standing>>,
    /// Lifetime totals this step has added, for reads that follow its writes.
    added: RefCell<HashMap<String, (i64, i64)>>,
    ids: Cell<u64>,
    /// When the namespace was last pruned, as the step found it.
    pruned: Option<Millis>,
}

fn int(value: Option<&String>) -> i64 {
    value
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |f| f as i64)
}

fn pairs(value: &Value) -> HashMap<String, String> {
    let items: Vec<String> = redis::from_redis_value_ref(value).unwrap_or_default();
    items
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}

/// A call as stored: `at requests tokens open`.
fn call_value(at: Millis, requests: u64, tokens: u64, open: bool) -> String {
    format!("{at} {requests} {tokens} {}", u8::from(open))
}

fn parse_call(id: &str, endpoint: &str, value: &str) -> Option<Entry> {
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

impl<'c> RedisBook<'c> {
    pub fn new(
        con: &'c mut Connection,
        keys: &'c Keys,
        now: Millis,
        newest: Option<Millis>,
        pruned: Option<Millis>,
    ) -> Self {
        RedisBook {
            con: RefCell::new(con),
            keys,
            now,
            newest: Cell::new(newest),
            journal: RefCell::new(redis::pipe()),
            wrote: Cell::new(false),
            standings: RefCell::new(HashMap::new()),
            added: RefCell::new(HashMap::new()),
            ids: Cell::new(0),
            pruned,
        }
    }

    /// The writes of the step, and the newest stamp they leave; `None` when it wrote
    /// nothing.
    pub fn into_journal(self) -> Option<(Pipeline, Option<Millis>)> {
        self.wrote
            .get()
            .then(|| (self.journal.into_inner(), self.newest.get()))
    }

    fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        Ok(cmd.query(*self.con.borrow_mut())?)
    }

    fn script(&self, source: &str, keys: &[String], args: &[String]) -> Result<Value> {
        let script = redis::Script::new(source);
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        Ok(invocation.invoke(*self.con.borrow_mut())?)
    }

    fn write(&self, build: impl FnOnce(&mut Pipeline)) {
        self.wrote.set(true);
        build(&mut self.journal.borrow_mut());
    }

    /// The endpoint's standing at `now` (with the day window from `day_start`, or
    /// rolling), read once per step and instant. `now: None` is any instant already read
    /// (for what does not depend on it: cooldowns, reports, the last call), else the step's.
    fn standing<T>(
        &self,
        endpoint: &str,
        now: Option<Millis>,
        day_start: Option<Millis>,
        read: impl FnOnce(&Standing) -> T,
    ) -> Result<T> {
        if now.is_none() && day_start.is_none() {
            let standings = self.standings.borrow();
            if let Some(s) = standings.iter().find(|((id, _, _), _)| id == endpoint) {
                return Ok(read(s.1));
            }
        }
        let now = now.unwrap_or(self.now);
        let first_day = day_start.map_or_else(
            || quota::first_counted_minute(Window::Day, now),
            quota::minute_of,
        );
        let key = (endpoint.to_owned(), now, first_day);
        if !self.standings.borrow().contains_key(&key) {
            let standing = self.fetch(endpoint, now, first_day)?;
            self.standings.borrow_mut().insert(key.clone(), standing);
        }
        Ok(read(&self.standings.borrow()[&key]))
    }

    /// The keys and arguments of the standing script for one endpoint.
    fn standing_call(
        &self,
        endpoint: &str,
        now: Millis,
        first_day: i64,
    ) -> (Vec<String>, Vec<String>) {
        let k = |kind| self.keys.of(kind, endpoint);
        (
            ["calls", "call", "cum", "life", "cool", "rep", "open"]
                .map(k)
                .to_vec(),
            vec![
                quota::counted_after(Window::Minute, now).to_string(),
                quota::first_counted_minute(Window::Hour, now).to_string(),
                first_day.to_string(),
                (now - RESERVATION_OPEN_MS).to_string(),
            ],
        )
    }

    fn fetch(&self, endpoint: &str, now: Millis, first_day: i64) -> Result<Standing> {
        let (keys, args) = self.standing_call(endpoint, now, first_day);
        let reply = self.script(scripts::STANDING, &keys, &args)?;
        parse_standing(endpoint, reply)
    }

    /// Reads the standing of every endpoint in `wanted` not read yet, in one round trip.
    fn prefetch_standings(&self, wanted: &[(&str, Option<Millis>)], now: Millis) -> Result<()> {
        let mut missing: Vec<(String, i64)> = Vec::new();
        for &(id, day_start) in wanted {
            let first_day = day_start.map_or_else(
                || quota::first_counted_minute(Window::Day, now),
                quota::minute_of,
            );
            let key = (id.to_owned(), now, first_day);
            if !self.standings.borrow().contains_key(&key)
                && !missing.contains(&(key.0.clone(), first_day))
            {
                missing.push((key.0, first_day));
            }
        }
        if missing.len() < 2 {
            return Ok(());
        }
        let script = redis::Script::new(scripts::STANDING);
        let mut pipe = redis::pipe();
        pipe.cmd("SCRIPT")
            .arg("LOAD")
            .arg(scripts::STANDING)
            .ignore();
        for (id, first_day) in &missing {
            let (keys, args) = self.standing_call(id, now, *first_day);
            pipe.cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(keys.len())
                .arg(keys)
                .arg(args);
        }
        let replies: Vec<Value> = pipe.query(*self.con.borrow_mut())?;
        for ((id, first_day), reply) in missing.into_iter().zip(replies) {
            let standing = parse_standing(&id, reply)?;
            self.standings
                .borrow_mut()
                .insert((id, now, first_day), standing);
        }
        Ok(())
    }

    /// Lifetime running totals (requests, tokens; estimates included), this step's writes
    /// included.
    fn running_totals(&self, endpoint: &str) -> Result<(i64, i64)> {
        let (r, t) = self.standing(endpoint, None, None, |s| {
            (int_of(&s.life, "cr"), int_of(&s.life, "ct"))
        })?;
        let added = self.added.borrow().get(endpoint).copied().unwrap_or((0, 0));
        Ok((r.saturating_add(added.0), t.saturating_add(added.1)))
    }

    fn note_added(&self, endpoint: &str, requests: i64, tokens: i64) {
        let mut added = self.added.borrow_mut();
        let entry = added.entry(endpoint.to_owned()).or_default();
        entry.0 = entry.0.saturating_add(requests);
        entry.1 = entry.1.saturating_add(tokens);
    }

    /// Lists `endpoint` among those the namespace holds anything for.
    fn list(&self, pipe: &mut Pipeline, endpoint: &str) {
        pipe.cmd("SADD")
            .arg(self.keys.global("endpoints"))
            .arg(endpoint)
            .ignore();
    }

    fn touch(&self, pipe: &mut Pipeline, endpoint: &str) {
        let k = |kind| self.keys.of(kind, endpoint);
        for kind in ["calls", "call", "cum", "open"] {
            pipe.cmd("EXPIRE").arg(k(kind)).arg(CALLS_TTL_S).ignore();
        }
        for kind in ["hourr", "hourt"] {
            pipe.cmd("EXPIRE").arg(k(kind)).arg(HISTORY_TTL_S).ignore();
        }
        pipe.cmd("EXPIRE").arg(k("life")).arg(LIFE_TTL_S).ignore();
        self.list(pipe, endpoint);
    }

    /// Adds a change of usage at `at` to the buckets, the history and the running totals.
    fn add_usage(
        &self,
        pipe: &mut Pipeline,
        endpoint: &str,
        at: Millis,
        requests: i64,
        tokens: i64,
    ) {
        let k = |kind| self.keys.of(kind, endpoint);
        let minute = quota::minute_of(at);
        let hour = at.div_euclid(HOUR_MS);
        // The minute bucket and the running totals after it, for the windows (forgotten by
        // a reset); the hours of the history (kept 90 days, reset or not).
        pipe.cmd("EVAL")
            .arg(scripts::ADD_TO_MINUTE)
            .arg(1)
            .arg(k("cum"))
            .arg(minute)
            .arg(requests)
            .arg(tokens)
            .ignore();
        for (kind, n) in [("hourr", requests), ("hourt", tokens)] {
            pipe.cmd("HINCRBY").arg(k(kind)).arg(hour).arg(n).ignore();
        }
        pipe.cmd("HINCRBY")
            .arg(k("life"))
            .arg("cr")
            .arg(requests)
            .ignore();
        pipe.cmd("HINCRBY")
            .arg(k("life"))
            .arg("ct")
            .arg(tokens)
            .ignore();
        self.note_added(endpoint, requests, tokens);
    }

    fn insert(
        &self,
        endpoint: &str,
        request: Request,
        at: Millis,
        lease: Option<&str>,
    ) -> Result<String> {
        let id = match lease {
            Some(lease) => lease.to_owned(),
            None => {
                self.ids.set(self.ids.get() + 1);
                format!("+{}", new_id(endpoint, at, self.ids.get()))
            }
        };
        let (requests, tokens) = (stored(request.requests)?, stored(request.tokens)?);
        self.write(|pipe| {
            let k = |kind| self.keys.of(kind, endpoint);
            pipe.cmd("ZADD").arg(k("calls")).arg(at).arg(&id).ignore();
            pipe.cmd("HSET")
                .arg(k("call"))
                .arg(&id)
                .arg(call_value(
                    at,
                    request.requests,
                    request.tokens,
                    lease.is_some(),
                ))
                .ignore();
            self.add_usage(pipe, endpoint, at, requests, tokens);
            pipe.cmd("HINCRBY")
                .arg(k("life"))
                .arg("req")
                .arg(requests)
                .ignore();
            // Counters take an added call's tokens at once, a reservation's when it is
            // settled; until then its estimate is pending.
            let field = if lease.is_some() { "pend" } else { "tok" };
            pipe.cmd("HINCRBY")
                .arg(k("life"))
                .arg(field)
                .arg(tokens)
                .ignore();
            if let Some(lease) = lease {
                pipe.cmd("HSET")
                    .arg(self.keys.global("leases"))
                    .arg(lease)
                    .arg(endpoint)
                    .ignore();
                pipe.cmd("ZADD").arg(k("open")).arg(at).arg(lease).ignore();
            }
            self.touch(pipe, endpoint);
        });
        self.newest
            .set(Some(self.newest.get().map_or(at, |n| n.max(at))));
        Ok(id)
    }
}

/// The standing script's reply, read.
fn parse_standing(endpoint: &str, reply: Value) -> Result<Standing> {
    let parts: Vec<Value> = redis::from_redis_value(reply).context("an unexpected reply")?;
    let [sums, open, last, life, cool, rep, minute_calls, hour, day] =
        <[Value; 9]>::try_from(parts)
            .map_err(|_| anyhow::anyhow!("an unexpected reply to the standing script"))?;
    let sums: Vec<String> = redis::from_redis_value(sums)?;
    let mut used = Used::default();
    let order = [
        Limit::new(Unit::Requests, Window::Minute),
        Limit::new(Unit::Tokens, Window::Minute),
        Limit::new(Unit::Requests, Window::Hour),
        Limit::new(Unit::Tokens, Window::Hour),
        Limit::new(Unit::Requests, Window::Day),
        Limit::new(Unit::Tokens, Window::Day),
    ];
    for (limit, sum) in order.into_iter().zip(&sums) {
        used.set(limit, sum.parse::<f64>().unwrap_or(0.0) as u64);
    }
    let open: Vec<String> = redis::from_redis_value(open)?;
    let oldest_open = open
        .chunks(2)
        .find_map(|c| parse_call(&c[0], endpoint, c.get(1)?));
    let open_count = sums
        .get(6)
        .and_then(|n| n.parse::<f64>().ok())
        .map_or(0, |n| n as u64);
    let last: Vec<String> = redis::from_redis_value(last)?;
    Ok(Standing {
        used,
        open_count,
        oldest_open,
        last: last
            .get(1)
            .and_then(|s| s.parse::<f64>().ok())
            .map(|f| f as Millis),
        life: pairs(&life)
            .into_iter()
            .map(|(k, v)| (k, int(Some(&v))))
            .collect(),
        cool: pairs(&cool),
        rep: pairs(&rep),
        minute_calls: redis::from_redis_value::<Vec<String>>(minute_calls)?
            .iter()
            .filter_map(|v| parse_call("", endpoint, v))
            .map(|e| (e.at, e.requests, e.tokens))
            .collect(),
        first_buckets: [buckets(hour)?, buckets(day)?],
    })
}

/// `"minute requests tokens"` lines, and whether they are all the window has.
fn buckets(value: Value) -> Result<FirstBuckets> {
    let lines: Vec<String> = redis::from_redis_value(value)?;
    let complete = lines.len() < FIRST_BUCKETS;
    let parsed = lines
        .iter()
        .filter_map(|l| {
            let mut parts = l.split(' ').map(|p| p.parse::<f64>().unwrap_or(0.0));
            let (m, r, t) = (parts.next()?, parts.next()?, parts.next()?);
            Some((m as i64, r.max(0.0) as u64, t.max(0.0) as u64))
        })
        .collect();
    Ok((parsed, complete))
}

fn int_of(map: &HashMap<String, i64>, key: &str) -> i64 {
    map.get(key).copied().unwrap_or(0)
}

/// Counts above 10^15 a call are refused: the server's counters are 64-bit integers that
/// must not overflow in the middle of a transaction.
fn stored(n: u64) -> Result<i64> {
    const MOST: u64 = 1_000_000_000_000_000;
    anyhow::ensure!(
        n <= MOST,
        "{n} is more than the Redis ledger counts in one call ({MOST})"
    );
    Ok(n as i64)
}

fn new_id(endpoint: &str, at: Millis, seq: u64) -> String {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new();
    format!(
        "{:016x}",
        random.hash_one((endpoint, at, std::process::id(), seq))
    )
}

impl Usage for RedisBook<'_> {
    fn newest(&self) -> Result<Option<Millis>> {
        Ok(self.newest.get())
    }

    fn prefetch(&self, wanted: &[(&str, Option<Millis>)], now: Millis) -> Result<()> {
        self.prefetch_standings(wanted, now)
    }

    fn used(&self, endpoint: &str, now: Millis, day_start: Option<Millis>) -> Result<Used> {
        self.standing(endpoint, Some(now), day_start, |s| s.used)
    }

    fn departures(
        &self,
        endpoint: &str,
        limit: Limit,
        now: Millis,
        enough: u64,
    ) -> Result<Vec<(Millis, u64)>> {
        // The standing read for the rolling windows at `now` usually holds enough.
        let rolling = (
            endpoint.to_owned(),
            now,
            quota::first_counted_minute(Window::Day, now),
        );
        if let Some(departures) = self
            .standings
            .borrow()
            .get(&rolling)
            .and_then(|s| s.departures(limit, enough))
        {
            return Ok(departures);
        }
        let k = |kind| self.keys.of(kind, endpoint);
        let unit = match limit.unit {
            Unit::Requests => "1",
            Unit::Tokens => "2",
        };
        let (mode, from) = match limit.window {
            Window::Minute => ("minute", quota::counted_after(Window::Minute, now)),
            window => ("buckets", quota::first_counted_minute(window, now)),
        };
        let reply = self.script(
            scripts::DEPARTURES,
            &[k("calls"), k("call"), k("cum")],
            &[
                mode.to_owned(),
                from.to_string(),
                unit.to_owned(),
                enough.to_string(),
            ],
        )?;
        let flat: Vec<String> = redis::from_redis_value(reply)?;
        let mut departures: Vec<(Millis, u64)> = flat
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| {
                let at = c[0].parse::<f64>().unwrap_or(0.0) as i64;
                let n = c[1].parse::<f64>().unwrap_or(0.0).max(0.0) as u64;
                let leaves = match limit.window {
                    Window::Minute => quota::row_leaves_at(at, Window::Minute),
                    window => quota::bucket_leaves_at(at, window),
                };
                (leaves, n)
            })
            .collect();
        departures.sort_unstable_by_key(|&(at, _)| at);
        Ok(departures)
    }

    fn last_call(&self, endpoint: &str) -> Result<Option<Millis>> {
        self.standing(endpoint, None, None, |s| s.last)
    }

    fn open_reservations(&self, endpoint: &str, now: Millis) -> Result<u64> {
        self.standing(endpoint, Some(now), None, |s| s.open_count)
    }

    fn first_expiry(&self, endpoint: &str, now: Millis) -> Result<Option<Millis>> {
        self.standing(endpoint, Some(now), None, |s| {
            s.oldest_open.as_ref().map(|e| e.at + RESERVATION_OPEN_MS)
        })
    }

    fn reserve(&self, endpoint: &str, request: Request, now: Millis) -> Result<String> {
        let lease = new_id(endpoint, now, u64::MAX);
        self.insert(endpoint, request, now, Some(&lease))
    }

    fn add(&self, endpoint: &str, request: Request, now: Millis) -> Result<()> {
        self.insert(endpoint, request, now, None).map(|_| ())
    }

    fn by_lease(&self, lease: &str) -> Result<Option<Entry>> {
        let endpoint: Option<String> = self.query(
            redis::cmd("HGET")
                .arg(self.keys.global("leases"))
                .arg(lease),
        )?;
        let Some(endpoint) = endpoint else {
            return Ok(None);
        };
        let value: Option<String> = self.query(
            redis::cmd("HGET")
                .arg(self.keys.of("call", &endpoint))
                .arg(lease),
        )?;
        Ok(value.and_then(|v| parse_call(lease, &endpoint, &v)))
    }

    fn oldest_open(&self, endpoint: &str, now: Millis) -> Result<Option<Entry>> {
        self.standing(endpoint, Some(now), None, |s| s.oldest_open.clone())
    }

    fn settle(&self, entry: &Entry, real: Request, now: Millis) -> Result<()> {
        let endpoint = &entry.endpoint;
        let requests = stored(real.requests)? - stored(entry.requests)?;
        let tokens = stored(real.tokens)? - stored(entry.tokens)?;
        let expired = now >= entry.at + RESERVATION_OPEN_MS;
        let counted = if expired {
            real.tokens.max(entry.tokens)
        } else {
            real.tokens
        };
        let counted = stored(counted)?;
        self.write(|pipe| {
            let k = |kind| self.keys.of(kind, endpoint);
            pipe.cmd("HSET")
                .arg(k("call"))
                .arg(&entry.lease)
                .arg(call_value(entry.at, real.requests, real.tokens, false))
                .ignore();
            pipe.cmd("ZREM").arg(k("open")).arg(&entry.lease).ignore();
            self.add_usage(pipe, endpoint, entry.at, requests, tokens);
            pipe.cmd("HINCRBY")
                .arg(k("life"))
                .arg("req")
                .arg(requests.max(0))
                .ignore();
            pipe.cmd("HINCRBY")
                .arg(k("life"))
                .arg("tok")
                .arg(counted)
                .ignore();
            pipe.cmd("HINCRBY")
                .arg(k("life"))
                .arg("pend")
                .arg(-(entry.tokens as i64))
                .ignore();
            self.touch(pipe, endpoint);
        });
        Ok(())
    }

    /// Once an hour: calls and buckets past the retention, and history past 90 days, go;
    /// a reservation that expired unsettled keeps counting at its estimate.
    fn prune(&self, now: Millis) -> Result<()> {
        if self.pruned.is_some_and(|at| now - at < PRUNE_EVERY_MS) {
            return Ok(());
        }
        let horizon = now - RETENTION_MS;
        let oldest_minute = quota::minute_of(horizon + 1);
        let oldest_hour = (now - HISTORY_MS).div_euclid(HOUR_MS);
        let mut deletions: Vec<(String, Vec<String>)> = Vec::new();
        let mut folded: Vec<(String, i64)> = Vec::new();
        for endpoint in self.endpoints_used()? {
            let k = |kind| self.keys.of(kind, &endpoint);
            let old: Vec<String> = self.query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(k("calls"))
                    .arg("-inf")
                    .arg(horizon),
            )?;
            if !old.is_empty() {
                let values: Vec<Option<String>> =
                    self.query(redis::cmd("HMGET").arg(k("call")).arg(&old))?;
                let estimates: i64 = old
                    .iter()
                    .zip(&values)
                    .filter_map(|(id, v)| parse_call(id, &endpoint, v.as_deref()?))
                    .filter(|e| e.open)
                    .map(|e| e.tokens as i64)
                    .sum();
                folded.push((endpoint.clone(), estimates));
                let leases: Vec<String> = old
                    .iter()
                    .filter(|id| !id.starts_with('+'))
                    .cloned()
                    .collect();
                if !leases.is_empty() {
                    deletions.push((self.keys.global("leases"), leases));
                }
                deletions.push((k("call"), old));
            }
            for (kind, oldest) in [("hourr", oldest_hour), ("hourt", oldest_hour)] {
                let fields: Vec<String> = self.query(redis::cmd("HKEYS").arg(k(kind)))?;
                let stale: Vec<String> = fields
                    .into_iter()
                    .filter(|f| f.parse::<i64>().is_ok_and(|n| n < oldest))
                    .collect();
                if !stale.is_empty() {
                    deletions.push((k(kind), stale));
                }
            }
        }
        self.write(|pipe| {
            for (endpoint, estimates) in &folded {
                let k = |kind| self.keys.of(kind, endpoint);
                pipe.cmd("ZREMRANGEBYSCORE")
                    .arg(k("calls"))
                    .arg("-inf")
                    .arg(horizon)
                    .ignore();
                pipe.cmd("ZREMRANGEBYSCORE")
                    .arg(k("open"))
                    .arg("-inf")
                    .arg(horizon)
                    .ignore();
                pipe.cmd("ZREMRANGEBYSCORE")
                    .arg(k("cum"))
                    .arg("-inf")
                    .arg(format!("({oldest_minute}"))
                    .ignore();
                if *estimates > 0 {
                    pipe.cmd("HINCRBY")
                        .arg(k("life"))
                        .arg("tok")
                        .arg(*estimates)
                        .ignore();
                    pipe.cmd("HINCRBY")
                        .arg(k("life"))
                        .arg("pend")
                        .arg(-*estimates)
                        .ignore();
                }
            }
            for (key, fields) in &deletions {
                pipe.cmd("HDEL").arg(key).arg(fields).ignore();
            }
            pipe.cmd("SET")
                .arg(self.keys.global("pruned"))
                .arg(now)
                .ignore();
        });
        Ok(())
    }

    fn endpoints_used(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> =
            self.query(redis::cmd("SMEMBERS").arg(self.keys.global("endpoints")))?;
        ids.sort();
        Ok(ids)
    }

    fn forget_usage(&self, endpoint: &str) -> Result<u64> {
        let ids: Vec<String> = self.query(
            redis::cmd("ZRANGE")
                .arg(self.keys.of("calls", endpoint))
                .arg(0)
                .arg(-1),
        )?;
        let calls = ids.len() as u64;
        let leases: Vec<String> = ids.into_iter().filter(|id| !id.starts_with('+')).collect();
        self.write(|pipe| {
            for kind in ["calls", "call", "cum", "open", "life"] {
                pipe.cmd("DEL").arg(self.keys.of(kind, endpoint)).ignore();
            }
            pipe.cmd("SREM")
                .arg(self.keys.global("endpoints"))
                .arg(endpoint)
                .ignore();
            if !leases.is_empty() {
                pipe.cmd("HDEL")
                    .arg(self.keys.global("leases"))
                    .arg(&leases)
                    .ignore();
            }
        });
        Ok(calls)
    }
}

impl Answers for RedisBook<'_> {
    fn cooldown(&self, endpoint: &str) -> Result<Option<Cooldown>> {
        self.standing(endpoint, None, None, |s| {
            let until = s.cool.get("until")?.parse().ok()?;
            Some(Cooldown {
                until,
                reason: s.cool.get("reason").cloned().unwrap_or_default(),
                strikes: s
                    .cool
                    .get("strikes")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                failures: s
                    .cool
                    .get("failures")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                probe_at: s.cool.get("probe").and_then(|v| v.parse().ok()),
            })
        })
    }

    fn set_cooldown(&self, endpoint: &str, cooldown: Option<&Cooldown>) -> Result<()> {
        let key = self.keys.of("cool", endpoint);
        self.write(|pipe| {
            pipe.cmd("DEL").arg(&key).ignore();
            if let Some(c) = cooldown {
                pipe.cmd("HSET")
                    .arg(&key)
                    .arg("until")
                    .arg(c.until)
                    .arg("reason")
                    .arg(&c.reason)
                    .arg("strikes")
                    .arg(c.strikes)
                    .arg("failures")
                    .arg(c.failures)
                    .ignore();
                if let Some(probe) = c.probe_at {
                    pipe.cmd("HSET").arg(&key).arg("probe").arg(probe).ignore();
                }
                pipe.cmd("EXPIRE").arg(&key).arg(ANSWERS_TTL_S).ignore();
                self.list(pipe, endpoint);
            }
        });
        Ok(())
    }

    fn mark_probe(&self, endpoint: &str, now: Millis) -> Result<()> {
        self.write(|pipe| {
            pipe.cmd("HSET")
                .arg(self.keys.of("cool", endpoint))
                .arg("probe")
                .arg(now)
                .ignore();
        });
        Ok(())
    }

    fn reports(&self, endpoint: &str, now: Millis) -> Result<Vec<Report>> {
        let rep = self.standing(endpoint, None, None, |s| s.rep.clone())?;
        if rep.is_empty() {
            return Ok(Vec::new());
        }
        let latest = self.running_totals(endpoint)?;
        let mut reports = Vec::new();
        for limit in Limit::ALL {
            let Some(value) = rep.get(limit.name()) else {
                continue;
            };
            let parts: Vec<&str> = value.split(' ').collect();
            let [remaining, cap, resets_at, base_r, base_t] = parts[..] else {
                continue;
            };
            let resets_at: Millis = resets_at.parse().unwrap_or(0);
            if resets_at <= now {
                continue;
            }
            let since = match limit.unit {
                Unit::Requests => latest.0.saturating_sub(base_r.parse().unwrap_or(0)),
                Unit::Tokens => latest.1.saturating_sub(base_t.parse().unwrap_or(0)),
            };
            reports.push(Report {
                limit,
                remaining: remaining.parse().unwrap_or(0),
                cap: cap.parse().ok(),
                resets_at,
                used_since: u64::try_from(since).unwrap_or(0),
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
        _now: Millis,
    ) -> Result<()> {
        let base = self.running_totals(endpoint)?;
        let cap = cap.map_or_else(|| "-".to_owned(), |c| c.to_string());
        let key = self.keys.of("rep", endpoint);
        self.write(|pipe| {
            pipe.cmd("HSET")
                .arg(&key)
                .arg(limit.name())
                .arg(format!(
                    "{remaining} {cap} {resets_at} {} {}",
                    base.0, base.1
                ))
                .ignore();
            pipe.cmd("EXPIRE").arg(&key).arg(ANSWERS_TTL_S).ignore();
            self.list(pipe, endpoint);
        });
        Ok(())
    }

    fn last_turn(&self) -> Result<Option<String>> {
        self.query(redis::cmd("GET").arg(self.keys.global("turn")))
    }

    fn set_turn(&self, endpoint: &str) -> Result<()> {
        self.write(|pipe| {
            pipe.cmd("SET")
                .arg(self.keys.global("turn"))
                .arg(endpoint)
                .ignore();
        });
        Ok(())
    }

    fn endpoints_answered(&self) -> Result<Vec<String>> {
        // Every endpoint with anything, answers included, is in the one set.
        Ok(Vec::new())
    }

    fn forget_answers(&self, endpoint: &str) -> Result<()> {
        let turn = self.last_turn()?;
        self.write(|pipe| {
            for kind in ["cool", "rep"] {
                pipe.cmd("DEL").arg(self.keys.of(kind, endpoint)).ignore();
            }
            if turn.as_deref() == Some(endpoint) {
                pipe.cmd("DEL").arg(self.keys.global("turn")).ignore();
            }
        });
        Ok(())
    }
}

impl Lifetime for RedisBook<'_> {
    fn totals(&self, endpoint: &str, now: Millis) -> Result<Totals> {
        let life = self.standing(endpoint, Some(now), None, |s| s.life.clone())?;
        // The estimates of the reservations still open: read only here, for `state`.
        let ids: Vec<String> = self.query(
            redis::cmd("ZRANGEBYSCORE")
                .arg(self.keys.of("open", endpoint))
                .arg(format!("({}", now - RESERVATION_OPEN_MS))
                .arg("+inf"),
        )?;
        let unexpired: u64 = if ids.is_empty() {
            0
        } else {
            let values: Vec<Option<String>> = self.query(
                redis::cmd("HMGET")
                    .arg(self.keys.of("call", endpoint))
                    .arg(&ids),
            )?;
            ids.iter()
                .zip(&values)
                .filter_map(|(id, v)| parse_call(id, endpoint, v.as_deref()?))
                .map(|e| e.tokens)
                .sum()
        };
        let get = |k: &str| u64::try_from(int_of(&life, k)).unwrap_or(0);
        // Reservations that expired unsettled count at their estimate: every pending
        // estimate but those of the reservations still open.
        let expired = get("pend").saturating_sub(unexpired);
        Ok(Totals {
            requests: get("req"),
            tokens: get("tok").saturating_add(expired),
            rate_limited: get("rl"),
            failed: get("fl"),
        })
    }

    fn count_outcome(&self, endpoint: &str, outcome: Tally) -> Result<()> {
        let field = match outcome {
            Tally::RateLimited => "rl",
            Tally::Failed => "fl",
        };
        self.write(|pipe| {
            pipe.cmd("HINCRBY")
                .arg(self.keys.of("life", endpoint))
                .arg(field)
                .arg(1)
                .ignore();
            self.touch(pipe, endpoint);
        });
        Ok(())
    }

    fn history(&self, endpoint: &str, since_hour: i64) -> Result<Vec<Hourly>> {
        let requests: HashMap<i64, i64> =
            self.query(redis::cmd("HGETALL").arg(self.keys.of("hourr", endpoint)))?;
        let tokens: HashMap<i64, i64> =
            self.query(redis::cmd("HGETALL").arg(self.keys.of("hourt", endpoint)))?;
        let mut hours: Vec<Hourly> = requests
            .into_iter()
            .filter(|&(hour, _)| hour >= since_hour)
            .map(|(hour, r)| Hourly {
                hour,
                requests: u64::try_from(r).unwrap_or(0),
                tokens: tokens
                    .get(&hour)
                    .map_or(0, |&t| u64::try_from(t).unwrap_or(0)),
            })
            .collect();
        hours.sort_by_key(|h| h.hour);
        Ok(hours)
    }

    fn endpoints_with_history(&self) -> Result<Vec<String>> {
        self.endpoints_used()
    }
}
