//! The reader end to end: dumps as providers and curl write them.

use super::*;
use crate::quota::Limit;

/// The whole reading: parsed as before the lock, told at `now` as under it.
fn read(dump: &str, dialect: Dialect, now: Millis) -> Told {
    Response::parse(dump).at(Some(dialect), now)
}

const NOW: Millis = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn limit(name: &str) -> Limit {
    Limit::from_name(name).expect("limit name")
}

/// Joins lines with CRLF, as curl writes them.
fn crlf(lines: &[&str]) -> String {
    lines.iter().map(|line| format!("{line}\r\n")).collect()
}

#[test]
fn dialects_by_name_and_by_provider() {
    for dialect in Dialect::ALL {
        assert_eq!(Dialect::from_name(dialect.name()), Some(dialect));
    }
    assert_eq!(Dialect::from_name("OpenAI"), Some(Dialect::OpenAi));
    assert_eq!(Dialect::from_name(" Groq "), Some(Dialect::Groq));
    assert_eq!(Dialect::from_name("claude"), None);
    assert_eq!(Dialect::from_name(""), None);

    assert_eq!(Dialect::for_provider("openai"), Some(Dialect::OpenAi));
    assert_eq!(Dialect::for_provider("azure-OpenAI"), Some(Dialect::OpenAi));
    assert_eq!(Dialect::for_provider("GroqCloud"), Some(Dialect::Groq));
    assert_eq!(Dialect::for_provider("anthropic"), Some(Dialect::Anthropic));
    assert_eq!(
        Dialect::for_provider("claude-work"),
        Some(Dialect::Anthropic)
    );
    assert_eq!(Dialect::for_provider("cerebras"), Some(Dialect::Cerebras));
    assert_eq!(Dialect::for_provider("groq-openai"), Some(Dialect::Groq));
    assert_eq!(
        Dialect::for_provider("cerebras-openai"),
        Some(Dialect::Cerebras)
    );
    assert_eq!(Dialect::for_provider("mistral"), None);
    assert_eq!(Dialect::for_provider(""), None);
}

#[test]
fn openai_requests_per_minute_and_tokens_per_minute() {
    let dump = crlf(&[
        "HTTP/2 200",
        "date: Thu, 01 Jan 2026 00:00:00 GMT",
        "content-type: application/json",
        "openai-organization: user-abc123",
        "openai-processing-ms: 412",
        "openai-version: 2020-10-01",
        "x-ratelimit-limit-requests: 10000",
        "X-RateLimit-Limit-Tokens: 30000000",
        "x-ratelimit-remaining-requests: 9999",
        "X-RateLimit-Remaining-Tokens: 29999980",
        "x-ratelimit-reset-requests: 6ms",
        "X-Ratelimit-Reset-Tokens: 6m0s",
        "x-request-id: req_0123456789abcdef",
        "",
    ]);
    let response = read(&dump, Dialect::OpenAi, NOW);
    assert_eq!(response.status, Some(200));
    assert_eq!(response.retry_after, None);
    assert_eq!(
        response.readings,
        [
            Reading {
                limit: limit("rpm"),
                cap: Some(10_000),
                remaining: 9_999,
                resets_at: NOW + 6,
            },
            Reading {
                limit: limit("tpm"),
                cap: Some(30_000_000),
                remaining: 29_999_980,
                resets_at: NOW + 360_000,
            },
        ]
    );
    assert_eq!(response.notes, Vec::<String>::new());
}

#[test]
fn groq_requests_are_per_day() {
    let dump = crlf(&[
        "HTTP/1.1 200 OK",
        "Date: Thu, 01 Jan 2026 00:00:00 GMT",
        "Content-Type: application/json",
        "Transfer-Encoding: chunked",
        "Connection: keep-alive",
        "Cache-Control: private, max-age=0, no-store, no-cache, must-revalidate",
        "x-groq-region: us-east-1",
        "x-ratelimit-limit-requests: 14400",
        "x-ratelimit-limit-tokens: 6000",
        "x-ratelimit-remaining-requests: 14370",
        "x-ratelimit-remaining-tokens: 5997",
        "x-ratelimit-reset-requests: 2m59.56s",
        "x-ratelimit-reset-tokens: 7.66s",
        "x-request-id: req_01jfgh",
        "Server: cloudflare",
        "",
    ]);
    let response = read(&dump, Dialect::Groq, NOW);
    assert_eq!(response.status, Some(200));
    assert_eq!(
        response.readings,
        [
            Reading {
                limit: limit("rpd"),
                cap: Some(14_400),
                remaining: 14_370,
                resets_at: NOW + 179_560,
            },
            Reading {
                limit: limit("tpm"),
                cap: Some(6_000),
                remaining: 5_997,
                resets_at: NOW + 7_660,
            },
        ]
    );
    assert_eq!(response.notes, Vec::<String>::new());
}

