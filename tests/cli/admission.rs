//! Admission and rolling windows (SPEC 3): a request counts while `now - W < t <= now`,
//! filling a limit exactly is allowed, and hour/day windows free no earlier than `t + W` and
//! at most 60 s later.

use crate::{Env, T0, json, num};

#[test]
fn rpm_admits_up_to_the_limit_and_frees_exactly_sixty_seconds_after_each_pick() {
    let env = Env::with_endpoints("provider,model,rpm\np,m,2\n");
    assert_eq!(env.pick(&[]), "p/m");
    env.set_time(10_000);
    assert_eq!(env.pick(&[]), "p/m");

    env.set_time(20_000);
    env.fails(["pick"], 75)
        .no_stdout()
        .says(&["rpm", "retry in", "retry in 40s"]);

    // One millisecond before the first pick leaves the minute: still full.
    env.set_time(59_999);
    env.fails(["pick"], 75)
        .no_stdout()
        .says(&["rpm", "retry in"]);

    // At exactly t + 60 s the first pick no longer counts.
    env.set_time(60_000);
    assert_eq!(env.pick(&[]), "p/m");

    // Now the picks at 10 s and 60 s fill the minute, until 10 s + 60 s.
    env.fails(["pick"], 75).no_stdout();
    env.set_time(69_999);
    env.fails(["pick"], 75).no_stdout();
    env.set_time(70_000);
    assert_eq!(env.pick(&[]), "p/m");
}

#[test]
fn filling_tpm_exactly_is_allowed_and_one_token_more_is_refused() {
    let env = Env::with_endpoints("provider,model,tpm\np,m,100\n");
    assert_eq!(env.pick(&["--tokens", "60"]), "p/m");
    env.fails(["pick", "--tokens", "41"], 75)
        .no_stdout()
        .says(&["tpm", "retry in"]);
    assert_eq!(env.pick(&["--tokens", "40"]), "p/m");
    env.fails(["pick", "--tokens", "1"], 75)
        .no_stdout()
        .says(&["tpm"]);
    // used + 0 <= 100: a request of no tokens still fits a full token limit.
    assert_eq!(env.pick(&["--tokens", "0"]), "p/m");
    assert_eq!(env.used("p/m", "tpm"), 100);
    assert_eq!(env.used("p/m", "rpm"), 3);
}

#[test]
fn hour_and_day_windows_free_no_earlier_than_t_plus_w_and_at_most_a_minute_later() {
    // (limit column, its value, tokens per pick, window length in seconds)
    let cases = [
        ("rph", "1", "0", 3_600),
        ("tph", "100", "100", 3_600),
        ("rpd", "1", "0", 86_400),
        ("tpd", "100", "100", 86_400),
    ];
    for (limit, cap, tokens, window) in cases {
        let env = Env::with_endpoints(&format!("provider,model,{limit}\np,m,{cap}\n"));
        // Mid-minute, so that a minute-bucketed window is late by at most the minute's rest.
        let t = 30_000;
        env.set_time(t);
        assert_eq!(
            env.pick(&["--tokens", tokens]),
            "p/m",
            "{limit}: first pick"
        );

        // Well past the minute window, the longer window still blocks.
        env.set_time(t + 61_000);
        env.fails(["pick", "--tokens", tokens], 75)
            .no_stdout()
            .says(&[limit, "retry in"]);

        // Half-way: the wait reported is the exact wait, or at most 60 s more.
        let half = window * 500;
        env.set_time(t + half);
        let out = env.fails(["pick", "--tokens", tokens, "--format", "json"], 75);
        let report = json(&out.stdout);
        let retry = num(&report["retry_after_s"]);
        let exact = (window / 2) as f64;
        assert!(
            (exact..=exact + 60.0).contains(&retry),
            "{limit}: retry_after_s {retry} should be in [{exact}, {}]\n{out}",
            exact + 60.0
        );
        assert_eq!(report["blocked"][0]["limit"], limit, "{limit}\n{out}");

        // Never early: one millisecond before t + W it still counts.
        env.set_time(t + window * 1000 - 1);
        env.fails(["pick", "--tokens", tokens], 75)
            .no_stdout()
            .says(&[limit]);

        // At most 60 s late.
        env.set_time(t + window * 1000 + 60_000);
        assert_eq!(env.pick(&["--tokens", tokens]), "p/m", "{limit}: freed");
    }
}

