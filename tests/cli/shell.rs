//! What `pick` hands to scripts (SPEC 4, pick output): `--format shell` is safe to `eval`
//! whatever the cells hold, `--format json` carries the properties and the key, and the key
//! shows up nowhere else.

use serde_json::json;

use crate::{Env, assert_json, bin};

const KEY: &str = "sk-it's \"$(touch pwned)\" `touch pwned` $HOME; rm -rf pwned";
const BASE_URL: &str = "https://x.test/v1?a=1&b='2'";
const NOTE: &str =
    "first line\nsecond 'line' with \"quotes\", $(touch pwned) and `touch pwned` \\ back\\slash";

/// The endpoints file, with the values above as RFC 4180 quoted cells.
fn endpoints() -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    format!(
        "provider,model,key,base_url,note,api-key-env\n\
         p,m,{},{},{},GROQ_API_KEY\n",
        quote(KEY),
        quote(BASE_URL),
        quote(NOTE)
    )
}

#[track_caller]
fn assert_not_pwned(env: &Env) {
    for entry in std::fs::read_dir(env.dir()).expect("list the temporary folder") {
        let name = entry.expect("a folder entry").file_name();
        assert!(
            !name.to_string_lossy().starts_with("pwned"),
            "a cell was executed: {name:?} exists"
        );
    }
}

#[test]
fn shell_output_round_trips_every_value_through_eval() {
    let env = Env::with_endpoints(&endpoints());
    let exports = env.ok(["pick", "--format", "shell", "--tokens", "12"]);
    assert!(exports.starts_with("export LLM_ROTATE_"), "{exports}");
    assert_not_pwned(&env);
    env.write("out", &exports);

    let script = r#"eval "$(cat out)" || exit 9
printf '%s\0' "$LLM_ROTATE_ID" "$LLM_ROTATE_PROVIDER" "$LLM_ROTATE_MODEL" "$LLM_ROTATE_TOKENS" \
    "$LLM_ROTATE_KEY" "$LLM_ROTATE_BASE_URL" "$LLM_ROTATE_NOTE" "$LLM_ROTATE_API_KEY_ENV" \
    "$LLM_ROTATE_LEASE"
"$LLM_ROTATE_BIN" record --lease "$LLM_ROTATE_LEASE" --tokens 3 || exit 8"#;
    let out = crate::Out::from(
        env.std_command("sh")
            .arg("-c")
            .arg(script)
            .env("LLM_ROTATE_BIN", bin())
            .output()
            .expect("run sh"),
    );
    out.code(0);
    let values: Vec<&str> = out.stdout.split('\0').collect();
    assert_eq!(values.len(), 10, "{out}");
    assert_eq!(
        &values[..8],
        ["p/m", "p", "m", "12", KEY, BASE_URL, NOTE, "GROQ_API_KEY"],
        "{out}"
    );
    let lease = values[8];
    assert!(!lease.is_empty(), "{out}");
    assert_not_pwned(&env);

    // The lease exported was the reservation's: recording it settled 12 tokens to 3.
    let row = env.state_of("p/m");
    assert_eq!(row["used"]["tpm"], 3, "{row}");
    assert_eq!(row["open_reservations"], 0, "{row}");
}

#[test]
fn json_output_carries_the_properties_and_the_key() {
    let env = Env::with_endpoints(&endpoints());
    let chosen = env.pick_json(&["--tokens", "7"]);
    assert_eq!(chosen["id"], "p/m");
    assert_eq!(chosen["tokens"], 7);
    assert!(chosen["lease"].is_string(), "{chosen}");
    assert_json(
        &chosen["props"],
        &json!({
            "key": KEY,
            "base_url": BASE_URL,
            "note": NOTE,
            "api-key-env": "GROQ_API_KEY",
        }),
    );
    assert_not_pwned(&env);
}

#[test]
fn the_key_never_appears_in_state_the_database_or_errors() {
    let env = Env::with_endpoints(&endpoints());
    env.pick(&["--tokens", "5"]);
    env.ok(["record", "p/m", "--tokens", "4"]);
    env.ok(["record", "p/m", "--add", "--tokens", "4"]);
    let secret = "sk-it's";
    for format in ["table", "json", "csv"] {
        let out = env.run(["state", "--format", format]);
        out.code(0);
        assert!(out.stdout.contains("p/m"), "{out}");
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "state --format {format} shows the key:\n{out}"
        );
    }
    for entry in std::fs::read_dir(env.dir()).expect("list the temporary folder") {
        let path = entry.expect("a folder entry").path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("usage"))
        {
            let bytes = std::fs::read(&path).expect("read a database file");
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds the key",
                path.display()
            );
        }
    }

    // An error in a row with a key names the bad cell, not the key.
    let bad = Env::new();
    bad.write(
        "bad.csv",
        "provider,model,rpm,key\np,m,30x,sk-secret-value-123\n",
    );
    let out = bad.fails(["--endpoints", "bad.csv", "pick"], 1);
    out.says(&["30x"]);
    assert!(!out.stderr.contains("sk-secret-value-123"), "{out}");
}

