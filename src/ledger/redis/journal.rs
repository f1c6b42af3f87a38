//! The writes of a Redis step, queued for its MULTI/EXEC behind helpers named for what
//! they do; no other module spells a write command.

use redis::{Pipeline, ToRedisArgs};

use super::buckets::Update;
use super::keys::{Cool, Global, Keys, Life, Of};
use super::scripts;
use crate::clock::Millis;
use crate::cooldown::Cooldown;
use crate::ledger::{Change, Counters, HISTORY_MS, RETENTION_MS};

/// Calls, reservations and minute buckets outlive the longest window by this margin.
const CALLS_TTL_S: i64 = (RETENTION_MS / 1000) + 3_600;
const HISTORY_TTL_S: i64 = HISTORY_MS / 1000 + 86_400;
/// Lifetime counters of an endpoint unused for this long are forgotten.
const LIFE_TTL_S: i64 = 400 * 86_400;
const ANSWERS_TTL_S: i64 = 7 * 86_400;
/// Month totals outlive the month before the current one.
const MONTHS_TTL_S: i64 = 64 * 86_400;

/// The step's queued writes.
pub struct Journal<'a> {
    pub pipe: &'a mut Pipeline,
    pub keys: &'a Keys,
    /// The endpoints whose keys the step has kept alive already.
    pub touched: &'a mut std::collections::HashSet<String>,
}

