//! Cooldowns (SPEC 7, README "When providers push back"): a 429 skips the endpoint for the
//! provider's Retry-After or an exponential back-off, then lets one probe through; three
//! failures in a row do the same; a success after the cooldown ends it.

use serde_json::Value;

use crate::{Env, assert_secs, blocked, num};

const TWO: &str = "provider,model\np,a\np,b\n";

/// The `cooldown` object of `id` in `state --format json`; panics when it is null.
#[track_caller]
fn cooldown(env: &Env, id: &str) -> Value {
    let row = env.state_of(id);
    assert!(
        row["cooldown"].is_object(),
        "{id} should be cooling down: {row}"
    );
    row["cooldown"].clone()
}

#[track_caller]
fn lease_of(chosen: &Value) -> String {
    chosen["lease"]
        .as_str()
        .unwrap_or_else(|| panic!("no lease in {chosen}"))
        .to_string()
}

#[test]
fn a_429_with_retry_after_skips_the_endpoint_for_exactly_that_long_then_allows_one_probe() {
    let env = Env::with_endpoints(TWO);
    assert_eq!(
        env.ok(["record", "p/a", "--rate-limited", "--retry-after", "7"]),
        ""
    );

    let row = env.state_of("p/a");
    assert_eq!(row["available"], false, "{row}");
    assert_eq!(row["blocked_by"], "cooldown", "{row}");
    assert_secs(num(&row["frees_in_s"]), 7.0, "frees_in_s");
    let c = cooldown(&env, "p/a");
    assert!(
        c["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "a cooldown has a reason: {c}"
    );
    assert_secs(num(&c["ends_in_s"]), 7.0, "cooldown.ends_in_s");
    assert_eq!(c["strikes"], 1, "{c}");
    assert_eq!(c["probe_out"], false, "{c}");

    // Skipped: the next endpoint in file order takes the picks.
    assert_eq!(env.pick(&[]), "p/b");
    env.set_time(6_999);
    assert_eq!(env.pick(&[]), "p/b");
    let report = env.exhausted(&["--only", "p/a"]);
    let (limit, frees_in) = blocked(&report, "p/a");
    assert_eq!(limit, "cooldown", "{report}");
    assert_secs(frees_in, 0.001, "frees_in_s at +6.999 s");

    // At exactly +7 s one probe goes through...
    env.set_time(7_000);
    let probe = env.pick_json(&[]);
    assert_eq!(probe["id"], "p/a", "{probe}");
    // ...and only one: until it is recorded, p/a is skipped again.
    assert_eq!(env.pick(&[]), "p/b");
    let row = env.state_of("p/a");
    assert_eq!(row["available"], false, "{row}");
    assert_eq!(row["blocked_by"], "probe", "{row}");
    assert_eq!(row["cooldown"]["probe_out"], true, "{row}");
    let report = env.exhausted(&["--only", "p/a"]);
    assert_eq!(blocked(&report, "p/a").0, "probe", "{report}");

    // The probe succeeds: the cooldown is over, and p/a is picked as before.
    env.set_time(7_500);
    env.ok(["record", "--lease", &lease_of(&probe), "--tokens", "10"]);
    let row = env.state_of("p/a");
    assert_eq!(row["cooldown"], Value::Null, "{row}");
    assert_eq!(row["blocked_by"], Value::Null, "{row}");
    assert_eq!(row["available"], true, "{row}");
    assert_eq!(env.pick(&[]), "p/a");
    assert_eq!(env.pick(&[]), "p/a");
}

#[test]
fn without_retry_after_the_back_off_doubles_from_5s_with_each_429_in_a_row_up_to_10_minutes() {
    let env = Env::with_endpoints("provider,model\np,a\n");
    env.ok(["record", "p/a", "--rate-limited"]);
    let mut start = 0;
    for (i, secs) in [5, 10, 20, 40, 80, 160, 320, 600, 600]
        .into_iter()
        .enumerate()
    {
        let c = cooldown(&env, "p/a");
        assert_eq!(c["strikes"], i + 1, "429 number {}: {c}", i + 1);
        assert_secs(num(&c["ends_in_s"]), secs as f64, "ends_in_s");

        env.set_time(start + secs * 1000 - 1);
        let report = env.exhausted(&[]);
        assert_eq!(blocked(&report, "p/a").0, "cooldown", "{report}");

        // The probe is refused again: the next cooldown is twice as long.
        start += secs * 1000;
        env.set_time(start);
        assert_eq!(env.pick(&[]), "p/a", "the probe after {secs} s");
        env.ok(["record", "p/a", "--rate-limited"]);
        assert_eq!(
            env.state_of("p/a")["open_reservations"],
            0,
            "the 429 settles the probe's reservation"
        );
    }

    // Once a probe succeeds, the next 429 starts the sequence again at 5 s.
    start += 600_000;
    env.set_time(start);
    assert_eq!(env.pick(&[]), "p/a", "the last probe");
    env.ok(["record", "p/a"]);
    assert_eq!(env.state_of("p/a")["cooldown"], Value::Null);
    env.ok(["record", "p/a", "--rate-limited"]);
    let c = cooldown(&env, "p/a");
    assert_eq!(c["strikes"], 1, "{c}");
    assert_secs(num(&c["ends_in_s"]), 5.0, "after a success");
}

#[test]
fn retry_after_takes_durations_and_http_dates() {
    // T0 is Thu, 01 Jan 2026 00:00:00 GMT.
    let env = Env::with_endpoints(TWO);
    env.ok([
        "record",
        "p/a",
        "--rate-limited",
        "--retry-after",
        "Thu, 01 Jan 2026 00:00:30 GMT",
    ]);
    assert_secs(num(&cooldown(&env, "p/a")["ends_in_s"]), 30.0, "HTTP date");
    env.set_time(29_999);
    assert_eq!(env.pick(&[]), "p/b");
    env.set_time(30_000);
    assert_eq!(env.pick(&[]), "p/a");

    // From an instant that is not a whole second: the date is what counts.
    env.set_time(40_250);
    env.ok([
        "record",
        "p/b",
        "--rate-limited",
        "--retry-after",
        "Thu, 01 Jan 2026 00:01:00 GMT",
    ]);
    assert_secs(num(&cooldown(&env, "p/b")["ends_in_s"]), 19.75, "HTTP date");

    let env = Env::with_endpoints(TWO);
    env.ok([
        "record",
        "p/a",
        "--rate-limited",
        "--retry-after",
        "2m59.56s",
    ]);
    assert_secs(num(&cooldown(&env, "p/a")["ends_in_s"]), 179.56, "2m59.56s");
    env.set_time(179_559);
    assert_eq!(env.pick(&[]), "p/b");
    env.set_time(179_560);
    assert_eq!(env.pick(&[]), "p/a");
}

#[test]
fn a_cooldown_never_shortens_a_longer_running_one() {
    let env = Env::with_endpoints(TWO);
    env.ok(["record", "p/a", "--rate-limited", "--retry-after", "60"]);
    env.set_time(1_000);
    env.ok(["record", "p/a", "--rate-limited", "--retry-after", "5"]);
    assert_secs(num(&cooldown(&env, "p/a")["ends_in_s"]), 59.0, "after 5 s");
    // A third 429 in a row, without Retry-After: 20 s, still shorter than what runs.
    env.ok(["record", "p/a", "--rate-limited"]);
    assert_secs(
        num(&cooldown(&env, "p/a")["ends_in_s"]),
        59.0,
        "after back-off",
    );
    env.set_time(59_999);
    assert_eq!(env.pick(&[]), "p/b");
    let report = env.exhausted(&["--only", "p/a"]);
    assert_eq!(blocked(&report, "p/a").0, "cooldown", "{report}");

    // A longer one does extend it.
    env.ok(["record", "p/a", "--rate-limited", "--retry-after", "1m"]);
    assert_secs(
        num(&cooldown(&env, "p/a")["ends_in_s"]),
        60.0,
        "a longer cooldown",
    );
    env.set_time(60_000);
    assert_eq!(env.pick(&[]), "p/b", "still cooling down at +60 s");
    env.set_time(59_999 + 59_999);
    assert_eq!(env.pick(&[]), "p/b");
    env.set_time(59_999 + 60_000);
    assert_eq!(env.pick(&[]), "p/a");
}

#[test]
fn three_failures_in_a_row_cool_down_for_5s_and_a_success_between_resets_the_count() {
    let env = Env::with_endpoints(TWO);
    for _ in 0..2 {
        env.ok(["record", "p/a", "--failed"]);
    }
    let row = env.state_of("p/a");
    assert_eq!(row["cooldown"], Value::Null, "two failures: {row}");
    assert_eq!(row["available"], true, "two failures: {row}");

    // A success between failures starts the count again.
    env.ok(["record", "p/a"]);
    for _ in 0..2 {
        env.ok(["record", "p/a", "--failed"]);
    }
    let row = env.state_of("p/a");
    assert_eq!(row["cooldown"], Value::Null, "2 + success + 2: {row}");
    assert_eq!(env.pick(&[]), "p/a");
    env.ok(["record", "p/a"]);

    for _ in 0..3 {
        env.ok(["record", "p/a", "--failed"]);
    }
    let row = env.state_of("p/a");
    assert_eq!(row["blocked_by"], "cooldown", "three failures: {row}");
    let c = cooldown(&env, "p/a");
    assert_secs(num(&c["ends_in_s"]), 5.0, "first back-off");
    assert_eq!(c["strikes"], 1, "{c}");

    env.set_time(4_999);
    assert_eq!(env.pick(&[]), "p/b");
    env.set_time(5_000);
    assert_eq!(env.pick(&[]), "p/a", "the probe");
    assert_eq!(env.pick(&[]), "p/b", "only one probe");
    env.ok(["record", "p/a"]);
    assert_eq!(env.state_of("p/a")["cooldown"], Value::Null);
}

#[test]
fn rate_limited_and_failed_settle_the_oldest_open_reservation_or_count_one_request() {
    let env = Env::with_endpoints("provider,model\np,m\n");
    let first = lease_of(&env.pick_json(&["--tokens", "100"]));
    env.set_time(1_000);
    let second = lease_of(&env.pick_json(&["--tokens", "100"]));
    let row = env.state_of("p/m");
    assert_eq!(row["open_reservations"], 2, "{row}");

    // --failed settles the oldest, with the real token count.
    env.set_time(2_000);
    env.ok(["record", "p/m", "--failed", "--tokens", "30"]);
    let row = env.state_of("p/m");
    assert_eq!(row["open_reservations"], 1, "{row}");
    assert_eq!(row["used"]["rpm"], 2, "{row}");
    assert_eq!(row["used"]["tpm"], 130, "{row}");
    env.fails(["record", "--lease", &first], 1)
        .says(&["already settled"]);

    // --rate-limited settles the next one: a refused call used no tokens.
    env.ok(["record", "p/m", "--rate-limited", "--retry-after", "1s"]);
    let row = env.state_of("p/m");
    assert_eq!(row["open_reservations"], 0, "{row}");
    assert_eq!(row["used"]["rpm"], 2, "{row}");
    assert_eq!(row["used"]["tpm"], 30, "{row}");
    env.fails(["record", "--lease", &second], 1)
        .says(&["already settled"]);

    // With nothing open, each counts one refused request.
    env.ok(["record", "p/m", "--rate-limited", "--retry-after", "1s"]);
    env.ok(["record", "p/m", "--failed"]);
    let row = env.state_of("p/m");
    assert_eq!(row["open_reservations"], 0, "{row}");
    assert_eq!(row["used"]["rpm"], 4, "{row}");
    assert_eq!(row["used"]["tpm"], 30, "{row}");
}

#[test]
fn reset_clears_a_cooldown() {
    let env = Env::with_endpoints(TWO);
    env.ok(["record", "p/a", "--rate-limited", "--retry-after", "10m"]);
    assert_eq!(env.pick(&[]), "p/b");
    env.ok(["reset", "p/a"]);
    let row = env.state_of("p/a");
    assert_eq!(row["cooldown"], Value::Null, "{row}");
    assert_eq!(row["available"], true, "{row}");
    // Not a probe: the endpoint is simply healthy again.
    assert_eq!(env.pick(&[]), "p/a");
    assert_eq!(env.pick(&[]), "p/a");
}

#[test]
fn bad_durations_and_retry_after_without_rate_limited_are_usage_errors() {
    let env = Env::with_endpoints(TWO);
    for args in [
        &["record", "p/a", "--rate-limited", "--retry-after", "5x"][..],
        &["record", "p/a", "--rate-limited", "--retry-after", "1m2h"],
        &["record", "p/a", "--rate-limited", "--retry-after", "-5"],
        &["record", "p/a", "--retry-after", "5"],
        &["pick", "--wait", "1m2h"],
        &["pick", "--wait", "5x"],
    ] {
        let out = env.run(args);
        assert_eq!(out.status, Some(2), "{args:?}:\n{out}");
        assert_eq!(out.stdout, "", "{args:?}:\n{out}");
    }
    // Nothing was recorded or reserved by them.
    for id in ["p/a", "p/b"] {
        let row = env.state_of(id);
        assert_eq!(row["used"]["rpd"], 0, "{row}");
        assert_eq!(row["cooldown"], Value::Null, "{row}");
    }
}
