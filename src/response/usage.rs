//! How many tokens a call used, from what it left behind: a usage file holding a whole
//! number or a JSON response, or a JSON response body. The shapes are those of the major
//! APIs: OpenAI's `usage.total_tokens`, Anthropic's `usage.input_tokens` +
//! `usage.output_tokens`, Gemini's `usageMetadata.totalTokenCount`.

use serde_json::Value;

/// The tokens a usage file reports: a whole number, or a response of a known shape.
pub fn used(text: &[u8]) -> Option<u64> {
    let number = std::str::from_utf8(text).ok()?.trim().parse::<u64>();
    number.ok().or_else(|| in_response(text))
}

/// The tokens a response body reports; `None` when it is not one JSON response of a known
/// shape. A bare number on a command's output is its answer, not a count of tokens.
pub fn in_response(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?.trim();
    let body: Value = serde_json::from_str(text).ok()?;
    let number = |path: &[&str]| -> Option<u64> {
        path.iter()
            .try_fold(&body, |value, key| value.get(key))?
            .as_u64()
    };
    number(&["usage", "total_tokens"])
        .or_else(|| {
            let input = number(&["usage", "input_tokens"])?;
            let output = number(&["usage", "output_tokens"])?;
            Some(input.saturating_add(output))
        })
        .or_else(|| number(&["usageMetadata", "totalTokenCount"]))
}

#[cfg(test)]
mod tests {
    use super::used;

    #[test]
    fn reads_a_number_and_every_known_response_shape() {
        assert_eq!(used(b" 812\n"), Some(812));
        assert_eq!(
            used(br#"{"id":"x","usage":{"prompt_tokens":9,"total_tokens":21}}"#),
            Some(21)
        );
        assert_eq!(
            used(br#"{"usage":{"input_tokens":10,"output_tokens":25}}"#),
            Some(35)
        );
        assert_eq!(
            used(br#"{"usageMetadata":{"promptTokenCount":3,"totalTokenCount":8}}"#),
            Some(8)
        );
    }

    #[test]
    fn a_response_is_json_never_a_bare_number() {
        assert_eq!(super::in_response(b"5000000\n"), None);
        assert_eq!(
            super::in_response(br#"{"usage":{"total_tokens":21}}"#),
            Some(21)
        );
    }

    #[test]
    fn anything_else_leaves_the_estimate() {
        for text in [
            &b""[..],
            b"-5",
            b"12 tokens",
            b"{\"usage\":{}}",
            b"{\"usage\":{\"input_tokens\":4}}",
            b"[1,2]",
            b"\xff\xfe",
            b"data: {\"usage\":{\"total_tokens\":3}}\n\n",
        ] {
            assert_eq!(used(text), None, "{:?}", String::from_utf8_lossy(text));
        }
    }
}
