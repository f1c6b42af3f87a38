//! Reservations and their settlement (SPEC 4, record).

use crate::{Env, Out, at_once};

const ONE: &str = "provider,model\np,m\n";

/// The lease of a `pick --format json`.
#[track_caller]
fn lease(env: &Env, tokens: &str) -> String {
    let chosen = env.pick_json(&["--tokens", tokens]);
    let lease = chosen["lease"]
        .as_str()
        .unwrap_or_else(|| panic!("no lease in {chosen}"));
    assert!(!lease.is_empty(), "empty lease in {chosen}");
    lease.to_string()
}

#[test]
fn pick_json_gives_a_lease_and_record_lease_replaces_the_estimate() {
    let env = Env::with_endpoints(ONE);
    let chosen = env.pick_json(&["--tokens", "100"]);
    assert_eq!(chosen["id"], "p/m");
    assert_eq!(chosen["provider"], "p");
    assert_eq!(chosen["model"], "m");
    assert_eq!(chosen["tokens"], 100);
    let lease = chosen["lease"].as_str().expect("a lease").to_string();

    let row = env.state_of("p/m");
    assert_eq!(row["used"]["tpm"], 100, "{row}");
    assert_eq!(row["open_reservations"], 1, "{row}");

    env.set_time(5_000);
    assert_eq!(env.ok(["record", "--lease", &lease, "--tokens", "30"]), "");
    let row = env.state_of("p/m");
    assert_eq!(row["used"]["tpm"], 30, "{row}");
    assert_eq!(row["used"]["rpm"], 1, "{row}");
    assert_eq!(row["open_reservations"], 0, "{row}");

    // Settling it again is an error, and changes nothing.
    env.fails(["record", "--lease", &lease, "--tokens", "1"], 1)
        .says(&[&lease]);
    assert_eq!(env.used("p/m", "tpm"), 30);

    // Two leases are never the same.
    assert_ne!(lease, self::lease(&env, "1"));
}

#[test]
fn record_id_settles_the_oldest_open_reservation_then_adds_new_calls() {
    let env = Env::with_endpoints(ONE);
    lease(&env, "100");
    env.set_time(1_000);
    lease(&env, "200");

    env.set_time(2_000);
    env.ok(["record", "p/m", "--tokens", "10"]);
    let row = env.state_of("p/m");
    assert_eq!(
        row["used"]["tpm"], 210,
        "the oldest (100) was settled: {row}"
    );
    assert_eq!(row["used"]["rpm"], 2, "{row}");
    assert_eq!(row["open_reservations"], 1, "{row}");

    env.ok(["record", "p/m", "--tokens", "20"]);
    let row = env.state_of("p/m");
    assert_eq!(row["used"]["tpm"], 30, "{row}");
    assert_eq!(row["open_reservations"], 0, "{row}");

    // Nothing open: a new call.
    env.ok(["record", "p/m", "--tokens", "7"]);
    let row = env.state_of("p/m");
    assert_eq!(row["used"]["tpm"], 37, "{row}");
    assert_eq!(row["used"]["rpm"], 3, "{row}");

    // Without --tokens the estimate stands.
    lease(&env, "50");
    env.ok(["record", "p/m"]);
    let row = env.state_of("p/m");
    assert_eq!(row["used"]["tpm"], 87, "{row}");
    assert_eq!(row["used"]["rpm"], 4, "{row}");
    assert_eq!(row["open_reservations"], 0, "{row}");
}

#[test]
fn record_add_adds_a_call_even_with_a_reservation_open() {
    let env = Env::with_endpoints(ONE);
    lease(&env, "100");
    env.ok(["record", "p/m", "--add", "--tokens", "5"]);
    let row = env.state_of("p/m");
    assert_eq!(row["used"]["rpm"], 2, "{row}");
    assert_eq!(row["used"]["tpm"], 105, "{row}");
    assert_eq!(row["open_reservations"], 1, "{row}");

    env.ok([
        "record",
        "p/m",
        "--add",
        "--requests",
        "3",
        "--tokens",
        "1k",
    ]);
    let row = env.state_of("p/m");
    assert_eq!(row["used"]["rpm"], 5, "{row}");
    assert_eq!(row["used"]["tpm"], 1105, "{row}");
    assert_eq!(row["open_reservations"], 1, "{row}");
}

#[test]
fn unknown_leases_and_ids_are_errors_that_change_nothing() {
    let env = Env::with_endpoints(ONE);
    lease(&env, "100");
    env.fails(
        ["record", "--lease", "0123456789abcdef", "--tokens", "1"],
        1,
    )
    .no_stdout()
    .says(&["llm-rotate: ", "0123456789abcdef"]);
    env.fails(["record", "nope/x", "--tokens", "1"], 1)
        .no_stdout()
        .says(&["llm-rotate: ", "nope/x"]);
    env.fails(["record", "nope/x", "--add", "--tokens", "1"], 1)
        .no_stdout()
        .says(&["nope/x"]);
    let row = env.state_of("p/m");
    assert_eq!(row["used"]["rpm"], 1, "{row}");
    assert_eq!(row["used"]["tpm"], 100, "{row}");
    assert_eq!(row["open_reservations"], 1, "{row}");
}

