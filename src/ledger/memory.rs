//! A ledger in memory, with a clock the test sets: the same rules as the SQLite ledger in
//! the plainest code, so that the property tests run against both keep both honest.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use anyhow::Result;

use super::{
    Access, Answers, Entry, HISTORY_MS, Hourly, Ledger, Lifetime, RESERVATION_OPEN_MS,
    RETENTION_MS, Report, Step, Tally, Totals, Usage, time_of_step,
};
use crate::clock::{HOUR_MS, Millis};
use crate::cooldown::Cooldown;
use crate::quota::{self, Limit, Request, Unit, Used, Window};

#[derive(Default)]
pub struct MemoryLedger {
    book: MemoryBook,
    /// What the system clock would read.
    pub clock: Cell<Millis>,
}

#[derive(Clone, Default)]
struct State {
    /// Every call, in the order it was written; an added call has an empty lease.
    calls: Vec<Entry>,
    /// Requests and tokens of each endpoint since records began.
    lifetime: HashMap<String, (u64, u64)>,
    cooldowns: HashMap<String, Cooldown>,
    reports: HashMap<(String, &'static str), Said>,
    turn: Option<String>,
    leases: u64,
    counters: HashMap<String, Totals>,
    /// (endpoint, hour) -> (requests, tokens)
    hourly: HashMap<(String, i64), (u64, u64)>,
}

/// A provider's report: remaining, cap, resets_at, and the lifetime totals when it was made.
type Said = (u64, Option<u64>, Millis, (u64, u64));

#[derive(Default)]
pub struct MemoryBook(RefCell<State>);

impl Ledger for MemoryLedger {
    fn run(&mut self, _access: Access, step: &mut Step<'_>) -> Result<()> {
        // A failed step leaves the ledger as it was, as a rolled-back transaction does.
        let before = self.book.0.borrow().clone();
        let now = time_of_step(self.clock.get(), &self.book)?;
        let result = step(&self.book, now);
        if result.is_err() {
            *self.book.0.borrow_mut() = before;
        }
        result
    }
}

impl MemoryBook {
    fn of<'s>(state: &'s State, endpoint: &'s str) -> impl Iterator<Item = &'s Entry> + 's {
        state.calls.iter().filter(move |e| e.endpoint == endpoint)
    }

    fn insert(&self, endpoint: &str, request: Request, at: Millis, lease: Option<String>) {
        let mut state = self.0.borrow_mut();
        let total = state.lifetime.entry(endpoint.to_owned()).or_default();
        total.0 = total.0.saturating_add(request.requests);
        total.1 = total.1.saturating_add(request.tokens);
        let counted = if lease.is_some() { 0 } else { request.tokens };
        let counters = state.counters.entry(endpoint.to_owned()).or_default();
        counters.requests = counters.requests.saturating_add(request.requests);
        counters.tokens = counters.tokens.saturating_add(counted);
        let hour = state
            .hourly
            .entry((endpoint.to_owned(), at.div_euclid(HOUR_MS)))
            .or_default();
        hour.0 = hour.0.saturating_add(request.requests);
        hour.1 = hour.1.saturating_add(request.tokens);
        state.calls.push(Entry {
            open: lease.is_some(),
            lease: lease.unwrap_or_default(),
            endpoint: endpoint.to_owned(),
            at,
            requests: request.requests,
            tokens: request.tokens,
        });
    }

    /// Usage per minute bucket from `first` on, oldest first.
    fn buckets(&self, endpoint: &str, first: i64, unit: Unit) -> Vec<(i64, u64)> {
        let state = self.0.borrow();
        let mut buckets: Vec<(i64, u64)> = Vec::new();
        let mut calls: Vec<&Entry> = Self::of(&state, endpoint)
            .filter(|e| quota::minute_of(e.at) >= first)
            .collect();
        calls.sort_by_key(|e| e.at);
        for e in calls {
            let minute = quota::minute_of(e.at);
            let amount = Request {
                requests: e.requests,
                tokens: e.tokens,
            }
            .amount(unit);
            match buckets.last_mut() {
                Some((m, sum)) if *m == minute => *sum = sum.saturating_add(amount),
                _ => buckets.push((minute, amount)),
            }
        }
        buckets
    }
}

