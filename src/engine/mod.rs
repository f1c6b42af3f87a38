//! The decisions, written once for every ledger: what an endpoint's stored values mean
//! ([`account`]), whether it can take a request ([`admit`]), which endpoint a pick takes
//! ([`choose`]), how a pick waits for a slot ([`wait`]) and what recording a call changes
//! ([`settle`]). Plain code over what a
//! [`Book`](crate::ledger::Book) holds and the `now` of the ledger's step, so that SQLite,
//! Redis and the tests' in-memory ledger decide alike.

pub mod account;
pub mod admit;
pub mod choose;
pub mod latency;
pub mod settle;
#[cfg(test)]
mod tests;
pub mod wait;
