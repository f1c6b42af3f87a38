//! The `concurrency` column (SPEC 7): at most that many open reservations (picked, not yet
//! settled, for at most 15 minutes) at once, whatever the number of processes.

use serde_json::Value;

use crate::{Env, assert_secs, blocked, json, num};

#[test]
fn ten_processes_at_once_get_exactly_the_caps() {
    let env = Env::with_endpoints("provider,model,concurrency\np,a,2\np,b,3\n");
    env.state();
    let outs = env.run_at_once(10, &["pick", "--format", "json"]);
    let (mut a, mut b, mut refused) = (Vec::new(), 0, 0);
    for out in &outs {
        match out.status {
            Some(0) => {
                let chosen = json(&out.stdout);
                match chosen["id"].as_str() {
                    Some("p/a") => a.push(chosen["lease"].as_str().expect("lease").to_string()),
                    Some("p/b") => b += 1,
                    _ => panic!("{out}"),
                }
            }
            Some(75) => {
                let report = json(&out.stdout);
                assert_eq!(blocked(&report, "p/a").0, "concurrency", "{report}");
                assert_eq!(blocked(&report, "p/b").0, "concurrency", "{report}");
                refused += 1;
            }
            _ => panic!("{out}"),
        }
    }
    assert_eq!((a.len(), b, refused), (2, 3, 5), "(p/a, p/b, exit 75)");

    let row = env.state_of("p/a");
    assert_eq!(row["open_reservations"], 2, "{row}");
    assert_eq!(row["available"], false, "{row}");
    assert_eq!(row["blocked_by"], "concurrency", "{row}");
    // Nothing settles them: they stop counting as in flight after 15 minutes.
    assert_secs(num(&row["frees_in_s"]), 900.0, "frees_in_s");
    assert_eq!(env.state_of("p/b")["open_reservations"], 3);

    // Settling one frees one slot.
    env.set_time(1_000);
    env.ok(["record", "--lease", &a[0]]);
    let row = env.state_of("p/a");
    assert_eq!(row["open_reservations"], 1, "{row}");
    assert_eq!(row["blocked_by"], Value::Null, "{row}");
    assert_eq!(env.pick(&[]), "p/a");
    let report = env.exhausted(&[]);
    let (limit, frees_in) = blocked(&report, "p/a");
    assert_eq!(limit, "concurrency", "{report}");
    assert_secs(frees_in, 899.0, "the oldest open one expires at +900 s");

    // Expired reservations are no longer in flight.
    env.set_time(899_999);
    env.exhausted(&["--only", "p/a"]);
    env.set_time(900_000);
    assert_eq!(env.pick(&["--only", "p/a"]), "p/a");
    env.exhausted(&["--only", "p/a"]);
}
