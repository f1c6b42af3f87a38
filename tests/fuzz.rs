//! Hostile input, generated (SPEC 15): header dumps, usage bodies and endpoints files made
//! of the pieces a real one has, mixed with junk, cut anywhere, and repeated. Each case
//! checks what must hold whatever the input: nothing panics, provider times stay within 32
//! days, every note and error is one short line. The library runs thousands of cases; the
//! release-built binary runs fewer, where a panic would be an abort (exit 134).
//!
//! Bounded time: a fixed number of cases with inputs of at most a few hundred KiB.

use llm_rotate::clock::Millis;
use llm_rotate::endpoints;
use llm_rotate::response::{Dialect, Response, Went, usage};
use proptest::prelude::*;

const NOW: Millis = 1_767_225_600_000;
const FURTHEST: Millis = NOW + 32 * 24 * 3_600_000;

/// A line as a dump might hold one: real status lines and rate-limit headers with values
/// good and bad, body text, and bytes nobody should send.
fn dump_line() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec![
        "retry-after",
        "Retry-After",
        "retry-after-ms",
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
        "x-ratelimit-remaining-requests-day",
        "x-ratelimit-reset-tokens-minute",
        "anthropic-ratelimit-requests-remaining",
        "anthropic-ratelimit-input-tokens-reset",
        "anthropic-ratelimit-output-tokens-remaining",
        "anthropic-ratelimit-tokens-reset",
        "content-type",
        "bad name",
    ]);
    let value = prop_oneof![
        (0u64..u64::MAX).prop_map(|n| n.to_string()),
        "[0-9]{1,30}",
        "[0-9]{1,6}(ms|s|m|h|d)",
        "[0-9]{1,3}m[0-9]{1,2}\\.[0-9]{1,4}s",
        Just("9999999h".to_owned()),
        Just("Thu, 01 Jan 2026 00:01:00 GMT".to_owned()),
        Just("Fri, 31 Dec 9999 23:59:59 GMT".to_owned()),
        Just("9999-12-31T23:59:59Z".to_owned()),
        Just("2026-01-01T00:00:30Z".to_owned()),
        ".{0,40}",
        "[\\x00-\\x1f\\u{202e}\\u{fffe}]{1,8}",
    ];
    prop_oneof![
        4 => (name, value).prop_map(|(n, v)| format!("{n}: {v}")),
        1 => prop::sample::select(vec![
            "HTTP/1.1 200 OK",
            "HTTP/2 429",
            "HTTP/1.1 503 Service Unavailable",
            "HTTP/1.1 100 Continue",
            "HTTP/1.1 301 Moved",
            "HTTP/1.1 200 Connection established",
            "HTTP/1.1 OK",
            "HTTP/",
        ])
        .prop_map(str::to_owned),
        1 => Just(String::new()),
        1 => ".{0,200}",
    ]
}

fn dump() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(dump_line(), 0..60),
        prop::sample::select(vec!["\r\n", "\n", "\r"]),
        any::<bool>(),
        0usize..3_000,
    )
        .prop_map(|(lines, eol, bom, repeat)| {
            let mut text = if bom {
                "\u{feff}".to_owned()
            } else {
                String::new()
            };
            text.push_str(&lines.join(eol));
            // Some dumps repeat their last line thousands of times.
            if let Some(last) = lines.last() {
                text.push_str(&format!("{eol}{last}").repeat(repeat));
            }
            text
        })
}

fn check_dump(text: &str) -> Result<(), TestCaseError> {
    let response = Response::parse(text);
    let lines = text.lines().count();
    for dialect in Dialect::ALL.map(Some).into_iter().chain([None]) {
        let told = response.at(dialect, NOW);
        prop_assert_eq!(told.status, response.status);
        if let Some(at) = told.retry_after {
            prop_assert!((NOW..=FURTHEST).contains(&at), "retry-after {at}");
            prop_assert_eq!(response.went(), Some(Went::Refused));
        }
        for reading in &told.readings {
            prop_assert!(reading.resets_at <= FURTHEST, "{reading:?}");
            prop_assert!(reading.cap.is_none_or(|cap| reading.remaining <= cap));
        }
        // At most a note per line, and a few about the whole (a cut, a count, resets).
        prop_assert!(told.notes.len() <= lines + 8, "{} notes", told.notes.len());
        for note in &told.notes {
            prop_assert!(!note.contains('\n'), "{note:?}");
        }
    }
    match response.status {
        Some(200..=299) => prop_assert_eq!(response.went(), Some(Went::Success)),
        Some(429) => prop_assert_eq!(response.went(), Some(Went::Refused)),
        _ => {}
    }
    Ok(())
}

