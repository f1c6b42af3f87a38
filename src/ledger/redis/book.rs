//! One step over the Redis ledger: reads are answered by what the step's first look read,
//! else go to the server as they are asked (a script answers for every endpoint of a
//! question in one round trip); writes wait in the step's journal and reach the server
//! together, in MULTI/EXEC, only if nothing changed since the step's WATCH. Reads see the
//! ledger as the step found it, never the step's own writes.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use anyhow::{Context as _, Result};
use redis::{Connection, Pipeline, Value};

use super::buckets::{Bucket, Known, Read, Update};
use super::journal::Journal;
use super::keys::{Global, Keys, Of};
use super::reply::{
    Seen, call_value, count, counters, measures, parse_call, parse_standing, stored,
};
use super::scripts::{self, Lua};
use crate::clock::{HOUR_MS, MINUTE_MS, Millis};
use crate::cooldown::Cooldown;
use crate::ledger::{
    Book, Change, Counters, Departing, Entry, Horizons, Hourly, Lifetime, MonthStart, RETENTION_MS,
    Said, Source, Span, Stored,
};
use crate::quota::{self, MEASURES, Request};
use crate::random;

/// Pruning runs at most once an hour: what it removes is an hour's worth.
const PRUNE_EVERY_MS: Millis = HOUR_MS;

/// How long a call made is kept one by one (an open reservation stays until it is settled
/// or expires): the minute window reads its calls, and the hour and day windows and the
/// history their buckets.
const CALLS_KEPT_MS: Millis = 2 * MINUTE_MS;

/// An endpoint's settled calls are looked at for forgetting at most this often: what the
/// script costs is then spread over the steps of ten seconds.
const FORGET_EVERY_MS: Millis = 10_000;

/// What the first look of a step found.
pub struct Found {
    pub newest: Option<Millis>,
    /// The server's clock.
    pub server: Millis,
    /// When the namespace was last pruned.
    pub pruned: Option<Millis>,
    /// The standing of each endpoint the step was expected to ask about, with the span
    /// the first look took (`{span, standing}`).
    pub standings: HashMap<String, Value>,
    /// The endpoint and call of each lease the step was expected to look up (see
    /// [`scripts::BY_LEASE`]).
    pub leases: HashMap<String, Option<(String, Option<String>)>>,
}

pub struct RedisBook<'c> {
    con: RefCell<&'c mut Connection>,
    keys: &'c Keys,
    /// The server's clock: the present, whatever time a step is pinned to.
    server: Millis,
    /// The newest stamp as the step found it, and the earliest instant the step writes
    /// usage at: the step's time, or a settled call's.
    found_newest: Option<Millis>,
    earliest_write: Cell<Option<Millis>>,
    newest: Cell<Option<Millis>>,
    journal: RefCell<Pipeline>,
    touched: RefCell<std::collections::HashSet<String>>,
    wrote: Cell<bool>,
    /// When the namespace was last pruned, as the step found it.
    pruned: Option<Millis>,
    /// Standings read by the first look, by endpoint (see [`Found::standings`]).
    standings: HashMap<String, Value>,
    /// Leases looked up by the first look (see [`Found::leases`]).
    leases: HashMap<String, Option<(String, Option<String>)>>,
    /// What the step knows of each sorted set of buckets, by key, with its own updates.
    buckets: RefCell<HashMap<String, Known>>,
    /// How far each endpoint's calls were looked at for forgetting, as the step found it.
    kept: RefCell<HashMap<String, Millis>>,
    /// Each endpoint's last call as the step found it (`None` for none), when it read it.
    last_calls: RefCell<HashMap<String, Option<Millis>>>,
}

impl<'c> RedisBook<'c> {
    pub fn new(con: &'c mut Connection, keys: &'c Keys, found: Found) -> Self {
        RedisBook {
            con: RefCell::new(con),
            keys,
            server: found.server,
            found_newest: found.newest,
            earliest_write: Cell::new(None),
            newest: Cell::new(found.newest),
            journal: RefCell::new(redis::pipe()),
            touched: RefCell::default(),
            wrote: Cell::new(false),
            pruned: found.pruned,
            standings: found.standings,
            leases: found.leases,
            buckets: RefCell::default(),
            kept: RefCell::default(),
            last_calls: RefCell::default(),
        }
    }

