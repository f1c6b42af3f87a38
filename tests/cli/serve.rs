//! `serve` and `call` (SPEC 13), against a provider stand-in on a loopback port: what is
//! forwarded and with which key, fail-over, exhaustion, streaming, settling, access, and
//! quota shared with `pick` on one ledger.

use std::time::Duration;

use crate::provider::{Provider, Reply};
use crate::serving::http;
use crate::{Env, installed, json};

const CHAT: &str = "/v1/chat/completions";
const SECRET: &str = "sk-stand-in-secret-0123456789";

/// Two endpoints at the stand-in: `a` (model-a, rpm 2, key from $KEY_A) first, then `b`
/// (model-b, its key in the file).
fn two(provider: &Provider) -> Env {
    Env::with_endpoints(&format!(
        "id,provider,model,rpm,tpm,price_in,price_out,base_url,api_key_env,key\n\
         a,openai,model-a,2,,1,2,{},KEY_A,\n\
         b,openai,model-b,100,,,,{},,{SECRET}-b\n",
        provider.base_url("/a"),
        provider.base_url("/b"),
    ))
}

fn chat(model: &str) -> String {
    format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"max_tokens":50}}"#
    )
}

#[test]
fn a_request_goes_out_with_the_rows_model_and_key_and_its_usage_is_settled() {
    let provider = Provider::start();
    let env = two(&provider);
    provider.then("/a", [Reply::ok(120, 30)]);
    let served = env.serve_with(&[], &[("KEY_A", SECRET)]);
    let reply = http(
        served.port,
        "POST",
        CHAT,
        &[
            ("authorization", "Bearer client-own-token"),
            ("x-trace", "t-1"),
        ],
        chat("auto").as_bytes(),
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["choices"][0]["message"]["content"], "hello");
    assert_eq!(reply.header("x-llm-rotate-endpoint"), Some("a"));

    let got = provider.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/a/v1/chat/completions");
    assert_eq!(got[0].json()["model"], "model-a");
    assert_eq!(got[0].json()["messages"][0]["content"], "hi");
    // The row's key, never the client's; the client's other headers pass.
    assert_eq!(got[0].headers["authorization"], format!("Bearer {SECRET}"));
    assert_eq!(got[0].headers["x-trace"], "t-1");

    let logged = served.wait_logged(1);
    assert!(logged[0].contains(" a 200 tokens=120+0+30 "), "{logged:?}");
    assert!(logged[0].contains("attempts=1"), "{logged:?}");
    let row = env.state_of("a");
    assert_eq!(row["used"]["rpm"], 1);
    assert_eq!(
        (row["used"]["itpm"].as_u64(), row["used"]["otpm"].as_u64()),
        (Some(120), Some(30))
    );
    assert_eq!(row["open_reservations"], 0);
    assert!(row["latency_ms"]["calls"] == 1, "{row}");

    // What a request's model may be: each id and each model name.
    let models = served.get("/v1/models").json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| m["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["a", "b", "model-a", "model-b"]);
    assert_eq!(served.get("/healthz").body, "ok\n");
}

#[test]
fn a_model_names_the_endpoints_a_request_may_go_to() {
    let provider = Provider::start();
    let env = two(&provider);
    let served = env.serve_with(&[], &[("KEY_A", SECRET)]);
    for (model, prefix) in [
        ("b", "/b"),
        ("model-b", "/b"),
        ("model-a", "/a"),
        ("b*", "/b"),
    ] {
        let reply = served.post(CHAT, &chat(model));
        assert_eq!(reply.status, 200, "{model}: {reply:?}");
        let last = provider.received().pop().expect("a request");
        assert!(
            last.path.starts_with(prefix),
            "{model} went to {}",
            last.path
        );
    }
    let none = served.post(CHAT, &chat("gpt-5"));
    assert_eq!(
        (none.status, none.error_code().as_str()),
        (404, "llm_rotate_no_endpoint")
    );
    assert!(
        none.json()["error"]["message"]
            .as_str()
            .expect("message")
            .contains("gpt-5")
    );
    // An embedding goes to its route under the same base_url.
    let embedded = served.post("/v1/embeddings", r#"{"model":"b","input":"x"}"#);
    assert_eq!(embedded.status, 200);
    assert_eq!(
        provider.received().pop().expect("sent").path,
        "/b/v1/embeddings"
    );
}

#[test]
fn a_refusal_fails_over_before_the_client_sees_a_byte_and_cools_the_endpoint_down() {
    let provider = Provider::start();
    let env = two(&provider);
    provider.then("/a", [Reply::status(429, Some("30"))]);
    provider.then("/b", [Reply::ok(7, 3)]);
    let served = env.serve_with(&[], &[("KEY_A", SECRET)]);
    let reply = served.post(CHAT, &chat("auto"));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("x-llm-rotate-endpoint"), Some("b"));
    assert_eq!(provider.count("/a"), 1);
    assert_eq!(provider.count("/b"), 1);
    // The second attempt carried b's model.
    assert_eq!(provider.received()[1].json()["model"], "model-b");
    let logged = served.wait_logged(1);
    assert!(
        logged[0].contains(" b 200 ") && logged[0].contains("attempts=2"),
        "{logged:?}"
    );

    // a's 429 counted its request and no tokens, and its Retry-After cools it down.
    let a = env.state_of("a");
    assert_eq!(
        (a["used"]["rpm"].as_u64(), a["used"]["tpm"].as_u64()),
        (Some(1), Some(0))
    );
    assert!(a["cooldown"].is_object(), "{a}");
    // While a cools down, requests go to b without trying a.
    assert_eq!(served.post(CHAT, &chat("auto")).status, 200);
    assert_eq!(provider.count("/a"), 1);

    // A 5xx and a connection refused fail over too.
    provider.then("/b", [Reply::status(503, None)]);
    let env2 = Env::with_endpoints(&format!(
        "id,provider,model,base_url\n\
         down,openai,m,http://127.0.0.1:1/v1\n\
         flaky,openai,m,{}\n\
         good,openai,m,{}\n",
        provider.base_url("/b"),
        provider.base_url("/c"),
    ));
    let served2 = env2.serve(&[]);
    let reply = served2.post(CHAT, &chat("m"));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("x-llm-rotate-endpoint"), Some("good"));
    assert!(served2.wait_logged(1)[0].contains("attempts=3"));
    // The refused connection counted no request but a failure (three in a row cool an
    // endpoint down); the 503 its request.
    assert_eq!(env2.used("down", "rpm"), 0);
    let metrics = env2.ok(["state", "--format", "prometheus"]);
    assert!(
        metrics.contains(
            "llm_rotate_failed_total{endpoint=\"down\",provider=\"openai\",model=\"m\"} 1"
        ),
        "{metrics}"
    );
    assert_eq!(env2.used("flaky", "rpm"), 1);
}

