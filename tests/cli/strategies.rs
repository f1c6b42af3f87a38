//! `pick --strategy` (SPEC 7): priority first, then `weighted` at random by weight, `spread`
//! by headroom, `round-robin` in turns that separate processes share.

use crate::Env;

/// Picks `n` times, one process each, in one shell loop; returns the ids in order.
fn picks(env: &Env, n: usize, args: &str) -> Vec<String> {
    let script = format!(
        r#"i=0; while [ $i -lt {n} ]; do "$LLM_ROTATE" --endpoints "$EP" pick {args} || exit; i=$((i+1)); done"#
    );
    env.sh(&script).lines().map(String::from).collect()
}

fn count(ids: &[String], id: &str) -> usize {
    ids.iter().filter(|i| *i == id).count()
}

#[test]
fn weighted_picks_in_proportion_to_weight_within_the_highest_priority() {
    let env = Env::with_endpoints(
        "provider,model,weight,priority\n\
         p,one,1,\n\
         p,three,3,\n\
         p,backup,100,low\n",
    );
    const N: usize = 400;
    let ids = picks(&env, N, "--strategy weighted");
    assert_eq!(ids.len(), N);
    let (one, three) = (count(&ids, "p/one"), count(&ids, "p/three"));
    assert_eq!(one + three, N, "only the highest priority is used: {ids:?}");
    // Expected 100 of 400 (sd 8.7): 15%..35% is more than 4 sd either way.
    assert!(
        (60..=140).contains(&one),
        "weight 1 of 4 took {one} of {N} picks"
    );
}

#[test]
fn weighted_only_chooses_among_endpoints_that_fit() {
    let env = Env::with_endpoints(
        "provider,model,weight,rpm\n\
         p,small,1,\n\
         p,heavy,1000,3\n",
    );
    let ids = picks(&env, 40, "--strategy weighted");
    assert_eq!(count(&ids, "p/heavy"), 3, "{ids:?}");
    assert_eq!(count(&ids, "p/small"), 37, "{ids:?}");
}

#[test]
fn spread_takes_the_endpoint_with_the_most_headroom_after_the_request() {
    let env = Env::with_endpoints(
        "provider,model,rpm,tpm\n\
         p,a,4,\n\
         p,b,10,\n",
    );
    // After the request, a keeps 3/4, 2/4 ...; b keeps 9/10, 8/10, ...; ties go to file order.
    let ids = picks(&env, 6, "--strategy spread");
    assert_eq!(ids, ["p/b", "p/b", "p/a", "p/b", "p/b", "p/a"]);

    // The tightest limit is the one that counts, tokens included.
    let env = Env::with_endpoints(
        "provider,model,rpm,tpm\n\
         p,a,10,\n\
         p,b,100,1000\n\
         p,c,1000,\n",
    );
    env.ok(["record", "p/a", "--requests", "8"]);
    env.ok(["record", "p/c", "--requests", "900"]);
    // After a request of 400 tokens: a 1/10, b min(99/100, 600/1000), c 99/1000.
    assert_eq!(
        env.pick(&["--strategy", "spread", "--tokens", "400"]),
        "p/b"
    );
    // b now min(98/100, 200/1000) = 0.2 after the next one; a is at 0.1.
    assert_eq!(
        env.pick(&["--strategy", "spread", "--tokens", "400"]),
        "p/b"
    );
    // b would keep 0 of its tokens now: a (0.1) beats it and c (0.099).
    assert_eq!(
        env.pick(&["--strategy", "spread", "--tokens", "200"]),
        "p/a"
    );
}

#[test]
fn round_robin_takes_turns_across_processes_and_skips_a_full_endpoint() {
    let env = Env::with_endpoints(
        "provider,model,rpm\n\
         p,a,\n\
         p,b,\n\
         p,c,2\n",
    );
    let ids = picks(&env, 10, "--strategy round-robin");
    assert_eq!(
        ids,
        [
            "p/a", "p/b", "p/c", "p/a", "p/b", "p/c", "p/a", "p/b", "p/a", "p/b"
        ]
    );
}

