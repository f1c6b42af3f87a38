//! Provider headers (SPEC 7, README "Provider headers"): `record --headers FILE|-` reads a
//! `curl -D` dump in the endpoint's dialect and moves the ledger toward the provider's
//! numbers until the provider's window resets, never below what was recorded here.

use serde_json::Value;

use crate::{Env, Out, assert_secs, blocked, num};

/// A `curl -D` dump: the lines with CRLF ends, and the blank line that ends the headers.
fn dump(lines: &[&str]) -> String {
    let mut text = lines.join("\r\n");
    text.push_str("\r\n\r\n");
    text
}

/// `record ID --headers FILE` with `text` as the file; must exit 0; returns its stderr.
#[track_caller]
fn record_headers(env: &Env, id: &str, text: &str, extra: &[&str]) -> String {
    env.write("headers.txt", text);
    let out = env.run(
        ["record", id, "--headers", "headers.txt"]
            .iter()
            .chain(extra),
    );
    out.code(0);
    assert_eq!(out.stdout, "", "{out}");
    out.stderr
}

/// `limits.<w>`, `used.<w>` and `remaining.<w>` of a state row.
#[track_caller]
fn window(row: &Value, w: &str) -> (Value, Value, Value) {
    (
        row["limits"][w].clone(),
        row["used"][w].clone(),
        row["remaining"][w].clone(),
    )
}

#[track_caller]
fn assert_window(row: &Value, w: &str, limit: Option<u64>, used: u64) {
    let (l, u, r) = window(row, w);
    let limit = limit.map_or(Value::Null, Value::from);
    let remaining = match limit.as_u64() {
        Some(cap) => Value::from(cap.saturating_sub(used)),
        None => Value::Null,
    };
    assert_eq!(
        (l, u, r),
        (limit, Value::from(used), remaining),
        "{w}: (limit, used, remaining) in {row}"
    );
}

