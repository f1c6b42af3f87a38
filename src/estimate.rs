//! A token estimate for callers that do not count: a prompt's size in bytes divided by 3,
//! rounded up (BPE tokenizers average 3 to 4 bytes a token in English, so this leans high;
//! `record` settles the real count), plus the completion tokens the caller allows, which
//! providers count in their own estimate.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};

use crate::quota::Request;

/// Where the estimate comes from.
pub enum Source<'a> {
    Count(u64),
    /// The size of a file; `-` is stdin.
    File(&'a Path),
}

/// What a call is expected to use, by kind: its prompt (input) and the completion tokens it
/// allows (output).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Estimate {
    pub input: u64,
    pub output: u64,
}

impl Estimate {
    /// One request of the estimate's input and output tokens (its cost is the row's to
    /// price): what limits are checked against.
    pub fn request(self) -> Request {
        Request {
            requests: 1,
            input: self.input,
            output: self.output,
            ..Request::default()
        }
    }
}

/// The estimate, and stdin's bytes when the estimate read them (for `exec` to replay).
pub fn tokens(source: Source, max_output: Option<u64>) -> Result<(Estimate, Option<Vec<u8>>)> {
    let (prompt, asked, stdin) = match source {
        Source::Count(n) => (n, None, None),
        Source::File(path) if path.as_os_str() == "-" => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .take(LARGEST_PROMPT + 1)
                .read_to_end(&mut bytes)
                .context("cannot read the prompt from stdin (--tokens-from -)")?;
            anyhow::ensure!(
                bytes.len() as u64 <= LARGEST_PROMPT,
                "the prompt on stdin (--tokens-from -) is larger than 256 MiB"
            );
            let asked = asked_output(&bytes);
            (of_size(bytes.len() as u64), asked, Some(bytes))
        }
        Source::File(path) => {
            let size = file_size(path)
                .with_context(|| format!("cannot read --tokens-from {}", path.display()))?;
            anyhow::ensure!(
                size <= LARGEST_PROMPT,
                "--tokens-from {} is larger than 256 MiB",
                path.display()
            );
            // A request body says how many completion tokens it allows.
            let asked = match max_output {
                None if looks_like_json(path) => std::fs::read(path)
                    .ok()
                    .and_then(|bytes| asked_output(&bytes)),
                _ => None,
            };
            (of_size(size), asked, None)
        }
    };
    let estimate = Estimate {
        input: prompt,
        output: max_output.or(asked).unwrap_or(0),
    };
    Ok((estimate, stdin))
}

/// The completion tokens a JSON request body allows: `max_completion_tokens` or
/// `max_tokens` (OpenAI, Anthropic), `max_output_tokens` (OpenAI responses),
/// `generationConfig.maxOutputTokens` (Gemini). `None` for anything else.
pub fn asked_output(bytes: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(bytes).ok()?.trim_start();
    if !text.starts_with('{') {
        return None;
    }
    let body: serde_json::Value = serde_json::from_str(text).ok()?;
    [
        "/max_completion_tokens",
        "/max_tokens",
        "/max_output_tokens",
        "/generationConfig/maxOutputTokens",
    ]
    .iter()
    .find_map(|path| body.pointer(path).and_then(serde_json::Value::as_u64))
}

/// Whether a regular file begins (after blanks) with `{`: only then is it read whole.
fn looks_like_json(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut start = Vec::new();
    let _ = file.take(4096).read_to_end(&mut start);
    start
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

/// Bytes / 3, rounded up.
pub fn of_size(bytes: u64) -> u64 {
    bytes.div_ceil(3)
}

/// The largest prompt an estimate reads (SPEC 15): a device that never ends (`/dev/zero`)
/// is an error, not a spin.
const LARGEST_PROMPT: u64 = 256 << 20;

/// A regular file's size from its metadata; anything else (a pipe, a device) is read, up
/// to one byte past the largest prompt.
fn file_size(path: &Path) -> std::io::Result<u64> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    if meta.is_dir() {
        return Err(std::io::Error::other("it is a folder"));
    }
    let mut file = std::fs::File::open(path)?.take(LARGEST_PROMPT + 1);
    std::io::copy(&mut file, &mut std::io::sink())
}

#[cfg(test)]
mod tests {
    use super::{asked_output, of_size};

    #[test]
    fn a_request_body_says_how_many_completion_tokens_it_allows() {
        for (body, expected) in [
            (r#"{"model":"m","max_tokens":300}"#, Some(300)),
            (r#" {"max_completion_tokens":50,"max_tokens":9}"#, Some(50)),
            (r#"{"max_output_tokens":70}"#, Some(70)),
            (r#"{"generationConfig":{"maxOutputTokens":12}}"#, Some(12)),
            (r#"{"max_tokens":-1}"#, None),
            (r#"{"messages":[]}"#, None),
            ("max_tokens: 300", None),
            ("{not json", None),
        ] {
            assert_eq!(asked_output(body.as_bytes()), expected, "{body}");
        }
    }

    #[test]
    fn a_third_of_the_bytes_rounded_up() {
        assert_eq!(of_size(0), 0);
        assert_eq!(of_size(1), 1);
        assert_eq!(of_size(3), 1);
        assert_eq!(of_size(4), 2);
        assert_eq!(of_size(3_000), 1_000);
    }
}
