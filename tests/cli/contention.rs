//! Processes that really contend for the ledger's lock while time moves (SPEC 3, "The time
//! of a write"). The test holds the write lock itself while it starts the processes, so
//! they queue behind it, and gives each its own pinned time, earlier than what the ledger
//! already holds: a process that read its clock before the lock, or a window that ignored
//! entries stamped after its `now`, would admit more than the limit. The real-clock test
//! at the end needs no pinned time at all.

use rusqlite::Connection;

use crate::{Env, Out, T0, picking_on_the_real_clock, start_all};

/// The SQLite ledger's write lock, held by the test until dropped. The Redis ledger has no
/// lock to hold: its processes race, and the ones that lose run their step again.
pub struct Lock(Option<Connection>);

impl Lock {
    pub fn take(env: &Env) -> Lock {
        if env.on_redis() {
            return Lock(None);
        }
        let conn = Connection::open(env.db()).expect("open the ledger");
        conn.execute_batch("BEGIN IMMEDIATE")
            .expect("take the write lock");
        Lock(Some(conn))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Some(conn) = &self.0 {
            let _ = conn.execute_batch("COMMIT");
        }
    }
}

/// `(milliseconds after T0, arguments)` for each process.
pub type Job<'a> = (i64, Vec<&'a str>);

/// Starts every job while holding the write lock, each at its own pinned time, then lets
/// them all go at once; returns what each printed, in job order.
pub fn queue_then_release(env: &Env, jobs: &[Job]) -> Vec<Out> {
    let lock = Lock::take(env);
    let started = start_all(jobs.iter().map(|(at, args)| {
        let mut cmd = env.program(args);
        let now = format!("{}.{:03}", T0 + at / 1000, at % 1000);
        cmd.env("LLM_ROTATE_NOW", now);
        cmd
    }));
    drop(lock);
    started.outputs()
}

/// How many processes exited 0 and how many 75; any other exit fails the test.
pub fn tally(outs: &[Out]) -> (usize, usize) {
    let mut counts = (0, 0);
    for out in outs {
        match out.status {
            Some(0) => counts.0 += 1,
            Some(75) => counts.1 += 1,
            _ => panic!("a process failed:\n{out}"),
        }
    }
    counts
}

