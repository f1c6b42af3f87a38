//! The real-clock stress run of SPEC section 3: K processes loop `pick` against one
//! endpoint with a small rpm on the real clock (no `LLM_ROTATE_NOW`) for a while, then the
//! ledger is read back and the largest number of admissions in any rolling 60 s window is
//! compared with the limit. A benchmark, not a test: it takes minutes.
//!
//! `cargo bench --bench stress`; `STRESS_PROCESSES` (8), `STRESS_SECONDS` (150) and
//! `STRESS_RPM` (5) change the run. Exits non-zero when a window held more than the limit.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_llm-rotate");

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let processes = setting("STRESS_PROCESSES", 8);
    let seconds = setting("STRESS_SECONDS", 150);
    let rpm = setting("STRESS_RPM", 5);
    let dir = tempfile::tempdir().expect("temp dir");
    let endpoints = dir.path().join("endpoints.csv");
    std::fs::write(&endpoints, format!("provider,model,rpm\np,m,{rpm}\n")).expect("write");
    let db = dir.path().join("usage.sqlite3");

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (picks, refused) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..processes)
            .map(|_| {
                s.spawn(|| {
                    let (mut picks, mut refused) = (0u64, 0u64);
                    while Instant::now() < deadline {
                        let status = Command::new(BIN)
                            .args(["pick", "--endpoints"])
                            .arg(&endpoints)
                            .arg("--db")
                            .arg(&db)
                            .env_remove("LLM_ROTATE_NOW")
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .status()
                            .expect("spawn pick");
                        match status.code() {
                            Some(0) => picks += 1,
                            Some(75) => refused += 1,
                            other => panic!("pick exited {other:?}"),
                        }
                    }
                    (picks, refused)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });

    let conn = rusqlite::Connection::open(&db).expect("open the ledger");
    let mut stmt = conn
        .prepare("SELECT at_ms FROM usage ORDER BY id")
        .expect("query");
    let stamps: Vec<i64> = stmt
        .query_map([], |r| r.get(0))
        .expect("read")
        .map(|r| r.expect("a stamp"))
        .collect();
    let in_order = stamps.windows(2).all(|w| w[0] <= w[1]);
    let mut sorted = stamps.clone();
    sorted.sort_unstable();
    let busiest = (0..sorted.len())
        .map(|i| {
            sorted[i..]
                .iter()
                .take_while(|&&t| t < sorted[i] + 60_000)
                .count()
        })
        .max()
        .unwrap_or(0);
    println!(
        "{processes} processes, {seconds} s, rpm {rpm}: {picks} admitted, {refused} refused with 75; \
         busiest rolling 60 s window: {busiest} (limit {rpm}); rows in time order: {in_order}"
    );
    if busiest as u64 > rpm || !in_order {
        println!("OVER THE LIMIT");
        std::process::exit(1);
    }
}
