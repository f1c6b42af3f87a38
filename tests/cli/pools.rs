//! Shared pools and token estimates (SPEC 12): a pool's limits hold for the sum of its
//! rows, under concurrency too, while each row keeps its own; the file's pool columns are
//! checked; estimates come from a file's or stdin's size.

use crate::contention::{Job, busiest_window, queue_then_release, tally};
use crate::{Env, blocked};

/// Three keys of one organisation: 4 requests a minute between them, 3 each.
const ORG: &str = "provider,model,id,rpm,pool,pool_rpm,pool_tpd\n\
                   openai,gpt,key1,3,org,4,90k\n\
                   openai,gpt,key2,3,org,,90_000\n\
                   openai,gpt,key3,3,org,,\n\
                   groq,llama,solo,3,,,\n";

#[test]
fn a_pools_limit_holds_for_the_sum_of_its_rows() {
    let env = Env::with_endpoints(ORG);
    let mut chosen = Vec::new();
    for _ in 0..4 {
        chosen.push(env.pick(&["--only", "key*"]));
    }
    assert_eq!(chosen, ["key1", "key1", "key1", "key2"]);
    let report = env.exhausted(&["--only", "key*"]);
    for id in ["key2", "key3"] {
        assert_eq!(blocked(&report, id), ("pool rpm".to_string(), 60.0));
    }
    // Its own rpm and the pool's are both full and free together.
    assert_eq!(blocked(&report, "key1").1, 60.0);
    // A row outside the pool is not held back by it.
    assert_eq!(env.pick(&[]), "solo");

    let row = env.state_of("key3");
    assert_eq!(row["pool"]["name"], "org", "{row}");
    assert_eq!(row["pool"]["used"]["rpm"], 4, "{row}");
    assert_eq!(row["pool"]["limits"]["rpm"], 4, "{row}");
    assert_eq!(row["pool"]["limits"]["tpd"], 90_000, "{row}");
    assert_eq!(row["pool"]["remaining"]["rpm"], 0, "{row}");
    assert_eq!(
        row["pool"]["limits"]["rph"],
        serde_json::Value::Null,
        "{row}"
    );
    assert_eq!(row["used"]["rpm"], 0, "its own usage is its own: {row}");
    assert_eq!(env.state_of("solo")["pool"], serde_json::Value::Null);
    let table = env.ok(["state"]);
    assert!(table.contains("org 4/4 rpm"), "{table}");
}

#[test]
fn the_pool_frees_as_its_rows_usage_leaves_and_wait_knows_it() {
    let env = Env::with_endpoints(ORG);
    env.pick(&["--only", "key1"]);
    env.set_time(20_000);
    for _ in 0..3 {
        env.pick(&["--only", "key*"]);
    }
    env.set_time(30_000);
    let report = env.exhausted(&["--only", "key3"]);
    assert_eq!(blocked(&report, "key3"), ("pool rpm".to_string(), 30.0));
    assert_eq!(env.pick(&["--only", "key3", "--wait", "1m"]), "key3");
    assert_eq!(env.stamps(), [0, 20_000, 20_000, 20_000, 60_000]);
}

#[test]
fn a_pool_limit_holds_for_processes_that_queue_with_clocks_behind() {
    let env = Env::with_endpoints(ORG);
    env.set_time(30_000);
    env.pick(&["--only", "key2"]);
    let jobs: Vec<Job> = (0..12)
        .map(|i| (i * 1_000, vec!["pick", "--only", "key*"]))
        .collect();
    let (admitted, refused) = tally(&queue_then_release(&env, &jobs));
    assert_eq!((admitted, refused), (3, 9));
    assert_eq!(busiest_window(&env.stamps(), 60_000), 4);
}

#[test]
fn pool_columns_are_checked() {
    let env = Env::with_endpoints(
        "provider,model,id,pool,pool_rpd,day_reset\n\
         p,m,a,free,50,\n\
         # a comment line\n\
         p,m,b,free,1000,\n\
         p,m,c,,20,\n\
         p,m,d,free,,00:00 UTC\n",
    );
    env.fails(["pick"], 1).says(&[
        r#"endpoints.csv:4: column pool_rpd: "1000" differs from "50" on line 2 for pool "free""#,
        r#"endpoints.csv:5: column pool_rpd: "20" is a pool limit on a row without a pool"#,
        "endpoints.csv:6: column day_reset: differs from line 2",
    ]);
}

#[test]
fn a_request_larger_than_the_pool_can_never_fit() {
    let env = Env::with_endpoints("provider,model,pool,pool_tpm\np,m,small,100\n");
    env.fails(["pick", "--tokens", "101"], 1)
        .says(&["never fits (pool tpm is 100)"]);
}

#[test]
fn estimates_come_from_a_files_size_or_stdin_and_the_allowed_output() {
    let env = Env::with_endpoints("provider,model\np,m\n");
    let prompt = env.write("prompt.txt", "x".repeat(3_001));
    let chosen = env.pick_json(&["--tokens-from", prompt.to_str().expect("utf-8")]);
    assert_eq!(chosen["tokens"], 1_001);
    let chosen = env.pick_json(&["--tokens-from", "prompt.txt", "--max-output", "2k"]);
    assert_eq!(chosen["tokens"], 3_001);
    let out = env.run_stdin(["pick", "--format", "json", "--tokens-from", "-"], "abcdef");
    out.code(0);
    assert_eq!(crate::json(&out.stdout)["tokens"], 2);
    assert_eq!(env.used("p/m", "tpm"), 1_001 + 3_001 + 2);

    env.fails(["pick", "--tokens", "5", "--tokens-from", "prompt.txt"], 2);
    env.fails(["pick", "--max-output", "lots"], 2);
    env.fails(["pick", "--tokens-from", "missing.txt"], 1)
        .says(&["missing.txt"]);

    // Over 256 MiB is an error: a (sparse) file by its size, a device that never ends by
    // reading one byte past it.
    let big = std::fs::File::create(env.path("big.txt")).expect("create");
    big.set_len((256 << 20) + 1).expect("size");
    env.fails(["pick", "--tokens-from", "big.txt"], 1)
        .says(&["big.txt is larger than 256 MiB"]);
    env.fails(["pick", "--tokens-from", "/dev/zero"], 1)
        .says(&["/dev/zero is larger than 256 MiB"]);
    assert_eq!(env.used("p/m", "rpm"), 3, "nothing reserved");
}

#[test]
fn exec_estimates_from_stdin_and_still_gives_it_to_the_command() {
    let env = Env::with_endpoints("provider,model\np,m\n");
    let out = env.run_stdin(
        [
            "exec",
            "--tokens-from",
            "-",
            "--max-output",
            "10",
            "--",
            "sh",
            "-c",
            r#"cat; echo " $LLM_ROTATE_TOKENS""#,
        ],
        "123456789",
    );
    out.code(0);
    assert_eq!(out.stdout, "123456789 13\n");
}