    /// The writes of the step, and the newest stamp they leave; `None` when it wrote
    /// nothing.
    pub fn into_journal(self) -> Option<(Pipeline, Option<Millis>)> {
        if !self.wrote.get() {
            return None;
        }
        let forget_until = self.kept_from();
        let kept = self.kept.take();
        // An endpoint whose calls were looked at less than a while ago waits.
        let forget = |endpoint: &str| {
            let until = forget_until?;
            let looked = kept.get(endpoint).copied();
            looked
                .is_none_or(|k| until - k >= FORGET_EVERY_MS)
                .then_some(until)
        };
        self.write(|j| j.keep_alive(forget));
        Some((self.journal.into_inner(), self.newest.get()))
    }

    /// Calls made at or before this are no longer kept one by one: two minutes before the
    /// server's clock, or before the earliest instant the step writes at (else the newest
    /// entry it found) when that is earlier. Steps on the clock go on from the present, so
    /// their minute windows find every call they count; a what-if pinned to the future
    /// forgets nothing the present needs, one pinned to the past keeps more.
    fn kept_from(&self) -> Option<Millis> {
        let written = self.earliest_write.get().or(self.found_newest)?;
        Some(written.min(self.server) - CALLS_KEPT_MS)
    }

    fn writes_at(&self, at: Millis) {
        let earliest = self.earliest_write.get().map_or(at, |e| e.min(at));
        self.earliest_write.set(Some(earliest));
    }

    fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        Ok(cmd.query(*self.con.borrow_mut())?)
    }

    fn run_script(&self, lua: &Lua, endpoints: &[&str], args: &[String]) -> Result<Value> {
        let mut invocation = lua.script.prepare_invoke();
        for key in self.keys.for_script(lua.layout, endpoints) {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        Ok(invocation.invoke(*self.con.borrow_mut())?)
    }

    fn of(&self, kind: Of, endpoint: &str) -> String {
        self.keys.of(kind, endpoint)
    }

    fn global(&self, key: Global) -> String {
        self.keys.global(key)
    }

    /// What the step learned of an endpoint from its standings, unless it knows more.
    fn learn(&self, endpoint: &str, seen: Seen) {
        let mut buckets = self.buckets.borrow_mut();
        buckets
            .entry(self.of(Of::Buckets, endpoint))
            .or_insert_with(|| Known::newest(seen.newest_minute, None));
        buckets
            .entry(self.of(Of::Seconds, endpoint))
            .or_insert_with(|| Known::newest(seen.newest_second, Some(seen.first_second)));
        self.last_calls
            .borrow_mut()
            .entry(endpoint.to_owned())
            .or_insert(seen.last_call);
        if let Some(kept) = seen.kept {
            self.kept
                .borrow_mut()
                .entry(endpoint.to_owned())
                .or_insert(kept);
        }
    }

    /// The update that adds `change` at `at` (a minute, or a second) to a sorted set of
    /// buckets; the server is read first when the step does not know enough of it.
    fn add_to_buckets(&self, kind: Of, endpoint: &str, at: i64, change: Change) -> Result<Update> {
        let seconds = kind == Of::Seconds;
        let key = self.of(kind, endpoint);
        let mut buckets = self.buckets.borrow_mut();
        let known = buckets.entry(key.clone()).or_insert_with(Known::nothing);
        if let Some(from) = known.read_from(at, seconds) {
            let (from_at, below, first): (Vec<String>, Vec<String>, Vec<(String, f64)>) =
                redis::pipe()
                    .cmd("ZRANGEBYSCORE")
                    .arg(&key)
                    .arg(from)
                    .arg("+inf")
                    .cmd("ZREVRANGEBYSCORE")
                    .arg(&key)
                    .arg(format!("({from}"))
                    .arg("-inf")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(1)
                    .cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(0)
                    .arg("WITHSCORES")
                    .query(*self.con.borrow_mut())?;
            let read = Read {
                from_at: from_at
                    .iter()
                    .map(|m| Bucket::read(m))
                    .collect::<Result<_>>()?,
                below: below.first().map(|m| Bucket::read(m)).transpose()?,
                first: first.first().map(|&(_, at)| at as i64),
            };
            known.learn(from, read);
        }
        // No call came before this second: a new set of seconds is complete at once.
        let nothing_before = self
            .last_calls
            .borrow()
            .get(endpoint)
            .is_some_and(|last| last.is_none_or(|last| last < at * 1_000));
        let mut update = known.add(at, change.0, seconds, nothing_before);
        if known.too_large() {
            let all: Vec<String> = self.query(redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1))?;
            let all = all.iter().map(|m| Bucket::read(m)).collect::<Result<_>>()?;
            update.replaced.extend(known.rebase(all).replaced);
        }
        Ok(update)
    }

    /// Queues writes for the step's MULTI/EXEC.
    fn write(&self, build: impl FnOnce(&mut Journal<'_>)) {
        self.wrote.set(true);
        build(&mut Journal {
            pipe: &mut self.journal.borrow_mut(),
            keys: self.keys,
            touched: &mut self.touched.borrow_mut(),
        });
    }
}