/// The most calls that `stamps` (ascending) put in any rolling window of `len_ms`.
pub fn busiest_window(stamps: &[i64], len_ms: i64) -> usize {
    (0..stamps.len())
        .map(|i| {
            stamps[i..]
                .iter()
                .take_while(|&&t| t < stamps[i] + len_ms)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[track_caller]
fn assert_written_in_time_order(stamps: &[i64]) {
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "the ledger's rows were written out of time order: {stamps:?}"
    );
}

#[test]
fn a_window_limit_holds_for_processes_that_judge_late() {
    let env = Env::with_endpoints("provider,model,rpm\np,m,10\n");
    env.set_time(30_000);
    for _ in 0..5 {
        assert_eq!(env.pick(&[]), "p/m");
    }
    // 16 processes whose clocks read +0 to +15 s, behind the five calls at +30 s.
    let jobs: Vec<Job> = (0..16).map(|i| (i * 1_000, vec!["pick"])).collect();
    let (admitted, refused) = tally(&queue_then_release(&env, &jobs));
    assert_eq!((admitted, refused), (5, 11), "admitted and refused with 75");

    let stamps = env.stamps();
    assert_written_in_time_order(&stamps);
    assert_eq!(busiest_window(&stamps, 60_000), 10, "stamps {stamps:?}");
    // Nobody stamped the past: every call is at +30 s, the newest time the ledger held.
    assert!(stamps.iter().all(|&t| t == 30_000), "stamps {stamps:?}");
}

#[test]
fn a_token_limit_holds_while_reservations_settle_concurrently() {
    let env = Env::with_endpoints("provider,model,tpm\np,m,1000\n");
    env.set_time(30_000);
    let leases: Vec<String> = (0..3)
        .map(|_| {
            let chosen = env.pick_json(&["--tokens", "300"]);
            chosen["lease"].as_str().expect("a lease").to_owned()
        })
        .collect();
    // Three settles down to 100 tokens each, among six picks of 300, all with clocks
    // behind the ledger.
    let mut jobs: Vec<Job> = (0..6)
        .map(|i| (i * 1_000, vec!["pick", "--tokens", "300"]))
        .collect();
    for (i, lease) in leases.iter().enumerate() {
        jobs.insert(
            2 * i,
            (500, vec!["record", "--lease", lease, "--tokens", "100"]),
        );
    }
    let outs = queue_then_release(&env, &jobs);
    for out in outs
        .iter()
        .filter(|o| o.stdout.is_empty() && o.status == Some(0))
    {
        assert_eq!(out.stderr, "", "a settle complained:\n{out}");
    }
    let picks: Vec<&Out> = outs
        .iter()
        .filter(|o| o.status != Some(0) || !o.stdout.is_empty())
        .collect();
    let admitted = picks.iter().filter(|o| o.status == Some(0)).count();
    assert!(admitted <= 2, "{admitted} picks of 300 admitted");

    // Every admission fit when it was made, and settles only lowered usage: the minute
    // never holds more than its limit.
    let tokens = env.used("p/m", "tpm");
    assert!(tokens <= 1000, "tpm used {tokens}");
    assert_eq!(tokens, 300 + 300 * admitted as u64);
    assert_written_in_time_order(&env.stamps());
}

#[test]
fn a_concurrency_cap_holds_for_processes_that_judge_late() {
    let env = Env::with_endpoints("provider,model,concurrency\np,m,2\n");
    env.set_time(10_000);
    env.pick(&[]);
    env.pick(&[]);
    let jobs: Vec<Job> = (0..8).map(|i| (i * 1_000, vec!["pick"])).collect();
    let (admitted, refused) = tally(&queue_then_release(&env, &jobs));
    assert_eq!(
        (admitted, refused),
        (0, 8),
        "the cap of 2 was already reached"
    );
    assert_eq!(env.state_of("p/m")["open_reservations"], 2);
}

#[test]
fn waiting_processes_share_slots_that_free_together() {
    let env = Env::with_endpoints("provider,model,rpm\np,m,3\n");
    for _ in 0..3 {
        env.pick(&[]);
    }
    // At +65 s the three have left the minute; one new call takes a slot.
    env.set_time(65_000);
    env.pick(&[]);
    // Six waiters whose clocks read +30 s, when the minute still looked full, each ready
    // to wait 50 s. A waiter that judged at its own clock would sleep until +60 s, when
    // the three calls at 0 leave, and miss the call at +65 s.
    let jobs: Vec<Job> = (0..6)
        .map(|i| (30_000 + i, vec!["pick", "--wait", "50s"]))
        .collect();
    let (admitted, _) = tally(&queue_then_release(&env, &jobs));
    let stamps = env.stamps();
    assert_written_in_time_order(&stamps);
    assert_eq!(busiest_window(&stamps, 60_000), 3, "stamps {stamps:?}");
    // Two slots were left at +65 s. The others' 50 s, on the ledger's clock from their
    // first look at +65 s, end before the next slot frees at +125 s.
    assert_eq!(admitted, 2, "stamps {stamps:?}");
    assert_eq!(&stamps[3..], [65_000, 65_000, 65_000]);
}

#[test]
fn records_by_id_settle_reservations_made_just_ahead_of_them() {
    const PAIRS: i64 = 20;
    let env = Env::with_endpoints("provider,model\np,m\n");
    env.state();
    // Every pick and every record queue together; the records' clocks read earlier than
    // the picks', as a record whose process was slow to reach the lock would.
    let mut jobs: Vec<Job> = Vec::new();
    for i in 0..PAIRS {
        jobs.push((10_000 + i, vec!["pick"]));
    }
    let (admitted, _) = tally(&queue_then_release(&env, &jobs));
    assert_eq!(admitted, PAIRS as usize);
    let jobs: Vec<Job> = (0..PAIRS)
        .map(|i| (i, vec!["record", "p/m", "--tokens", "7"]))
        .collect();
    let outs = queue_then_release(&env, &jobs);
    for out in &outs {
        out.code(0);
    }
    let row = env.state_of("p/m");
    assert_eq!(row["used"]["rpm"], PAIRS, "{row}");
    assert_eq!(row["used"]["tpm"], 7 * PAIRS, "{row}");
    assert_eq!(row["open_reservations"], 0, "{row}");
}

#[test]
fn on_the_real_clock_no_rolling_minute_holds_more_than_the_limit() {
    const SHELLS: usize = 8;
    const PICKS_EACH: usize = 12;
    let env = Env::with_endpoints("provider,model,rpm,tpm\np,m,20,2000\n");
    env.state();
    for out in picking_on_the_real_clock(&env, SHELLS, PICKS_EACH, "--tokens 100") {
        for line in out.stdout.lines() {
            assert!(line == "rc=0" || line == "rc=75", "{out}");
        }
    }
    let stamps = env.stamps();
    assert_written_in_time_order(&stamps);
    assert!(stamps.len() >= 20, "{} admitted", stamps.len());
    assert!(
        busiest_window(&stamps, 60_000) <= 20,
        "a rolling minute held {} calls against rpm 20",
        busiest_window(&stamps, 60_000)
    );
}
