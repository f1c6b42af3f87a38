//! The SQLite ledger's storage primitives: each a statement or two over the tables that
//! `usage.rs`, `lifetime.rs` and `answers.rs` keep.

use anyhow::Result;

use super::Tx;
use super::usage::Buckets;
use crate::clock::{Millis, SECOND_MS};
use crate::cooldown::Cooldown;
use crate::ledger::{
    Book, Change, Counters, Departing, Entry, Horizons, Hourly, Lifetime, MonthStart, Said, Span,
    Stored,
};
use crate::quota::{self, Request};

impl Book for Tx<'_> {
    fn newest(&self) -> Result<Option<Millis>> {
        self.newest_call()
    }

    fn standings(&self, asks: &[(&str, Span)]) -> Result<Vec<Stored>> {
        asks.iter()
            .map(|&(endpoint, span)| {
                // Each part is a probe or two of an index; those not asked for are left out.
                let running = self.running(Buckets::Minutes, endpoint)?;
                let (open, oldest_open) = match span.parts.in_flight {
                    true => self.in_flight(endpoint, span.open_after)?,
                    false => (0, None),
                };
                let reports = self.reports(endpoint)?;
                let counters = match span.parts.counters || !reports.is_empty() {
                    true => self.counters(endpoint)?,
                    false => Counters::default(),
                };
                Ok(Stored {
                    windows: self.windows(endpoint, &span, running)?,
                    open,
                    oldest_open,
                    last_call: match span.parts.last_call {
                        true => self.last_call(endpoint)?,
                        false => None,
                    },
                    counters,
                    cooldown: self.cooldown(endpoint)?,
                    reports,
                })
            })
            .collect()
    }

    fn lifetimes(&self, asks: &[(&str, Millis)]) -> Result<Vec<Lifetime>> {
        asks.iter()
            .map(|&(endpoint, open_after)| {
                Ok(Lifetime {
                    counters: self.counters(endpoint)?,
                    open: self.open_estimates(endpoint, open_after)?,
                })
            })
            .collect()
    }

    fn departures(&self, asks: &[Departing<'_>]) -> Result<Vec<Vec<(i64, u64)>>> {
        asks.iter().map(|ask| self.leaving(ask)).collect()
    }

    fn by_lease(&self, lease: &str) -> Result<Option<Entry>> {
        Tx::by_lease(self, lease)
    }

    fn history(&self, endpoint: &str, since_hour: i64) -> Result<Vec<Hourly>> {
        Tx::history(self, endpoint, since_hour)
    }

    fn endpoints(&self) -> Result<Vec<String>> {
        let mut ids = self.endpoints_used()?;
        ids.extend(self.endpoints_answered()?);
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    fn endpoints_with_history(&self) -> Result<Vec<String>> {
        Tx::endpoints_with_history(self)
    }

    fn last_turn(&self) -> Result<Option<String>> {
        Tx::last_turn(self)
    }

    fn prune_due(&self, horizon: Millis) -> Result<bool> {
        Tx::prune_due(self, horizon)
    }

    fn open_estimates_until(&self, until: Millis) -> Result<Vec<(String, Request)>> {
        Tx::open_estimates_until(self, until)
    }

    fn said_before(&self, note: &str) -> Result<bool> {
        Tx::said_before(self, note)
    }

    fn insert_call(
        &self,
        endpoint: &str,
        at: Millis,
        usage: Request,
        lease: Option<&str>,
    ) -> Result<()> {
        Tx::insert_call(self, endpoint, at, usage, lease)
    }

    fn close_call(&self, entry: &Entry, real: Request) -> Result<()> {
        Tx::close_call(self, entry, real)
    }

    fn add_usage(
        &self,
        endpoint: &str,
        at: Millis,
        month: MonthStart,
        change: Change,
    ) -> Result<()> {
        self.add_to_bucket(Buckets::Minutes, endpoint, quota::minute_of(at), change)?;
        self.add_to_bucket(Buckets::Seconds, endpoint, at.div_euclid(SECOND_MS), change)?;
        self.add_to_hour(endpoint, at, change)?;
        self.add_to_month(endpoint, month, change)
    }

    fn add_latency(&self, endpoint: &str, at: Millis, ms: u64) -> Result<()> {
        Tx::add_latency(self, endpoint, at, ms)
    }

    fn latencies(&self, asks: &[(&str, Millis)]) -> Result<Vec<Vec<u64>>> {
        asks.iter()
            .map(|&(endpoint, after)| Tx::latencies(self, endpoint, after))
            .collect()
    }

    fn add_counters(&self, endpoint: &str, change: Counters) -> Result<()> {
        Tx::add_counters(self, endpoint, change)
    }

    fn set_cooldown(&self, endpoint: &str, cooldown: Option<&Cooldown>) -> Result<()> {
        Tx::set_cooldown(self, endpoint, cooldown)
    }

    fn set_report(&self, endpoint: &str, said: &Said) -> Result<()> {
        Tx::set_report(self, endpoint, said, self.1)
    }

    fn set_turn(&self, endpoint: &str) -> Result<()> {
        Tx::set_turn(self, endpoint)
    }

    fn set_said(&self, note: &str) -> Result<()> {
        Tx::set_said(self, note)
    }

    fn drop_before(&self, horizons: &Horizons) -> Result<()> {
        self.drop_usage_before(horizons)?;
        self.drop_history_before(horizons.first_hour)?;
        self.drop_reports_until(horizons.reports_until)
    }

    fn forget(&self, endpoint: &str) -> Result<u64> {
        self.forget_answers(endpoint)?;
        self.forget_counters(endpoint)?;
        self.forget_usage(endpoint)
    }
}