/// A usage body: real shapes with numbers in and out of range, JSON cut short, SSE.
fn usage_body() -> impl Strategy<Value = Vec<u8>> {
    let number = prop_oneof![
        (0u64..u64::MAX).prop_map(|n| n.to_string()),
        Just("-1".to_owned()),
        Just("1e400".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("null".to_owned()),
        Just("\"12\"".to_owned()),
    ];
    let shape = (number.clone(), number).prop_map(|(a, b)| {
        vec![
            format!(r#"{{"usage":{{"total_tokens":{a}}}}}"#),
            format!(r#"{{"usage":{{"input_tokens":{a},"output_tokens":{b}}}}}"#),
            format!(r#"{{"usageMetadata":{{"totalTokenCount":{a}}}}}"#),
            format!("data: {{\"usage\":{{\"total_tokens\":{a}}}}}\n\ndata: [DONE]\n\n"),
            format!(" {a}\n"),
        ]
    });
    (shape, 0usize..5, 0usize..400, 0usize..20_000).prop_map(|(shapes, which, cut, nest)| {
        let mut body = shapes[which].clone().into_bytes();
        body.truncate(body.len().saturating_sub(cut % 3 * cut));
        // Deep nesting: a parser that recurses without a limit would overflow its stack.
        body.extend(std::iter::repeat_n(b'[', nest));
        body
    })
}

/// An endpoints file: known columns with cells good and bad, Markdown or CSV, quoting
/// that never closes, and huge or hostile cells.
fn endpoints_file() -> impl Strategy<Value = String> {
    let column = prop::sample::select(vec![
        "provider",
        "model",
        "id",
        "rpm",
        "tpd",
        "rph",
        "pool",
        "pool_rpm",
        "priority",
        "weight",
        "concurrency",
        "pace",
        "day_reset",
        "headers",
        "key",
        "note",
    ]);
    let cell = prop_oneof![
        "[a-z]{1,8}",
        "[0-9]{1,25}[kKmM]?",
        Just("1_000".to_owned()),
        Just("\"unclosed".to_owned()),
        Just("a\u{202e}b".to_owned()),
        Just("\u{1b}[2J".to_owned()),
        Just("UTC+05:45".to_owned()),
        Just("x".repeat(70_000)),
        ".{0,30}",
    ];
    (
        prop::collection::vec(column, 1..8),
        prop::collection::vec(prop::collection::vec(cell, 0..9), 0..30),
        any::<bool>(),
    )
        .prop_map(|(columns, rows, markdown)| {
            let join = |cells: &[String]| {
                if markdown {
                    format!("| {} |", cells.join(" | "))
                } else {
                    cells.join(",")
                }
            };
            let header: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
            let mut text = join(&header) + "\n";
            if markdown {
                text += &join(&vec!["---".to_owned(); header.len()]);
                text += "\n";
            }
            for row in rows {
                text += &join(&row);
                text += "\n";
            }
            text
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_dump_reads_without_panic_within_bounds(text in dump()) {
        check_dump(&text)?;
    }

    #[test]
    fn any_bytes_read_as_a_dump(bytes in prop::collection::vec(any::<u8>(), 0..4_000)) {
        let response = Response::read_from(&bytes[..]).expect("a slice reads");
        let told = response.at(Some(Dialect::OpenAi), NOW);
        prop_assert!(told.retry_after.is_none_or(|at| at <= FURTHEST));
    }

    #[test]
    fn any_usage_body_is_a_count_or_nothing(body in usage_body()) {
        // Whatever it is, the answer is a whole number or the estimate stands; no panic.
        for usage in [usage::in_file(&body), usage::in_body(&body)].into_iter().flatten() {
            prop_assert!(usage.total() >= usage.input.max(usage.cached).max(usage.output));
        }
    }

    #[test]
    fn any_endpoints_file_loads_or_says_why_in_short_lines(text in endpoints_file()) {
        match endpoints::parse(&text, "e.csv") {
            Ok(rows) => {
                for row in rows {
                    prop_assert!(row.id.len() <= 1024);
                    let hostile = |c: char| c.is_control() || c == '\u{202e}';
                    prop_assert!(!row.id.chars().any(hostile), "{:?}", row.id);
                }
            }
            Err(errors) => {
                prop_assert!(!errors.problems.is_empty());
                for problem in &errors.problems {
                    prop_assert!(problem.starts_with("e.csv"), "{problem:.300}");
                    prop_assert!(problem.chars().count() < 400, "{problem:.300}…");
                    prop_assert!(!problem.contains('\u{1b}'), "{problem:?}");
                }
            }
        }
    }
}

/// Runs the binary in a fresh folder with `files` written there; returns its exit code,
/// stdout and stderr.
fn run(files: &[(&str, &[u8])], args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, contents) in files {
        std::fs::write(dir.path().join(name), contents).expect("write");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_llm-rotate"))
        .current_dir(dir.path())
        .env("LLM_ROTATE_NOW", (NOW / 1000).to_string())
        .env("LLM_ROTATE_DB", dir.path().join("ledger.db"))
        .env("LLM_ROTATE_ENDPOINTS", dir.path().join("e.csv"))
        .env_remove("LLM_ROTATE_REDIS")
        .args(args)
        .output()
        .expect("run llm-rotate");
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("UTF-8 output");
    (
        out.status.code().unwrap_or(-1),
        text(out.stdout),
        text(out.stderr),
    )
}

/// Every line on stderr is one of ours, short, with nothing a terminal would obey.
fn check_stderr(stderr: &str) -> Result<(), TestCaseError> {
    for line in stderr.lines() {
        prop_assert!(line.starts_with("llm-rotate: "), "{line:?}");
        prop_assert!(!line.contains('\u{1b}'), "{line:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn the_binary_records_any_dump(text in dump()) {
        let endpoints = b"provider,model,rpm\nopenai,m,10\n";
        let (code, stdout, stderr) = run(
            &[("e.csv", endpoints), ("dump.txt", text.as_bytes())],
            &["record", "openai/m", "--headers", "dump.txt"],
        );
        // A dump never costs the record.
        prop_assert_eq!(code, 0, "{}", stderr);
        prop_assert_eq!(stdout, "");
        check_stderr(&stderr)?;
        prop_assert!(stderr.lines().all(|l| l.chars().count() <= 260), "{}", stderr);
    }

    #[test]
    fn the_binary_picks_or_explains_any_endpoints_file(text in endpoints_file()) {
        let (code, _, stderr) = run(&[("e.csv", text.as_bytes())], &["pick"]);
        prop_assert!([0, 1, 75].contains(&code), "exit {code}: {stderr}");
        check_stderr(&stderr)?;
    }
}