fn openai(requests: (u64, u64, &str), tokens: (u64, u64, &str)) -> String {
    let lines = [
        "HTTP/1.1 200 OK".to_string(),
        "Date: Thu, 01 Jan 2026 00:00:00 GMT".into(),
        "Content-Type: application/json".into(),
        "Transfer-Encoding: chunked".into(),
        "openai-organization: user-abc123".into(),
        "openai-processing-ms: 412".into(),
        "openai-version: 2020-10-01".into(),
        format!("X-RateLimit-Limit-Requests: {}", requests.0),
        format!("x-ratelimit-limit-tokens: {}", tokens.0),
        format!("X-Ratelimit-Remaining-Requests: {}", requests.1),
        format!("x-ratelimit-remaining-tokens: {}", tokens.1),
        format!("x-ratelimit-reset-requests: {}", requests.2),
        format!("X-RATELIMIT-RESET-TOKENS: {}", tokens.2),
        "x-request-id: req_9b1deb4d3b7d4bad9bdd2b0d7b3dcb6d".into(),
        "CF-RAY: 8f1e2d3c4b5a6978-AMS".into(),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    dump(&lines)
}

const GROQ_200: &[&str] = &[
    "HTTP/2 200 ",
    "date: Thu, 01 Jan 2026 00:00:00 GMT",
    "content-type: application/json",
    "cache-control: private, max-age=0, no-store, no-cache, must-revalidate",
    "vary: Origin",
    "x-groq-region: us-east-1",
    "x-ratelimit-limit-requests: 14400",
    "x-ratelimit-limit-tokens: 6000",
    "x-ratelimit-remaining-requests: 14000",
    "x-ratelimit-remaining-tokens: 5000",
    "x-ratelimit-reset-requests: 2m59.56s",
    "x-ratelimit-reset-tokens: 7.66s",
    "x-request-id: req_01jh5w3s2pf8q8x0k6r8e7v9yz",
    "via: 1.1 google",
    "cf-cache-status: DYNAMIC",
    "Server: cloudflare",
];

#[test]
fn openai_headers_are_per_minute_with_duration_resets() {
    let env = Env::with_endpoints("provider,model\nopenai,gpt-4o-mini\n");
    let id = "openai/gpt-4o-mini";
    let stderr = record_headers(
        &env,
        id,
        &openai((60, 10, "1s"), (150_000, 149_000, "6m0s")),
        &["--tokens", "300"],
    );
    assert_eq!(stderr, "", "a clean dump gives no note");

    // The provider counts 50 requests and 1,000 tokens; the ledger had 1 and 300.
    let row = env.state_of(id);
    assert_window(&row, "rpm", Some(60), 50);
    assert_window(&row, "tpm", Some(150_000), 1_000);
    assert_window(&row, "rpd", None, 1);
    assert_window(&row, "tpd", None, 300);
    assert_eq!(row["available"], true, "{row}");

    // The request report resets after 1 s, the token report after 6 minutes.
    env.set_time(999);
    assert_window(&env.state_of(id), "rpm", Some(60), 50);
    env.set_time(1_000);
    let row = env.state_of(id);
    assert_window(&row, "rpm", None, 1);
    assert_window(&row, "tpm", Some(150_000), 1_000);
    env.set_time(359_999);
    assert_window(&env.state_of(id), "tpm", Some(150_000), 1_000);
    env.set_time(360_000);
    let row = env.state_of(id);
    assert_window(&row, "tpm", None, 0);
    assert_window(&row, "tpd", None, 300);
}

#[test]
fn picks_after_a_report_count_against_what_the_provider_said_remains() {
    let env = Env::with_endpoints("provider,model,rpm\nopenai,gpt-4o,500\n");
    let id = "openai/gpt-4o";
    record_headers(
        &env,
        id,
        &openai((500, 2, "20s"), (30_000, 1_000, "6m0s")),
        &[],
    );

    assert_eq!(env.pick(&["--tokens", "600"]), id);
    assert_eq!(env.pick(&["--tokens", "400"]), id);
    let row = env.state_of(id);
    assert_window(&row, "rpm", Some(500), 500);
    assert_window(&row, "tpm", Some(30_000), 30_000);

    // Both reported windows are full: requests until the provider's reset in 20 s.
    let report = env.exhausted(&[]);
    let (limit, frees_in) = blocked(&report, id);
    assert_eq!(limit, "rpm", "{report}");
    assert_secs(frees_in, 20.0, "rpm frees at the reported reset");

    env.set_time(19_999);
    env.exhausted(&[]);
    env.set_time(20_000);
    assert_eq!(env.pick(&["--tokens", "0"]), id);

    // Tokens: the provider's minute resets in 6 minutes, later than the local one would.
    env.set_time(61_000);
    let report = env.exhausted(&["--tokens", "1"]);
    let (limit, frees_in) = blocked(&report, id);
    assert_eq!(limit, "tpm", "{report}");
    assert_secs(frees_in, 299.0, "tpm frees at the reported reset");
    env.set_time(359_999);
    env.exhausted(&["--tokens", "1"]);
    env.set_time(360_000);
    assert_eq!(env.pick(&["--tokens", "1"]), id);
}

#[test]
fn local_usage_larger_than_the_providers_is_never_forgotten() {
    let env = Env::with_endpoints("provider,model,rpm\nopenai,gpt-4o,100\n");
    let id = "openai/gpt-4o";
    env.ok(["record", id, "--requests", "40", "--tokens", "50000"]);
    // The provider has seen only 5 requests and 1,000 tokens of them.
    record_headers(
        &env,
        id,
        &openai((100, 95, "30s"), (150_000, 149_000, "30s")),
        &[],
    );
    let row = env.state_of(id);
    assert_window(&row, "rpm", Some(100), 41);
    assert_window(&row, "tpm", Some(150_000), 50_000);

    assert_eq!(env.pick(&["--tokens", "10"]), id);
    let row = env.state_of(id);
    assert_window(&row, "rpm", Some(100), 42);
    assert_window(&row, "tpm", Some(150_000), 50_010);
}

#[test]
fn groq_request_headers_are_per_day_and_apply_to_a_window_the_file_leaves_open() {
    let env = Env::with_endpoints("provider,model,rpm,tpm\ngroq,llama-3.1-8b-instant,30,6000\n");
    let id = "groq/llama-3.1-8b-instant";
    let stderr = record_headers(&env, id, &dump(GROQ_200), &["--tokens", "100"]);
    assert_eq!(stderr, "", "a clean dump gives no note");

    let row = env.state_of(id);
    // Requests per day: the file has no rpd, the provider's 14,400 applies.
    assert_window(&row, "rpd", Some(14_400), 400);
    // The request headers say nothing of the minute.
    assert_window(&row, "rpm", Some(30), 1);
    // Tokens per minute.
    assert_window(&row, "tpm", Some(6_000), 1_000);

    assert_eq!(env.pick(&["--tokens", "50"]), id);
    let row = env.state_of(id);
    assert_window(&row, "rpd", Some(14_400), 401);
    assert_window(&row, "tpm", Some(6_000), 1_050);

    // The token report resets after 7.66 s, the request report after 2m59.56s.
    env.set_time(7_659);
    assert_window(&env.state_of(id), "tpm", Some(6_000), 1_050);
    env.set_time(7_660);
    let row = env.state_of(id);
    assert_window(&row, "tpm", Some(6_000), 150);
    assert_window(&row, "rpd", Some(14_400), 401);
    env.set_time(179_560);
    let row = env.state_of(id);
    assert_window(&row, "rpd", None, 2);
    assert_window(&row, "rpm", Some(30), 0);
}

#[test]
fn groq_daily_remaining_blocks_picks_until_the_reported_reset() {
    let env = Env::with_endpoints("provider,model\ngroq,llama-3.3-70b-versatile\n");
    let id = "groq/llama-3.3-70b-versatile";
    let text = dump(GROQ_200)
        .replace("remaining-requests: 14000", "remaining-requests: 2")
        .replace("reset-requests: 2m59.56s", "reset-requests: 3h0m0s");
    record_headers(&env, id, &text, &[]);
    assert_eq!(env.pick(&[]), id);
    assert_eq!(env.pick(&[]), id);
    let report = env.exhausted(&[]);
    let (limit, frees_in) = blocked(&report, id);
    assert_eq!(limit, "rpd", "{report}");
    assert_secs(frees_in, 10_800.0, "rpd frees at the reported reset");
    env.set_time(10_799_999);
    env.exhausted(&[]);
    env.set_time(10_800_000);
    assert_eq!(env.pick(&[]), id);
}

#[test]
fn anthropic_headers_have_rfc3339_resets() {
    let env = Env::with_endpoints("provider,model\nanthropic,claude-sonnet-4-5\n");
    let id = "anthropic/claude-sonnet-4-5";
    let text = dump(&[
        "HTTP/2 200",
        "date: Thu, 01 Jan 2026 00:00:00 GMT",
        "content-type: application/json",
        "request-id: req_011CSHoEeqs5C35K2UUqR7Fy",
        "anthropic-ratelimit-requests-limit: 50",
        "anthropic-ratelimit-requests-remaining: 45",
        "anthropic-ratelimit-requests-reset: 2026-01-01T00:00:12Z",
        "Anthropic-RateLimit-Tokens-Limit: 40000",
        "anthropic-ratelimit-tokens-remaining: 38000",
        "anthropic-ratelimit-tokens-reset: 2026-01-01T00:00:30Z",
        "anthropic-ratelimit-input-tokens-limit: 30000",
        "anthropic-ratelimit-input-tokens-remaining: 29000",
        "anthropic-ratelimit-input-tokens-reset: 2026-01-01T00:00:30Z",
        "anthropic-ratelimit-output-tokens-limit: 8000",
        "anthropic-ratelimit-output-tokens-remaining: 7000",
        "anthropic-ratelimit-output-tokens-reset: 2026-01-01T00:00:30Z",
        "anthropic-organization-id: 0c8ce0e4-aaaa-bbbb-cccc-3ad2c6f0e4f1",
        "via: 1.1 google",
    ]);
    let stderr = record_headers(&env, id, &text, &["--tokens", "500"]);
    assert_eq!(stderr, "", "a clean dump gives no note");
    let row = env.state_of(id);
    assert_window(&row, "rpm", Some(50), 5);
    assert_window(&row, "tpm", Some(40_000), 2_000);

    env.set_time(11_999);
    assert_window(&env.state_of(id), "rpm", Some(50), 5);
    env.set_time(12_000);
    let row = env.state_of(id);
    assert_window(&row, "rpm", None, 1);
    assert_window(&row, "tpm", Some(40_000), 2_000);
    env.set_time(30_000);
    assert_window(&env.state_of(id), "tpm", None, 500);

    // A provider that says nothing is left blocks picks until its reset.
    env.write(
        "nearly-spent.txt",
        dump(&[
            "HTTP/2 200",
            "anthropic-ratelimit-tokens-limit: 40000",
            "anthropic-ratelimit-tokens-remaining: 1000",
            "anthropic-ratelimit-tokens-reset: 2026-01-01T00:01:15.5Z",
        ]),
    );
    env.ok(["record", id, "--headers", "nearly-spent.txt"]);
    assert_eq!(env.pick(&["--tokens", "1000"]), id);
    let report = env.exhausted(&["--tokens", "1"]);
    let (limit, frees_in) = blocked(&report, id);
    assert_eq!(limit, "tpm", "{report}");
    assert_secs(frees_in, 45.5, "tpm frees at the reported reset");
}

#[test]
fn cerebras_headers_are_per_day_and_minute_with_resets_in_seconds() {
    let env = Env::with_endpoints("provider,model\ncerebras,llama3.1-8b\n");
    let id = "cerebras/llama3.1-8b";
    let text = dump(&[
        "HTTP/1.1 200 OK",
        "Date: Thu, 01 Jan 2026 00:00:00 GMT",
        "Content-Type: application/json",
        "Content-Length: 812",
        "Connection: keep-alive",
        "x-ratelimit-limit-requests-day: 14400",
        "x-ratelimit-limit-tokens-minute: 60000",
        "x-ratelimit-remaining-requests-day: 14300",
        "x-ratelimit-remaining-tokens-minute: 59800",
        "x-ratelimit-reset-requests-day: 33011.382867097855",
        "x-ratelimit-reset-tokens-minute: 11.382867097855",
        "inference-id: chatcmpl-5c3e0ab2-4b7d-4e0f-9c1a-1f0e2d3c4b5a",
    ]);
    let stderr = record_headers(&env, id, &text, &["--tokens", "20"]);
    assert_eq!(stderr, "", "a clean dump gives no note");
    let row = env.state_of(id);
    assert_window(&row, "rpd", Some(14_400), 100);
    assert_window(&row, "tpm", Some(60_000), 200);
    assert_window(&row, "rpm", None, 1);

    env.set_time(11_000);
    assert_window(&env.state_of(id), "tpm", Some(60_000), 200);
    env.set_time(12_000);
    let row = env.state_of(id);
    assert_window(&row, "tpm", None, 20);
    assert_window(&row, "rpd", Some(14_400), 100);
    env.set_time(33_011_000);
    assert_window(&env.state_of(id), "rpd", Some(14_400), 100);
    env.set_time(33_012_000);
    assert_window(&env.state_of(id), "rpd", None, 1);
}

#[test]
fn a_headers_column_overrides_the_providers_dialect() {
    let env = Env::with_endpoints(
        "provider,model,headers,id\n\
         openai,llama-via-groq,groq,as-groq\n\
         groq,llama-as-openai,openai,as-openai\n\
         my-proxy,claude,Anthropic,as-anthropic\n",
    );
    let text = dump(GROQ_200);
    record_headers(&env, "as-groq", &text, &[]);
    record_headers(&env, "as-openai", &text, &[]);
    // Groq's request headers are per day; read as OpenAI's, per minute.
    let row = env.state_of("as-groq");
    assert_window(&row, "rpd", Some(14_400), 400);
    assert_window(&row, "rpm", None, 1);
    let row = env.state_of("as-openai");
    assert_window(&row, "rpm", Some(14_400), 400);
    assert_window(&row, "rpd", None, 1);

    // A provider name no dialect knows, with the column naming one.
    let text = dump(&[
        "HTTP/2 200",
        "anthropic-ratelimit-requests-limit: 50",
        "anthropic-ratelimit-requests-remaining: 40",
        "anthropic-ratelimit-requests-reset: 2026-01-01T00:00:30Z",
    ]);
    let stderr = record_headers(&env, "as-anthropic", &text, &[]);
    assert_eq!(stderr, "");
    assert_window(&env.state_of("as-anthropic"), "rpm", Some(50), 10);
}

#[test]
fn headers_can_come_on_stdin() {
    let env = Env::with_endpoints("provider,model\ngroq,llama-3.1-8b-instant\n");
    let id = "groq/llama-3.1-8b-instant";
    let out = env.run_stdin(["record", id, "--headers", "-"], &dump(GROQ_200));
    out.code(0);
    assert_eq!(out.stderr, "", "{out}");
    assert_window(&env.state_of(id), "rpd", Some(14_400), 400);
}

#[test]
fn only_the_last_response_of_a_dump_counts() {
    let env = Env::with_endpoints("provider,model\nopenai,gpt-4o\n");
    let id = "openai/gpt-4o";
    // `curl -D -L`: a redirect, whose headers are not the answer's, then the answer.
    let text = format!(
        "{}{}",
        dump(&[
            "HTTP/1.1 301 Moved Permanently",
            "Location: https://api.openai.com/v1/chat/completions",
            "x-ratelimit-limit-requests: 60",
            "x-ratelimit-remaining-requests: 0",
            "x-ratelimit-reset-requests: 1m",
        ]),
        openai((60, 50, "1s"), (150_000, 140_000, "4s"))
    );
    let stderr = record_headers(&env, id, &text, &[]);
    assert_eq!(stderr, "", "the redirect's headers are no concern");
    let row = env.state_of(id);
    assert_window(&row, "rpm", Some(60), 10);
    assert_window(&row, "tpm", Some(150_000), 10_000);
}

#[test]
fn a_429_dump_with_retry_after_cools_the_endpoint_down_for_that_long() {
    let env = Env::with_endpoints("provider,model\nopenai,gpt-4o\nopenai,gpt-4o-mini\n");
    let id = "openai/gpt-4o";
    let text = dump(&[
        "HTTP/1.1 429 Too Many Requests",
        "Date: Thu, 01 Jan 2026 00:00:00 GMT",
        "Content-Type: application/json; charset=utf-8",
        "Retry-After: 7",
        "x-ratelimit-limit-tokens: 30000",
        "x-ratelimit-remaining-tokens: 29000",
        "x-ratelimit-reset-tokens: 2s",
        "x-request-id: req_4f1b7c2e9d8a",
    ]);
    let stderr = record_headers(&env, id, &text, &[]);
    assert_eq!(stderr, "", "a clean dump gives no note");
    let row = env.state_of(id);
    assert_eq!(row["blocked_by"], "cooldown", "{row}");
    let c = &row["cooldown"];
    assert!(c.is_object(), "{row}");
    assert_secs(num(&c["ends_in_s"]), 7.0, "cooldown.ends_in_s");
    assert_eq!(row["used"]["rpm"], 1, "a refused call counts: {row}");

    env.set_time(6_999);
    assert_eq!(env.pick(&[]), "openai/gpt-4o-mini");
    let report = env.exhausted(&["--only", id]);
    assert_eq!(blocked(&report, id).0, "cooldown", "{report}");
    env.set_time(7_000);
    assert_eq!(env.pick(&[]), id);

    // Retry-After as an HTTP date, and retry-after-ms.
    for (header, secs) in [
        ("Retry-After: Thu, 01 Jan 2026 00:00:20 GMT", 20.0),
        ("retry-after-ms: 7500", 7.5),
    ] {
        let env = Env::with_endpoints("provider,model\nopenai,gpt-4o\n");
        let text = dump(&["HTTP/2 429", "content-type: application/json", header]);
        record_headers(&env, id, &text, &[]);
        let row = env.state_of(id);
        assert_eq!(row["blocked_by"], "cooldown", "{header}: {row}");
        assert_secs(num(&row["cooldown"]["ends_in_s"]), secs, header);
    }

    // A 429 without Retry-After backs off 5 s, the first step of the sequence.
    let env = Env::with_endpoints("provider,model\nopenai,gpt-4o\n");
    record_headers(
        &env,
        id,
        &dump(&["HTTP/2 429", "content-type: application/json"]),
        &[],
    );
    let row = env.state_of(id);
    assert_eq!(row["blocked_by"], "cooldown", "{row}");
    assert_secs(num(&row["cooldown"]["ends_in_s"]), 5.0, "default back-off");
}

#[test]
fn unknown_and_malformed_headers_are_notes_and_the_call_still_counts() {
    let env = Env::with_endpoints("provider,model\nopenai,gpt-4o\nmistral,small\n");
    let id = "openai/gpt-4o";
    let text = dump(&[
        "HTTP/1.1 200 OK",
        "x-ratelimit-limit-requests-day: 1000",
        "x-ratelimit-limit-requests: 60",
        "x-ratelimit-remaining-requests: lots",
        "x-ratelimit-reset-requests: 1s",
        "x-ratelimit-limit-tokens: 150000",
        "x-ratelimit-remaining-tokens: 149000",
        "x-ratelimit-reset-tokens: soon",
        "this line is no header",
    ]);
    let stderr = record_headers(&env, id, &text, &["--tokens", "5"]);
    assert!(
        stderr.lines().count() >= 3,
        "a note for each problem:\n{stderr}"
    );
    for line in stderr.lines() {
        assert!(
            line.starts_with("llm-rotate: note:"),
            "{line:?} in\n{stderr}"
        );
    }
    for name in [
        "x-ratelimit-limit-requests-day",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-tokens",
    ] {
        assert!(stderr.contains(name), "a note names {name}:\n{stderr}");
    }
    let row = env.state_of(id);
    assert_window(&row, "rpm", None, 1);
    assert_window(&row, "tpm", None, 5);

    // A headers file that is not there is a note too; the call is counted.
    let out = env.run(["record", id, "--headers", "missing.txt"]);
    out.code(0).says(&["llm-rotate: note:", "missing.txt"]);
    assert_eq!(env.used(id, "rpm"), 2);

    // A provider of no known dialect and no headers column: a note, and it counts.
    let text = dump(&[
        "HTTP/2 200",
        "x-ratelimit-limit-requests: 60",
        "x-ratelimit-remaining-requests: 0",
        "x-ratelimit-reset-requests: 1m",
    ]);
    env.write("mistral.txt", text);
    let out = env.run(["record", "mistral/small", "--headers", "mistral.txt"]);
    out.code(0).says(&[
        "llm-rotate: note: mistral/small: no known headers dialect for provider \"mistral\"",
        "said once",
    ]);
    let row = env.state_of("mistral/small");
    assert_window(&row, "rpm", None, 1);
    assert_eq!(row["available"], true, "{row}");
    // Every later call of that endpoint would say the same: it is said once per ledger.
    let out = env.run(["record", "mistral/small", "--headers", "mistral.txt"]);
    out.code(0);
    assert_eq!(out.stderr, "", "{out}");
    assert_eq!(env.used("mistral/small", "rpm"), 2);
}

#[test]
fn a_later_report_replaces_an_earlier_one() {
    let env = Env::with_endpoints("provider,model\nopenai,gpt-4o\n");
    let id = "openai/gpt-4o";
    record_headers(
        &env,
        id,
        &openai((60, 0, "1m"), (150_000, 150_000, "1s")),
        &[],
    );
    env.exhausted(&[]);
    // The provider's window turned early: 10 s later it counts 12 of 60.
    env.set_time(10_000);
    record_headers(
        &env,
        id,
        &openai((60, 48, "50s"), (150_000, 150_000, "1s")),
        &[],
    );
    assert_window(&env.state_of(id), "rpm", Some(60), 12);
    assert_eq!(env.pick(&[]), id);
}

#[test]
fn headers_never_cost_a_lease_its_settlement_even_without_an_endpoints_file() {
    let env = Env::with_endpoints("provider,model\nopenai,gpt-4o\n");
    let chosen = env.pick_json(&["--tokens", "100"]);
    let lease = chosen["lease"].as_str().expect("a lease").to_string();
    env.write(
        "headers.txt",
        openai((60, 50, "1s"), (150_000, 140_000, "1s")),
    );

    // `record --lease` needs no endpoints file; the headers, whose dialect the file would
    // tell, may be ignored with a note, but the settlement must not be lost.
    let out = Out::from(
        env.std_command(crate::bin())
            .args([
                "record",
                "--lease",
                &lease,
                "--tokens",
                "40",
                "--headers",
                "headers.txt",
            ])
            .output()
            .expect("run llm-rotate"),
    );
    out.code(0);
    assert_eq!(out.stdout, "", "{out}");
    let row = env.state_of("openai/gpt-4o");
    assert_eq!(row["open_reservations"], 0, "{row}");
    assert_eq!(row["used"]["tpd"], 40, "{row}");
}

#[test]
fn a_retry_after_on_a_success_does_not_cool_the_endpoint_down() {
    let id = "openai/gpt-4o";
    let env = Env::with_endpoints("provider,model\nopenai,gpt-4o\n");
    record_headers(
        &env,
        id,
        &dump(&["HTTP/1.1 200 OK", "retry-after: 3600"]),
        &[],
    );
    let row = env.state_of(id);
    assert_eq!(row["available"], true, "{row}");
    // On a 503 it says how long the refusal lasts.
    record_headers(
        &env,
        id,
        &dump(&["HTTP/1.1 503 Service Unavailable", "retry-after: 20"]),
        &[],
    );
    let row = env.state_of(id);
    assert_eq!(row["blocked_by"], "cooldown", "{row}");
    assert_secs(num(&row["cooldown"]["ends_in_s"]), 20.0, "503 retry-after");
}

#[test]
fn a_dump_is_read_to_its_first_mib_with_one_note() {
    let id = "openai/gpt-4o";
    let env = Env::with_endpoints("provider,model\nopenai,gpt-4o\n");
    let mut text = dump(&["HTTP/1.1 429 Too Many Requests", "retry-after: 30"]);
    text.push_str(&"\r\n".repeat(1 << 20));
    let notes = record_headers(&env, id, &text, &[]);
    assert_eq!(
        notes.matches("the header dump is over 1 MiB").count(),
        1,
        "{notes}"
    );
    assert_eq!(env.state_of(id)["blocked_by"], "cooldown");
}

#[test]
fn notes_are_cut_escaped_and_said_once_with_their_count() {
    let id = "openai/gpt-4o";
    let env = Env::with_endpoints("provider,model\nopenai,gpt-4o\n");
    let long = "9".repeat(10_000);
    let mut lines = vec!["HTTP/1.1 200 OK".to_owned()];
    lines.push(format!("x-ratelimit-remaining-requests: {long}x"));
    lines.push("x-ratelimit-bogus: \u{1b}[2J".to_owned());
    lines.extend((0..1_000).map(|_| "x-ratelimit-limit-requests-day: 1000".to_owned()));
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let notes = record_headers(&env, id, &dump(&refs), &[]);
    assert!(notes.lines().count() <= 5, "{notes}");
    // 64 rate-limit headers are read (two above, 62 of the repeats); the rest are counted.
    assert!(notes.contains("(62 times)"), "{notes}");
    assert!(
        notes.contains("ignored 938 more rate-limit headers from line 66 on"),
        "{notes}"
    );
    assert!(notes.lines().all(|l| l.chars().count() < 260), "{notes}");
    assert!(!notes.contains('\u{1b}'), "escaped: {notes}");
}

#[test]
fn record_usage_reads_the_body_whatever_its_status() {
    let id = "openai/gpt-4o";
    let rows = "provider,model\nopenai,gpt-4o\n";
    let body = r#"{"id":"c","usage":{"prompt_tokens":120,"completion_tokens":30,"prompt_tokens_details":{"cached_tokens":100}}}"#;
    let error = r#"{"error":{"message":"Rate limit reached","type":"requests"}}"#;
    // A success settles what its body reports.
    let env = Env::with_endpoints(rows);
    env.pick(&["--tokens", "1000"]);
    env.write("out.json", body);
    env.write("h.txt", dump(&["HTTP/1.1 200 OK"]));
    let out = env.run(["record", id, "--headers", "h.txt", "--usage", "out.json"]);
    out.code(0);
    assert_eq!(out.stderr, "", "{out}");
    assert_eq!(env.used(id, "tpm"), 150);
    // A 429's error body has no usage and the refused call used none; no note.
    env.pick(&["--tokens", "1000"]);
    env.write("out.json", error);
    env.write(
        "h.txt",
        dump(&["HTTP/1.1 429 Too Many Requests", "retry-after: 5"]),
    );
    let out = env.run(["record", id, "--headers", "h.txt", "--usage", "out.json"]);
    out.code(0);
    assert_eq!(out.stderr, "", "{out}");
    assert_eq!(env.used(id, "tpm"), 150);
    assert_eq!(env.state_of(id)["open_reservations"], 0);
    // A success without usage keeps the estimate, and says so; stdin works too.
    let env = Env::with_endpoints(rows);
    env.pick(&["--tokens", "1000"]);
    env.run_stdin(["record", id, "--usage", "-"], "OK\n")
        .code(0)
        .says(&["no usage in stdin; the estimate stands"]);
    assert_eq!(env.used(id, "tpm"), 1_000);
    // An SSE stream, a file that is not there, and --usage beside --tokens.
    env.write(
        "stream.txt",
        "data: {\"usage\":{\"total_tokens\":7}}\n\ndata: [DONE]\n\n",
    );
    env.ok(["record", id, "--add", "--usage", "stream.txt"]);
    assert_eq!(env.used(id, "tpm"), 1_007);
    env.run(["record", id, "--add", "--usage", "missing.json"])
        .code(0)
        .says(&["cannot read the usage file missing.json"]);
    env.fails(["record", id, "--tokens", "5", "--usage", "out.json"], 2);
    env.fails(["record", id, "--headers", "-", "--usage", "-"], 1)
        .says(&["cannot both read stdin"]);
}

#[test]
fn record_takes_tokens_by_kind_and_limits_count_them_all() {
    let env = Env::with_endpoints("provider,model,tpm\np,m,10k\n");
    env.pick(&["--tokens", "2k"]);
    env.ok([
        "record",
        "p/m",
        "--input-tokens",
        "120",
        "--output-tokens",
        "30",
        "--cached-tokens",
        "1k",
    ]);
    assert_eq!(env.used("p/m", "tpm"), 1_150);
    env.ok(["record", "p/m", "--add", "--output-tokens", "7"]);
    assert_eq!(env.used("p/m", "tpm"), 1_157);
    // The split beside a total, or beside --usage, is a usage error.
    env.fails(["record", "p/m", "--tokens", "5", "--input-tokens", "5"], 2);
    env.fails(
        ["record", "p/m", "--usage", "u.json", "--cached-tokens", "5"],
        2,
    );
}