#[test]
fn anthropic_uses_the_combined_tokens_limit_when_sent() {
    let dump = crlf(&[
        "HTTP/2 429",
        "date: Thu, 01 Jan 2026 00:00:00 GMT",
        "content-type: application/json",
        "retry-after: 30",
        "anthropic-ratelimit-requests-limit: 50",
        "anthropic-ratelimit-requests-remaining: 0",
        "anthropic-ratelimit-requests-reset: 2026-01-01T00:00:30Z",
        "Anthropic-RateLimit-Tokens-Limit: 40000",
        "anthropic-ratelimit-tokens-remaining: 12000",
        "anthropic-ratelimit-tokens-reset: 2026-01-01T00:00:45.5Z",
        "anthropic-ratelimit-input-tokens-limit: 30000",
        "anthropic-ratelimit-input-tokens-remaining: 100",
        "anthropic-ratelimit-input-tokens-reset: 2026-01-01T00:00:10Z",
        "anthropic-ratelimit-output-tokens-limit: 8000",
        "anthropic-ratelimit-output-tokens-remaining: not-a-number",
        "anthropic-ratelimit-output-tokens-reset: 2026-01-01T00:00:05Z",
        "request-id: req_011CSHoEeqs5C35K2UUqR7Fy",
        "anthropic-organization-id: 0c8ce0e4-aaaa-bbbb-cccc-3ad2c6f0e4f1",
        "",
    ]);
    let response = read(&dump, Dialect::Anthropic, NOW);
    assert_eq!(response.status, Some(429));
    assert_eq!(response.retry_after, Some(NOW + 30_000));
    assert_eq!(
        response.readings,
        [
            Reading {
                limit: limit("rpm"),
                cap: Some(50),
                remaining: 0,
                resets_at: NOW + 30_000,
            },
            Reading {
                limit: limit("tpm"),
                cap: Some(40_000),
                remaining: 12_000,
                resets_at: NOW + 45_500,
            },
        ]
    );
    // The split headers are known, so even the malformed one is not a note.
    assert_eq!(response.notes, Vec::<String>::new());
}

#[test]
fn anthropic_without_combined_tokens_takes_the_split_limit_with_less_left() {
    let dump = crlf(&[
        "HTTP/2 200",
        "date: Thu, 01 Jan 2026 00:00:00 GMT",
        "content-type: application/json",
        "anthropic-ratelimit-requests-limit: 4000",
        "anthropic-ratelimit-requests-remaining: 3999",
        "anthropic-ratelimit-requests-reset: 2026-01-01T00:00:00.015Z",
        "anthropic-ratelimit-input-tokens-limit: 400000",
        "anthropic-ratelimit-input-tokens-remaining: 390000",
        "anthropic-ratelimit-input-tokens-reset: 2026-01-01T00:00:02Z",
        "anthropic-ratelimit-output-tokens-limit: 80000",
        "anthropic-ratelimit-output-tokens-remaining: 79000",
        "anthropic-ratelimit-output-tokens-reset: 2026-01-01T01:00:03+01:00",
        "",
    ]);
    let response = read(&dump, Dialect::Anthropic, NOW);
    assert_eq!(
        response.readings,
        [
            Reading {
                limit: limit("rpm"),
                cap: Some(4_000),
                remaining: 3_999,
                resets_at: NOW + 15,
            },
            Reading {
                limit: limit("tpm"),
                cap: Some(80_000),
                remaining: 79_000,
                resets_at: NOW + 3_000,
            },
        ]
    );
    assert_eq!(response.notes, Vec::<String>::new());

    // With output unreadable, input is the only split reading, and the bad header is noted.
    let dump = dump.replace("remaining: 79000", "remaining: lots");
    let response = read(&dump, Dialect::Anthropic, NOW);
    assert_eq!(response.readings.len(), 2);
    assert_eq!(
        response.readings[1],
        Reading {
            limit: limit("tpm"),
            cap: Some(400_000),
            remaining: 390_000,
            resets_at: NOW + 2_000,
        }
    );
    assert_eq!(
        response.notes,
        [
            r#"ignored anthropic-ratelimit-output-tokens-limit: no usable anthropic-ratelimit-output-tokens-remaining"#,
            r#"ignored anthropic-ratelimit-output-tokens-remaining: "lots" is not a whole number"#,
            r#"ignored anthropic-ratelimit-output-tokens-reset: no usable anthropic-ratelimit-output-tokens-remaining"#,
        ]
    );
}

