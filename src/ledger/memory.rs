//! A ledger in memory, with a clock the test sets: the storage primitives in the plainest
//! code, so that the property tests run against it and the real ledgers keep them honest.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};

use anyhow::Result;

use super::{
    Access, Book, Change, Counters, Departing, Entry, Horizons, Hourly, Ledger, Lifetime,
    MonthStart, Said, Source, Span, Step, Stored, time_of_step,
};
use crate::clock::{HOUR_MS, Millis};
use crate::cooldown::Cooldown;
use crate::quota::{self, MEASURES, Request};
use crate::random;

#[derive(Default)]
pub struct MemoryLedger {
    book: MemoryBook,
    /// What the system clock would read.
    pub clock: Cell<Millis>,
}

#[derive(Clone, Default)]
struct State {
    /// Every call, in the order it was written; an added call has an id of its own.
    calls: Vec<Entry>,
    /// (endpoint, minute) -> usage in that minute.
    minutes: BTreeMap<(String, i64), Change>,
    /// (endpoint, hour) -> usage in that hour, kept through resets.
    hours: BTreeMap<(String, i64), Change>,
    /// (endpoint, month start) -> usage in that month.
    months: BTreeMap<(String, MonthStart), Change>,
    /// (endpoint, at, latency in ms) of successful calls.
    latencies: Vec<(String, Millis, u64)>,
    counters: HashMap<String, Counters>,
    cooldowns: HashMap<String, Cooldown>,
    reports: HashMap<(String, &'static str), Said>,
    turn: Option<String>,
    said: std::collections::HashSet<String>,
}

#[derive(Default)]
pub struct MemoryBook(RefCell<State>);

impl Ledger for MemoryLedger {
    fn findings(&mut self) -> Result<Vec<super::Finding>> {
        Ok(Vec::new())
    }

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

fn add(a: i64, b: i64) -> i64 {
    a.saturating_add(b)
}

/// Adds `change` to `sums`, none below 0.
fn apply(sums: &mut Change, change: Change) {
    for i in 0..MEASURES {
        sums.0[i] = add(sums.0[i], change.0[i]).max(0);
    }
}

fn usage(sums: Change) -> Request {
    Request::from_measures(sums.0.map(|n| u64::try_from(n).unwrap_or(0)))
}

fn weighed(usage: Request, weights: [u64; MEASURES]) -> u64 {
    usage
        .measures()
        .iter()
        .zip(weights)
        .fold(0u64, |sum, (&n, w)| sum.saturating_add(n.saturating_mul(w)))
}

impl State {
    fn of<'s>(&'s self, endpoint: &'s str) -> impl Iterator<Item = &'s Entry> + 's {
        self.calls.iter().filter(move |e| e.endpoint == endpoint)
    }

    fn buckets<'s>(
        &'s self,
        endpoint: &'s str,
        from: i64,
    ) -> impl Iterator<Item = (i64, Change)> + 's {
        self.minutes
            .range((endpoint.to_owned(), from)..=(endpoint.to_owned(), i64::MAX))
            .map(|((_, minute), &sums)| (*minute, sums))
    }

    fn stored(&self, endpoint: &str, span: &Span) -> Stored {
        let minute = self
            .of(endpoint)
            .filter(|e| e.at > span.minute_after)
            .fold(Request::default(), |sum, e| sum.plus(e.usage));
        let summed = |from: i64| {
            self.buckets(endpoint, from)
                .fold(Request::default(), |sum, (_, b)| sum.plus(usage(b)))
        };
        let month = span.month_after.map_or_else(Request::default, |after| {
            self.months
                .range((endpoint.to_owned(), after + 1)..=(endpoint.to_owned(), i64::MAX))
                .fold(Request::default(), |sum, (_, &m)| sum.plus(usage(m)))
        });
        let open: Vec<&Entry> = self
            .of(endpoint)
            .filter(|e| e.open && e.at > span.open_after)
            .collect();
        Stored {
            windows: [minute, summed(span.hour_from), summed(span.day_from), month],
            open: open.len() as u64,
            // min_by_key keeps the first of equals: the one written first.
            oldest_open: open.iter().min_by_key(|e| e.at).map(|e| (*e).clone()),
            last_call: self.of(endpoint).map(|e| e.at).max(),
            counters: self.counters.get(endpoint).copied().unwrap_or_default(),
            cooldown: self.cooldowns.get(endpoint).cloned(),
            reports: self
                .reports
                .iter()
                .filter(|((id, _), _)| id == endpoint)
                .map(|(_, said)| *said)
                .collect(),
        }
    }
}

