//! A provider's response body on its way to the client: passed on as it arrives, while
//! what it used is read from it. A server-sent event stream goes event by event, so that
//! the usage chunk llm-rotate asked for can be held back from a client that did not; any
//! other body goes chunk by chunk, a copy kept (up to 64 MiB) for its usage at the end.

use bytes::Bytes;
use serde_json::Value;

use crate::response::{Usage, usage};

/// The most of a plain body kept for its usage; a larger one settles at the estimate.
const KEPT: usize = 64 << 20;
/// An event this long without its end is passed on as it is, not held.
const LONGEST_EVENT: usize = 1 << 20;

pub struct Watch {
    sse: bool,
    /// Hold back the chunk that only carries usage (the client did not ask for it).
    strip_usage: bool,
    /// An event begun and not yet ended.
    pending: Vec<u8>,
    /// The first and the last event that carry usage: Anthropic's input counts come in
    /// the first, every dialect's final counts in the last.
    first: Option<Vec<u8>>,
    last: Option<Vec<u8>>,
    /// A plain body, while it is no larger than [`KEPT`].
    kept: Option<Vec<u8>>,
}

impl Watch {
    pub fn new(sse: bool, strip_usage: bool) -> Watch {
        Watch {
            sse,
            strip_usage,
            pending: Vec::new(),
            first: None,
            last: None,
            kept: Some(Vec::new()),
        }
    }

    /// What of `chunk` goes to the client now.
    pub fn pass(&mut self, chunk: Bytes) -> Bytes {
        if !self.sse {
            if let Some(kept) = &mut self.kept {
                if kept.len() + chunk.len() <= KEPT {
                    kept.extend_from_slice(&chunk);
                } else {
                    self.kept = None;
                }
            }
            return chunk;
        }
        // Only the new bytes are searched for an event's end (and the three before them,
        // for an end split across chunks): the cost stays linear in the stream.
        let searched_from = self.pending.len().saturating_sub(3);
        self.pending.extend_from_slice(&chunk);
        let mut out = Vec::new();
        let mut start = 0;
        let mut at = searched_from;
        while let Some(end) = event_end(&self.pending[at..]).map(|e| at + e) {
            let event = self.pending[start..end].to_vec();
            if self.keep(&event) {
                out.extend_from_slice(&event);
            }
            start = end;
            at = end;
        }
        self.pending.drain(..start);
        if self.pending.len() > LONGEST_EVENT {
            out.append(&mut self.pending);
        }
        Bytes::from(out)
    }

    /// What is left when the body ends: an event without its blank line.
    pub fn finish(&mut self) -> Bytes {
        let rest = std::mem::take(&mut self.pending);
        if !rest.is_empty() && self.keep(&rest) {
            return Bytes::from(rest);
        }
        Bytes::new()
    }

    /// What the body reported it used, as far as it came.
    pub fn usage(&self) -> Option<Usage> {
        if !self.sse {
            return self.kept.as_deref().and_then(usage::in_body);
        }
        let mut events = self.first.clone()?;
        if let Some(last) = &self.last {
            events.push(b'\n');
            events.extend_from_slice(last);
        }
        usage::in_body(&events)
    }

    /// Notes an event's usage; whether the client gets it.
    fn keep(&mut self, event: &[u8]) -> bool {
        // Every chunk of a stream that asked for usage says `"usage":null` until the last.
        if !contains(event, b"sage") || contains(event, b"\"usage\":null") {
            return true;
        }
        if self.first.is_none() {
            self.first = Some(event.to_vec());
        } else {
            self.last = Some(event.to_vec());
        }
        !(self.strip_usage && only_usage(event))
    }
}

/// Where the first event in `bytes` ends: after its blank line.
fn event_end(bytes: &[u8]) -> Option<usize> {
    let lf = find(bytes, b"\n\n").map(|i| i + 2);
    let crlf = find(bytes, b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The chunk an OpenAI-compatible stream ends with when asked for usage: usage and no
/// choices.
fn only_usage(event: &[u8]) -> bool {
    let text = String::from_utf8_lossy(event);
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .any(|chunk| {
            chunk.get("usage").is_some_and(Value::is_object)
                && chunk
                    .get("choices")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
        })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::Watch;
    use bytes::Bytes;

    const STREAM: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n\
        data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}],\"usage\":null}\n\n\
        data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3}}\n\n\
        data: [DONE]\n\n";

    /// The stream cut into pieces of `size` bytes, through a watch.
    fn through(watch: &mut Watch, size: usize) -> String {
        let mut out = Vec::new();
        for piece in STREAM.as_bytes().chunks(size) {
            out.extend_from_slice(&watch.pass(Bytes::copy_from_slice(piece)));
        }
        out.extend_from_slice(&watch.finish());
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn a_stream_passes_whole_and_its_usage_is_read_however_it_is_cut() {
        for size in [1, 2, 3, 7, 64, STREAM.len()] {
            let mut watch = Watch::new(true, false);
            assert_eq!(through(&mut watch, size), STREAM, "pieces of {size}");
            let usage = watch.usage().expect("usage");
            assert_eq!((usage.input, usage.output), (12, 3));
        }
    }

    #[test]
    fn the_usage_chunk_the_client_did_not_ask_for_is_held_back() {
        for size in [1, 5, STREAM.len()] {
            let mut watch = Watch::new(true, true);
            let passed = through(&mut watch, size);
            assert!(!passed.contains("prompt_tokens"), "{passed}");
            assert!(passed.contains("Hel") && passed.ends_with("data: [DONE]\n\n"));
            assert_eq!(watch.usage().map(|u| u.output), Some(3));
        }
    }

    #[test]
    fn a_hostile_body_passes_through_without_being_held() {
        // An event that never ends is passed on once it is over 1 MiB, not held for ever.
        let mut watch = Watch::new(true, true);
        let piece = Bytes::from(vec![b'x'; 64 << 10]);
        let mut passed = 0;
        for _ in 0..40 {
            passed += watch.pass(piece.clone()).len();
        }
        passed += watch.finish().len();
        assert_eq!(passed, 40 * piece.len());
        assert!(watch.pending.len() <= super::LONGEST_EVENT);
        // A plain body over 64 MiB passes whole; its usage is not read (the estimate
        // stands), and no copy of it is kept.
        let mut watch = Watch::new(false, false);
        let mib = Bytes::from(vec![b' '; 1 << 20]);
        let mut passed = 0;
        passed += watch
            .pass(Bytes::from_static(
                br#"{"usage":{"prompt_tokens":5},"pad":""#,
            ))
            .len();
        for _ in 0..65 {
            passed += watch.pass(mib.clone()).len();
        }
        assert!(passed > 65 << 20);
        assert!(watch.kept.is_none());
        assert_eq!(watch.usage(), None);
    }

    #[test]
    fn a_plain_body_passes_as_it_comes_and_its_usage_is_read_at_the_end() {
        let mut watch = Watch::new(false, true);
        let body = br#"{"usage":{"prompt_tokens":5,"completion_tokens":2}}"#;
        let mut out = Vec::new();
        for piece in body.chunks(4) {
            out.extend_from_slice(&watch.pass(Bytes::copy_from_slice(piece)));
        }
        assert_eq!(out, body);
        assert_eq!(watch.usage().map(|u| (u.input, u.output)), Some((5, 2)));
    }
}