impl Journal<'_> {
    fn send(&mut self, command: &str, key: String, args: impl ToRedisArgs) {
        self.pipe.cmd(command).arg(key).arg(args).ignore();
    }

    fn expire(&mut self, key: String, seconds: i64) {
        self.send("EXPIRE", key, seconds);
    }

    /// Lists `endpoint` in a set of the namespace.
    fn list(&mut self, set: Global, endpoint: &str) {
        self.send("SADD", self.keys.global(set), endpoint);
    }

    /// Notes that the step used `endpoint`: [`Journal::keep_alive`] ends the step's writes.
    fn touch(&mut self, endpoint: &str) {
        self.touched.insert(endpoint.to_owned());
    }

    /// Keeps the usage and counters of each endpoint the step used while it is used, and
    /// lists it: once a step, after its writes (an expiry needs the key to exist). And
    /// forgets its calls made at or before the instant `forget_until` gives it, if any,
    /// that no open lease holds.
    pub fn keep_alive(&mut self, forget_until: impl Fn(&str) -> Option<Millis>) {
        let touched = std::mem::take(self.touched);
        for endpoint in &touched {
            if let Some(until) = forget_until(endpoint) {
                let lua = &*scripts::FORGET_CLOSED;
                self.pipe
                    .cmd("EVAL")
                    .arg(&lua.source)
                    .arg(lua.layout.len())
                    .arg(self.keys.for_script(lua.layout, &[endpoint]))
                    .arg(until)
                    .arg(self.keys.global(Global::Leases))
                    .ignore();
            }
            self.keep(endpoint);
        }
    }

    fn keep(&mut self, endpoint: &str) {
        for kind in [
            Of::Calls,
            Of::Call,
            Of::Buckets,
            Of::Seconds,
            Of::Open,
            Of::Latencies,
        ] {
            self.expire(self.keys.of(kind, endpoint), CALLS_TTL_S);
        }
        self.expire(self.keys.of(Of::Months, endpoint), MONTHS_TTL_S);
        self.expire(self.keys.of(Of::Life, endpoint), LIFE_TTL_S);
        self.list(Global::Endpoints, endpoint);
    }

    /// Writes a call (`value` as [`super::reply::call_value`] makes it) under `id`.
    pub fn put_call(&mut self, endpoint: &str, id: &str, at: Millis, value: String) {
        self.send("ZADD", self.keys.of(Of::Calls, endpoint), (at, id));
        self.send("HSET", self.keys.of(Of::Call, endpoint), (id, value));
        self.touch(endpoint);
    }

    /// Notes a reservation open under `lease`.
    pub fn open_lease(&mut self, endpoint: &str, lease: &str, at: Millis) {
        self.send("HSET", self.keys.global(Global::Leases), (lease, endpoint));
        self.send("ZADD", self.keys.of(Of::Open, endpoint), (at, lease));
    }

    /// Closes a reservation: its call takes `value`, and it is open no more.
    pub fn close_lease(&mut self, endpoint: &str, lease: &str, value: String) {
        self.send("HSET", self.keys.of(Of::Call, endpoint), (lease, value));
        self.send("ZREM", self.keys.of(Of::Open, endpoint), lease);
        self.touch(endpoint);
    }

    /// Adds a change of usage to the minute and second buckets (`buckets`, as computed by
    /// [`super::buckets::Known::add`]), to the hour of the history and to the month that
    /// began at `month`; even a call of nothing has an hour, as in the other ledgers.
    pub fn add_usage(
        &mut self,
        endpoint: &str,
        buckets: [(Of, Update); 2],
        (hour, month): (i64, Millis),
        change: Change,
    ) {
        for (kind, update) in buckets {
            let key = self.keys.of(kind, endpoint);
            for (old, new) in update.replaced {
                if let Some(old) = old {
                    self.send("ZREM", key.clone(), old.member());
                }
                self.send("ZADD", key.clone(), (new.at, new.member()));
            }
            if let Some(before) = update.drop_before {
                self.send("ZREMRANGEBYSCORE", key, ("-inf", format!("({before}")));
            }
        }
        for (kind, by) in Of::HOURS.into_iter().zip(change.0) {
            // The history of a kind no call has used yet is not written.
            if by != 0 || kind == Of::HourRequests {
                self.send("HINCRBY", self.keys.of(kind, endpoint), (hour, by));
                self.expire(self.keys.of(kind, endpoint), HISTORY_TTL_S);
            }
        }
        for (k, by) in change.0.into_iter().enumerate() {
            if by != 0 {
                let field = format!("{month} {}", k + 1);
                self.send("HINCRBY", self.keys.of(Of::Months, endpoint), (field, by));
            }
        }
        self.list(Global::History, endpoint);
        self.touch(endpoint);
    }

    /// Keeps the latency of a successful call.
    pub fn add_latency(&mut self, endpoint: &str, at: Millis, ms: u64, id: &str) {
        self.send(
            "ZADD",
            self.keys.of(Of::Latencies, endpoint),
            (at, format!("{ms} {id}")),
        );
        self.touch(endpoint);
    }

    pub fn add_counters(&mut self, endpoint: &str, change: Counters) {
        let counted = Life::COUNTED.into_iter().zip(change.counted.0);
        let pending = Life::PENDING
            .into_iter()
            .zip(change.pending.0[1..].iter().copied());
        let outcomes = [
            (Life::RateLimited, change.rate_limited),
            (Life::Failed, change.failed),
        ];
        for (field, by) in counted.chain(pending).chain(outcomes) {
            if by != 0 {
                self.send(
                    "HINCRBY",
                    self.keys.of(Of::Life, endpoint),
                    (field.field(), by),
                );
            }
        }
        self.touch(endpoint);
    }

    pub fn set_cooldown(&mut self, endpoint: &str, cooldown: Option<&Cooldown>) {
        let key = self.keys.of(Of::Cool, endpoint);
        self.pipe.cmd("DEL").arg(&key).ignore();
        let Some(c) = cooldown else {
            return;
        };
        let mut fields = vec![
            (Cool::Until.field(), c.until.to_string()),
            (Cool::Reason.field(), c.reason.clone()),
            (Cool::Strikes.field(), c.strikes.to_string()),
            (Cool::Failures.field(), c.failures.to_string()),
        ];
        if let Some(probe) = c.probe_at {
            fields.push((Cool::Probe.field(), probe.to_string()));
        }
        self.send("HSET", key.clone(), fields);
        self.expire(key, ANSWERS_TTL_S);
        self.list(Global::Endpoints, endpoint);
    }

    pub fn set_report(&mut self, endpoint: &str, limit: &str, value: String) {
        let key = self.keys.of(Of::Reports, endpoint);
        self.send("HSET", key.clone(), (limit, value));
        self.expire(key, ANSWERS_TTL_S);
        self.list(Global::Endpoints, endpoint);
    }

    pub fn set_turn(&mut self, endpoint: &str) {
        self.send("SET", self.keys.global(Global::Turn), endpoint);
    }

    pub fn set_said(&mut self, note: &str) {
        self.send("SADD", self.keys.global(Global::Said), note);
    }

    /// Drops what scores at or below `until` (a call's instant, or `(minute` for buckets
    /// before it) from a sorted set of `endpoint`.
    pub fn drop_scored(&mut self, kind: Of, endpoint: &str, until: String) {
        self.send(
            "ZREMRANGEBYSCORE",
            self.keys.of(kind, endpoint),
            ("-inf", until),
        );
    }

    pub fn drop_fields(&mut self, key: String, fields: &[String]) {
        if !fields.is_empty() {
            self.send("HDEL", key, fields);
        }
    }

    pub fn mark_pruned(&mut self, at: Millis) {
        self.send("SET", self.keys.global(Global::Pruned), at);
    }

    /// Forgets all of `endpoint` but its history; `leases` are its reservations' leases.
    pub fn forget(
        &mut self,
        endpoint: &str,
        leases: &[String],
        had_the_turn: bool,
        held_newest: bool,
    ) {
        for kind in Of::FORGOTTEN {
            self.pipe
                .cmd("DEL")
                .arg(self.keys.of(kind, endpoint))
                .ignore();
        }
        self.send("SREM", self.keys.global(Global::Endpoints), endpoint);
        self.drop_fields(self.keys.global(Global::Leases), leases);
        if had_the_turn {
            self.pipe
                .cmd("DEL")
                .arg(self.keys.global(Global::Turn))
                .ignore();
        }
        if held_newest {
            self.pipe
                .cmd("DEL")
                .arg(self.keys.global(Global::Newest))
                .ignore();
        }
    }
}