#[test]
fn the_clock_accepts_rfc3339_as_well_as_unix_seconds() {
    let env = Env::with_endpoints("provider,model,rpm\np,m,1\n");
    env.cmd()
        .env("LLM_ROTATE_NOW", "2026-01-01T00:00:00Z")
        .arg("pick")
        .assert()
        .code(0)
        .stdout("p/m\n");
    // 2026-01-01T00:00:00Z is T0: the pick above fills the minute until T0 + 60 s.
    env.cmd()
        .env("LLM_ROTATE_NOW", format!("{}.999", T0 + 59))
        .arg("pick")
        .assert()
        .code(75)
        .stdout("");
    env.cmd()
        .env("LLM_ROTATE_NOW", "2026-01-01T00:01:00.000Z")
        .arg("pick")
        .assert()
        .code(0)
        .stdout("p/m\n");
}

#[test]
fn the_minute_window_is_exact_to_the_millisecond() {
    let env = Env::with_endpoints("provider,model,rpm\np,m,1\n");
    env.set_time(250);
    env.pick(&[]);
    env.set_time(1_000);
    let out = env.fails(["pick", "--format", "json"], 75);
    let report = json(&out.stdout);
    assert_eq!(num(&report["retry_after_s"]), 59.25, "{out}");
    assert_eq!(num(&report["blocked"][0]["frees_in_s"]), 59.25, "{out}");
    // Rounded up for people.
    out.says(&["retry in 1m"]);
    env.set_time(60_249);
    env.fails(["pick"], 75);
    env.set_time(60_250);
    env.pick(&[]);
}

#[test]
fn usage_recorded_above_a_limit_blocks_until_it_leaves_the_window() {
    let env = Env::with_endpoints("provider,model,tpm\np,m,1000\n");
    let chosen = env.pick_json(&["--tokens", "100"]);
    let lease = chosen["lease"].as_str().expect("a lease").to_string();
    // The call used more than the whole limit.
    env.ok(["record", "--lease", &lease, "--tokens", "1500"]);
    env.set_time(1_000);
    let row = env.state_of("p/m");
    assert_eq!(row["used"]["tpm"], 1500, "{row}");
    assert_eq!(row["remaining"]["tpm"], 0, "never below zero: {row}");
    assert_eq!(row["available"], false, "{row}");
    assert_eq!(num(&row["frees_in_s"]), 59.0, "{row}");
    env.fails(["pick"], 75).says(&["tpm", "retry in 59s"]);
    env.set_time(60_000);
    env.pick(&["--tokens", "1000"]);
}

#[test]
fn a_what_if_in_the_future_does_not_shut_the_present_out() {
    let env = Env::with_endpoints("provider,model,rpm\np,a,5\np,b,5\n");
    // A what-if a day ahead records a call there.
    env.set_time(24 * 3_600_000);
    assert_eq!(env.pick(&[]), "p/a");
    // Back to the present: steps keep to the clock, say why once, and still pick.
    env.set_time(0);
    let out = env.run(["pick"]);
    out.code(0).says(&[
        "llm-rotate: note: the ledger holds usage stamped 2026-01-02T00:00:00Z, over 5 minutes ahead of this clock (2026-01-01T00:00:00Z)",
    ]);
    assert_eq!(out.stdout, "p/a\n");
    // The calls are stamped at the clock, not a day ahead, and the future call counts.
    let stamps = env.stamps();
    assert!(stamps.contains(&0), "{stamps:?}");
    assert_eq!(env.used("p/a", "rpm"), 2);
    // Within 5 minutes, a step still follows the newest entry (a late process).
    env.set_time(24 * 3_600_000 - 4 * 60_000);
    env.ok(["pick"]);
    assert!(
        env.stamps().contains(&(24 * 3_600_000)),
        "{:?}",
        env.stamps()
    );
    // reset clears what is ahead; the note is not said again.
    env.set_time(0);
    env.ok(["reset", "p/a"]);
    let out = env.run(["pick"]);
    out.code(0);
    assert_eq!(out.stderr, "", "{out}");
    assert_eq!(env.stamps(), [0], "{:?}", env.stamps());
}