impl Book for RedisBook<'_> {
    fn newest(&self) -> Result<Option<Millis>> {
        Ok(self.newest.get())
    }

    fn standings(&self, asks: &[(&str, Span)]) -> Result<Vec<Stored>> {
        let span_of = |span: &Span| {
            [
                span.minute_after,
                span.hour_from,
                span.day_from,
                span.open_after,
            ]
        };
        // What the first look read for the very span asked is the answer; the rest is
        // read now, in one round trip.
        let mut found: Vec<Option<Value>> = asks
            .iter()
            .map(|(id, span)| {
                let (took, standing): ([i64; 4], Value) =
                    redis::from_redis_value(self.standings.get(*id)?.clone()).ok()?;
                (took == span_of(span)).then_some(standing)
            })
            .collect();
        let missing: Vec<usize> = (0..asks.len()).filter(|&i| found[i].is_none()).collect();
        if !missing.is_empty() {
            let endpoints: Vec<&str> = missing.iter().map(|&i| asks[i].0).collect();
            let args: Vec<String> = missing
                .iter()
                .flat_map(|&i| span_of(&asks[i].1).map(|n| n.to_string()))
                .collect();
            let reply = self.run_script(&scripts::STANDINGS, &endpoints, &args)?;
            let replies: Vec<Value> = redis::from_redis_value(reply)?;
            for (i, reply) in missing.into_iter().zip(replies) {
                found[i] = Some(reply);
            }
        }
        asks.iter()
            .zip(found)
            .map(|(&(id, span), reply)| {
                let reply = reply.context("an unexpected reply to the standings script")?;
                let (stored, seen) = parse_standing(id, span.month_after, reply)?;
                self.learn(id, seen);
                Ok(stored)
            })
            .collect()
    }

    fn lifetimes(&self, asks: &[(&str, Millis)]) -> Result<Vec<Lifetime>> {
        if asks.is_empty() {
            return Ok(Vec::new());
        }
        let endpoints: Vec<&str> = asks.iter().map(|&(id, _)| id).collect();
        let args: Vec<String> = asks.iter().map(|(_, after)| after.to_string()).collect();
        let reply = self.run_script(&scripts::LIFETIMES, &endpoints, &args)?;
        let replies: Vec<(Value, Vec<String>)> = redis::from_redis_value(reply)?;
        replies
            .into_iter()
            .map(|(life, open)| {
                Ok(Lifetime {
                    counters: counters(life)?,
                    open: measures(&open),
                })
            })
            .collect()
    }

    fn departures(&self, asks: &[Departing<'_>]) -> Result<Vec<Vec<(i64, u64)>>> {
        if asks.is_empty() {
            return Ok(Vec::new());
        }
        let endpoints: Vec<&str> = asks.iter().map(|a| a.endpoint).collect();
        let args: Vec<String> = asks
            .iter()
            .flat_map(|ask| {
                let (mode, from) = match ask.source {
                    Source::Calls { after } => ("calls", after),
                    Source::Buckets { from } => ("buckets", from),
                };
                let mut args = vec![mode.to_owned(), from.to_string()];
                args.extend(ask.weights.map(|w| w.to_string()));
                args.push(ask.enough.to_string());
                args
            })
            .collect();
        let reply = self.run_script(&scripts::DEPARTURES, &endpoints, &args)?;
        let lists: Vec<Vec<String>> = redis::from_redis_value(reply)?;
        Ok(lists
            .iter()
            .map(|flat| {
                flat.chunks(2)
                    .filter(|c| c.len() == 2)
                    .map(|c| (count(&c[0]) as i64, count(&c[1])))
                    .collect()
            })
            .collect())
    }

    fn by_lease(&self, lease: &str) -> Result<Option<Entry>> {
        let found: Option<(String, Option<String>)> = match self.leases.get(lease) {
            Some(found) => found.clone(),
            None => scripts::BY_LEASE
                .script
                .key(self.global(Global::Leases))
                .arg(lease)
                .arg(self.of(Of::Call, ""))
                .invoke(*self.con.borrow_mut())?,
        };
        Ok(found.and_then(|(endpoint, call)| parse_call(lease, &endpoint, &call?)))
    }

    fn history(&self, endpoint: &str, since_hour: i64) -> Result<Vec<Hourly>> {
        let mut pipe = redis::pipe();
        for kind in Of::HOURS {
            pipe.cmd("HGETALL").arg(self.of(kind, endpoint));
        }
        let kinds: Vec<HashMap<i64, i64>> = pipe.query(*self.con.borrow_mut())?;
        let Some(requests) = kinds.first() else {
            return Ok(Vec::new());
        };
        let mut hours: Vec<Hourly> = requests
            .keys()
            .filter(|&&hour| hour >= since_hour)
            .map(|&hour| {
                let mut n = [0u64; MEASURES];
                for (n, kind) in n.iter_mut().zip(&kinds) {
                    *n = kind
                        .get(&hour)
                        .map_or(0, |&v| u64::try_from(v).unwrap_or(0));
                }
                Hourly {
                    hour,
                    usage: Request::from_measures(n),
                }
            })
            .collect();
        hours.sort_by_key(|h| h.hour);
        Ok(hours)
    }

    fn endpoints(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> =
            self.query(redis::cmd("SMEMBERS").arg(self.global(Global::Endpoints)))?;
        ids.sort();
        Ok(ids)
    }

    fn endpoints_with_history(&self) -> Result<Vec<String>> {
        // A namespace of layout 1 listed history in the endpoints set alone.
        let mut ids: Vec<String> = self.query(
            redis::cmd("SUNION")
                .arg(self.global(Global::History))
                .arg(self.global(Global::Endpoints)),
        )?;
        ids.sort();
        if ids.is_empty() {
            return Ok(ids);
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("EXISTS").arg(self.of(Of::HourRequests, id));
        }
        let kept: Vec<bool> = pipe.query(*self.con.borrow_mut())?;
        Ok(ids
            .into_iter()
            .zip(kept)
            .filter_map(|(id, kept)| kept.then_some(id))
            .collect())
    }

    fn last_turn(&self) -> Result<Option<String>> {
        self.query(redis::cmd("GET").arg(self.global(Global::Turn)))
    }

    fn said_before(&self, note: &str) -> Result<bool> {
        self.query(
            redis::cmd("SISMEMBER")
                .arg(self.global(Global::Said))
                .arg(note),
        )
    }

    fn prune_due(&self, horizon: Millis) -> Result<bool> {
        let now = horizon + RETENTION_MS;
        Ok(self.pruned.is_none_or(|at| now - at >= PRUNE_EVERY_MS))
    }

    fn latencies(&self, asks: &[(&str, Millis)]) -> Result<Vec<Vec<u64>>> {
        if asks.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for &(endpoint, after) in asks {
            pipe.cmd("ZRANGEBYSCORE")
                .arg(self.of(Of::Latencies, endpoint))
                .arg(format!("({after}"))
                .arg("+inf");
        }
        let lists: Vec<Vec<String>> = pipe.query(*self.con.borrow_mut())?;
        Ok(lists
            .iter()
            .map(|list| {
                list.iter()
                    .filter_map(|m| m.split(' ').next()?.parse().ok())
                    .collect()
            })
            .collect())
    }

    fn open_estimates_until(&self, until: Millis) -> Result<Vec<(String, Request)>> {
        let mut estimates = Vec::new();
        for endpoint in self.endpoints()? {
            let ids: Vec<String> = self.query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(self.of(Of::Open, &endpoint))
                    .arg("-inf")
                    .arg(until),
            )?;
            if ids.is_empty() {
                continue;
            }
            let values: Vec<Option<String>> = self.query(
                redis::cmd("HMGET")
                    .arg(self.of(Of::Call, &endpoint))
                    .arg(&ids),
            )?;
            let sum = ids
                .iter()
                .zip(&values)
                .filter_map(|(id, v)| parse_call(id, &endpoint, v.as_deref()?))
                .filter(|e| e.open)
                .fold(Request::default(), |sum, e| sum.plus(e.usage));
            estimates.push((endpoint, sum));
        }
        Ok(estimates)
    }

    fn insert_call(
        &self,
        endpoint: &str,
        at: Millis,
        usage: Request,
        lease: Option<&str>,
    ) -> Result<()> {
        stored(usage)?;
        // A call made without a reservation gets an id of its own, marked so that it is
        // never taken for a lease.
        let id = lease.map_or_else(|| format!("+{}", random::id()), str::to_owned);
        self.write(|j| {
            j.put_call(endpoint, &id, at, call_value(at, usage, lease.is_some()));
            if let Some(lease) = lease {
                j.open_lease(endpoint, lease, at);
            }
        });
        self.newest
            .set(Some(self.newest.get().map_or(at, |n| n.max(at))));
        Ok(())
    }

    fn close_call(&self, entry: &Entry, real: Request) -> Result<()> {
        stored(real)?;
        let value = call_value(entry.at, real, false);
        self.write(|j| j.close_lease(&entry.endpoint, &entry.lease, value));
        Ok(())
    }

    fn add_usage(
        &self,
        endpoint: &str,
        at: Millis,
        month: MonthStart,
        change: Change,
    ) -> Result<()> {
        self.writes_at(at);
        let minute = self.add_to_buckets(Of::Buckets, endpoint, quota::minute_of(at), change)?;
        let second = self.add_to_buckets(Of::Seconds, endpoint, at.div_euclid(1_000), change)?;
        let hour = at.div_euclid(HOUR_MS);
        self.write(|j| {
            j.add_usage(
                endpoint,
                [(Of::Buckets, minute), (Of::Seconds, second)],
                (hour, month),
                change,
            )
        });
        Ok(())
    }

    fn add_latency(&self, endpoint: &str, at: Millis, ms: u64) -> Result<()> {
        let id = random::id();
        self.write(|j| j.add_latency(endpoint, at, ms, &id));
        Ok(())
    }

    fn add_counters(&self, endpoint: &str, change: Counters) -> Result<()> {
        self.write(|j| j.add_counters(endpoint, change));
        Ok(())
    }

    fn set_cooldown(&self, endpoint: &str, cooldown: Option<&Cooldown>) -> Result<()> {
        self.write(|j| j.set_cooldown(endpoint, cooldown));
        Ok(())
    }

    fn set_report(&self, endpoint: &str, said: &Said) -> Result<()> {
        let cap = said.cap.map_or_else(|| "-".to_owned(), |c| c.to_string());
        let base = said.base.measures().map(|n| n.to_string()).join(" ");
        let value = format!("{} {cap} {} {base}", said.remaining, said.resets_at);
        self.write(|j| j.set_report(endpoint, said.limit.name(), value));
        Ok(())
    }

    fn set_turn(&self, endpoint: &str) -> Result<()> {
        self.write(|j| j.set_turn(endpoint));
        Ok(())
    }

    fn set_said(&self, note: &str) -> Result<()> {
        self.write(|j| j.set_said(note));
        Ok(())
    }

    /// Once an hour: calls and buckets past the retention, and history past 90 days, go.
    fn drop_before(&self, horizons: &Horizons) -> Result<()> {
        let mut deletions: Vec<(String, Vec<String>)> = Vec::new();
        let endpoints = self.endpoints()?;
        for endpoint in &endpoints {
            // The calls still kept, and the reservations that expired open (a call made
            // is kept one by one for two minutes only, an open reservation until now).
            let mut old: Vec<String> = Vec::new();
            for kind in [Of::Calls, Of::Open] {
                let ids: Vec<String> = self.query(
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(self.of(kind, endpoint))
                        .arg("-inf")
                        .arg(horizons.calls_until),
                )?;
                old.extend(ids);
            }
            old.sort();
            old.dedup();
            if !old.is_empty() {
                let leases: Vec<String> = old
                    .iter()
                    .filter(|id| !id.starts_with('+'))
                    .cloned()
                    .collect();
                deletions.push((self.global(Global::Leases), leases));
                deletions.push((self.of(Of::Call, endpoint), old));
            }
            for kind in Of::HOURS {
                let fields: Vec<String> =
                    self.query(redis::cmd("HKEYS").arg(self.of(kind, endpoint)))?;
                let stale: Vec<String> = fields
                    .into_iter()
                    .filter(|f| f.parse::<i64>().is_ok_and(|h| h < horizons.first_hour))
                    .collect();
                deletions.push((self.of(kind, endpoint), stale));
            }
            let months: Vec<String> =
                self.query(redis::cmd("HKEYS").arg(self.of(Of::Months, endpoint)))?;
            let stale: Vec<String> = months
                .into_iter()
                .filter(|f| {
                    let start = f.split(' ').next().and_then(|s| s.parse::<i64>().ok());
                    start.is_some_and(|s| s < horizons.months_from)
                })
                .collect();
            deletions.push((self.of(Of::Months, endpoint), stale));
        }
        self.write(|j| {
            for endpoint in &endpoints {
                let calls = horizons.calls_until.to_string();
                j.drop_scored(Of::Calls, endpoint, calls.clone());
                j.drop_scored(Of::Open, endpoint, calls.clone());
                j.drop_scored(Of::Latencies, endpoint, calls);
                j.drop_scored(Of::Buckets, endpoint, format!("({}", horizons.first_minute));
            }
            for (key, fields) in deletions {
                j.drop_fields(key, &fields);
            }
            j.mark_pruned(horizons.reports_until);
        });
        Ok(())
    }

    fn forget(&self, endpoint: &str) -> Result<u64> {
        let mut ids: Vec<String> = Vec::new();
        for kind in [Of::Calls, Of::Open] {
            let more: Vec<String> = self.query(
                redis::cmd("ZRANGE")
                    .arg(self.of(kind, endpoint))
                    .arg(0)
                    .arg(-1),
            )?;
            ids.extend(more);
        }
        ids.sort();
        ids.dedup();
        let had_the_turn = self.last_turn()?.as_deref() == Some(endpoint);
        // When this endpoint holds the newest stamp (one far ahead, say), the namespace
        // forgets it too: it is set again by the next call written.
        let last: Vec<(String, Millis)> = self.query(
            redis::cmd("ZREVRANGE")
                .arg(self.of(Of::Calls, endpoint))
                .arg(0)
                .arg(0)
                .arg("WITHSCORES"),
        )?;
        let held_newest = last
            .first()
            .is_some_and(|&(_, at)| Some(at) >= self.newest.get());
        if held_newest {
            self.newest.set(None);
        }
        let leases: Vec<String> = ids
            .iter()
            .filter(|id| !id.starts_with('+'))
            .cloned()
            .collect();
        self.write(|j| j.forget(endpoint, &leases, had_the_turn, held_newest));
        // Should the step write for it again, it writes to nothing (what the server still
        // holds goes with the step's transaction).
        let mut buckets = self.buckets.borrow_mut();
        buckets.insert(self.of(Of::Buckets, endpoint), Known::newest(None, None));
        buckets.insert(
            self.of(Of::Seconds, endpoint),
            Known::newest(None, Some(None)),
        );
        self.last_calls
            .borrow_mut()
            .insert(endpoint.to_owned(), None);
        self.kept.borrow_mut().remove(endpoint);
        Ok(ids.len() as u64)
    }
}
