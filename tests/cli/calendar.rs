//! Calendar days (SPEC 7): `day_reset = HH:MM Area/City` makes an endpoint's day windows
//! calendar days that end at that local time, 23 or 25 hours long across daylight-saving
//! changes; the day's usage frees all at once at the reset.

use crate::{Env, assert_secs, blocked};

const PACIFIC: &str = "provider,model,rpd,day_reset\n\
                       p,pacific,2,00:00 America/Los_Angeles\n\
                       p,rolling,2,rolling\n";

/// Two picks of each endpoint at `at`, which fill both days.
#[track_caller]
fn fill(env: &Env, at: &str) {
    env.set_utc(at);
    for id in ["p/pacific", "p/rolling"] {
        for _ in 0..2 {
            assert_eq!(env.pick(&["--only", id]), id, "at {at}");
        }
    }
}

/// `pick --only ID` must exit 75 with rpd the block; returns how long until it frees.
#[track_caller]
fn rpd_blocked(env: &Env, id: &str) -> f64 {
    let report = env.exhausted(&["--only", id]);
    let (limit, frees_in) = blocked(&report, id);
    assert_eq!(limit, "rpd", "{report}");
    frees_in
}

#[test]
fn a_pacific_day_frees_at_local_midnight_not_24_hours_later() {
    let env = Env::with_endpoints(PACIFIC);
    // 2026-01-10 20:00 PST.
    fill(&env, "2026-01-11T04:00:00Z");
    assert_secs(rpd_blocked(&env, "p/pacific"), 4.0 * 3600.0, "at 20:00 PST");
    assert_eq!(env.used("p/pacific", "rpd"), 2);

    // 23:59:59 PST: still the 10th in Los Angeles.
    env.set_utc("2026-01-11T07:59:59Z");
    assert_secs(rpd_blocked(&env, "p/pacific"), 1.0, "at 23:59:59 PST");

    // 00:00 PST on the 11th: a new day for p/pacific, while the rolling day holds both.
    env.set_utc("2026-01-11T08:00:00Z");
    assert_eq!(env.used("p/pacific", "rpd"), 0);
    assert_eq!(env.used("p/rolling", "rpd"), 2);
    rpd_blocked(&env, "p/rolling");
    assert_eq!(env.pick(&["--only", "p/pacific"]), "p/pacific");
    assert_eq!(env.pick(&["--only", "p/pacific"]), "p/pacific");
    assert_secs(
        rpd_blocked(&env, "p/pacific"),
        24.0 * 3600.0,
        "a whole new day",
    );

    // The rolling day frees 24 hours after its picks (a day window may be up to 60 s late).
    env.set_utc("2026-01-12T04:01:00Z");
    assert_eq!(env.pick(&["--only", "p/rolling"]), "p/rolling");
}

#[test]
fn the_23_hour_day_of_spring_forward_frees_at_local_midnight() {
    let env = Env::with_endpoints(PACIFIC);
    // 2026-03-08 00:30 PST; at 02:00 clocks jump to 03:00 PDT, so the day ends at
    // 2026-03-09 00:00 PDT = 07:00Z, 22.5 hours later.
    fill(&env, "2026-03-08T08:30:00Z");
    assert_secs(
        rpd_blocked(&env, "p/pacific"),
        22.5 * 3600.0,
        "at 00:30 PST",
    );
    env.set_utc("2026-03-09T06:59:59Z");
    assert_secs(rpd_blocked(&env, "p/pacific"), 1.0, "at 23:59:59 PDT");
    env.set_utc("2026-03-09T07:00:00Z");
    assert_eq!(env.used("p/pacific", "rpd"), 0);
    assert_eq!(env.pick(&["--only", "p/pacific"]), "p/pacific");
    rpd_blocked(&env, "p/rolling");
}

#[test]
fn the_25_hour_day_of_fall_back_frees_at_local_midnight_and_not_before() {
    let env = Env::with_endpoints(PACIFIC);
    // 2026-11-01 00:30 PDT; at 02:00 clocks go back to 01:00 PST, so the day ends at
    // 2026-11-02 00:00 PST = 08:00Z, 24.5 hours later.
    fill(&env, "2026-11-01T07:30:00Z");
    assert_secs(
        rpd_blocked(&env, "p/pacific"),
        24.5 * 3600.0,
        "at 00:30 PDT",
    );

    // 24 hours on (23:31 PST, still the 1st; a day window may free up to 60 s late): the
    // rolling day has freed, the calendar day has not.
    env.set_utc("2026-11-02T07:31:00Z");
    assert_eq!(env.pick(&["--only", "p/rolling"]), "p/rolling");
    assert_secs(rpd_blocked(&env, "p/pacific"), 1740.0, "at 23:31 PST");
    env.set_utc("2026-11-02T07:59:59Z");
    assert_secs(rpd_blocked(&env, "p/pacific"), 1.0, "at 23:59:59 PST");
    assert_eq!(env.used("p/pacific", "rpd"), 2);
    env.set_utc("2026-11-02T08:00:00Z");
    assert_eq!(env.used("p/pacific", "rpd"), 0);
    assert_eq!(env.pick(&["--only", "p/pacific"]), "p/pacific");
}

#[test]
fn a_bad_zone_is_an_error_of_the_file() {
    let env = Env::with_endpoints(
        "provider,model,rpd,day_reset\n\
         p,m,2,00:00 Mars/Olympus_Mons\n",
    );
    for args in [&["pick"][..], &["state"], &["record", "p/m"]] {
        env.fails(args, 1).no_stdout().says(&[
            "endpoints.csv:2",
            "column day_reset",
            "Mars/Olympus_Mons",
        ]);
    }
}

#[test]
fn tokens_per_day_and_other_reset_times_follow_the_anchor_too() {
    // 05:30 in Kolkata (UTC+5:30, no daylight saving) is 00:00Z.
    let env = Env::with_endpoints(
        "provider,model,tpd,day_reset\n\
         p,m,1000,05:30 Asia/Kolkata\n",
    );
    env.set_utc("2026-02-01T18:00:00Z");
    assert_eq!(env.pick(&["--tokens", "1000"]), "p/m");
    let report = env.exhausted(&["--tokens", "1"]);
    let (limit, frees_in) = blocked(&report, "p/m");
    assert_eq!(limit, "tpd", "{report}");
    assert_secs(frees_in, 6.0 * 3600.0, "frees at 05:30 IST");
    env.set_utc("2026-02-01T23:59:59.999Z");
    env.exhausted(&["--tokens", "1"]);
    env.set_utc("2026-02-02T00:00:00Z");
    assert_eq!(env.used("p/m", "tpd"), 0);
    assert_eq!(env.pick(&["--tokens", "1000"]), "p/m");
}
