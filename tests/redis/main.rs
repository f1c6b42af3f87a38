//! The CLI's behavioural tests again, with the Redis ledger: the same files as
//! `tests/cli`, against a redis-server of the tests' own. Only what is about the SQLite
//! file itself (its errors, crashes mid-write) stays in `tests/cli`.

#[path = "../cli/harness.rs"]
mod harness;

pub use harness::*;

/// The ledger these tests run against.
pub const LEDGER: Ledger = Ledger::Redis;

#[path = "../cli/admission.rs"]
mod admission;
#[path = "../cli/calendar.rs"]
mod calendar;
#[path = "../cli/contention.rs"]
mod contention;
#[path = "../cli/cooldown.rs"]
mod cooldown;
#[path = "../cli/costs.rs"]
mod costs;
#[path = "../cli/exec.rs"]
mod exec;
#[path = "../cli/history.rs"]
mod history;
#[path = "../cli/in_flight.rs"]
mod in_flight;
#[path = "../cli/leases.rs"]
mod leases;
#[path = "../cli/order.rs"]
mod order;
#[path = "../cli/pacing.rs"]
mod pacing;
#[path = "../cli/pools.rs"]
mod pools;
#[path = "../cli/provider.rs"]
mod provider;
#[path = "../cli/provider_headers.rs"]
mod provider_headers;
#[path = "redis_only.rs"]
mod redis_only;
#[path = "../cli/reset.rs"]
mod reset;
#[path = "../cli/serve.rs"]
mod serve;
#[path = "../cli/serving.rs"]
mod serving;
#[path = "../cli/state.rs"]
mod state;
#[path = "../cli/strategies.rs"]
mod strategies;
#[path = "../cli/wait.rs"]
mod wait;
#[path = "../cli/watching.rs"]
mod watching;
