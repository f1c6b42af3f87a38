//! Many real processes at once against one database (SPEC 3, concurrency): no limit is ever
//! exceeded, no recorded usage is lost, and nobody fails for want of the lock.

use std::process::{Child, Stdio};

use crate::{Env, at_once, bin};

const PROCESSES: usize = 8;
const RUNS_EACH: usize = 20;

/// Starts `PROCESSES` shells at once, each running `llm-rotate ARGS` `RUNS_EACH` times and
/// printing `rc=STATUS` after each run; returns, per shell, its stdout and stderr.
fn run_all_at_once(env: &Env, args: &str) -> Vec<(String, String)> {
    let script = format!(
        r#"i=0; while [ $i -lt {RUNS_EACH} ]; do "$LLM_ROTATE_BIN" --endpoints "$EP" {args}; echo "rc=$?"; i=$((i+1)); done"#
    );
    let shells = (0..PROCESSES).map(|_| {
        let mut cmd = env.std_command("sh");
        cmd.arg("-c")
            .arg(&script)
            .env("LLM_ROTATE_BIN", bin())
            .env("EP", env.endpoints_file());
        cmd
    });
    at_once(shells)
        .into_iter()
        .map(|out| {
            out.code(0);
            (out.stdout, out.stderr)
        })
        .collect()
}

#[test]
fn concurrent_picks_admit_exactly_the_limit_and_refuse_the_rest_with_75() {
    let env = Env::with_endpoints("provider,model,rpm\np,m,30\n");
    // The ledger exists; first use is `a_fresh_database_...` below.
    env.state();
    let outputs = run_all_at_once(&env, "pick");

    let (mut admitted, mut refused, mut ids) = (0, 0, 0);
    for (stdout, stderr) in &outputs {
        for line in stdout.lines() {
            match line {
                "rc=0" => admitted += 1,
                "rc=75" => refused += 1,
                "p/m" => ids += 1,
                other => panic!("unexpected line {other:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"),
            }
        }
        for line in stderr.lines() {
            assert!(
                !line.contains("database") && !line.contains("lock"),
                "a pick failed on the database:\n{stderr}"
            );
        }
    }
    assert_eq!(admitted, 30, "admitted picks");
    assert_eq!(refused, PROCESSES * RUNS_EACH - 30, "picks refused with 75");
    assert_eq!(ids, 30, "ids printed");

    let row = env.state_of("p/m");
    assert_eq!(row["used"]["rpm"], 30, "{row}");
    assert_eq!(row["open_reservations"], 30, "{row}");
}

#[test]
fn concurrent_records_lose_nothing() {
    let env = Env::with_endpoints("provider,model,rpm,tpm\np,m,,\n");
    env.state();
    let outputs = run_all_at_once(&env, "record p/m --add --tokens 5");
    for (stdout, stderr) in &outputs {
        let codes: Vec<&str> = stdout.lines().collect();
        assert_eq!(codes, vec!["rc=0"; RUNS_EACH], "stderr:\n{stderr}");
    }
    let row = env.state_of("p/m");
    let calls = PROCESSES * RUNS_EACH;
    for window in ["rpm", "rph", "rpd"] {
        assert_eq!(row["used"][window], calls, "used.{window}: {row}");
    }
    for window in ["tpm", "tph", "tpd"] {
        assert_eq!(row["used"][window], calls * 5, "used.{window}: {row}");
    }
    assert_eq!(row["open_reservations"], 0, "{row}");
}

#[test]
fn processes_that_meet_on_a_fresh_database_all_succeed() {
    // The first uses race to create the file, switch it to WAL and migrate it. A few rounds,
    // each on a new database, since the window for the race is short.
    for round in 0..30 {
        let env = Env::with_endpoints("provider,model\np,m\n");
        let records =
            (0..PROCESSES).map(|_| env.program(&["record", "p/m", "--add", "--tokens", "5"]));
        for out in at_once(records) {
            assert_eq!(out.status, Some(0), "round {round}:\n{out}");
        }
        assert_eq!(env.used("p/m", "rpm"), PROCESSES as u64, "round {round}");
        assert_eq!(
            env.used("p/m", "tpm"),
            5 * PROCESSES as u64,
            "round {round}"
        );
    }
}

#[test]
fn processes_killed_mid_write_leave_a_sound_ledger() {
    // Records killed with SIGKILL at assorted moments: every record that reported success
    // is in the ledger, none is counted twice, and the file stays usable.
    let env = Env::with_endpoints("provider,model\np,m\n");
    env.ok(["record", "p/m", "--add"]);
    let mut succeeded = 1;
    let mut started = 1;
    for round in 0..12 {
        // Each child is killed when the one `lag` places after it has been started: the
        // time a spawn takes staggers the kills over the victims' lives, from before their
        // transaction to after it, without sleeping.
        let lag = 1 + round % 4;
        let mut children: Vec<Child> = Vec::new();
        for i in 0..PROCESSES + lag {
            if i < PROCESSES {
                let mut cmd = env.std_command(bin());
                cmd.arg("--endpoints")
                    .arg(env.endpoints_file())
                    .args(["record", "p/m", "--add"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                children.push(cmd.spawn().expect("start llm-rotate"));
                started += 1;
            }
            if i >= lag && (i - lag) % 2 == 0 {
                let _ = children[i - lag].kill();
            }
        }
        for mut child in children {
            if child.wait().expect("wait").success() {
                succeeded += 1;
            }
        }
    }
    let used = env.used("p/m", "rpm") as usize;
    assert!(
        (succeeded..=started).contains(&used),
        "{succeeded} succeeded, {started} started, ledger has {used}"
    );
    let conn = rusqlite::Connection::open(env.db()).expect("open the ledger");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity check");
    assert_eq!(check, "ok");
    env.ok(["record", "p/m", "--add"]);
    assert_eq!(env.used("p/m", "rpm") as usize, used + 1);
}
