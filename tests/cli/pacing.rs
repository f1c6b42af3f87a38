//! Smooth pacing (SPEC 7): `pace=smooth` spaces the picks of an endpoint at least
//! window/limit apart, the largest such spacing over its request limits.

use serde_json::Value;

use crate::{Env, assert_secs, blocked, json, num};

#[test]
fn rpm_60_smooth_allows_one_pick_a_second() {
    let env = Env::with_endpoints("provider,model,rpm,pace\np,m,60,smooth\n");
    assert_eq!(env.pick(&[]), "p/m");

    // A second pick at the same instant is paced, though the minute has 59 left.
    let row = env.state_of("p/m");
    assert_eq!(row["available"], false, "{row}");
    assert_eq!(row["blocked_by"], "pace", "{row}");
    assert_secs(num(&row["frees_in_s"]), 1.0, "state frees_in_s");
    let report = env.exhausted(&[]);
    let (limit, frees_in) = blocked(&report, "p/m");
    assert_eq!(limit, "pace", "{report}");
    assert_secs(frees_in, 1.0, "pick frees_in_s");

    env.set_time(999);
    assert_eq!(blocked(&env.exhausted(&[]), "p/m").0, "pace");
    env.set_time(1_000);
    assert_eq!(env.pick(&[]), "p/m");
    assert_eq!(env.state_of("p/m")["blocked_by"], "pace");
}

#[test]
fn picks_every_half_second_succeed_every_other_time() {
    let env = Env::with_endpoints("provider,model,rpm,pace\np,m,60,smooth\n");
    let mut admitted = Vec::new();
    for i in 0..20 {
        env.set_time(i * 500);
        let out = env.run(["pick"]);
        match out.status {
            Some(0) => admitted.push(i),
            Some(75) => assert_eq!(out.stdout, "", "{out}"),
            _ => panic!("pick at +{} ms:\n{out}", i * 500),
        }
    }
    let expected: Vec<i64> = (0..20).step_by(2).collect();
    assert_eq!(
        admitted, expected,
        "the calls (by index) that were admitted"
    );
    assert_eq!(env.used("p/m", "rpm"), 10);
}

#[test]
fn a_burst_of_waiting_picks_comes_out_one_a_second() {
    const BURST: usize = 20;
    let env = Env::with_endpoints("provider,model,rpm,pace\np,m,60,smooth\n");
    env.state();
    let outs = env.run_at_once(BURST, &["pick", "--wait", "--format", "json"]);
    for out in &outs {
        out.code(0);
        assert_eq!(json(&out.stdout)["id"], "p/m", "{out}");
    }
    // One reservation at each whole second from +0 to +19 s.
    let expected: Vec<i64> = (0..BURST as i64).map(|j| j * 1_000).collect();
    assert_eq!(env.stamps(), expected);
}

#[test]
fn the_spacing_is_the_largest_over_the_request_limits() {
    let env = Env::with_endpoints(
        "provider,model,rpm,rph,tpm,pace\n\
         p,hourly,,1800,,smooth\n\
         p,both,60,1800,,smooth\n\
         p,tokens,60,,100,smooth\n\
         p,bursty,60,1800,,\n",
    );
    for id in ["p/hourly", "p/both", "p/tokens", "p/bursty"] {
        assert_eq!(env.pick(&["--only", id]), id);
    }
    // rph 1800: 3,600 s / 1,800 = 2 s, also when rpm 60 alone would say 1 s. Tokens do not
    // pace, and without `pace` picks burst.
    env.set_time(999);
    assert_eq!(env.pick(&["--only", "p/bursty"]), "p/bursty");
    for (id, frees) in [("p/hourly", 1.001), ("p/both", 1.001), ("p/tokens", 0.001)] {
        let report = env.exhausted(&["--only", id]);
        let (limit, frees_in) = blocked(&report, id);
        assert_eq!(limit, "pace", "{report}");
        assert_secs(frees_in, frees, id);
    }
    env.set_time(1_000);
    assert_eq!(env.pick(&["--only", "p/tokens"]), "p/tokens");
    for id in ["p/hourly", "p/both"] {
        assert_eq!(env.state_of(id)["blocked_by"], "pace");
    }
    env.set_time(1_999);
    for id in ["p/hourly", "p/both"] {
        assert_eq!(blocked(&env.exhausted(&["--only", id]), id).0, "pace");
    }
    env.set_time(2_000);
    for id in ["p/hourly", "p/both"] {
        assert_eq!(env.pick(&["--only", id]), id);
        assert_eq!(env.state_of(id)["blocked_by"], Value::from("pace"));
    }
}