#[test]
fn a_huge_lease_is_an_error_of_one_short_line_that_changes_nothing() {
    let env = Env::with_endpoints(ONE);
    lease(&env, "100");
    let huge = "f".repeat(100_000);
    let out = env.fails(["record", "--lease", &huge, "--tokens", "1"], 1);
    out.no_stdout().says(&["unknown lease", "ffff"]);
    // Quoted by its start (SPEC 15).
    assert!(out.stderr.len() < 400, "{out}");
    assert_eq!(out.stderr.lines().count(), 1, "{out}");
    let row = env.state_of("p/m");
    assert_eq!(row["used"]["tpm"], 100, "{row}");
    assert_eq!(row["open_reservations"], 1, "{row}");
}

#[test]
fn record_needs_an_id_or_a_lease() {
    let env = Env::with_endpoints(ONE);
    env.fails(["record"], 2).no_stdout();
    env.fails(["record", "--tokens", "5"], 2).no_stdout();
}

#[test]
fn a_reservation_older_than_15_minutes_is_settled_by_lease_only() {
    let env = Env::with_endpoints(ONE);
    let first = lease(&env, "100");
    env.set_time(60_000);
    lease(&env, "100");
    assert_eq!(env.state_of("p/m")["open_reservations"], 2);

    // 14 min 59 s after the first: both still open.
    env.set_time(899_000);
    assert_eq!(env.state_of("p/m")["open_reservations"], 2);

    // 15 min 1 s after the first: it is no longer open; the second still is.
    env.set_time(901_000);
    assert_eq!(env.state_of("p/m")["open_reservations"], 1);

    // By id: the second reservation is settled, not the expired first.
    env.ok(["record", "p/m", "--tokens", "5"]);
    let row = env.state_of("p/m");
    assert_eq!(row["used"]["tph"], 105, "{row}");
    assert_eq!(row["used"]["rph"], 2, "{row}");
    assert_eq!(row["open_reservations"], 0, "{row}");

    // By id again: nothing is open, so it is a new call.
    env.ok(["record", "p/m", "--tokens", "7"]);
    let row = env.state_of("p/m");
    assert_eq!(row["used"]["tph"], 112, "{row}");
    assert_eq!(row["used"]["rph"], 3, "{row}");

    // The exact lease still settles the expired reservation.
    env.ok(["record", "--lease", &first, "--tokens", "1"]);
    let row = env.state_of("p/m");
    assert_eq!(row["used"]["tph"], 13, "{row}");
    assert_eq!(row["used"]["rph"], 3, "{row}");
    env.fails(["record", "--lease", &first], 1);
}

#[test]
fn settling_an_older_reservation_corrects_the_hour_and_day_windows() {
    let env = Env::with_endpoints(ONE);
    let first = lease(&env, "100");
    env.set_time(120_000);
    lease(&env, "100");
    env.set_time(180_000);
    env.ok(["record", "--lease", &first, "--tokens", "500"]);
    for window in ["tph", "tpd"] {
        assert_eq!(env.used("p/m", window), 600, "{window}");
    }
    assert_eq!(env.used("p/m", "tpm"), 0);
    // Once the first call has left the hour (at most a minute late), only the second counts.
    env.set_time(3_660_000);
    assert_eq!(env.used("p/m", "tph"), 100);
    assert_eq!(env.used("p/m", "tpd"), 600);
    // And a day later, nothing.
    env.set_time(86_400_000 + 180_000);
    assert_eq!(env.used("p/m", "tpd"), 0);
    assert_eq!(env.used("p/m", "rpd"), 0);
}

#[test]
fn a_lease_settled_by_many_processes_at_once_on_the_real_clock_is_settled_once() {
    let env = Env::with_endpoints(ONE);
    let on_the_clock = |args: &[&str]| {
        let mut cmd = env.program(args);
        cmd.env_remove("LLM_ROTATE_NOW");
        cmd
    };
    for _ in 0..3 {
        let picked = Out::from(
            on_the_clock(&["pick", "--format", "json", "--tokens", "100"])
                .output()
                .expect("pick"),
        );
        let picked: serde_json::Value = serde_json::from_str(&picked.stdout).expect("json");
        let lease = picked["lease"].as_str().expect("a lease");
        // Each process reads the reservation and settles it in one step under the lock:
        // one settles it, the others find it settled.
        let outs =
            at_once((0..8).map(|_| on_the_clock(&["record", "--lease", lease, "--tokens", "7"])));
        let settled = outs.iter().filter(|out| out.status == Some(0)).count();
        let said: Vec<String> = outs.iter().map(ToString::to_string).collect();
        assert_eq!(settled, 1, "{}", said.join("\n"));
        for out in outs.iter().filter(|out| out.status != Some(0)) {
            out.code(1).says(&["already settled"]);
        }
    }
    let state = Out::from(
        on_the_clock(&["state", "--format", "json"])
            .output()
            .expect("state"),
    );
    let state: serde_json::Value = serde_json::from_str(&state.stdout).expect("json");
    // Three calls of 7 tokens, each estimate replaced once.
    assert_eq!(state[0]["used"]["tpd"], 21, "{state}");
    assert_eq!(state[0]["used"]["rpd"], 3, "{state}");
    assert_eq!(state[0]["open_reservations"], 0, "{state}");
}
