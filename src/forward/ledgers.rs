//! The ledger connections of a process that makes calls for others: each step runs on a
//! connection of its own, so that a request waiting for quota holds one and the others go
//! on. A connection that failed is dropped, not reused.

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::Result;

use crate::ledger::{self, Ledger};

/// The most idle connections kept.
const MOST_IDLE: usize = 64;

pub struct Ledgers {
    location: PathBuf,
    idle: Mutex<Vec<Box<dyn Ledger + Send>>>,
}

impl Ledgers {
    /// Opens the ledger once, so that a bad location is an error at start.
    pub fn open(location: PathBuf) -> Result<Ledgers> {
        let first = ledger::open(&location)?;
        Ok(Ledgers {
            location,
            idle: Mutex::new(vec![first]),
        })
    }

    /// Runs `work` on an idle connection, or a new one. Blocks: call it off the runtime.
    pub fn with<T>(&self, work: impl FnOnce(&mut dyn Ledger) -> Result<T>) -> Result<T> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut ledger = match idle {
            Some(ledger) => ledger,
            None => ledger::open(&self.location)?,
        };
        let done = work(&mut *ledger);
        if done.is_ok()
            && let Ok(mut idle) = self.idle.lock()
            && idle.len() < MOST_IDLE
        {
            idle.push(ledger);
        }
        done
    }
}