impl Usage for MemoryBook {
    fn newest(&self) -> Result<Option<Millis>> {
        Ok(self.0.borrow().calls.iter().map(|e| e.at).max())
    }

    fn used(&self, endpoint: &str, now: Millis, day_start: Option<Millis>) -> Result<Used> {
        let mut used = Used::default();
        for limit in Limit::ALL {
            let first = match (limit.window, day_start) {
                (Window::Minute, _) => {
                    let state = self.0.borrow();
                    let sum = Self::of(&state, endpoint)
                        .filter(|e| e.at > quota::counted_after(Window::Minute, now))
                        .map(|e| match limit.unit {
                            Unit::Requests => e.requests,
                            Unit::Tokens => e.tokens,
                        })
                        .fold(0u64, u64::saturating_add);
                    used.set(limit, sum);
                    continue;
                }
                (Window::Day, Some(start)) => quota::minute_of(start),
                (window, _) => quota::first_counted_minute(window, now),
            };
            let sum = self
                .buckets(endpoint, first, limit.unit)
                .into_iter()
                .map(|(_, n)| n)
                .fold(0u64, u64::saturating_add);
            used.set(limit, sum);
        }
        Ok(used)
    }

    fn departures(
        &self,
        endpoint: &str,
        limit: Limit,
        now: Millis,
        _enough: u64,
    ) -> Result<Vec<(Millis, u64)>> {
        if limit.window == Window::Minute {
            let state = self.0.borrow();
            let mut departures: Vec<(Millis, u64)> = Self::of(&state, endpoint)
                .filter(|e| e.at > quota::counted_after(Window::Minute, now))
                .map(|e| {
                    let amount = Request {
                        requests: e.requests,
                        tokens: e.tokens,
                    }
                    .amount(limit.unit);
                    (quota::row_leaves_at(e.at, Window::Minute), amount)
                })
                .collect();
            departures.sort_by_key(|&(at, _)| at);
            return Ok(departures);
        }
        let first = quota::first_counted_minute(limit.window, now);
        Ok(self
            .buckets(endpoint, first, limit.unit)
            .into_iter()
            .map(|(m, n)| (quota::bucket_leaves_at(m, limit.window), n))
            .collect())
    }

    fn last_call(&self, endpoint: &str) -> Result<Option<Millis>> {
        Ok(Self::of(&self.0.borrow(), endpoint).map(|e| e.at).max())
    }

    fn open_reservations(&self, endpoint: &str, now: Millis) -> Result<u64> {
        Ok(Self::of(&self.0.borrow(), endpoint)
            .filter(|e| e.open && e.at > now - RESERVATION_OPEN_MS)
            .count() as u64)
    }

    fn first_expiry(&self, endpoint: &str, now: Millis) -> Result<Option<Millis>> {
        Ok(self
            .oldest_open(endpoint, now)?
            .map(|e| e.at + RESERVATION_OPEN_MS))
    }

    fn reserve(&self, endpoint: &str, request: Request, now: Millis) -> Result<String> {
        let lease = {
            let mut state = self.0.borrow_mut();
            state.leases += 1;
            format!("{:016x}", state.leases)
        };
        self.insert(endpoint, request, now, Some(lease.clone()));
        Ok(lease)
    }

    fn add(&self, endpoint: &str, request: Request, now: Millis) -> Result<()> {
        self.insert(endpoint, request, now, None);
        Ok(())
    }

    fn by_lease(&self, lease: &str) -> Result<Option<Entry>> {
        Ok(self
            .0
            .borrow()
            .calls
            .iter()
            .find(|e| !e.lease.is_empty() && e.lease == lease)
            .cloned())
    }