#[test]
fn the_last_attempts_refusal_is_what_the_client_gets() {
    let provider = Provider::start();
    let env = two(&provider);
    provider.always("/a", Reply::status(429, Some("12")));
    let served = env.serve_with(&["--attempts", "1"], &[("KEY_A", SECRET)]);
    let reply = served.post(CHAT, &chat("a"));
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), Some("12"));
    assert_eq!(reply.json()["error"]["code"], "429");
    assert_eq!(provider.count("/b"), 0);
}

#[test]
fn when_nothing_fits_the_client_gets_429_with_the_wait_in_whole_seconds() {
    let provider = Provider::start();
    let env = two(&provider);
    let served = env.serve_with(&[], &[("KEY_A", SECRET)]);
    // rpm 2 on a: two calls, then a third is refused by llm-rotate without a call.
    for _ in 0..2 {
        assert_eq!(served.post(CHAT, &chat("a")).status, 200);
    }
    let refused = served.post(CHAT, &chat("a"));
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(refused.error_code(), "llm_rotate_exhausted");
    assert_eq!(refused.json()["error"]["type"], "rate_limit_exceeded");
    // The time is pinned: the minute frees 60 s after the first call.
    assert_eq!(refused.header("retry-after"), Some("60"));
    assert_eq!(provider.count("/a"), 2);

    // Too large for every limit: 400; no key: 503; a body over 32 MiB: 413.
    let small = Env::with_endpoints(&format!(
        "id,provider,model,tpm,base_url,api_key_env\n\
         tiny,openai,m,60,{},\n\
         keyless,openai,k,,{},UNSET_KEY_VAR\n",
        provider.base_url("/t"),
        provider.base_url("/k"),
    ));
    let served = small.serve(&[]);
    assert!(
        served
            .log()
            .iter()
            .any(|l| l.contains("keyless: $UNSET_KEY_VAR is not set"))
    );
    let large = served.post(CHAT, &chat("tiny"));
    assert_eq!(
        (large.status, large.error_code().as_str()),
        (400, "llm_rotate_too_large")
    );
    let keyless = served.post(CHAT, &chat("keyless"));
    assert_eq!(
        (keyless.status, keyless.error_code().as_str()),
        (503, "llm_rotate_no_key")
    );
    let huge = vec![b' '; (32 << 20) + 1];
    let reply = http(served.port, "POST", CHAT, &[], &huge);
    assert_eq!(reply.status, 413);
    let bad = served.post(CHAT, "{not json");
    assert_eq!(bad.status, 400);
    assert_eq!(provider.count("/t") + provider.count("/k"), 0);
}

