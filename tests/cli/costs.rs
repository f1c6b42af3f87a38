//! What a call costs (SPEC 14): tokens by kind, cached reads free or counted, money
//! budgets spent to the last pico-dollar, calendar months in every zone, and speed.

use crate::{Env, assert_secs, blocked, num, picking_on_the_real_clock};

#[test]
fn input_and_output_limits_count_their_kinds_and_free_cache_reads_count_for_money_alone() {
    let env = Env::with_endpoints(
        "provider,model,itpm,otpm,tpm,cache_reads,price_in,price_cached\n\
         p,free,1000,100,2000,free,1,0.5\n\
         p,counted,1000,100,2000,counted,1,0.5\n",
    );
    for id in ["p/free", "p/counted"] {
        env.ok([
            "record",
            id,
            "--add",
            "--input-tokens",
            "300",
            "--cached-tokens",
            "600",
            "--output-tokens",
            "40",
        ]);
    }
    let free = env.state_of("p/free");
    assert_eq!(free["used"]["itpm"], 300, "{free}");
    assert_eq!(free["used"]["otpm"], 40, "{free}");
    assert_eq!(free["used"]["tpm"], 340, "{free}");
    let counted = env.state_of("p/counted");
    assert_eq!(counted["used"]["itpm"], 900, "{counted}");
    assert_eq!(counted["used"]["tpm"], 940, "{counted}");
    // 300 at $1 and 600 at $0.50 per million: $0.0006 either way.
    for row in [&free, &counted] {
        assert_eq!(num(&row["spend_usd"]["day"]), 0.0006, "{row}");
    }
    // 60 output tokens fill otpm 100 beside the 40 used; one more does not fit.
    env.pick(&["--only", "p/free", "--tokens", "1", "--max-output", "60"]);
    let report = env.exhausted(&["--only", "p/free", "--tokens", "1", "--max-output", "1"]);
    assert_eq!(blocked(&report, "p/free").0, "otpm", "{report}");
    // Input: 300 + 1 used of 1000 free; counted, 900 + 101 is over.
    let report = env.exhausted(&["--only", "p/counted", "--tokens", "101"]);
    assert_eq!(blocked(&report, "p/counted").0, "itpm", "{report}");
    env.pick(&["--only", "p/counted", "--tokens", "100"]);
}

#[test]
fn a_daily_budget_admits_calls_costing_exactly_it_and_not_one_more() {
    // 0.1 + 0.1 + 0.1 is not 0.3 in floats; in pico-dollars it is.
    let env = Env::with_endpoints(
        "provider,model,price_call,usd_pd,priority\n\
         p,paid,0.1,0.3,high\n\
         p,spare,,,low\n",
    );
    for _ in 0..3 {
        assert_eq!(env.pick(&["--tokens", "10"]), "p/paid");
    }
    assert_eq!(env.pick(&["--tokens", "10"]), "p/spare");
    let report = env.exhausted(&["--only", "p/paid"]);
    let (limit, frees_in) = blocked(&report, "p/paid");
    assert_eq!(limit, "usd_pd", "{report}");
    // A rolling day frees when the minute of its calls has left it, at most a minute late.
    assert_secs(frees_in, 86_459.999, "the day");
    let row = env.state_of("p/paid");
    assert_eq!(num(&row["spend_usd"]["day"]), 0.3, "{row}");
    assert_eq!(num(&row["limits"]["usd_pd"]), 0.3, "{row}");
    assert_eq!(num(&row["remaining"]["usd_pd"]), 0.0, "{row}");
    // A budget with more than six decimals is a cell error with its place.
    let bad = Env::with_endpoints("provider,model,usd_pd\np,m,0.1234567\n");
    bad.fails(["pick"], 1)
        .says(&["endpoints.csv:2", "usd_pd", "more than 6 decimal places"]);
}

#[test]
fn concurrent_processes_spend_a_budget_to_the_last_unit_on_the_real_clock() {
    const SHELLS: usize = 8;
    const PICKS_EACH: usize = 10;
    // $0.013 a call against $0.52: exactly 40 calls, of the 80 tried.
    let env = Env::with_endpoints("provider,model,price_call,usd_pd\np,m,0.013,0.52\n");
    env.state();
    let mut admitted = 0;
    for out in picking_on_the_real_clock(&env, SHELLS, PICKS_EACH, "") {
        for line in out.stdout.lines() {
            assert!(line == "rc=0" || line == "rc=75", "{out}");
            admitted += usize::from(line == "rc=0");
        }
    }
    assert_eq!(admitted, 40, "$0.52 at $0.013 a call");
    assert_eq!(env.stamps().len(), 40);
}

/// Fills `rpmo 2` at `at`, then says when the month frees.
#[track_caller]
fn month_frees_in(env: &Env, id: &str, at: &str) -> f64 {
    env.set_utc(at);
    for _ in 0..2 {
        assert_eq!(env.pick(&["--only", id]), id, "at {at}");
    }
    let report = env.exhausted(&["--only", id]);
    let (limit, frees_in) = blocked(&report, id);
    assert_eq!(limit, "rpmo", "{report}");
    frees_in
}

