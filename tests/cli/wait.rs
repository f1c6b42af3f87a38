//! `pick --wait` (SPEC 7): sleep until the ledger says a slot frees, take it, and give up
//! with 75 at the deadline. With `LLM_ROTATE_NOW` pinned a process sleeps by moving its own
//! clock forward, so where a waiting pick's reservation lands is read back from `state` at
//! later times: a reservation at t counts in `used.rpm` exactly while `t <= now < t + 60 s`.

use std::collections::HashSet;

use crate::{Env, json, num};

#[track_caller]
fn used(env: &Env, at_ms: i64, window: &str) -> u64 {
    env.set_time(at_ms);
    env.used("p/m", window)
}

#[test]
fn wait_returns_as_soon_as_a_slot_frees() {
    let env = Env::with_endpoints("provider,model,rpm\np,m,1\n");
    assert_eq!(env.pick(&[]), "p/m");
    env.set_time(10_000);
    let chosen = env.pick_json(&["--wait"]);
    assert_eq!(chosen["id"], "p/m", "{chosen}");
    let lease = chosen["lease"].as_str().expect("a lease").to_string();

    // Two calls in the hour; the second made exactly when the first left the minute:
    // it counts at +60 s and has left at +120 s.
    assert_eq!(used(&env, 60_000, "rph"), 2);
    assert_eq!(used(&env, 59_999, "rpm"), 1);
    assert_eq!(used(&env, 60_000, "rpm"), 1);
    assert_eq!(used(&env, 119_999, "rpm"), 1);
    assert_eq!(used(&env, 120_000, "rpm"), 0);
    assert_eq!(used(&env, 120_000, "rph"), 2);

    env.set_time(60_500);
    assert_eq!(env.ok(["record", "--lease", &lease]), "");
}

#[test]
fn wait_with_a_deadline_before_the_slot_frees_exits_75_and_reserves_nothing() {
    let env = Env::with_endpoints("provider,model,rpm\np,m,1\n");
    assert_eq!(env.pick(&[]), "p/m");

    // The slot frees at +60 s; waiting 10 s from +10 s is not enough.
    env.set_time(10_000);
    env.fails(["pick", "--wait", "10s"], 75)
        .no_stdout()
        .says(&["retry in"]);
    let out = env.fails(["pick", "--wait", "10s", "--format", "json"], 75);
    let report = json(&out.stdout);
    assert_eq!(report["error"], "exhausted", "{out}");
    let retry = num(&report["retry_after_s"]);
    assert!(
        retry > 0.0 && retry <= 50.0,
        "retry_after_s {retry}:\n{out}"
    );

    // Neither took the slot when it freed.
    assert_eq!(used(&env, 60_500, "rpm"), 0);
    assert_eq!(used(&env, 60_500, "rph"), 1);

    // A deadline that reaches the instant the slot frees is enough.
    env.set_time(70_000);
    assert_eq!(env.pick(&[]), "p/m");
    env.set_time(80_000);
    assert_eq!(env.pick(&["--wait", "50s"]), "p/m");
    assert_eq!(used(&env, 130_000, "rpm"), 1);
    assert_eq!(used(&env, 130_000, "rph"), 3);
}

#[test]
fn wait_never_waits_for_a_request_that_can_never_fit() {
    let env = Env::with_endpoints("provider,model,tpm\np,m,100\n");
    env.fails(["pick", "--wait", "5s", "--tokens", "101"], 1)
        .no_stdout()
        .says(&["never"]);
    env.fails(["pick", "--wait", "--tokens", "101"], 1)
        .no_stdout();
}

#[test]
fn many_waiting_processes_share_the_slots_without_exceeding_the_limit() {
    const PROCESSES: usize = 8;
    let env = Env::with_endpoints("provider,model,rpm\np,m,2\n");
    env.state();
    let outs = env.run_at_once(PROCESSES, &["pick", "--wait", "30m", "--format", "json"]);
    let mut leases = HashSet::new();
    for out in &outs {
        out.code(0);
        let chosen = json(&out.stdout);
        assert_eq!(chosen["id"], "p/m", "{out}");
        let lease = chosen["lease"].as_str().expect("a lease");
        assert!(leases.insert(lease.to_string()), "lease {lease} twice");
    }

    // Two slots a minute: the 8 reservations are 2 at each of +0, +60, +120 and +180 s,
    // written in time order.
    assert_eq!(
        env.stamps(),
        [0, 0, 60_000, 60_000, 120_000, 120_000, 180_000, 180_000]
    );
    // Nothing was left open beyond what the processes reserved.
    env.set_time(240_000);
    assert_eq!(env.state_of("p/m")["open_reservations"], PROCESSES);
}

#[test]
fn wait_outlasts_a_cooldown_and_takes_the_probe() {
    let env = Env::with_endpoints("provider,model\np,m\n");
    env.ok(["record", "p/m", "--rate-limited", "--retry-after", "7"]);
    let chosen = env.pick_json(&["--wait", "1m"]);
    assert_eq!(chosen["id"], "p/m", "{chosen}");
    // The 429 counted one request; the probe was taken the moment the cooldown ended.
    assert_eq!(env.stamps(), [0, 7_000]);
    let row = env.state_of("p/m");
    assert_eq!(row["blocked_by"], "probe", "{row}");
    assert_eq!(row["cooldown"]["probe_out"], true, "{row}");
}

#[test]
fn wait_outlasts_a_concurrency_cap_until_a_reservation_expires() {
    let env = Env::with_endpoints("provider,model,concurrency\np,m,1\n");
    assert_eq!(env.pick(&[]), "p/m");
    env.set_time(100_000);
    env.fails(["pick", "--wait", "799s"], 75).no_stdout();
    assert_eq!(env.pick(&["--wait", "800s"]), "p/m");
    // Made at +900 s, when the first reservation stopped being in flight.
    assert_eq!(env.stamps(), [0, 900_000]);
    // The waiting process moved its own pinned clock on; this one reads at that time too
    // (a step more than 5 minutes behind the newest entry keeps to its own clock).
    env.set_time(900_000);
    assert_eq!(env.state_of("p/m")["open_reservations"], 1);
}

#[test]
fn the_deadline_holds_to_the_millisecond() {
    let env = Env::with_endpoints("provider,model,rpm\np,m,1\n");
    assert_eq!(env.pick(&[]), "p/m");
    // The slot frees at +60 s: from +49.5 s, 10.4 s of waiting end 100 ms before it.
    env.set_time(49_500);
    env.fails(["pick", "--wait", "10.4s"], 75).no_stdout();
    env.fails(["pick", "--wait", "10s400ms"], 75).no_stdout();
    assert_eq!(used(&env, 60_000, "rpm"), 0, "nothing was reserved");
    env.set_time(49_500);
    assert_eq!(env.pick(&["--wait", "10.5s"]), "p/m");
    assert_eq!(used(&env, 60_000, "rpm"), 1);
}