#[test]
fn with_wait_a_request_is_held_until_a_slot_frees() {
    let provider = Provider::start();
    let env = Env::with_endpoints(&format!(
        "id,provider,model,rpm,base_url\none,openai,m,1,{}\n",
        provider.base_url("/w"),
    ));
    // The pinned clock moves by what a wait sleeps: the second request waits out its minute.
    let served = env.serve(&["--wait", "2m"]);
    assert_eq!(served.post(CHAT, &chat("m")).status, 200);
    assert_eq!(served.post(CHAT, &chat("m")).status, 200);
    assert_eq!(provider.count("/w"), 2);
    let stamps = env.stamps();
    assert_eq!(stamps.len(), 2);
    assert!(stamps[1] - stamps[0] >= 60_000, "{stamps:?}");
}

/// The chunks of a server-sent event stream, as `data:` payloads.
fn events(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_stream_passes_through_with_its_usage_chunk_only_when_the_client_asked() {
    let provider = Provider::start();
    let env = two(&provider);
    let served = env.serve_with(&[], &[("KEY_A", SECRET)]);
    let stream = |asked: bool| {
        let options = if asked {
            r#","stream_options":{"include_usage":true}"#
        } else {
            ""
        };
        format!(r#"{{"model":"b","stream":true{options},"messages":[]}}"#)
    };

    provider.then("/b", [Reply::stream(&["Hel", "lo"], Some((40, 2)))]);
    let reply = served.post(CHAT, &stream(false));
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"))
    );
    let got = events(&reply.body);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got[0].contains("Hel") && got[1].contains("lo") && got[2] == "[DONE]");
    // llm-rotate asked for usage, and settled with it.
    assert_eq!(
        provider.received()[0].json()["stream_options"]["include_usage"],
        true
    );
    assert!(served.wait_logged(1)[0].contains("tokens=40+0+2"));

    provider.then("/b", [Reply::stream(&["Hi"], Some((41, 1)))]);
    let reply = served.post(CHAT, &stream(true));
    let got = events(&reply.body);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got[1].contains(r#""prompt_tokens":41"#), "{got:?}");
    served.wait_logged(2);
    assert_eq!(env.used("b", "otpm"), 3);
    assert_eq!(env.used("b", "itpm"), 81);
}

#[test]
fn a_stream_cut_short_is_settled_at_the_usage_seen_else_the_estimate() {
    let provider = Provider::start();
    let env = two(&provider);
    let served = env.serve_with(&[], &[("KEY_A", SECRET)]);
    let Reply::Events { mut events, .. } = Reply::stream(&["a", "b", "c"], None) else {
        unreachable!()
    };
    events.pop(); // no [DONE]
    provider.then(
        "/b",
        [Reply::Events {
            events,
            // Slow enough that the client has the head and the first events before the cut.
            pause: Duration::from_millis(50),
            cut: true,
        }],
    );
    let body = r#"{"model":"b","stream":true,"max_tokens":70,"messages":[]}"#;
    let reply = served.post(CHAT, body);
    assert_eq!(reply.status, 200);
    assert!(!reply.body.contains("[DONE]"));
    let logged = served.wait_logged(1);
    assert!(logged[0].contains("tokens=estimate"), "{logged:?}");
    // The estimate: a third of the body's bytes, and its max_tokens.
    let input = (body.len() as u64).div_ceil(3);
    assert_eq!(env.used("b", "itpm"), input);
    assert_eq!(env.used("b", "otpm"), 70);
    assert_eq!(env.state_of("b")["open_reservations"], 0);
}

#[test]
fn a_token_guards_every_route_but_healthz_and_no_key_ever_leaves() {
    let provider = Provider::start();
    let env = two(&provider);
    let out = env.run(["serve", "--listen", "0.0.0.0:0"]);
    out.code(1).says(&["without --token-env"]);

    let served = env.serve_with(
        &["--token-env", "SERVE_TOKEN"],
        &[("KEY_A", SECRET), ("SERVE_TOKEN", "let-me-in")],
    );
    for path in ["/", "/metrics", "/v1/models"] {
        assert_eq!(served.get(path).status, 401, "{path}");
    }
    assert_eq!(served.post(CHAT, &chat("a")).status, 401);
    assert_eq!(served.get("/healthz").status, 200);
    let wrong = http(
        served.port,
        "GET",
        "/metrics",
        &[("authorization", "Bearer nope")],
        b"",
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(provider.count("/a"), 0);

    let auth = [("authorization", "Bearer let-me-in")];
    provider.then("/a", [Reply::status(429, Some("5"))]);
    let mut seen = String::new();
    let reply = http(served.port, "POST", CHAT, &auth, chat("auto").as_bytes());
    assert_eq!(reply.status, 200);
    seen.push_str(&format!("{reply:?}"));
    for path in ["/", "/metrics", "/v1/models"] {
        let reply = http(served.port, "GET", path, &auth, b"");
        assert_eq!(reply.status, 200, "{path}");
        seen.push_str(&format!("{reply:?}"));
    }
    served.wait_logged(1);
    seen.push_str(&served.log().join("\n"));
    assert!(!seen.contains("sk-stand-in"), "a key leaked:\n{seen}");
    // The provider did get them.
    assert!(
        provider
            .received()
            .iter()
            .all(|r| r.headers["authorization"].contains(SECRET))
    );
}

#[test]
fn metrics_and_the_page_are_read_live_and_the_page_brings_everything_it_shows() {
    let provider = Provider::start();
    let env = two(&provider);
    let served = env.serve_with(&[], &[("KEY_A", SECRET)]);
    assert_eq!(served.post(CHAT, &chat("a")).status, 200);
    served.wait_logged(1);
    let metrics = served.get("/metrics");
    assert!(
        metrics
            .body
            .lines()
            .any(|l| l.starts_with("llm_rotate_requests_used{endpoint=\"a\"")
                && l.ends_with("window=\"minute\"} 1")),
        "{}",
        metrics.body
    );
    let page = served.get("/");
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .is_some_and(|c| c.starts_with("text/html"))
    );
    assert!(page.body.contains("http-equiv=\"refresh\""));
    assert!(page.body.contains("<svg") && page.body.contains("Requests per hour"));
    // No script, and nothing fetched from elsewhere.
    for absent in ["<script", "src=", "<link", "@import", "url("] {
        assert!(!page.body.contains(absent), "the page has {absent}");
    }
    assert!(
        page.header("content-security-policy")
            .is_some_and(|c| c.contains("default-src 'none'"))
    );
}

#[test]
fn serve_and_pick_share_quota_exactly_on_one_ledger() {
    let provider = Provider::start();
    let env = Env::with_endpoints(&format!(
        "id,provider,model,rpm,base_url\nshared,openai,m,30,{}\n",
        provider.base_url("/s"),
    ));
    let served = env.serve(&[]);
    // 20 requests through serve and 20 picks at once: exactly 30 get the minute's slots.
    let port = served.port;
    let clients: Vec<_> = (0..20)
        .map(|_| {
            std::thread::spawn(move || http(port, "POST", CHAT, &[], chat("m").as_bytes()).status)
        })
        .collect();
    let picks = env.run_at_once(20, &["pick"]);
    let statuses: Vec<u16> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    let served_ok = statuses.iter().filter(|&&s| s == 200).count();
    let picked = picks.iter().filter(|p| p.status == Some(0)).count();
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 429),
        "{statuses:?}"
    );
    assert!(picks.iter().all(|p| matches!(p.status, Some(0 | 75))));
    assert_eq!(served_ok + picked, 30, "serve {served_ok}, pick {picked}");
    assert_eq!(provider.count("/s"), served_ok);
    assert_eq!(env.used("shared", "rpm"), 30);
}