#[test]
fn anthropic_split_limits_tie_on_remaining_takes_the_later_reset() {
    let dump = crlf(&[
        "anthropic-ratelimit-input-tokens-remaining: 500",
        "anthropic-ratelimit-input-tokens-reset: 2026-01-01T00:00:02Z",
        "anthropic-ratelimit-output-tokens-remaining: 500",
        "anthropic-ratelimit-output-tokens-reset: 2026-01-01T00:00:09Z",
    ]);
    let response = read(&dump, Dialect::Anthropic, NOW);
    assert_eq!(response.readings.len(), 1);
    assert_eq!(response.readings[0].resets_at, NOW + 9_000);
    assert_eq!(response.readings[0].cap, None);
}

#[test]
fn cerebras_resets_are_seconds() {
    let dump = crlf(&[
        "HTTP/1.1 200 OK",
        "Date: Thu, 01 Jan 2026 00:00:00 GMT",
        "Content-Type: application/json",
        "Content-Length: 812",
        "Connection: keep-alive",
        "x-ratelimit-limit-requests-day: 14400",
        "x-ratelimit-limit-tokens-minute: 60000",
        "x-ratelimit-remaining-requests-day: 14399",
        "x-ratelimit-remaining-tokens-minute: 59800",
        "x-ratelimit-reset-requests-day: 33011.382867097855",
        "x-ratelimit-reset-tokens-minute: 11.382867097855",
        "inference-id: chatcmpl-5c3e",
        "",
    ]);
    let response = read(&dump, Dialect::Cerebras, NOW);
    assert_eq!(response.status, Some(200));
    assert_eq!(
        response.readings,
        [
            Reading {
                limit: limit("rpd"),
                cap: Some(14_400),
                remaining: 14_399,
                resets_at: NOW + 33_011_383,
            },
            Reading {
                limit: limit("tpm"),
                cap: Some(60_000),
                remaining: 59_800,
                resets_at: NOW + 11_383,
            },
        ]
    );
    assert_eq!(response.notes, Vec::<String>::new());

    let response = read(
        &crlf(&[
            "x-ratelimit-remaining-tokens-minute: 5",
            "x-ratelimit-reset-tokens-minute: 5m",
        ]),
        Dialect::Cerebras,
        NOW,
    );
    assert_eq!(response.readings, []);
    assert_eq!(
        response.notes,
        [
            "ignored x-ratelimit-remaining-tokens-minute: no usable x-ratelimit-reset-tokens-minute",
            r#"ignored x-ratelimit-reset-tokens-minute: "5m" is not a number of seconds"#,
        ]
    );
}

#[test]
fn only_the_last_response_of_a_dump_counts() {
    let dump = crlf(&[
        "HTTP/1.1 100 Continue",
        "",
        "HTTP/1.1 429 Too Many Requests",
        "Date: Thu, 01 Jan 2026 00:00:00 GMT",
        "Content-Type: application/json",
        "Retry-After: 20",
        "x-ratelimit-remaining-requests: 0",
        "x-ratelimit-reset-requests: 20s",
        "",
    ]);
    let response = read(&dump, Dialect::OpenAi, NOW);
    assert_eq!(response.status, Some(429));
    assert_eq!(response.retry_after, Some(NOW + 20_000));
    assert_eq!(
        response.readings,
        [Reading {
            limit: limit("rpm"),
            cap: None,
            remaining: 0,
            resets_at: NOW + 20_000,
        }]
    );
    assert_eq!(response.notes, Vec::<String>::new());

    // A redirect's headers are not the final answer's, even when the final has none.
    let dump = crlf(&[
        "HTTP/1.1 301 Moved Permanently",
        "Location: https://api.example.com/v1/chat",
        "x-ratelimit-remaining-requests: 5",
        "x-ratelimit-reset-requests: 1s",
        "",
        "HTTP/2 503",
        "content-type: text/plain",
        "",
    ]);
    let response = read(&dump, Dialect::OpenAi, NOW);
    assert_eq!(response.status, Some(503));
    assert_eq!(response.readings, []);
    assert_eq!(response.notes, Vec::<String>::new());
}