#[test]
fn a_month_begins_on_the_first_at_the_rows_reset_in_half_and_quarter_hour_zones() {
    let env = Env::with_endpoints(
        "provider,model,rpmo,day_reset\n\
         p,kolkata,2,00:00 Asia/Kolkata\n\
         p,kathmandu,2,00:00 Asia/Kathmandu\n\
         p,utc,2,rolling\n",
    );
    // 23:59 on 31 January in Kolkata (+05:30) is 18:29 UTC: a minute of January left.
    assert_secs(
        month_frees_in(&env, "p/kolkata", "2026-01-31T18:29:00Z"),
        60.0,
        "Kolkata",
    );
    // In Kathmandu (+05:45) February began at 18:15 UTC: these count in February.
    assert_secs(
        month_frees_in(&env, "p/kathmandu", "2026-01-31T18:29:00Z"),
        (28.0 * 24.0 * 60.0 - 14.0) * 60.0,
        "Kathmandu",
    );
    // A rolling row's month is UTC's.
    assert_secs(
        month_frees_in(&env, "p/utc", "2026-01-31T18:29:00Z"),
        (5.0 * 60.0 + 31.0) * 60.0,
        "UTC",
    );
    // At Kolkata's midnight the month is new: exactly then, not a millisecond later.
    env.set_utc("2026-01-31T18:29:59.999Z");
    env.exhausted(&["--only", "p/kolkata"]);
    env.set_utc("2026-01-31T18:30:00Z");
    assert_eq!(env.pick(&["--only", "p/kolkata"]), "p/kolkata");
    let row = env.state_of("p/kolkata");
    assert_eq!(row["used"]["rpmo"], 1, "{row}");
    assert_eq!(row["used"]["rpd"], 1, "{row}");
}

#[test]
fn a_month_across_a_daylight_saving_change_ends_at_local_midnight() {
    let env = Env::with_endpoints("provider,model,rpmo,day_reset\np,ny,2,00:00 America/New_York\n");
    // November began at 00:00 EDT (04:00 UTC); clocks went back on the 1st at 02:00; it
    // ends at 00:00 EST on 1 December (05:00 UTC).
    assert_secs(
        month_frees_in(&env, "p/ny", "2026-11-30T23:00:00Z"),
        6.0 * 3600.0,
        "New York",
    );
    // Calls at 03:59 UTC on 1 November were October's.
    let env = Env::with_endpoints("provider,model,rpmo,day_reset\np,ny,2,00:00 America/New_York\n");
    assert_secs(
        month_frees_in(&env, "p/ny", "2026-11-01T03:59:00Z"),
        60.0,
        "New York, October",
    );
}