    fn oldest_open(&self, endpoint: &str, now: Millis) -> Result<Option<Entry>> {
        // min_by_key keeps the first of equals: the one written first.
        Ok(Self::of(&self.0.borrow(), endpoint)
            .filter(|e| e.open && e.at > now - RESERVATION_OPEN_MS)
            .min_by_key(|e| e.at)
            .cloned())
    }

    fn settle(&self, entry: &Entry, real: Request, now: Millis) -> Result<()> {
        let mut state = self.0.borrow_mut();
        let expired = now >= entry.at + RESERVATION_OPEN_MS;
        let counters = state.counters.entry(entry.endpoint.clone()).or_default();
        counters.requests = counters
            .requests
            .saturating_add(real.requests.saturating_sub(entry.requests));
        let counted = if expired {
            real.tokens.max(entry.tokens)
        } else {
            real.tokens
        };
        counters.tokens = counters.tokens.saturating_add(counted);
        let hour = state
            .hourly
            .entry((entry.endpoint.clone(), entry.at.div_euclid(HOUR_MS)))
            .or_default();
        hour.0 = hour
            .0
            .saturating_add(real.requests)
            .saturating_sub(entry.requests);
        hour.1 = hour
            .1
            .saturating_add(real.tokens)
            .saturating_sub(entry.tokens);
        let total = state.lifetime.entry(entry.endpoint.clone()).or_default();
        total.0 = total
            .0
            .saturating_add(real.requests)
            .saturating_sub(entry.requests);
        total.1 = total
            .1
            .saturating_add(real.tokens)
            .saturating_sub(entry.tokens);
        if let Some(e) = state.calls.iter_mut().find(|e| e.lease == entry.lease) {
            e.requests = real.requests;
            e.tokens = real.tokens;
            e.open = false;
        }
        Ok(())
    }

    fn prune(&self, now: Millis) -> Result<()> {
        let mut state = self.0.borrow_mut();
        let expired: Vec<(String, u64)> = state
            .calls
            .iter()
            .filter(|e| e.open && e.at <= now - RETENTION_MS)
            .map(|e| (e.endpoint.clone(), e.tokens))
            .collect();
        for (endpoint, tokens) in expired {
            let counters = state.counters.entry(endpoint).or_default();
            counters.tokens = counters.tokens.saturating_add(tokens);
        }
        state.calls.retain(|e| e.at > now - RETENTION_MS);
        let oldest_hour = (now - HISTORY_MS).div_euclid(HOUR_MS);
        state.hourly.retain(|(_, hour), _| *hour >= oldest_hour);
        state.reports.retain(|_, r| r.2 > now);
        Ok(())
    }

    fn endpoints_used(&self) -> Result<Vec<String>> {
        let state = self.0.borrow();
        Ok(state.calls.iter().map(|e| e.endpoint.clone()).collect())
    }

    fn forget_usage(&self, endpoint: &str) -> Result<u64> {
        let mut state = self.0.borrow_mut();
        let before = state.calls.len();
        state.calls.retain(|e| e.endpoint != endpoint);
        state.lifetime.remove(endpoint);
        state.counters.remove(endpoint);
        Ok((before - state.calls.len()) as u64)
    }
}

impl Lifetime for MemoryBook {
    fn totals(&self, endpoint: &str, now: Millis) -> Result<Totals> {
        let state = self.0.borrow();
        let mut totals = state.counters.get(endpoint).copied().unwrap_or_default();
        let expired: u64 = Self::of(&state, endpoint)
            .filter(|e| e.open && e.at <= now - RESERVATION_OPEN_MS)
            .map(|e| e.tokens)
            .fold(0, u64::saturating_add);
        totals.tokens = totals.tokens.saturating_add(expired);
        Ok(totals)
    }

