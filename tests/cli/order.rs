//! Which endpoint `pick` chooses (SPEC 4, pick): priority, then row order; filters; what it
//! says when everything is full, and when nothing could ever fit.

use serde_json::json;

use crate::{Env, assert_json, json};

#[test]
fn high_before_medium_before_low_then_row_order() {
    let env = Env::with_endpoints(
        "provider,model,priority,rpm\n\
         a,low1,low,1\n\
         b,med1,,1\n\
         c,high1,high,1\n\
         d,med2,medium,1\n\
         e,high2,high,1\n\
         f,low2,low,1\n",
    );
    let picked: Vec<String> = (0..6).map(|_| env.pick(&[])).collect();
    assert_eq!(
        picked,
        ["c/high1", "e/high2", "b/med1", "d/med2", "a/low1", "f/low2"]
    );
    env.fails(["pick"], 75).no_stdout();
}

#[test]
fn numeric_priorities_rank_with_the_named_ones() {
    // high = 3, medium = 2, low = 1; equal numbers keep row order.
    let env = Env::with_endpoints(
        "provider,model,priority,rpm\n\
         n,three,3,1\n\
         h,high,high,1\n\
         n,ten,10,1\n\
         n,five,5,1\n\
         l,low,low,1\n\
         n,one,1,1\n\
         m,medium,medium,1\n",
    );
    let picked: Vec<String> = (0..7).map(|_| env.pick(&[])).collect();
    assert_eq!(
        picked,
        [
            "n/ten", "n/five", "n/three", "h/high", "m/medium", "l/low", "n/one"
        ]
    );
}

#[test]
fn a_request_too_big_for_the_first_endpoint_goes_to_the_next() {
    let env = Env::with_endpoints(
        "provider,model,tpm\n\
         small,s,100\n\
         big,b,1000\n",
    );
    // Larger than small's whole limit.
    assert_eq!(env.pick(&["--tokens", "500"]), "big/b");
    // Fits small's limit, but not what is left of it.
    assert_eq!(env.pick(&["--tokens", "60"]), "small/s");
    assert_eq!(env.pick(&["--tokens", "50"]), "big/b");
    assert_eq!(env.pick(&["--tokens", "40"]), "small/s");
    assert_eq!(env.used("small/s", "tpm"), 100);
    assert_eq!(env.used("big/b", "tpm"), 550);
}

#[test]
fn when_all_are_full_json_reports_each_blocking_limit_and_the_earliest_retry() {
    let env = Env::with_endpoints(
        "provider,model,rpm,tpm\n\
         x,a,1,\n\
         x,b,,100\n",
    );
    assert_eq!(env.pick(&[]), "x/a");
    env.set_time(10_000);
    assert_eq!(env.pick(&["--tokens", "100"]), "x/b");

    env.set_time(20_000);
    let out = env.fails(["pick", "--tokens", "50", "--format", "json"], 75);
    out.says(&["x/a", "x/b", "rpm", "tpm", "retry in 40s"]);
    assert_eq!(
        out.stdout.trim_end().lines().count(),
        1,
        "one JSON object on one line:\n{out}"
    );
    let mut report = json(&out.stdout);
    if let Some(blocked) = report["blocked"].as_array_mut() {
        blocked.sort_by_key(|b| b["id"].to_string());
    }
    assert_json(
        &report,
        &json!({
            "error": "exhausted",
            "retry_after_s": 40.0,
            "blocked": [
                {"id": "x/a", "limit": "rpm", "frees_in_s": 40.0},
                {"id": "x/b", "limit": "tpm", "frees_in_s": 50.0},
            ],
        }),
    );

    // Text mode: nothing on stdout at all.
    env.fails(["pick", "--tokens", "50"], 75)
        .no_stdout()
        .says(&["retry in 40s"]);
    // And the refusals reserved nothing.
    assert_eq!(env.used("x/a", "rpm"), 1);
    assert_eq!(env.used("x/b", "rpm"), 1);
}

