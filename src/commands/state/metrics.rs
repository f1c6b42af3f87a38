//! `state --format prometheus`: the text format that node_exporter's textfile collector
//! reads. Gauges for each window and the endpoint's standing, counters since first use or
//! the last reset, and each pool once. No sample carries a timestamp.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::Row;
use crate::clock::Millis;
use crate::quota::{Limit, Unit, Window};

/// One metric family: its samples as (labels, value), in the order added.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(String, String)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            kind,
            help,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, labels: String, value: impl ToString) {
        self.samples.push((labels, value.to_string()));
    }

    fn write(&self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, value) in &self.samples {
            let _ = writeln!(out, "{}{{{labels}}} {value}", self.name);
        }
    }
}

/// A label value with `\`, `"` and line ends escaped, as the format requires.
fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            '\n' => quoted.push_str("\\n"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

fn window_name(window: Window) -> &'static str {
    match window {
        Window::Minute => "minute",
        Window::Hour => "hour",
        Window::Day => "day",
        Window::Month => "month",
    }
}

/// The families of the requests and tokens windows; the limits of other units (input,
/// output, dollars) are in `state --json`, their totals in the families below.
fn counted(unit: Unit) -> bool {
    matches!(unit, Unit::Requests | Unit::Tokens)
}

pub fn prometheus(rows: &[Row], now: Millis) -> String {
    use Family as F;
    let mut requests_used = F::new(
        "llm_rotate_requests_used",
        "gauge",
        "Requests in the rolling window.",
    );
    let mut tokens_used = F::new(
        "llm_rotate_tokens_used",
        "gauge",
        "Tokens in the rolling window.",
    );
    let mut requests_limit = F::new(
        "llm_rotate_requests_limit",
        "gauge",
        "Requests the window allows.",
    );
    let mut tokens_limit = F::new(
        "llm_rotate_tokens_limit",
        "gauge",
        "Tokens the window allows.",
    );
    let mut available = F::new(
        "llm_rotate_available",
        "gauge",
        "1 when the endpoint could take a request of 0 tokens now.",
    );
    let mut frees = F::new(
        "llm_rotate_frees_in_seconds",
        "gauge",
        "Seconds until the endpoint could take a request; 0 when available.",
    );
    let mut open = F::new(
        "llm_rotate_open_reservations",
        "gauge",
        "Reservations not yet settled or expired.",
    );
    let mut cooldown = F::new(
        "llm_rotate_cooldown_seconds_left",
        "gauge",
        "Seconds left of a cooldown after 429s or failures.",
    );
    let mut requests_total = F::new(
        "llm_rotate_requests_total",
        "counter",
        "Requests reserved or recorded since first use or the last reset.",
    );
    let mut tokens_total = F::new(
        "llm_rotate_tokens_total",
        "counter",
        "Tokens settled or recorded since first use or the last reset.",
    );
    let mut kind_tokens = F::new(
        "llm_rotate_kind_tokens_total",
        "counter",
        "Tokens of each kind settled or recorded since first use or the last reset.",
    );
    let mut spend = F::new(
        "llm_rotate_spend_usd_total",
        "counter",
        "US dollars spent at the price columns since first use or the last reset.",
    );
    let mut latency_p50 = F::new(
        "llm_rotate_latency_p50_seconds",
        "gauge",
        "Median latency of the successful calls of the last hour.",
    );
    let mut latency_p90 = F::new(
        "llm_rotate_latency_p90_seconds",
        "gauge",
        "90th-percentile latency of the successful calls of the last hour.",
    );
    let mut rate_limited = F::new(
        "llm_rotate_rate_limited_total",
        "counter",
        "Calls refused with 429 since first use or the last reset.",
    );
    let mut failed = F::new(
        "llm_rotate_failed_total",
        "counter",
        "Calls that failed since first use or the last reset.",
    );
    let mut pool_requests_used = F::new(
        "llm_rotate_pool_requests_used",
        "gauge",
        "Requests of all the pool's endpoints in the rolling window.",
    );
    let mut pool_tokens_used = F::new(
        "llm_rotate_pool_tokens_used",
        "gauge",
        "Tokens of all the pool's endpoints in the rolling window.",
    );
    let mut pool_requests_limit = F::new(
        "llm_rotate_pool_requests_limit",
        "gauge",
        "Requests the pool's window allows.",
    );
    let mut pool_tokens_limit = F::new(
        "llm_rotate_pool_tokens_limit",
        "gauge",
        "Tokens the pool's window allows.",
    );

    let mut pools = BTreeMap::new();
    for row in rows {
        let e = row.endpoint;
        let st = &row.standing;
        let who = format!(
            "endpoint={},provider={},model={}",
            quote(&e.id),
            quote(&e.provider),
            quote(&e.model)
        );
        for limit in Limit::ALL.into_iter().filter(|l| counted(l.unit)) {
            let labels = format!("{who},window=\"{}\"", window_name(limit.window));
            let (used, cap) = match limit.unit {
                Unit::Requests => (&mut requests_used, &mut requests_limit),
                _ => (&mut tokens_used, &mut tokens_limit),
            };
            used.add(labels.clone(), st.used.get(limit));
            if let Some(limit) = st.limits.get(limit) {
                cap.add(labels, limit);
            }
        }
        available.add(who.clone(), u8::from(row.available()));
        frees.add(who.clone(), row.frees_in(now).unwrap_or(0.0));
        open.add(who.clone(), row.open_reservations);
        cooldown.add(who.clone(), row.cooldown_left(now));
        let usage = row.totals.usage;
        requests_total.add(who.clone(), usage.requests);
        tokens_total.add(who.clone(), usage.tokens());
        for (kind, n) in [
            ("input", usage.input),
            ("output", usage.output),
            ("cached", usage.cached),
        ] {
            kind_tokens.add(format!("{who},kind=\"{kind}\""), n);
        }
        spend.add(who.clone(), crate::money::Money(usage.cost).dollars());
        if let Some(speed) = row.speed {
            latency_p50.add(who.clone(), speed.p50 as f64 / 1000.0);
            latency_p90.add(who.clone(), speed.p90 as f64 / 1000.0);
        }
        rate_limited.add(who.clone(), row.totals.rate_limited);
        failed.add(who, row.totals.failed);
        if let Some(pool) = &st.pool {
            pools.entry(pool.name.as_str()).or_insert(pool);
        }
    }
    for (name, pool) in pools {
        for limit in Limit::ALL.into_iter().filter(|l| counted(l.unit)) {
            let labels = format!(
                "pool={},window=\"{}\"",
                quote(name),
                window_name(limit.window)
            );
            let (used, cap) = match limit.unit {
                Unit::Requests => (&mut pool_requests_used, &mut pool_requests_limit),
                _ => (&mut pool_tokens_used, &mut pool_tokens_limit),
            };
            used.add(labels.clone(), pool.used.get(limit));
            if let Some(limit) = pool.limits.get(limit) {
                cap.add(labels, limit);
            }
        }
    }

    let mut out = String::new();
    for family in [
        requests_used,
        tokens_used,
        requests_limit,
        tokens_limit,
        available,
        frees,
        open,
        cooldown,
        requests_total,
        tokens_total,
        kind_tokens,
        spend,
        latency_p50,
        latency_p90,
        rate_limited,
        failed,
        pool_requests_used,
        pool_tokens_used,
        pool_requests_limit,
        pool_tokens_limit,
    ] {
        family.write(&mut out);
    }
    out
}
