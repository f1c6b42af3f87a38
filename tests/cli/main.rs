//! The integration tests: every test spawns the real `llm-rotate` in a fresh temporary folder,
//! with every `LLM_ROTATE_*` variable removed, `LLM_ROTATE_DB` pointing into that folder and
//! `LLM_ROTATE_NOW` pinned. Time moves by changing `LLM_ROTATE_NOW` between runs; nothing
//! sleeps and nothing is timed. `tests/redis/` runs the behavioural ones again against the
//! Redis ledger.

mod admission;
mod calendar;
mod completions;
mod concurrency;
mod contention;
mod cooldown;
mod costs;
mod database;
mod exec;
mod exit_codes;
mod formats;
mod harness;
mod history;
mod in_flight;
mod leases;
mod order;
mod pacing;
mod pools;
mod provider;
mod provider_headers;
mod reset;
mod serve;
mod serving;
mod shell;
mod state;
mod strategies;
mod wait;
mod watching;

pub use harness::*;

/// The ledger these tests run against.
pub const LEDGER: Ledger = Ledger::Sqlite;
