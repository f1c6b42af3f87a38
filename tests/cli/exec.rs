//! `exec` (SPEC 10) with the real binary and small stub commands: shell scripts that write
//! a header dump and a body, read stdin, exit with codes, or are killed.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};

use crate::{Env, Out, bin};

const TWO: &str = "provider,model,rpm,headers\np,a,10,openai\np,b,10,openai\n";

/// Writes an executable `sh` script into the test's folder and returns its path.
fn stub(env: &Env, name: &str, body: &str) -> PathBuf {
    let path = env.write(name, format!("#!/bin/sh\n{body}\n"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// `llm-rotate exec ARGS -- SCRIPT` started, its stdin closed and its output piped.
fn start_exec(env: &Env, args: &[&str], script: &PathBuf) -> Child {
    env.program(&[&["exec"], args, &["--"]].concat())
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start exec")
}

/// `llm-rotate exec ARGS -- SCRIPT` with `input` on stdin.
fn exec(env: &Env, args: &[&str], script: &PathBuf, input: &str) -> Out {
    let mut cmd = env.cmd();
    cmd.arg("exec").args(args).arg("--").arg(script);
    Out::from(
        cmd.write_stdin(input.as_bytes().to_vec())
            .output()
            .expect("run exec"),
    )
}

/// A dump with this status line and extra header lines.
fn dump(status: &str, extra: &str) -> String {
    format!(r#"printf 'HTTP/1.1 {status}\r\n{extra}\r\n' > "$LLM_ROTATE_HEADERS""#)
}

#[test]
fn a_429_fails_over_withholds_the_refused_body_and_cools_the_endpoint() {
    let env = Env::with_endpoints(TWO);
    let script = stub(
        &env,
        "s.sh",
        &format!(
            r#"echo "attempt $LLM_ROTATE_ATTEMPT on $LLM_ROTATE_ID" >&2
if [ "$LLM_ROTATE_ID" = p/a ]; then {}; echo refused-body; exit 0; fi
{}; echo '{{"usage":{{"total_tokens":42}}}}'"#,
            dump("429 Too Many Requests", "retry-after: 30\\r\\n"),
            dump("200 OK", "")
        ),
    );
    let out = exec(&env, &["--tokens", "100"], &script, "");
    out.code(0).says(&[
        "attempt 1 on p/a",
        "p/a: rate-limited (429); trying p/b",
        "attempt 2 on p/b",
    ]);
    assert_eq!(out.stdout, "{\"usage\":{\"total_tokens\":42}}\n", "{out}");
    let a = env.state_of("p/a");
    assert_eq!(a["blocked_by"], "cooldown", "{a}");
    assert_eq!(a["cooldown"]["ends_in_s"], 30.0, "{a}");
    assert_eq!(a["used"]["tpm"], 0, "a refused call used no tokens: {a}");
    assert_eq!(a["used"]["rpm"], 1, "but counts its request: {a}");
    let b = env.state_of("p/b");
    assert_eq!(b["used"]["tpm"], 42, "{b}");
    assert_eq!(b["open_reservations"], 0, "{b}");
}

#[test]
fn tokens_come_from_the_usage_file_or_the_body_else_the_estimate_stands() {
    for (body, expected) in [
        (r#"echo 812 > "$LLM_ROTATE_USAGE""#, 812),
        (
            r#"echo '{"usage":{"input_tokens":10,"output_tokens":25}}' > "$LLM_ROTATE_USAGE""#,
            35,
        ),
        (r#"echo '{"usage":{"total_tokens":21}}'"#, 21),
        (r#"echo '{"usageMetadata":{"totalTokenCount":8}}'"#, 8),
        ("echo not json", 500),
        // A bare number on stdout is the command's answer, not a count of tokens.
        ("echo 5000000", 500),
    ] {
        let env = Env::with_endpoints(TWO);
        let script = stub(&env, "s.sh", body);
        exec(&env, &["--tokens", "500"], &script, "").code(0);
        assert_eq!(env.used("p/a", "tpm"), expected, "{body}");
        assert_eq!(env.state_of("p/a")["open_reservations"], 0);
    }
}

#[test]
fn stdin_is_given_whole_to_every_attempt() {
    let env = Env::with_endpoints(TWO);
    let script = stub(
        &env,
        "s.sh",
        &format!(
            r#"cat > "got-$LLM_ROTATE_ATTEMPT"
if [ "$LLM_ROTATE_ATTEMPT" = 1 ]; then {}; fi"#,
            dump("503 Service Unavailable", "")
        ),
    );
    let input = "line one\nline two\n".repeat(5_000);
    exec(&env, &[], &script, &input)
        .code(0)
        .says(&["p/a: failed (status 503); trying p/b"]);
    for n in [1, 2] {
        let got = std::fs::read_to_string(env.path(&format!("got-{n}"))).expect("read");
        assert_eq!(got, input, "attempt {n}");
    }
}

#[test]
fn other_failures_are_not_retried_and_the_last_attempt_decides_the_status() {
    let env = Env::with_endpoints(TWO);
    // A 400 with exit 0: not retried, exit 1, its body written.
    let bad = stub(
        &env,
        "bad.sh",
        &format!("{}; echo bad-request", dump("400 Bad", "")),
    );
    let out = exec(&env, &[], &bad, "");
    out.code(1);
    assert_eq!(out.stdout, "bad-request\n");
    assert_eq!(env.used("p/b", "rpm"), 0, "not retried");
    // A non-zero exit without a dump: its status, not retried.
    let three = stub(&env, "three.sh", "echo partial; exit 3");
    exec(&env, &[], &three, "").code(3);
    assert_eq!(env.used("p/b", "rpm"), 0);
    // Every attempt refused: the last one's body and 75.
    let always = stub(
        &env,
        "429.sh",
        &format!("{}; echo \"no $LLM_ROTATE_ID\"", dump("429 Slow", "")),
    );
    let out = exec(&env, &["--attempts", "5"], &always, "");
    out.code(75)
        .says(&["p/b: rate-limited (429); no other endpoint has quota now"]);
    assert_eq!(out.stdout, "no p/b\n");
    // --attempts 1: no fail-over at all.
    let env = Env::with_endpoints(TWO);
    let always = stub(&env, "429.sh", &dump("429 Slow", ""));
    exec(&env, &["--attempts", "1"], &always, "").code(75);
    assert_eq!(env.used("p/b", "rpm"), 0);
}

#[test]
fn a_command_killed_by_a_signal_exits_128_plus_it() {
    let env = Env::with_endpoints(TWO);
    let script = stub(&env, "s.sh", "kill -KILL $$");
    exec(&env, &[], &script, "").code(137);
}

#[test]
fn usage_errors_a_missing_command_and_no_quota() {
    let env = Env::with_endpoints("provider,model,rpm\np,a,1\n");
    env.fails(["exec", "true"], 2);
    env.fails(["exec", "--"], 2);
    env.fails(["exec", "--attempts", "0", "--", "true"], 2);
    env.fails(["exec", "--", "/no/such/command"], 1)
        .says(&["cannot run /no/such/command"]);
    // The reservation of a command that never ran is settled at nothing.
    let row = env.state_of("p/a");
    assert_eq!(
        (row["used"]["rpm"].clone(), row["open_reservations"].clone()),
        (0.into(), 0.into()),
        "{row}"
    );
    env.ok(["exec", "--", "true"]);
    let out = env.fails(["exec", "--", "true"], 75);
    out.no_stdout()
        .says(&["no endpoint has quota", "p/a: rpm full"]);
}

#[test]
fn stream_writes_as_it_comes_and_never_retries_after_writing() {
    let env = Env::with_endpoints(TWO);
    let script = stub(
        &env,
        "s.sh",
        &format!(
            "echo \"chunk from $LLM_ROTATE_ID\"; {}",
            dump("503 Busy", "")
        ),
    );
    let out = exec(&env, &["--stream"], &script, "");
    out.code(1);
    assert_eq!(out.stdout, "chunk from p/a\n");
    assert_eq!(env.used("p/b", "rpm"), 0, "nothing retried once it wrote");
    // Silent until refused: retried.
    let quiet = stub(
        &env,
        "q.sh",
        &format!(
            "if [ \"$LLM_ROTATE_ID\" = p/a ]; then {}; else echo ok; fi",
            dump("503 Busy", "")
        ),
    );
    exec(&env, &["--stream"], &quiet, "").code(0);
}

#[test]
fn the_private_folder_is_removed_afterwards() {
    let env = Env::with_endpoints(TWO);
    let script = stub(
        &env,
        "s.sh",
        r#"echo "$LLM_ROTATE_HEADERS" > where; stat -c %a "$(dirname "$LLM_ROTATE_HEADERS")" > mode; exit 4"#,
    );
    exec(&env, &[], &script, "").code(4);
    let headers = std::fs::read_to_string(env.path("where")).expect("where");
    let folder = PathBuf::from(headers.trim())
        .parent()
        .expect("folder")
        .to_owned();
    assert!(!folder.exists(), "{} was left behind", folder.display());
    assert_eq!(
        std::fs::read_to_string(env.path("mode"))
            .expect("mode")
            .trim(),
        "700"
    );
}

#[test]
fn sigterm_reaches_the_command_once_and_the_attempt_is_settled_at_its_estimate() {
    let env = Env::with_endpoints(TWO);
    // The stub counts the TERMs it gets, says it is ready, and waits for one.
    let script = stub(
        &env,
        "s.sh",
        r#"trap 'echo term >> terms; exit 143' TERM
echo ready > ready.tmp && mv ready.tmp ready
while :; do sleep 0.05; done"#,
    );
    let child: Child = env
        .std_command(bin())
        .arg("--endpoints")
        .arg(env.endpoints_file())
        .args(["exec", "--tokens", "77", "--"])
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start exec");
    while !env.path("ready").exists() {
        std::thread::yield_now();
    }
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = Out::from(child.wait_with_output().expect("wait for exec"));
    out.code(143);
    let terms = std::fs::read_to_string(env.path("terms")).expect("terms");
    assert_eq!(terms, "term\n", "the command got the signal once");
    let row = env.state_of("p/a");
    assert_eq!(row["used"]["tpm"], 77, "{row}");
    assert_eq!(row["open_reservations"], 0, "{row}");
    assert_eq!(env.used("p/b", "rpm"), 0, "not retried");
}

#[test]
fn many_execs_at_once_never_exceed_the_limit() {
    let env = Env::with_endpoints("provider,model,rpm\np,a,5\np,b,5\n");
    env.state();
    let script = stub(&env, "s.sh", r#"echo "$LLM_ROTATE_ID""#);
    let execs = (0..16).map(|i| {
        let mut cmd = env.program(&["exec", "--"]);
        cmd.arg(&script)
            .env("LLM_ROTATE_NOW", format!("{}.{:03}", crate::T0, i));
        cmd
    });
    let mut ran = 0;
    for out in crate::harness::at_once(execs) {
        match out.status {
            Some(0) => ran += 1,
            Some(75) => {
                out.no_stdout();
            }
            _ => panic!("{out}"),
        }
    }
    assert_eq!(ran, 10);
    let state = env.state();
    for row in &state {
        assert_eq!(row["used"]["rpm"], 5, "{row}");
    }
}

#[test]
fn wait_gives_the_first_attempt_time_for_a_slot() {
    let env = Env::with_endpoints("provider,model,rpm\np,a,1\n");
    env.ok(["exec", "--", "true"]);
    env.set_time(30_000);
    env.fails(["exec", "--wait", "10s", "--", "true"], 75);
    env.ok(["exec", "--wait", "40s", "--", "true"]);
    assert_eq!(env.stamps(), [0, 60_000]);
}

#[test]
fn exec_reads_only_regular_files_and_the_first_mib_of_a_dump() {
    // A FIFO where the usage file goes: exec does not wait on it, and the estimate stands.
    let env = Env::with_endpoints(TWO);
    let script = stub(&env, "fifo.sh", r#"mkfifo "$LLM_ROTATE_USAGE"; echo done"#);
    exec(&env, &["--tokens", "500"], &script, "").code(0);
    assert_eq!(env.used("p/a", "tpm"), 500);

    // A dump of a 429 followed by 2 MiB of padding: its headers count, the rest is a note.
    let env = Env::with_endpoints(TWO);
    let script = stub(
        &env,
        "big.sh",
        r#"{ printf 'HTTP/1.1 429 Too Many Requests\r\nretry-after: 30\r\nx-pad: '; head -c 2097152 /dev/zero | tr '\0' a; printf '\r\n\r\n'; } > "$LLM_ROTATE_HEADERS""#,
    );
    let out = exec(&env, &["--attempts", "1"], &script, "");
    out.code(75)
        .says(&["note: the header dump is over 1 MiB; the rest was ignored"]);
    assert_eq!(env.state_of("p/a")["blocked_by"], "cooldown");
}

#[test]
fn exec_exits_with_the_commands_status_even_when_its_stdout_was_closed() {
    let env = Env::with_endpoints(TWO);
    let script = stub(&env, "fails.sh", "seq 1 100000; exit 3");
    let mut child = start_exec(&env, &[], &script);
    // The reader goes away before exec writes what it held back.
    drop(child.stdout.take());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(3));
}

#[test]
fn the_private_folder_has_a_name_nobody_can_guess() {
    let env = Env::with_endpoints(TWO);
    let script = stub(
        &env,
        "where.sh",
        r#"basename "$(dirname "$LLM_ROTATE_HEADERS")""#,
    );
    let child = start_exec(&env, &[], &script);
    let pid = child.id();
    let out = Out::from(child.wait_with_output().expect("wait"));
    out.code(0);
    let name = out.stdout.trim();
    assert!(name.starts_with("llm-rotate-"), "{name}");
    assert!(
        !name.contains(&pid.to_string()),
        "{name} names the process {pid}"
    );
    assert_eq!(name.len(), "llm-rotate-".len() + 16, "{name}");
}

#[test]
fn a_signal_while_waiting_for_quota_ends_exec_and_starts_no_command() {
    // On the real clock: the one slot of the minute is taken, so exec waits for it.
    let env = Env::with_endpoints("provider,model,rpm\np,a,1\n");
    let mut pick = env.std_command(bin());
    pick.env_remove("LLM_ROTATE_NOW")
        .arg("--endpoints")
        .arg(env.endpoints_file())
        .args(["record", "p/a", "--add"]);
    assert!(pick.status().expect("record").success());
    let marker = env.path("ran");
    let script = stub(&env, "mark.sh", &format!("touch '{}'", marker.display()));
    let mut child = env
        .program(&["exec", "--wait", "5m", "--"])
        .arg(&script)
        .env_remove("LLM_ROTATE_NOW")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start exec");
    // Once exec catches SIGTERM (bit 15 of SigCgt), it is watching for it: send it then.
    let status = format!("/proc/{}/status", child.id());
    loop {
        let text = std::fs::read_to_string(&status).unwrap_or_default();
        let caught = text
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << 14) != 0);
        if caught {
            break;
        }
        assert!(
            child.try_wait().expect("poll").is_none(),
            "exec ended on its own"
        );
        std::thread::yield_now();
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(143), "{status:?}");
    assert!(!marker.exists(), "a command was started after the signal");
    assert_eq!(env.state_of("p/a")["open_reservations"], 0);
}

#[test]
fn exec_and_record_read_every_status_of_a_dump_alike() {
    const ONE: &str = "provider,model,rpm,headers\np,a,10,openai\n";
    for (status, extra) in [
        ("503 Service Unavailable", "retry-after: 20\\r\\n"),
        ("503 Service Unavailable", ""),
        ("500 Internal Server Error", ""),
        ("408 Request Timeout", ""),
        ("429 Too Many Requests", ""),
        ("429 Too Many Requests", "retry-after-ms: 1500\\r\\n"),
        ("200 OK", "retry-after: 60\\r\\n"),
        ("404 Not Found", "retry-after: 60\\r\\n"),
    ] {
        let by_exec = Env::with_endpoints(ONE);
        let script = stub(&by_exec, "s.sh", &dump(status, extra));
        exec(&by_exec, &["--attempts", "1"], &script, "");
        let by_record = Env::with_endpoints(ONE);
        by_record.sh(&format!(
            "printf 'HTTP/1.1 {status}\\r\\n{extra}\\r\\n' > dump.txt"
        ));
        by_record.ok(["record", "p/a", "--headers", "dump.txt"]);
        // Only exec measures how long the call took.
        let seen = |env: &Env| {
            let mut state = env.state();
            for row in &mut state {
                row["latency_ms"] = serde_json::Value::Null;
            }
            let metrics: String = env
                .ok(["state", "--format", "prometheus"])
                .lines()
                .filter(|l| !l.contains("llm_rotate_latency_"))
                .map(|l| format!("{l}\n"))
                .collect();
            (state, metrics)
        };
        let (exec_state, exec_metrics) = seen(&by_exec);
        let (record_state, record_metrics) = seen(&by_record);
        assert_eq!(exec_state, record_state, "{status} {extra}");
        assert_eq!(exec_metrics, record_metrics, "{status} {extra}");
    }
    // And what they agree on: a 503 with a Retry-After cools the endpoint down for it.
    let env = Env::with_endpoints(ONE);
    let script = stub(&env, "s.sh", &dump("503 Busy", "retry-after: 20\\r\\n"));
    exec(&env, &[], &script, "").code(1);
    let row = env.state_of("p/a");
    assert_eq!(row["cooldown"]["ends_in_s"], 20.0, "{row}");
}

#[test]
fn a_streamed_body_on_stdout_or_in_the_usage_file_settles_its_final_usage() {
    let openai = r#"printf 'data: {"choices":[{"delta":{"content":"Hi"}}],"usage":null}\n\ndata: {"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":4}}\n\ndata: [DONE]\n\n'"#;
    let anthropic = r#"printf 'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":9,"cache_read_input_tokens":20,"output_tokens":1}}}\n\nevent: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":5}}\n\nevent: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":7}}\n\n'"#;
    for (body, expected) in [
        (openai.to_owned(), 14),
        (anthropic.to_owned(), 36),
        (format!(r#"{anthropic} > "$LLM_ROTATE_USAGE""#), 36),
        // Cut before its usage: the estimate stands.
        (r#"printf 'data: {"choices":[]}\n\n'"#.to_owned(), 1_000),
    ] {
        let env = Env::with_endpoints(TWO);
        let script = stub(&env, "s.sh", &body);
        exec(&env, &["--tokens", "1000"], &script, "").code(0);
        assert_eq!(env.used("p/a", "tpm"), expected, "{body}");
    }
}

#[test]
fn a_fail_over_says_when_the_others_were_left_out_rather_than_full() {
    let env = Env::with_endpoints(TWO);
    let always = stub(&env, "429.sh", &dump("429 Slow", ""));
    exec(&env, &["--only", "p/a"], &always, "").code(75).says(&[
        "p/a: rate-limited (429); no other endpoint to try: the rest are left out by --only/--exclude",
    ]);
    assert_eq!(env.used("p/b", "rpm"), 0);
}

#[test]
fn exec_times_each_call_on_the_monotonic_clock_and_prices_its_usage_by_kind() {
    // The clock is pinned, yet the latency is what the command took.
    let env = Env::with_endpoints("provider,model,price_in,price_out,price_cached\np,m,3,15,0.3\n");
    let script = stub(
        &env,
        "s.sh",
        &format!(
            "sleep 0.2\n{}\nprintf '%s\\n\\n' 'event: message_start' \
             'data: {{\"type\":\"message_start\",\"message\":{{\"usage\":{{\"input_tokens\":1000,\"cache_read_input_tokens\":10000,\"output_tokens\":1}}}}}}' \
             'data: {{\"type\":\"message_delta\",\"usage\":{{\"output_tokens\":200}}}}'",
            dump("200 OK", "")
        ),
    );
    exec(&env, &["--tokens", "50000"], &script, "").code(0);
    let row = env.state_of("p/m");
    let p50 = row["latency_ms"]["p50"].as_u64().expect("a latency");
    assert!((200..5_000).contains(&p50), "{row}");
    assert_eq!(row["latency_ms"]["calls"], 1, "{row}");
    assert_eq!(row["used"]["itpm"], 11_000, "{row}");
    assert_eq!(row["used"]["otpm"], 200, "{row}");
    // 1000 x $3 + 10,000 x $0.30 + 200 x $15, per million.
    assert_eq!(crate::num(&row["spend_usd"]["day"]), 0.009, "{row}");
}