#[test]
fn a_column_named_like_one_of_our_variables_is_an_error() {
    for column in [
        "db",
        "Now",
        "lease",
        "endpoints",
        "usage",
        "attempt",
        "tokens",
    ] {
        let env = Env::with_endpoints(&format!("provider,model,{column}\np,m,x\n"));
        env.fails(["pick", "--format", "shell"], 1)
            .no_stdout()
            .says(&[
                &format!("endpoints.csv:1: column {column}: "),
                "LLM_ROTATE_",
            ]);
    }
    // Names that only begin so are properties.
    let env = Env::with_endpoints("provider,model,db_name,lease_note\np,m,x,y\n");
    let exports = env.ok(["pick", "--format", "shell"]);
    assert!(
        exports.contains("export LLM_ROTATE_DB_NAME='x'"),
        "{exports}"
    );
}

/// The lines of the README's first script that pick and eval, as the README shows them.
fn readme_pick_lines() -> String {
    let readme = include_str!("../../README.md");
    let lines: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.contains("--format shell) || exit"))
        .take(2)
        .collect();
    assert!(
        lines.len() == 2 && lines[1].starts_with("eval "),
        "the README's script should pick, stop on failure, then eval: {lines:?}"
    );
    lines
        .join("\n")
        .replace("llm-rotate ", "\"$LLM_ROTATE\" --endpoints \"$EP\" ")
}

#[test]
fn the_readmes_script_stops_when_no_quota_is_left() {
    let env = Env::with_endpoints("provider,model,rpm,tpm\np,m,1,\n");
    let script = format!(
        "{}\necho \"calling $LLM_ROTATE_MODEL\"",
        readme_pick_lines()
    );
    assert_eq!(env.sh(&script), "calling m\n");
    // The one request a minute is taken: the script must stop before the call, with 75.
    let mut cmd = env.std_command("sh");
    cmd.arg("-c")
        .arg(&script)
        .env("LLM_ROTATE", bin())
        .env("EP", env.endpoints_file());
    let out = crate::Out::from(cmd.output().expect("run the script"));
    out.code(75).no_stdout();
}

/// A provider stand-in on a free loopback port that answers each request with the next of
/// `responses` (raw HTTP), then closes.
fn stand_in(responses: Vec<String>) -> u16 {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for response in responses {
            let Ok((mut conn, _)) = listener.accept() else {
                return;
            };
            // The request: headers, then the body its Content-Length announces.
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = conn.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if got.len() >= end + 4 + length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let _ = conn.write_all(response.as_bytes());
        }
    });
    port
}

fn http(status: &str, headers: &[&str], body: &str) -> String {
    let mut text = format!(
        "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for header in headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    text + "\r\n" + body
}

#[test]
fn the_readmes_pick_call_record_script_settles_what_the_call_used() {
    if !crate::installed("curl", "curl") {
        return;
    }
    let readme = include_str!("../../README.md");
    let script: Vec<&str> = readme
        .lines()
        .skip_while(|l| *l != "#!/bin/sh")
        .take_while(|l| *l != "```")
        .collect();
    let script = script
        .join("\n")
        .replace("llm-rotate ", "\"$LLM_ROTATE\" --endpoints \"$EP\" ");
    assert!(script.contains("--usage out.json"), "{script}");
    let port = stand_in(vec![
        http(
            "200 OK",
            &[
                "x-ratelimit-remaining-requests: 2",
                "x-ratelimit-reset-requests: 1m",
            ],
            r#"{"usage":{"prompt_tokens":11,"completion_tokens":5,"total_tokens":16}}"#,
        ),
        http(
            "429 Too Many Requests",
            &["retry-after: 20"],
            r#"{"error":{"message":"slow down"}}"#,
        ),
    ]);
    let env = Env::with_endpoints(&format!(
        "provider,model,rpm,base_url,api_key_env\nopenai,m,10,http://127.0.0.1:{port}/v1,KEY\n"
    ));
    let run = || {
        let mut cmd = env.std_command("sh");
        cmd.arg("-c")
            .arg(&script)
            .env("LLM_ROTATE", bin())
            .env("EP", env.endpoints_file())
            .env("KEY", "sk-test");
        crate::Out::from(cmd.output().expect("run the script"))
    };
    run().code(0);
    let row = env.state_of("openai/m");
    assert_eq!(row["used"]["tpm"], 16, "the body's usage: {row}");
    assert_eq!(row["used"]["itpm"], 11, "its prompt tokens: {row}");
    assert_eq!(row["used"]["otpm"], 5, "its completion tokens: {row}");
    assert_eq!(row["remaining"]["rpm"], 2, "the provider's word: {row}");
    run().code(0);
    let row = env.state_of("openai/m");
    assert_eq!(row["used"]["tpm"], 16, "the 429 used no tokens: {row}");
    assert_eq!(row["cooldown"]["ends_in_s"], 20.0, "{row}");
    assert_eq!(row["open_reservations"], 0, "{row}");
}