#[test]
fn a_request_that_no_endpoint_could_ever_take_exits_1_not_75() {
    let env = Env::with_endpoints(
        "provider,model,tpm\n\
         a,one,100\n\
         b,two,50\n",
    );
    env.fails(["pick", "--tokens", "101"], 1)
        .no_stdout()
        .says(&["llm-rotate: ", "tpm"]);
    env.fails(["pick", "--tokens", "101", "--format", "json"], 1);
    // ...while one that fits a full endpoint later is a 75.
    assert_eq!(env.pick(&["--tokens", "100"]), "a/one");
    env.fails(["pick", "--tokens", "60"], 75).no_stdout();

    let disabled = Env::with_endpoints(
        "provider,model,rpm,tpd\n\
         a,one,0,\n\
         b,two,5,0\n",
    );
    disabled
        .fails(["pick"], 1)
        .no_stdout()
        .says(&["llm-rotate: "]);
    assert_eq!(disabled.used("a/one", "rpm"), 0);
    assert_eq!(disabled.used("b/two", "rpm"), 0);

    let filtered = Env::with_endpoints("provider,model\ngroq,llama\n");
    filtered
        .fails(["pick", "--only", "openai/*"], 1)
        .no_stdout()
        .says(&["llm-rotate: "]);
    filtered
        .fails(["pick", "--exclude", "*"], 1)
        .no_stdout()
        .says(&["llm-rotate: "]);
}

#[test]
fn only_and_exclude_are_globs_on_the_id() {
    let env = Env::with_endpoints(
        "provider,model\n\
         groq,llama-3.1-8b\n\
         groq,mixtral-8x7b\n\
         openai,gpt-4o-mini\n\
         together,meta/llama-3.3-70b\n",
    );
    let cases: &[(&[&str], &str)] = &[
        (&[], "groq/llama-3.1-8b"),
        (&["--only", "groq/*"], "groq/llama-3.1-8b"),
        (&["--exclude", "groq/*"], "openai/gpt-4o-mini"),
        (
            &["--only", "*llama*", "--exclude", "groq/*"],
            "together/meta/llama-3.3-70b",
        ),
        (
            &["--only", "groq/*", "--exclude", "*llama*"],
            "groq/mixtral-8x7b",
        ),
        (
            &["--only", "together/*", "--only", "openai/*"],
            "openai/gpt-4o-mini",
        ),
        (&["--only", "groq/?ixtral-8x7b"], "groq/mixtral-8x7b"),
        (&["--only", "*/llama-*"], "groq/llama-3.1-8b"),
        (
            &["--exclude", "groq/*", "--exclude", "openai/*"],
            "together/meta/llama-3.3-70b",
        ),
        (&["--only", "*70b"], "together/meta/llama-3.3-70b"),
    ];
    for (filters, expected) in cases {
        let mut args = vec!["--dry-run"];
        args.extend_from_slice(filters);
        assert_eq!(&env.pick(&args), expected, "pick {args:?}");
    }
    // `?` takes exactly one character, and a pattern must match the whole id.
    env.fails(["pick", "--only", "groq/?mixtral-8x7b"], 1);
    env.fails(["pick", "--only", "groq"], 1);
}

#[test]
fn dry_run_prints_the_choice_and_reserves_nothing() {
    let env = Env::with_endpoints(
        "provider,model,rpm,tpm\n\
         p,first,1,100\n\
         p,second,1,100\n",
    );
    for _ in 0..3 {
        assert_eq!(env.pick(&["--dry-run", "--tokens", "100"]), "p/first");
    }
    for row in env.state() {
        assert_eq!(row["used"]["rpm"], 0, "{row}");
        assert_eq!(row["used"]["tpm"], 0, "{row}");
        assert_eq!(row["open_reservations"], 0, "{row}");
    }
    // The quota is still all there.
    assert_eq!(env.pick(&["--tokens", "100"]), "p/first");
    assert_eq!(env.pick(&["--dry-run"]), "p/second");
    assert_eq!(env.pick(&[]), "p/second");
    env.fails(["pick", "--dry-run"], 75).no_stdout();
}

#[test]
fn a_disabled_endpoint_is_skipped_whatever_its_priority() {
    let env = Env::with_endpoints(
        "provider,model,priority,rpm,tpd\n\
         off,one,high,0,\n\
         off,two,high,,0\n\
         on,three,low,,\n",
    );
    assert_eq!(env.pick(&[]), "on/three");
    assert_eq!(env.pick(&["--tokens", "0"]), "on/three");
    env.fails(["pick", "--only", "off/*"], 1).no_stdout();
}

#[test]
fn an_exhausted_shell_pick_exports_nothing() {
    let env = Env::with_endpoints("provider,model,rpm,base_url\np,m,1,http://x\n");
    assert!(
        env.ok(["pick", "--format", "shell"])
            .contains("export LLM_ROTATE_ID='p/m'")
    );
    let out = env.fails(["pick", "--format", "shell"], 75);
    assert!(!out.stdout.contains("export"), "{out}");
    out.says(&["rpm", "retry in"]);
}