#[test]
fn a_higher_priority_endpoint_is_preferred_by_every_strategy() {
    for strategy in ["order", "weighted", "spread", "round-robin"] {
        let env = Env::with_endpoints(
            "provider,model,priority,rpm,weight\n\
             p,low1,low,,1000\n\
             p,low2,low,,1000\n\
             p,top,high,3,1\n\
             p,mid,,1,1\n",
        );
        let ids = picks(&env, 6, &format!("--strategy {strategy}"));
        assert_eq!(
            ids[..4],
            ["p/top", "p/top", "p/top", "p/mid"],
            "--strategy {strategy}: {ids:?}"
        );
        assert!(
            ids[4..].iter().all(|id| id.starts_with("p/low")),
            "--strategy {strategy}: {ids:?}"
        );
    }
}

#[test]
fn cheapest_takes_the_lowest_cost_of_this_request_among_those_that_fit() {
    // Per million tokens: a is cheap to read and dear to write, b the other way round, c
    // costs as much as a for input-only requests but is later in the file.
    let env = Env::with_endpoints(
        "provider,model,rpm,price_in,price_out,price_call,priority\n\
         p,a,2,0.10,8,,\n\
         p,b,2,1.5,0.6,0.0001,\n\
         p,c,2,0.10,9,,\n\
         p,free,9,,,,low\n",
    );
    // Mostly prompt: a; mostly output: b.
    assert_eq!(
        env.pick(&["--strategy", "cheapest", "--tokens", "100k"]),
        "p/a"
    );
    assert_eq!(
        env.pick(&[
            "--strategy",
            "cheapest",
            "--tokens",
            "10",
            "--max-output",
            "4k"
        ]),
        "p/b"
    );
    // Ties go to file order: a before c. Once a is full, c is the cheapest that fits.
    assert_eq!(
        env.pick(&["--strategy", "cheapest", "--tokens", "1k"]),
        "p/a"
    );
    assert_eq!(
        env.pick(&["--strategy", "cheapest", "--tokens", "1k"]),
        "p/c"
    );
    // Priority comes first: the free row is only for when the high ones are full.
    assert_eq!(
        env.pick(&["--strategy", "cheapest", "--max-output", "4k"]),
        "p/b"
    );
    assert_eq!(env.pick(&["--strategy", "cheapest"]), "p/c");
    assert_eq!(env.pick(&["--strategy", "cheapest"]), "p/free");
}

#[test]
fn pick_json_gives_the_estimate_by_kind() {
    let env = Env::with_endpoints("provider,model\np,m\n");
    let chosen = env.pick_json(&["--tokens", "1200", "--max-output", "300"]);
    assert_eq!(chosen["tokens"], 1500);
    assert_eq!(chosen["input_tokens"], 1200);
    assert_eq!(chosen["output_tokens"], 300);
}

#[test]
fn a_price_is_a_decimal_of_at_most_six_places() {
    let env = Env::with_endpoints(
        "provider,model,price_in,price_out,price_cached,price_call\n\
         p,a,0.15,0.6,0.075,0.000001\n\
         p,b,1e3,-1,0.1234567,$1\n",
    );
    let out = env.fails(["pick"], 1);
    out.says(&[
        "column price_in: \"1e3\" is not an amount of dollars (like 0.15, 2.5 or 3)",
        "column price_out: \"-1\" is not an amount of dollars",
        "column price_cached: \"0.1234567\" has more than 6 decimal places",
        "column price_call: \"$1\" is not an amount of dollars",
    ]);
    assert!(out.stderr.contains(":3: column price_in"), "{out}");
}

#[test]
fn tokens_from_a_request_body_takes_its_max_tokens_as_the_output_estimate() {
    let env = Env::with_endpoints("provider,model\np,m\n");
    let body = r#"{"model":"m","max_tokens":300,"messages":[{"role":"user","content":"hi"}]}"#;
    env.write("body.json", body);
    let input = (body.len() as u64).div_ceil(3);
    let chosen = env.pick_json(&["--tokens-from", "body.json"]);
    assert_eq!(chosen["input_tokens"], input);
    assert_eq!(chosen["output_tokens"], 300);
    // --max-output wins; stdin reads the same way; a prompt that is not JSON asks nothing.
    let chosen = env.pick_json(&["--tokens-from", "body.json", "--max-output", "10"]);
    assert_eq!(chosen["output_tokens"], 10);
    let out = env.run_stdin(["pick", "--json", "--tokens-from", "-"], body);
    out.code(0);
    assert_eq!(crate::json(&out.stdout)["output_tokens"], 300);
    env.write("prompt.txt", "max_tokens: 300\n");
    assert_eq!(
        env.pick_json(&["--tokens-from", "prompt.txt"])["output_tokens"],
        0
    );
}