#[test]
fn a_burst_of_requests_through_serve_takes_exactly_the_slots_there_are() {
    let provider = Provider::start();
    let env = Env::with_endpoints(&format!(
        "id,provider,model,rpm,base_url\nscarce,openai,m,5,{}\n",
        provider.base_url("/s"),
    ));
    let served = env.serve_on_the_real_clock(&[]);
    // 48 requests at once: serve's steps queue together, and every one must see the
    // reservations of those before it, in the same transaction or not.
    let port = served.port;
    let start = std::sync::Arc::new(std::sync::Barrier::new(48));
    let clients: Vec<_> = (0..48)
        .map(|_| {
            let start = std::sync::Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                http(port, "POST", CHAT, &[], chat("m").as_bytes()).status
            })
        })
        .collect();
    let statuses: Vec<u16> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 429).count(),
        43,
        "{statuses:?}"
    );
    assert_eq!(provider.count("/s"), 5);
    assert_eq!(env.used("scarce", "rpm"), 5);
}

#[test]
fn serve_and_pick_share_quota_exactly_while_the_clock_moves() {
    let provider = Provider::start();
    let env = Env::with_endpoints(&format!(
        "id,provider,model,rpm,base_url\nshared,openai,m,40,{}\n",
        provider.base_url("/s"),
    ));
    let served = env.serve_on_the_real_clock(&[]);
    // 4 clients of serve and 4 shells of pick, 15 tries each, all on the real clock: 120
    // tries for the minute's 40 slots, over a second or two of moving time.
    let port = served.port;
    let clients: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                (0..15)
                    .map(|_| http(port, "POST", CHAT, &[], chat("m").as_bytes()).status)
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    let shells = crate::picking_on_the_real_clock(&env, 4, 15, "");
    let statuses: Vec<u16> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client"))
        .collect();
    let served_ok = statuses.iter().filter(|&&s| s == 200).count();
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 429),
        "{statuses:?}"
    );
    let picked: usize = shells
        .iter()
        .map(|out| out.stdout.matches("rc=0").count())
        .sum();
    assert_eq!(served_ok + picked, 40, "serve {served_ok}, pick {picked}");
    assert_eq!(provider.count("/s"), served_ok);
    // The ledger's time never went back: each write is stamped no earlier than the last.
    let stamps = env.stamps();
    assert_eq!(stamps.len(), 40);
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
}

