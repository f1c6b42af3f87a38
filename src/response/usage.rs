//! What a call used, by kind, from what it left behind: a usage file, or a response body
//! that is one JSON response or an SSE stream. One parser for `exec`, `record --usage` and
//! whatever makes the call itself. The shapes are the major APIs':
//! - OpenAI chat: `usage.prompt_tokens` (cached ones included, as
//!   `prompt_tokens_details.cached_tokens`), `usage.completion_tokens`; OpenAI responses:
//!   `usage.input_tokens` with `input_tokens_details.cached_tokens`, `usage.output_tokens`;
//!   a bare `usage.total_tokens` is input.
//! - Anthropic: `usage.input_tokens` (uncached), `cache_creation_input_tokens` (input),
//!   `cache_read_input_tokens` (cached), `output_tokens`.
//! - Gemini: `usageMetadata.promptTokenCount` (cached ones included, as
//!   `cachedContentTokenCount`), `candidatesTokenCount` + `thoughtsTokenCount` as output.
//!
//! In a stream, the last usage counts, except that Anthropic's is split: the input and
//! cache counts of `message_start`, the output of the last `message_delta` (cumulative).

use std::io::Read;

use serde_json::Value;

/// The most of a usage file that is read (SPEC 15).
const FILE_CAP: u64 = 64 << 20;

/// The note for a usage file over [`FILE_CAP`].
pub const TOO_LARGE: &str = "the usage file is over 64 MiB; ignored, the estimate stands";

/// A usage file's bytes; `None` when it is over 64 MiB, which `size` (a regular file's,
/// when known) tells without reading it.
pub fn read(reader: impl Read, size: Option<u64>) -> std::io::Result<Option<Vec<u8>>> {
    if size.is_some_and(|size| size > FILE_CAP) {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    reader.take(FILE_CAP + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= FILE_CAP).then_some(bytes))
}

/// Tokens by kind: `input` is prompt tokens not read from a cache (cache writes included),
/// `cached` prompt tokens read from one, `output` completion tokens (reasoning included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub cached: u64,
    pub output: u64,
}

impl Usage {
    /// What token limits count: every kind.
    pub fn total(self) -> u64 {
        self.input
            .saturating_add(self.cached)
            .saturating_add(self.output)
    }
}

/// The usage a usage file reports: a whole number (input tokens), else what a response
/// in it reports.
pub fn in_file(text: &[u8]) -> Option<Usage> {
    let number = std::str::from_utf8(text).ok()?.trim().parse::<u64>();
    match number {
        Ok(input) => Some(Usage {
            input,
            ..Usage::default()
        }),
        Err(_) => in_body(text),
    }
}

/// The usage a response body reports: one JSON response, or an SSE stream's `data:` lines.
/// `None` when it reports none; a bare number on a command's output is its answer, not a
/// count of tokens.
pub fn in_body(text: &[u8]) -> Option<Usage> {
    let text = std::str::from_utf8(text).ok()?.trim_start();
    if text.starts_with('{') {
        let body: Value = serde_json::from_str(text).ok()?;
        return of(&body);
    }
    in_stream(text)
}

/// The usage of an SSE stream: each `data:` line that mentions usage is one JSON event.
fn in_stream(text: &str) -> Option<Usage> {
    let mut last: Option<Usage> = None;
    // Anthropic's message_start, whose output count later deltas replace.
    let mut started: Option<Usage> = None;
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        // Most events are text; only those that mention usage are worth parsing.
        if !data.contains("sage") {
            continue;
        }
        let Ok(event) = serde_json::from_str::<Value>(data.trim()) else {
            continue;
        };
        match event.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                started = event.get("message").and_then(of);
                last = started.or(last);
            }
            Some("message_delta") => {
                let output = event
                    .pointer("/usage/output_tokens")
                    .and_then(Value::as_u64);
                if let (Some(start), Some(output)) = (started, output) {
                    last = Some(Usage { output, ..start });
                } else if let Some(usage) = of(&event) {
                    last = Some(usage);
                }
            }
            _ => last = of(&event).or(last),
        }
    }
    last
}

