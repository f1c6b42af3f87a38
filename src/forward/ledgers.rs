//! The ledger of a process that makes calls for others. Every write step goes to one
//! thread that owns the connection; on SQLite, the steps waiting when it is free run
//! together in one transaction, in the order they came. Each sees what those before it
//! wrote, as if each had its own transaction, but the batch writes and commits its pages
//! once: a step alone writes some twenty pages, and most of its cost is those writes. A
//! Redis step reads only what the server held when it began, so there each step runs
//! alone. Reads (`/metrics`, the page) use a connection of their own.
//!
//! When the process is done with them, both connections are closed (the writer's thread
//! ends first): the last to close folds SQLite's log back into the file, so the next
//! process does not replay it.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use tokio::sync::oneshot;

use crate::clock::Millis;
use crate::ledger::{self, Book, FirstRead, Ledger};

/// The most steps one transaction takes: a long batch holds the lock from other processes.
const MOST_IN_BATCH: usize = 64;
/// How often the reading connection does the upkeep the writing one leaves.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

pub struct Ledgers {
    /// `None` once dropped, which ends the writer's thread.
    steps: Option<mpsc::Sender<Box<dyn Job>>>,
    writer: Option<JoinHandle<()>>,
    reader: Arc<Mutex<Box<dyn Ledger + Send>>>,
}

/// A write step waiting for its turn, and where its answer goes.
trait Job: Send {
    /// Runs the step; a ledger may run it again (a Redis step that lost its lock), and
    /// only the last run counts.
    fn run(&mut self, book: &dyn Book, now: Millis);
    /// Sends the answer of its last run, or the error that undid the whole transaction.
    fn answer(self: Box<Self>, undone: Option<&anyhow::Error>);
    /// What it will read first ([`Ledger::expect`]).
    fn expected(&self) -> &FirstRead;
}

struct Step<T, F> {
    step: F,
    expected: FirstRead,
    done: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T: Send, F: FnMut(&dyn Book, Millis) -> Result<T> + Send> Job for Step<T, F> {
    fn run(&mut self, book: &dyn Book, now: Millis) {
        self.done = Some((self.step)(book, now));
    }

    fn answer(self: Box<Self>, undone: Option<&anyhow::Error>) {
        let answer = match undone {
            Some(err) => Err(anyhow!("{err:#}")),
            None => self
                .done
                .unwrap_or_else(|| Err(anyhow!("the step did not run"))),
        };
        let _ = self.reply.send(answer);
    }

    fn expected(&self) -> &FirstRead {
        &self.expected
    }
}

impl Ledgers {
    /// Opens the ledger (a bad location is an error at start) and starts its thread.
    pub fn open(location: &Path) -> Result<Ledgers> {
        let mut writer = ledger::open(location)?;
        writer.defer_upkeep()?;
        let reader = Arc::new(Mutex::new(ledger::open(location)?));
        let (steps, queue) = mpsc::channel::<Box<dyn Job>>();
        let writer = std::thread::Builder::new()
            .name("ledger".into())
            .spawn(move || write_in_turn(writer, &queue))
            .context("cannot start the ledger's thread")?;
        let upkept = Arc::downgrade(&reader);
        std::thread::Builder::new()
            .name("upkeep".into())
            .spawn(move || upkeep(&upkept))
            .context("cannot start the ledger's upkeep")?;
        Ok(Ledgers {
            steps: Some(steps),
            writer: Some(writer),
            reader,
        })
    }

    /// Runs `step` in a write step of the ledger, in turn with every other; it will read
    /// `expected` first.
    pub async fn write<T: Send + 'static>(
        &self,
        expected: FirstRead,
        step: impl FnMut(&dyn Book, Millis) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Step {
            step,
            expected,
            done: None,
            reply,
        });
        self.steps
            .as_ref()
            .and_then(|steps| steps.send(job).ok())
            .context("the ledger's thread has stopped")?;
        answer
            .await
            .map_err(|_| anyhow!("the ledger's thread has stopped"))?
    }

    /// Runs `work` on the reading connection. Blocks: call it off the runtime.
    pub fn read<T>(&self, work: impl FnOnce(&mut dyn Ledger) -> Result<T>) -> Result<T> {
        let mut reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        work(&mut **reader)
    }
}

impl Drop for Ledgers {
    fn drop(&mut self) {
        // The writer's thread ends when no more steps can come, and closes its connection.
        drop(self.steps.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Each second, the upkeep the writing connection leaves, on the reading one; ends once
/// the ledger is dropped.
fn upkeep(reader: &Weak<Mutex<Box<dyn Ledger + Send>>>) {
    loop {
        std::thread::sleep(UPKEEP_EVERY);
        let Some(reader) = reader.upgrade() else {
            return;
        };
        let mut reader = reader.lock().unwrap_or_else(PoisonError::into_inner);
        // Not done now, done next time: a failure here costs nothing yet.
        let _ = reader.upkeep();
    }
}

/// The ledger's thread: takes what steps are waiting, runs them, answers each.
fn write_in_turn(mut writer: Box<dyn Ledger + Send>, queue: &mpsc::Receiver<Box<dyn Job>>) {
    let ledger: &mut dyn Ledger = &mut *writer;
    let most = if ledger.shares_transactions() {
        MOST_IN_BATCH
    } else {
        1
    };
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < most {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut expected = FirstRead::default();
        for job in &batch {
            expected.add(job.expected());
        }
        ledger.expect(&expected);
        let ran = ledger.write(|book, now| {
            for job in &mut batch {
                job.run(book, now);
            }
            Ok(())
        });
        let undone = ran.err();
        for job in batch {
            job.answer(undone.as_ref());
        }
    }
}