#[test]
fn usage_by_kind_from_json_and_sse_prices_each_kind_and_a_refusal_costs_nothing() {
    let env = Env::with_endpoints(
        "provider,model,price_in,price_out,price_cached\n\
         p,m,2.5,10,1.25\n",
    );
    // OpenAI's final usage chunk of a stream.
    env.write(
        "stream.txt",
        "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n\
         data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3000,\"completion_tokens\":500,\
         \"prompt_tokens_details\":{\"cached_tokens\":2000}}}\n\n\
         data: [DONE]\n\n",
    );
    env.ok(["record", "p/m", "--add", "--usage", "stream.txt"]);
    // Anthropic: message_start's input and cache reads, the last message_delta's output.
    env.write(
        "anthropic.txt",
        "event: message_start\n\
         data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\
         \"cache_read_input_tokens\":20,\"output_tokens\":1}}}\n\n\
         event: message_delta\n\
         data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}\n\n\
         event: message_delta\n\
         data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":30}}\n\n",
    );
    env.ok(["record", "p/m", "--add", "--usage", "anthropic.txt"]);
    // A 429 counts its request and nothing else, whatever the reservation estimated.
    env.pick(&["--tokens", "100000"]);
    env.ok(["record", "p/m", "--rate-limited"]);
    let row = env.state_of("p/m");
    assert_eq!(row["used"]["rpm"], 3, "{row}");
    assert_eq!(row["used"]["itpm"], 1000 + 2000 + 10 + 20, "{row}");
    assert_eq!(row["used"]["otpm"], 500 + 30, "{row}");
    // 1000 x 2.5 + 2000 x 1.25 + 500 x 10, then 10 x 2.5 + 20 x 1.25 + 30 x 10, per million.
    let spent = 0.01 + 0.00035;
    assert_eq!(num(&row["spend_usd"]["day"]), spent, "{row}");
    assert_eq!(num(&row["spend_usd"]["month"]), spent, "{row}");

    let csv = env.ok(["history", "--format", "csv", "--since", "1h"]);
    assert!(csv.contains(",3,3560,1010,530,2020,0.01035\n"), "{csv}");
    let table = env.ok(["history", "--metric", "spend", "--since", "1h"]);
    assert!(table.contains("$0.01035"), "{table}");
    let svg = env.ok(["history", "--metric", "spend", "--format", "svg"]);
    assert!(svg.contains("Spend per hour"), "{svg}");
    let metrics = env.ok(["state", "--format", "prometheus"]);
    for line in [
        "llm_rotate_spend_usd_total{endpoint=\"p/m\",provider=\"p\",model=\"m\"} 0.01035",
        "llm_rotate_kind_tokens_total{endpoint=\"p/m\",provider=\"p\",model=\"m\",kind=\"cached\"} 2020",
        "llm_rotate_kind_tokens_total{endpoint=\"p/m\",provider=\"p\",model=\"m\",kind=\"output\"} 530",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[test]
fn fastest_takes_the_lowest_median_and_measures_the_unmeasured_first() {
    let env = Env::with_endpoints("provider,model\np,slow\np,quick\np,new\n");
    for (id, ms) in [
        ("p/slow", "900ms"),
        ("p/slow", "1.1s"),
        ("p/quick", "200ms"),
        ("p/quick", "400ms"),
        ("p/quick", "5s"),
    ] {
        env.ok(["record", id, "--add", "--latency", ms]);
    }
    // A failed call's latency is not kept.
    env.ok(["record", "p/new", "--add", "--failed", "--latency", "1ms"]);
    assert_eq!(env.pick(&["--strategy", "fastest"]), "p/new");
    env.ok(["record", "p/new", "--latency", "3s"]);
    assert_eq!(env.pick(&["--strategy", "fastest"]), "p/quick");
    let quick = env.state_of("p/quick");
    assert_eq!(
        quick["latency_ms"],
        serde_json::json!({"p50": 400, "p90": 5000, "calls": 3}),
        "{quick}"
    );
    // An hour later nothing is measured: file order again.
    env.set_time(3_600_001);
    assert_eq!(env.pick(&["--strategy", "fastest"]), "p/slow");
    assert_eq!(
        env.state_of("p/slow")["latency_ms"],
        serde_json::Value::Null
    );
}

#[test]
fn a_pool_budget_holds_for_the_sum_of_its_rows() {
    let env = Env::with_endpoints(
        "provider,model,price_call,pool,pool_usd_pd\n\
         p,a,0.25,team,1\n\
         p,b,0.5,team,\n",
    );
    // 0.25 + 0.5 = 0.75; a fits once more (1.00), b no longer does.
    assert_eq!(env.pick(&["--only", "p/a"]), "p/a");
    assert_eq!(env.pick(&["--only", "p/b"]), "p/b");
    let report = env.exhausted(&["--only", "p/b"]);
    assert_eq!(blocked(&report, "p/b").0, "pool usd_pd", "{report}");
    assert_eq!(env.pick(&[]), "p/a");
    let report = env.exhausted(&[]);
    assert_eq!(blocked(&report, "p/a").0, "pool usd_pd", "{report}");
    let row = env.state_of("p/a");
    assert_eq!(num(&row["pool"]["spend_usd"]["day"]), 1.0, "{row}");
    assert_eq!(num(&row["spend_usd"]["day"]), 0.5, "{row}");
}

#[test]
fn a_429_uses_nothing_whatever_its_body_says_and_a_5xx_with_usage_counts_it() {
    let env = Env::with_endpoints("provider,model,price_in\np,m,1\n");
    env.write(
        "body.json",
        r#"{"usage": {"prompt_tokens": 500, "completion_tokens": 0}}"#,
    );
    for (status, tokens) in [
        ("429 Too Many Requests", 0),
        ("503 Service Unavailable", 500),
    ] {
        let lease = env.pick_json(&["--tokens", "900"])["lease"]
            .as_str()
            .expect("a lease")
            .to_owned();
        env.write("dump.txt", format!("HTTP/1.1 {status}\r\n\r\n"));
        env.ok([
            "record",
            "--lease",
            &lease,
            "--headers",
            "dump.txt",
            "--usage",
            "body.json",
        ]);
        let row = env.state_of("p/m");
        assert_eq!(row["used"]["itpm"], tokens, "{status}: {row}");
        env.ok(["reset", "p/m"]);
    }
}

#[test]
fn bad_cells_and_flags_of_costs_are_errors_that_lose_nothing() {
    let env =
        Env::with_endpoints("provider,model,cache_reads,price_in,rpmo\np,m,sometimes,-1,2x\n");
    env.fails(["pick"], 1).says(&[
        "endpoints.csv:2",
        "cache_reads",
        "is not free or counted",
        "price_in",
        "rpmo",
    ]);
    let env = Env::with_endpoints("provider,model\np,m\n");
    env.pick(&[]);
    env.fails(["record", "p/m", "--latency", "fast"], 2)
        .says(&["--latency"]);
    env.fails(
        ["record", "p/m", "--tokens", "5", "--output-tokens", "5"],
        2,
    );
    env.fails(["history", "--metric", "euros"], 2);
    env.fails(["pick", "--strategy", "quickest"], 2);
    // Nothing of that was recorded: the one pick is still open.
    assert_eq!(env.state_of("p/m")["open_reservations"], 1);
}