impl Book for MemoryBook {
    fn newest(&self) -> Result<Option<Millis>> {
        Ok(self.0.borrow().calls.iter().map(|e| e.at).max())
    }

    fn standings(&self, asks: &[(&str, Span)]) -> Result<Vec<Stored>> {
        let state = self.0.borrow();
        Ok(asks
            .iter()
            .map(|(id, span)| state.stored(id, span))
            .collect())
    }

    fn lifetimes(&self, asks: &[(&str, Millis)]) -> Result<Vec<Lifetime>> {
        let state = self.0.borrow();
        Ok(asks
            .iter()
            .map(|&(endpoint, open_after)| Lifetime {
                counters: state.counters.get(endpoint).copied().unwrap_or_default(),
                open: state
                    .of(endpoint)
                    .filter(|e| e.open && e.at > open_after)
                    .fold(Request::default(), |sum, e| sum.plus(e.usage)),
            })
            .collect())
    }

    fn departures(&self, asks: &[Departing<'_>]) -> Result<Vec<Vec<(i64, u64)>>> {
        let state = self.0.borrow();
        Ok(asks
            .iter()
            .map(|ask| match ask.source {
                Source::Calls { after } => {
                    let mut calls: Vec<(i64, u64)> = state
                        .of(ask.endpoint)
                        .filter(|e| e.at > after)
                        .map(|e| (e.at, weighed(e.usage, ask.weights)))
                        .collect();
                    calls.sort_by_key(|&(at, _)| at);
                    calls
                }
                Source::Buckets { from } => state
                    .buckets(ask.endpoint, from)
                    .map(|(minute, b)| (minute, weighed(usage(b), ask.weights)))
                    .collect(),
            })
            .collect())
    }

    fn by_lease(&self, lease: &str) -> Result<Option<Entry>> {
        Ok(self
            .0
            .borrow()
            .calls
            .iter()
            .find(|e| e.lease == lease && !e.lease.starts_with('+'))
            .cloned())
    }

    fn history(&self, endpoint: &str, since_hour: i64) -> Result<Vec<Hourly>> {
        let state = self.0.borrow();
        Ok(state
            .hours
            .range((endpoint.to_owned(), since_hour)..=(endpoint.to_owned(), i64::MAX))
            .map(|((_, hour), &h)| Hourly {
                hour: *hour,
                usage: usage(h),
            })
            .collect())
    }

    fn endpoints(&self) -> Result<Vec<String>> {
        let state = self.0.borrow();
        let mut ids: Vec<String> = state.calls.iter().map(|e| e.endpoint.clone()).collect();
        ids.extend(state.minutes.keys().map(|(id, _)| id.clone()));
        ids.extend(state.counters.keys().cloned());
        ids.extend(state.cooldowns.keys().cloned());
        ids.extend(state.reports.keys().map(|(id, _)| id.clone()));
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    fn endpoints_with_history(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self
            .0
            .borrow()
            .hours
            .keys()
            .map(|(id, _)| id.clone())
            .collect();
        ids.dedup();
        Ok(ids)
    }

    fn said_before(&self, note: &str) -> Result<bool> {
        Ok(self.0.borrow().said.contains(note))
    }

    fn last_turn(&self) -> Result<Option<String>> {
        Ok(self.0.borrow().turn.clone())
    }

    fn prune_due(&self, _horizon: Millis) -> Result<bool> {
        Ok(true)
    }

    fn latencies(&self, asks: &[(&str, Millis)]) -> Result<Vec<Vec<u64>>> {
        let state = self.0.borrow();
        Ok(asks
            .iter()
            .map(|&(endpoint, after)| {
                state
                    .latencies
                    .iter()
                    .filter(|(id, at, _)| id == endpoint && *at > after)
                    .map(|&(_, _, ms)| ms)
                    .collect()
            })
            .collect())
    }

    fn open_estimates_until(&self, until: Millis) -> Result<Vec<(String, Request)>> {
        let mut sums: BTreeMap<String, Request> = BTreeMap::new();
        for e in self
            .0
            .borrow()
            .calls
            .iter()
            .filter(|e| e.open && e.at <= until)
        {
            let sum = sums.entry(e.endpoint.clone()).or_default();
            *sum = sum.plus(e.usage);
        }
        Ok(sums.into_iter().collect())
    }

    fn insert_call(
        &self,
        endpoint: &str,
        at: Millis,
        usage: Request,
        lease: Option<&str>,
    ) -> Result<()> {
        self.0.borrow_mut().calls.push(Entry {
            lease: lease.map_or_else(|| format!("+{}", random::id()), str::to_owned),
            endpoint: endpoint.to_owned(),
            at,
            usage,
            open: lease.is_some(),
        });
        Ok(())
    }

    fn close_call(&self, entry: &Entry, real: Request) -> Result<()> {
        if let Some(e) = self
            .0
            .borrow_mut()
            .calls
            .iter_mut()
            .find(|e| e.lease == entry.lease)
        {
            e.usage = real;
            e.open = false;
        }
        Ok(())
    }

    fn add_usage(
        &self,
        endpoint: &str,
        at: Millis,
        month: MonthStart,
        change: Change,
    ) -> Result<()> {
        let mut state = self.0.borrow_mut();
        let key = |n: i64| (endpoint.to_owned(), n);
        apply(
            state.minutes.entry(key(quota::minute_of(at))).or_default(),
            change,
        );
        apply(
            state.hours.entry(key(at.div_euclid(HOUR_MS))).or_default(),
            change,
        );
        apply(state.months.entry(key(month)).or_default(), change);
        Ok(())
    }

    fn add_latency(&self, endpoint: &str, at: Millis, ms: u64) -> Result<()> {
        self.0
            .borrow_mut()
            .latencies
            .push((endpoint.to_owned(), at, ms));
        Ok(())
    }

    fn add_counters(&self, endpoint: &str, change: Counters) -> Result<()> {
        let mut state = self.0.borrow_mut();
        let c = state.counters.entry(endpoint.to_owned()).or_default();
        apply(&mut c.counted, change.counted);
        apply(&mut c.pending, change.pending);
        c.rate_limited = add(c.rate_limited, change.rate_limited).max(0);
        c.failed = add(c.failed, change.failed).max(0);
        Ok(())
    }

    fn set_cooldown(&self, endpoint: &str, cooldown: Option<&Cooldown>) -> Result<()> {
        let mut state = self.0.borrow_mut();
        match cooldown {
            Some(c) => state.cooldowns.insert(endpoint.to_owned(), c.clone()),
            None => state.cooldowns.remove(endpoint),
        };
        Ok(())
    }

    fn set_report(&self, endpoint: &str, said: &Said) -> Result<()> {
        self.0
            .borrow_mut()
            .reports
            .insert((endpoint.to_owned(), said.limit.name()), *said);
        Ok(())
    }

    fn set_said(&self, note: &str) -> Result<()> {
        self.0.borrow_mut().said.insert(note.to_owned());
        Ok(())
    }

    fn set_turn(&self, endpoint: &str) -> Result<()> {
        self.0.borrow_mut().turn = Some(endpoint.to_owned());
        Ok(())
    }

    fn drop_before(&self, horizons: &Horizons) -> Result<()> {
        let mut state = self.0.borrow_mut();
        state.calls.retain(|e| e.at > horizons.calls_until);
        state
            .minutes
            .retain(|(_, m), _| *m >= horizons.first_minute);
        state.hours.retain(|(_, h), _| *h >= horizons.first_hour);
        state.months.retain(|(_, m), _| *m >= horizons.months_from);
        state
            .latencies
            .retain(|(_, at, _)| *at > horizons.calls_until);
        state
            .reports
            .retain(|_, r| r.resets_at > horizons.reports_until);
        Ok(())
    }

    fn forget(&self, endpoint: &str) -> Result<u64> {
        let mut state = self.0.borrow_mut();
        let before = state.calls.len();
        state.calls.retain(|e| e.endpoint != endpoint);
        state.minutes.retain(|(id, _), _| id != endpoint);
        state.months.retain(|(id, _), _| id != endpoint);
        state.latencies.retain(|(id, _, _)| id != endpoint);
        state.counters.remove(endpoint);
        state.cooldowns.remove(endpoint);
        state.reports.retain(|(id, _), _| id != endpoint);
        if state.turn.as_deref() == Some(endpoint) {
            state.turn = None;
        }
        Ok((before - state.calls.len()) as u64)
    }
}
