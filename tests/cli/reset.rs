//! `reset` (SPEC 4): forgets the usage of the named endpoints, and nothing else.

use crate::Env;

const ENDPOINTS: &str = "provider,model,rpm\n\
                         groq,a,1\n\
                         groq,b,1\n\
                         openai,c,1\n";

/// Every endpoint has used its one request.
fn all_used() -> Env {
    let env = Env::with_endpoints(ENDPOINTS);
    for id in ["groq/a", "groq/b", "openai/c"] {
        assert_eq!(env.pick(&["--only", id]), id);
    }
    env.fails(["pick"], 75);
    env
}

#[track_caller]
fn used(env: &Env) -> Vec<u64> {
    env.state()
        .iter()
        .map(|r| r["used"]["rpm"].as_u64().expect("a count"))
        .collect()
}

#[test]
fn reset_by_id_by_glob_and_all() {
    let env = all_used();
    assert_eq!(used(&env), [1, 1, 1]);

    env.run(["reset", "groq/a"])
        .code(0)
        .no_stdout()
        .says(&["groq/a"]);
    assert_eq!(used(&env), [0, 1, 1]);
    assert_eq!(env.pick(&[]), "groq/a");

    env.run(["reset", "groq/*"])
        .code(0)
        .no_stdout()
        .says(&["groq/a", "groq/b"]);
    assert_eq!(used(&env), [0, 0, 1]);

    env.run(["reset", "--all"])
        .code(0)
        .no_stdout()
        .says(&["openai/c"]);
    assert_eq!(used(&env), [0, 0, 0]);
    for row in env.state() {
        assert_eq!(row["open_reservations"], 0, "{row}");
        assert_eq!(row["used"]["tpd"], 0, "{row}");
        assert_eq!(row["available"], true, "{row}");
    }
    assert_eq!(env.pick(&[]), "groq/a");
}

#[test]
fn reset_forgets_every_window_not_just_the_minute() {
    let env = Env::with_endpoints("provider,model,rpd\np,m,1\n");
    env.pick(&[]);
    env.set_time(3_600_000);
    env.fails(["pick"], 75);
    env.ok(["reset", "p/m"]);
    assert_eq!(env.used("p/m", "rpd"), 0);
    assert_eq!(env.pick(&[]), "p/m");
}

#[test]
fn reset_with_nothing_named_is_a_usage_error() {
    let env = all_used();
    env.fails(["reset"], 2).no_stdout();
    env.fails(["reset", "--all", "groq/a"], 2).no_stdout();
    assert_eq!(used(&env), [1, 1, 1]);
}

#[test]
fn a_name_that_matches_nothing_is_an_error_and_clears_nothing() {
    let env = all_used();
    env.fails(["reset", "nomatch/*"], 1)
        .no_stdout()
        .says(&["llm-rotate: ", "nomatch/*"]);
    assert_eq!(used(&env), [1, 1, 1]);
    // Even alongside names that do match.
    env.fails(["reset", "groq/a", "nope"], 1).says(&["nope"]);
    assert_eq!(used(&env), [1, 1, 1]);
}