#[test]
fn a_dump_without_status_line_is_just_headers_and_lf_works() {
    let dump = "\nx-ratelimit-remaining-requests: 7\nx-ratelimit-reset-requests: 1s\n";
    let response = read(dump, Dialect::Groq, NOW);
    assert_eq!(response.status, None);
    assert_eq!(
        response.readings,
        [Reading {
            limit: limit("rpd"),
            cap: None,
            remaining: 7,
            resets_at: NOW + 1_000,
        }]
    );
}

#[test]
fn a_response_follows_only_an_interim_one_and_a_body_is_never_headers() {
    // `curl -i`: the body quotes a status line and headers; they are text.
    let dump = crlf(&[
        "HTTP/1.1 429 Too Many Requests",
        "retry-after: 3",
        "",
        "HTTP/1.1 200 OK",
        "retry-after: 3600",
    ]);
    let response = read(&dump, Dialect::OpenAi, NOW);
    assert_eq!(response.status, Some(429));
    assert_eq!(response.retry_after, Some(NOW + 3_000));
    let dump = crlf(&["HTTP/2 200", "", "HTTP/1.1 429 Too Many Requests"]);
    assert_eq!(
        Response::parse(&dump).status,
        Some(200),
        "a body line hides nothing"
    );
    // Interim answers, then the final one.
    for first in [
        "HTTP/1.1 100 Continue",
        "HTTP/1.1 301 Moved Permanently",
        "HTTP/1.1 200 Connection established",
    ] {
        let dump = crlf(&[first, "", "HTTP/2 429", "retry-after: 5", "", "{}"]);
        let response = read(&dump, Dialect::OpenAi, NOW);
        assert_eq!(
            (response.status, response.retry_after),
            (Some(429), Some(NOW + 5_000)),
            "{first}"
        );
    }
}

#[test]
fn times_more_than_32_days_ahead_are_taken_as_32_days_with_a_note() {
    let furthest = NOW + 32 * 24 * 3_600_000;
    let response = read(
        &crlf(&[
            "HTTP/1.1 429",
            "retry-after: 99999999999",
            "x-ratelimit-limit-requests: 60",
            "x-ratelimit-remaining-requests: 0",
            "x-ratelimit-reset-requests: 9999999h",
        ]),
        Dialect::OpenAi,
        NOW,
    );
    assert_eq!(response.retry_after, Some(furthest));
    assert_eq!(response.readings.len(), 1, "{response:?}");
    assert_eq!(response.readings[0].resets_at, furthest);
    assert_eq!(response.notes.len(), 2, "{:?}", response.notes);
    assert!(
        response.notes[0].contains("more than 32 days ahead"),
        "{:?}",
        response.notes
    );
    // Up to 32 days is taken as it is.
    let response = read(
        &crlf(&["HTTP/1.1 429", "retry-after: 2764800"]),
        Dialect::OpenAi,
        NOW,
    );
    assert_eq!(
        (response.retry_after, response.notes.len()),
        (Some(furthest), 0)
    );
}

#[test]
fn retry_after_takes_the_later_of_seconds_date_and_milliseconds() {
    let response = read(
        &crlf(&["HTTP/1.1 429", "retry-after: 2", "retry-after-ms: 2500.4"]),
        Dialect::OpenAi,
        NOW,
    );
    assert_eq!(response.status, Some(429));
    assert_eq!(response.retry_after, Some(NOW + 2_500));

    let response = read(
        &crlf(&[
            "Retry-After: Thu, 01 Jan 2026 00:01:00 GMT",
            "retry-after-ms: 1",
        ]),
        Dialect::Anthropic,
        NOW,
    );
    assert_eq!(response.retry_after, Some(NOW + 60_000));

    let response = read(
        "retry-after: Wed, 31 Dec 2025 23:00:00 GMT",
        Dialect::Cerebras,
        NOW,
    );
    assert_eq!(response.retry_after, Some(NOW), "a past date means now");
}

#[test]
fn a_remaining_above_the_limit_is_clamped() {
    let response = read(
        &crlf(&[
            "x-ratelimit-limit-tokens: 100",
            "x-ratelimit-remaining-tokens: 150",
            "x-ratelimit-reset-tokens: 1s",
        ]),
        Dialect::OpenAi,
        NOW,
    );
    assert_eq!(response.readings[0].cap, Some(100));
    assert_eq!(response.readings[0].remaining, 100);
}

#[test]
fn large_counts_fit() {
    let response = read(
        &crlf(&[
            "x-ratelimit-limit-tokens: 18446744073709551615",
            "x-ratelimit-remaining-tokens: 18446744073709551614",
            "x-ratelimit-reset-tokens: 0s",
        ]),
        Dialect::OpenAi,
        NOW,
    );
    assert_eq!(
        response.readings,
        [Reading {
            limit: limit("tpm"),
            cap: Some(u64::MAX),
            remaining: u64::MAX - 1,
            resets_at: NOW,
        }]
    );
}