#[test]
fn sigterm_lets_a_stream_in_flight_finish_and_settle() {
    let provider = Provider::start();
    let env = two(&provider);
    let Reply::Events { events, .. } = Reply::stream(&["slow", "ly"], Some((9, 2))) else {
        unreachable!()
    };
    provider.then(
        "/b",
        [Reply::Events {
            events,
            pause: Duration::from_millis(300),
            cut: false,
        }],
    );
    let served = env.serve_with(&[], &[("KEY_A", SECRET)]);
    let port = served.port;
    let client = std::thread::spawn(move || {
        http(port, "POST", CHAT, &[], br#"{"model":"b","stream":true}"#)
    });
    // Once the provider has the request, stop the server.
    while provider.count("/b") == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(served.stop(), Some(0));
    let reply = client.join().expect("client");
    assert!(reply.body.contains("[DONE]"), "{reply:?}");
    assert!(
        !env.path("usage.sqlite3-wal").exists(),
        "serve left its log"
    );
    assert_eq!(env.used("b", "otpm"), 2);
}

#[test]
fn call_makes_one_request_and_exits_as_it_went() {
    let provider = Provider::start();
    let env = two(&provider);
    provider.then("/b", [Reply::ok(11, 4)]);
    env.write("request.json", chat("b"));
    let out = env
        .cmd()
        .args(["call", "--data", "request.json"])
        .output()
        .expect("call");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let body = json(&String::from_utf8_lossy(&out.stdout));
    // call closed the ledger as every command does: no log left for the next to replay.
    assert!(!env.path("usage.sqlite3-wal").exists());
    assert_eq!(body["usage"]["prompt_tokens"], 11);
    assert_eq!(env.used("b", "itpm"), 11);

    provider.then("/b", [Reply::ok(1, 1)]);
    let out = env.run_stdin(["call", "--format", "json"], &chat("model-b"));
    out.code(0);
    let report = json(&out.stdout);
    assert_eq!(report["status"], 200);
    assert_eq!(report["endpoint"], "b");
    assert_eq!(report["usage"]["input"], 1);
    assert_eq!(report["body"]["choices"][0]["message"]["content"], "hello");

    // A provider's 429 on the last attempt: 75; a 400 of its own: 1 with the status said.
    provider.then("/b", [Reply::status(429, Some("3"))]);
    env.run_stdin(["call", "--attempts", "1"], &chat("b"))
        .code(75);
    env.set_time(5_000);
    provider.then("/b", [Reply::status(400, None)]);
    env.run_stdin(["call"], &chat("b"))
        .code(1)
        .says(&["b: status 400"]);
    // Nothing with quota (a's rpm is 2): 75 without a call; no such model: 1; a bad flag: 2.
    let call_a = || {
        let out = env
            .cmd()
            .args(["call"])
            .env("KEY_A", SECRET)
            .write_stdin(chat("a"))
            .output()
            .expect("call");
        crate::Out::from(out)
    };
    call_a().code(0);
    call_a().code(0);
    call_a().code(75).says(&["no endpoint has quota"]);
    assert_eq!(provider.count("/a"), 2);
    env.run_stdin(["call"], &chat("nope"))
        .code(1)
        .says(&["no endpoint matches"]);
    env.run_stdin(["call", "--attempts", "0"], &chat("b"))
        .code(2);
}

#[test]
fn the_official_openai_client_works_through_serve() {
    if !installed("python3", "python3") {
        return;
    }
    let has_openai = std::process::Command::new("python3")
        .args(["-c", "import openai"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_openai || std::env::var_os("LLM_ROTATE_REQUIRE_TOOLS").is_none(),
        "the openai Python package is not installed (pip install openai)"
    );
    if !has_openai {
        eprintln!("note: the openai Python package is not installed; skipped");
        return;
    }
    let provider = Provider::start();
    let env = Env::with_endpoints(&format!(
        "id,provider,model,rpm,base_url\na,openai,model-a,100,{}\nb,openai,model-b,2,{}\n",
        provider.base_url("/a"),
        provider.base_url("/b"),
    ));
    provider.then("/a", [Reply::status(429, Some("30"))]);
    provider.then(
        "/b",
        [
            Reply::ok(21, 5),
            Reply::stream(&["str", "eam"], Some((22, 6))),
        ],
    );
    let served = env.serve(&[]);
    let script = format!(
        r#"
import openai
client = openai.OpenAI(base_url="http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
# Plain: a is refused (429) and b answers; the client sees b's answer.
r = client.chat.completions.create(model="auto", messages=[{{"role": "user", "content": "hi"}}])
print("plain", r.choices[0].message.content, r.usage.prompt_tokens)
# Streamed, without asking for usage: no usage chunk reaches the client.
chunks = list(client.chat.completions.create(model="model-b", messages=[], stream=True))
print("stream", "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), any(c.usage for c in chunks))
# a cools down (30 s) and b's rpm of 2 is spent: exhausted, with the wait until a frees.
try:
    client.chat.completions.create(model="auto", messages=[])
except openai.RateLimitError as e:
    print("exhausted", e.status_code, e.code, e.response.headers["retry-after"])
"#,
        port = served.port
    );
    let env_b = Env::new();
    let path = env_b.write("client.py", script);
    let out = std::process::Command::new("python3")
        .arg(&path)
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "plain hello 21");
    assert_eq!(lines[1], "stream stream False");
    assert_eq!(lines[2], "exhausted 429 llm_rotate_exhausted 30");
    assert_eq!(provider.count("/a"), 1);
    assert_eq!(provider.count("/b"), 2);
    assert_eq!(env.used("b", "itpm"), 21 + 22);
}

#[test]
fn the_page_renders_in_a_real_browser() {
    if !installed("chromium", "chromium") {
        return;
    }
    let provider = Provider::start();
    let env = Env::with_endpoints(&format!(
        "id,provider,model,rpm,base_url\ngroq-fast,groq,m,30,{}\ncerebras-big,cerebras,n,30,{}\n",
        provider.base_url("/g"),
        provider.base_url("/c"),
    ));
    let served = env.serve(&[]);
    assert_eq!(served.post(CHAT, &chat("m")).status, 200);
    served.wait_logged(1);
    let profile = env.path("chromium-profile");
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ])
        .arg("--dump-dom")
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(served.url("/"))
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What the browser built: the state table with both endpoints, the two charts, and the
    // refresh it will follow.
    let state = dom
        .split("<pre id=\"state\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_else(|| panic!("no state in the page:\n{dom}"));
    assert!(
        state.contains("groq-fast") && state.contains("cerebras-big"),
        "{state}"
    );
    assert_eq!(dom.matches("<svg").count(), 2, "{dom}");
    assert!(dom.contains("Requests per hour") && dom.contains("Tokens per hour"));
    assert!(dom.contains(r#"<meta http-equiv="refresh" content="10">"#));
    // The browser asked this server for the page, and for nothing on any other host.
    assert!(served.log().iter().any(|l| l.contains("GET / - 200")));
    for absent in ["http://", "https://"] {
        let outside: Vec<&str> = dom
            .match_indices(absent)
            .map(|(i, _)| &dom[i..(i + 40).min(dom.len())])
            .filter(|s| !s.starts_with("http://www.w3.org/2000/svg"))
            .collect();
        assert!(outside.is_empty(), "the page names {outside:?}");
    }
}

#[test]
fn requests_to_providers_go_through_the_proxy_the_environment_names() {
    let provider = Provider::start();
    // The stand-in acts as the proxy: it receives the provider's whole URL.
    let env = Env::with_endpoints(
        "id,provider,model,base_url\n\
         far,openai,m,http://provider.invalid/v1\n\
         near,openai,n,http://localhost.invalid/v1\n",
    );
    let proxy = format!("http://127.0.0.1:{}", provider.port);
    provider.always("http://provider.invalid", Reply::ok(3, 1));
    let served = env.serve_with(
        &[],
        &[
            ("HTTP_PROXY", proxy.as_str()),
            ("NO_PROXY", "localhost.invalid"),
        ],
    );
    let reply = served.post(CHAT, &chat("far"));
    assert_eq!(reply.status, 200, "{reply:?}");
    let got = provider.received();
    assert_eq!(got[0].path, "http://provider.invalid/v1/chat/completions");
    // NO_PROXY: straight to the host, which does not resolve; nothing reaches the proxy.
    let reply = served.post(CHAT, &chat("near"));
    assert_eq!(
        (reply.status, reply.error_code().as_str()),
        (502, "llm_rotate_unreachable")
    );
    assert_eq!(provider.received().len(), 1);
}

#[test]
fn sigterm_ends_a_wait_for_quota_with_its_429() {
    let provider = Provider::start();
    let env = Env::with_endpoints(&format!(
        "id,provider,model,rpm,base_url\none,openai,m,1,{}\n",
        provider.base_url("/w"),
    ));
    let served = env.serve_on_the_real_clock(&["--wait", "1h"]);
    assert_eq!(served.post(CHAT, &chat("m")).status, 200);
    // The second waits for the minute to pass; SIGTERM ends the wait.
    let port = served.port;
    let waiting = std::thread::spawn(move || http(port, "POST", CHAT, &[], chat("m").as_bytes()));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(served.stop(), Some(0));
    // Cut off by the drain instead, it would get no answer at all.
    let reply = waiting.join().expect("client");
    assert_eq!(
        (reply.status, reply.error_code().as_str()),
        (429, "llm_rotate_exhausted")
    );
    assert_eq!(provider.count("/w"), 1);
}

/// A process killed when dropped, so that a failing test leaves none behind (one would hold
/// the test runner's stderr open).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A provider stand-in over HTTPS (Python's own server) in `dir`, with a certificate from a
/// CA made for the test: its port and the process.
fn https_provider(dir: &std::path::Path) -> (u16, Killed) {
    crate::private_ca(dir);
    let script = dir.join("https_provider.py");
    std::fs::write(
        &script,
        r#"import http.server, ssl, sys
BODY = b'{"choices":[{"index":0,"message":{"role":"assistant","content":"over tls"}}],"usage":{"prompt_tokens":5,"completion_tokens":1}}'
class Provider(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Provider)
tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain("server.pem", "server.key")
server.socket = tls.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#,
    )
    .expect("write the script");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("its port");
    let child = Killed(child);
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("port: {line:?}"));
    (port, child)
}

#[test]
fn https_providers_are_trusted_by_the_certificates_the_machine_trusts() {
    if !installed("python3", "python3") || !installed("openssl", "openssl") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (port, _provider) = https_provider(dir.path());
    let ca = dir.path().join("ca.pem");
    let env = Env::with_endpoints(&format!(
        "id,provider,model,base_url\nsecure,openai,m,https://127.0.0.1:{port}/v1\n"
    ));
    // A certificate from a CA the machine does not trust: the connection is refused.
    let untrusted = env.serve(&[]);
    let reply = untrusted.post(CHAT, &chat("m"));
    assert_eq!(
        (reply.status, reply.error_code().as_str()),
        (502, "llm_rotate_unreachable")
    );
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("certificate")),
        "{}",
        reply.body
    );
    // SSL_CERT_FILE names the certificates to trust instead of the system's.
    let trusted = env.serve_with(&[], &[("SSL_CERT_FILE", ca.to_str().expect("utf-8"))]);
    let reply = trusted.post(CHAT, &chat("m"));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["choices"][0]["message"]["content"], "over tls");
    // A response is settled once its body has gone out: wait for its log line, written then.
    trusted.wait_logged(1);
    assert_eq!(env.used("secure", "itpm"), 5);
}