    fn count_outcome(&self, endpoint: &str, outcome: Tally) -> Result<()> {
        let mut state = self.0.borrow_mut();
        let counters = state.counters.entry(endpoint.to_owned()).or_default();
        match outcome {
            Tally::RateLimited => counters.rate_limited += 1,
            Tally::Failed => counters.failed += 1,
        }
        Ok(())
    }

    fn history(&self, endpoint: &str, since_hour: i64) -> Result<Vec<Hourly>> {
        let state = self.0.borrow();
        let mut hours: Vec<Hourly> = state
            .hourly
            .iter()
            .filter(|((id, hour), _)| id == endpoint && *hour >= since_hour)
            .map(|((_, hour), &(requests, tokens))| Hourly {
                hour: *hour,
                requests,
                tokens,
            })
            .collect();
        hours.sort_by_key(|h| h.hour);
        Ok(hours)
    }

    fn endpoints_with_history(&self) -> Result<Vec<String>> {
        let state = self.0.borrow();
        let mut ids: Vec<String> = state.hourly.keys().map(|(id, _)| id.clone()).collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

impl Answers for MemoryBook {
    fn cooldown(&self, endpoint: &str) -> Result<Option<Cooldown>> {
        Ok(self.0.borrow().cooldowns.get(endpoint).cloned())
    }

    fn set_cooldown(&self, endpoint: &str, cooldown: Option<&Cooldown>) -> Result<()> {
        let mut state = self.0.borrow_mut();
        match cooldown {
            Some(c) => state.cooldowns.insert(endpoint.to_owned(), c.clone()),
            None => state.cooldowns.remove(endpoint),
        };
        Ok(())
    }

    fn mark_probe(&self, endpoint: &str, now: Millis) -> Result<()> {
        if let Some(c) = self.0.borrow_mut().cooldowns.get_mut(endpoint) {
            c.probe_at = Some(now);
        }
        Ok(())
    }

    fn reports(&self, endpoint: &str, now: Millis) -> Result<Vec<Report>> {
        let state = self.0.borrow();
        let lifetime = state.lifetime.get(endpoint).copied().unwrap_or_default();
        Ok(Limit::ALL
            .into_iter()
            .filter_map(|limit| {
                let &(remaining, cap, resets_at, base) =
                    state.reports.get(&(endpoint.to_owned(), limit.name()))?;
                let since = match limit.unit {
                    Unit::Requests => lifetime.0.saturating_sub(base.0),
                    Unit::Tokens => lifetime.1.saturating_sub(base.1),
                };
                (resets_at > now).then_some(Report {
                    limit,
                    remaining,
                    cap,
                    resets_at,
                    used_since: since,
                })
            })
            .collect())
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
        let mut state = self.0.borrow_mut();
        let base = state.lifetime.get(endpoint).copied().unwrap_or_default();
        state.reports.insert(
            (endpoint.to_owned(), limit.name()),
            (remaining, cap, resets_at, base),
        );
        Ok(())
    }

    fn last_turn(&self) -> Result<Option<String>> {
        Ok(self.0.borrow().turn.clone())
    }

    fn set_turn(&self, endpoint: &str) -> Result<()> {
        self.0.borrow_mut().turn = Some(endpoint.to_owned());
        Ok(())
    }

    fn endpoints_answered(&self) -> Result<Vec<String>> {
        let state = self.0.borrow();
        let mut ids: Vec<String> = state.cooldowns.keys().cloned().collect();
        ids.extend(state.reports.keys().map(|(id, _)| id.clone()));
        Ok(ids)
    }

    fn forget_answers(&self, endpoint: &str) -> Result<()> {
        let mut state = self.0.borrow_mut();
        state.cooldowns.remove(endpoint);
        state.reports.retain(|(id, _), _| id != endpoint);
        if state.turn.as_deref() == Some(endpoint) {
            state.turn = None;
        }
        Ok(())
    }
}