/// The usage one JSON response (or stream event) reports, in any known shape.
fn of(body: &Value) -> Option<Usage> {
    let number = |at: &Value, path: &str| at.pointer(path).and_then(Value::as_u64);
    if let Some(meta) = body.get("usageMetadata") {
        // Gemini: the prompt count includes the cached part.
        let prompt = number(meta, "/promptTokenCount");
        let cached = number(meta, "/cachedContentTokenCount").unwrap_or(0);
        let output = number(meta, "/candidatesTokenCount")
            .unwrap_or(0)
            .saturating_add(number(meta, "/thoughtsTokenCount").unwrap_or(0));
        return match prompt {
            Some(prompt) => Some(Usage {
                input: prompt.saturating_sub(cached),
                cached: cached.min(prompt),
                output,
            }),
            None => number(meta, "/totalTokenCount").map(|input| Usage {
                input,
                ..Usage::default()
            }),
        };
    }
    let usage = body.get("usage").filter(|u| u.is_object())?;
    if let Some(prompt) = number(usage, "/prompt_tokens") {
        // OpenAI chat: the prompt count includes the cached part.
        let cached = number(usage, "/prompt_tokens_details/cached_tokens").unwrap_or(0);
        return Some(Usage {
            input: prompt.saturating_sub(cached),
            cached: cached.min(prompt),
            output: number(usage, "/completion_tokens").unwrap_or(0),
        });
    }
    if let Some(input) = number(usage, "/input_tokens") {
        let output = number(usage, "/output_tokens").unwrap_or(0);
        if let Some(cached) = number(usage, "/input_tokens_details/cached_tokens") {
            // OpenAI responses: like chat, under other names.
            return Some(Usage {
                input: input.saturating_sub(cached),
                cached: cached.min(input),
                output,
            });
        }
        // Anthropic: input counts only uncached tokens; cache writes are input too.
        let written = number(usage, "/cache_creation_input_tokens").unwrap_or(0);
        return Some(Usage {
            input: input.saturating_add(written),
            cached: number(usage, "/cache_read_input_tokens").unwrap_or(0),
            output,
        });
    }
    // A bare total: the split is unknown, so it counts as input.
    number(usage, "/total_tokens").map(|input| Usage {
        input,
        ..Usage::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, cached: u64, output: u64) -> Option<Usage> {
        Some(Usage {
            input,
            cached,
            output,
        })
    }

    #[test]
    fn every_known_json_shape_by_kind() {
        for (body, expected) in [
            (&b" 812\n"[..], usage(812, 0, 0)),
            (br#"{"usage":{"total_tokens":21}}"#, usage(21, 0, 0)),
            (
                br#"{"usage":{"prompt_tokens":100,"completion_tokens":7,"total_tokens":107,
                   "prompt_tokens_details":{"cached_tokens":60}}}"#,
                usage(40, 60, 7),
            ),
            (
                br#"{"usage":{"prompt_tokens":9,"completion_tokens":12}}"#,
                usage(9, 0, 12),
            ),
            (
                br#"{"usage":{"input_tokens":10,"output_tokens":25}}"#,
                usage(10, 0, 25),
            ),
            (
                br#"{"usage":{"input_tokens":10,"cache_creation_input_tokens":5,
                   "cache_read_input_tokens":300,"output_tokens":25}}"#,
                usage(15, 300, 25),
            ),
            (
                br#"{"usage":{"input_tokens":50,"input_tokens_details":{"cached_tokens":20},
                   "output_tokens":4}}"#,
                usage(30, 20, 4),
            ),
            (
                br#"{"usageMetadata":{"promptTokenCount":30,"cachedContentTokenCount":10,
                   "candidatesTokenCount":5,"thoughtsTokenCount":2,"totalTokenCount":37}}"#,
                usage(20, 10, 7),
            ),
            (
                br#"{"usageMetadata":{"totalTokenCount":8}}"#,
                usage(8, 0, 0),
            ),
        ] {
            assert_eq!(in_file(body), expected, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn a_stream_reports_its_last_usage_and_anthropic_its_start_with_its_last_delta() {
        let openai = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n\
                      data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":3}}\n\n\
                      data: [DONE]\n\n";
        assert_eq!(in_body(openai.as_bytes()), usage(11, 0, 3));
        let anthropic = "event: message_start\n\
            data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":12,\"cache_read_input_tokens\":100,\"output_tokens\":1}}}\n\n\
            event: content_block_delta\n\
            data: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"usage\"}}\n\n\
            event: message_delta\n\
            data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":40}}\n\n\
            event: message_delta\n\
            data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":57}}\n\n\
            event: message_stop\n\
            data: {\"type\":\"message_stop\"}\n\n";
        assert_eq!(
            in_body(anthropic.as_bytes()),
            usage(12, 100, 57),
            "cumulative: the last delta, not the sum"
        );
        let gemini = "data: {\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":1}}\r\n\r\n\
                      data: {\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":9}}\r\n\r\n";
        assert_eq!(in_body(gemini.as_bytes()), usage(4, 0, 9));
        // A stream cut before its usage reports none: the estimate stands.
        assert_eq!(
            in_body(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n"),
            None
        );
    }

    #[test]
    fn a_response_is_json_or_a_stream_never_a_bare_number() {
        assert_eq!(in_body(b"5000000\n"), None);
        assert_eq!(
            in_body(br#"{"usage":{"total_tokens":21}}"#),
            usage(21, 0, 0)
        );
    }

    #[test]
    fn anything_else_leaves_the_estimate() {
        for text in [
            &b""[..],
            b"-5",
            b"12 tokens",
            b"{\"usage\":{}}",
            b"{\"usage\":null}",
            b"{\"usage\":{\"output_tokens\":4}}",
            b"[1,2]",
            b"\xff\xfe",
            b"data: not json with usage\n\n",
        ] {
            assert_eq!(in_file(text), None, "{:?}", String::from_utf8_lossy(text));
        }
    }
}