#[test]
fn serve_and_call_stop_at_start_on_bad_input_and_touch_nothing() {
    let provider = Provider::start();
    let env = two(&provider);
    // A bad flag: 2.
    env.run(["serve", "--listen", "nonsense"])
        .code(2)
        .says(&["--listen"]);
    env.run(["call", "--path", "/chat"]).code(2).says(&["/v1/"]);
    // No endpoints file: 1, naming where it looked.
    Env::new()
        .run(["--endpoints", "missing.csv", "serve"])
        .code(1)
        .says(&["missing.csv"]);
    // A port taken by another program: 1, naming it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = taken.local_addr().expect("address").to_string();
    env.run(["serve", "--listen", &address])
        .code(1)
        .says(&["cannot listen on", &address]);
    assert_eq!(provider.received().len(), 0);
    if env.on_redis() {
        return;
    }
    // A damaged ledger: 1, and the file is left as it was.
    let garbage: Vec<u8> = (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(env.db(), &garbage).expect("write garbage");
    for args in [&["serve", "--listen", "127.0.0.1:0"][..], &["call"]] {
        env.run_stdin(args, &chat("b"))
            .code(1)
            .says(&["is not an SQLite database"]);
    }
    assert_eq!(std::fs::read(env.db()).expect("the file"), garbage);
    assert_eq!(provider.received().len(), 0);
}