#[test]
fn unknown_and_malformed_headers_become_notes() {
    let dump = crlf(&[
        "HTTP/1.1 429 Too Many Requests",
        "Content-Type: application/json",
        "x-ratelimit-limit-requests: 60",
        "x-ratelimit-remaining-requests: abc",
        "x-ratelimit-reset-requests: 1s",
        "x-ratelimit-limit-requests-day: 1000",
        "anthropic-ratelimit-tokens-limit: 5",
        "x-ratelimit-remaining-tokens: 18446744073709551616",
        "x-ratelimit-reset-tokens: soon",
        "x-ratelimit-limit-tokens: 1.0",
        "this is not a header",
        "bad name: value",
        "retry-after: later",
        "retry-after-ms: -5",
        "x-ratelimit-reset-requests: 2s",
        "",
        "{\"error\": {\"message\": \"Rate limit reached\"}}",
        "",
    ]);
    let response = read(&dump, Dialect::OpenAi, NOW);
    assert_eq!(response.status, Some(429));
    assert_eq!(response.retry_after, None);
    assert_eq!(response.readings, []);
    assert_eq!(
        response.notes,
        [
            r#"ignored x-ratelimit-limit-requests: no usable x-ratelimit-remaining-requests"#,
            r#"ignored x-ratelimit-remaining-requests: "abc" is not a whole number"#,
            r#"ignored x-ratelimit-reset-requests: no usable x-ratelimit-remaining-requests"#,
            r#"ignored x-ratelimit-limit-requests-day: not a rate-limit header of the openai dialect"#,
            r#"ignored anthropic-ratelimit-tokens-limit: not a rate-limit header of the openai dialect"#,
            r#"ignored x-ratelimit-remaining-tokens: "18446744073709551616" is too large a number"#,
            r#"ignored x-ratelimit-reset-tokens: "soon" is not a duration (like 30s, 2m, 1h5m)"#,
            r#"ignored x-ratelimit-limit-tokens: "1.0" is not a whole number"#,
            r#"ignored line 11: "this is not a header" is not a header"#,
            r#"ignored line 12: "bad name: value" is not a header"#,
            r#"ignored retry-after: "later" is neither a duration (like 30s, 2m, 1h5m) nor an HTTP date (like Wed, 21 Oct 2026 07:28:00 GMT)"#,
            r#"ignored retry-after-ms: "-5" is not a number of milliseconds"#,
            r#"ignored x-ratelimit-reset-requests: sent twice; the first value counts"#,
            r#"ignored 1 line from line 17 on: after the blank line that ends the headers"#,
        ]
    );
}

#[test]
fn a_limit_alone_is_noted_and_other_dialects_headers_are_unknown() {
    let response = read(
        "x-ratelimit-limit-requests: 30\nanthropic-ratelimit-requests-limit: 5\n",
        Dialect::Anthropic,
        NOW,
    );
    assert_eq!(response.readings, []);
    assert_eq!(
        response.notes,
        [
            "ignored x-ratelimit-limit-requests: not a rate-limit header of the anthropic dialect",
            "ignored anthropic-ratelimit-requests-limit: no usable anthropic-ratelimit-requests-remaining or anthropic-ratelimit-requests-reset",
        ]
    );
}

#[test]
fn a_bad_status_line_and_a_long_junk_line_are_noted_briefly() {
    let junk = "x".repeat(500);
    let response = read(&format!("HTTP/1.1 OK\r\n{junk}\r\n"), Dialect::OpenAi, NOW);
    assert_eq!(response.status, None);
    assert_eq!(
        response.notes,
        [
            r#"ignored status line "HTTP/1.1 OK": no status code"#.to_string(),
            format!(r#"ignored line 2: "{}"... is not a header"#, "x".repeat(60)),
        ]
    );
}

#[test]
fn empty_dumps_say_nothing() {
    assert_eq!(read("", Dialect::OpenAi, NOW), Told::default());
    assert_eq!(read("\r\n\r\n", Dialect::Groq, NOW), Told::default());
    assert_eq!(read("\u{feff}", Dialect::Cerebras, NOW), Told::default());
}

#[test]
fn a_status_line_alone_has_only_a_status() {
    let response = read("HTTP/2 204\r\n", Dialect::Anthropic, NOW);
    assert_eq!(
        response,
        Told {
            status: Some(204),
            ..Told::default()
        }
    );
}
