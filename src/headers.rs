//! Reads the rate-limit headers of a response (a `curl -D` dump) as readings of our limits.
//! Providers name and scale these headers differently, so a dialect says how to read them;
//! nothing here fails, because a record must not be lost to a header a provider changed.

use crate::clock::Millis;
use crate::duration::{parse_duration, parse_retry_after};
use crate::quota::{Limit, Unit, Window};
use chrono::DateTime;

/// How a provider names and scales its rate-limit headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Groq,
    Anthropic,
    Cerebras,
}

impl Dialect {
    pub const ALL: [Dialect; 4] = [
        Dialect::OpenAi,
        Dialect::Groq,
        Dialect::Anthropic,
        Dialect::Cerebras,
    ];

    /// `openai`, `groq`, `anthropic`, `cerebras` (case-insensitive) — the `headers` column of
    /// the endpoints file.
    pub fn from_name(name: &str) -> Option<Dialect> {
        let name = name.trim();
        Dialect::ALL
            .into_iter()
            .find(|dialect| dialect.name().eq_ignore_ascii_case(name))
    }

    /// From the `provider` column: a name containing openai / groq / anthropic or claude /
    /// cerebras.
    pub fn for_provider(provider: &str) -> Option<Dialect> {
        let provider = provider.to_ascii_lowercase();
        // Groq and Cerebras serve OpenAI-compatible APIs and get named that way
        // (`groq-openai`), yet send their own headers, so they win over `openai`.
        if provider.contains("groq") {
            Some(Dialect::Groq)
        } else if provider.contains("cerebras") {
            Some(Dialect::Cerebras)
        } else if provider.contains("anthropic") || provider.contains("claude") {
            Some(Dialect::Anthropic)
        } else if provider.contains("openai") {
            Some(Dialect::OpenAi)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai",
            Dialect::Groq => "groq",
            Dialect::Anthropic => "anthropic",
            Dialect::Cerebras => "cerebras",
        }
    }

    /// The rate-limit headers this dialect knows, by lowercase name.
    fn known(self) -> &'static [(&'static str, Slot, Field)] {
        use Field::{Cap, Remaining, Reset};
        use Slot::{InputTokens, OutputTokens, Requests, Tokens};
        match self {
            Dialect::OpenAi | Dialect::Groq => &[
                ("x-ratelimit-limit-requests", Requests, Cap),
                ("x-ratelimit-remaining-requests", Requests, Remaining),
                ("x-ratelimit-reset-requests", Requests, Reset),
                ("x-ratelimit-limit-tokens", Tokens, Cap),
                ("x-ratelimit-remaining-tokens", Tokens, Remaining),
                ("x-ratelimit-reset-tokens", Tokens, Reset),
            ],
            Dialect::Anthropic => &[
                ("anthropic-ratelimit-requests-limit", Requests, Cap),
                (
                    "anthropic-ratelimit-requests-remaining",
                    Requests,
                    Remaining,
                ),
                ("anthropic-ratelimit-requests-reset", Requests, Reset),
                ("anthropic-ratelimit-tokens-limit", Tokens, Cap),
                ("anthropic-ratelimit-tokens-remaining", Tokens, Remaining),
                ("anthropic-ratelimit-tokens-reset", Tokens, Reset),
                ("anthropic-ratelimit-input-tokens-limit", InputTokens, Cap),
                (
                    "anthropic-ratelimit-input-tokens-remaining",
                    InputTokens,
                    Remaining,
                ),
                ("anthropic-ratelimit-input-tokens-reset", InputTokens, Reset),
                ("anthropic-ratelimit-output-tokens-limit", OutputTokens, Cap),
                (
                    "anthropic-ratelimit-output-tokens-remaining",
                    OutputTokens,
                    Remaining,
                ),
                (
                    "anthropic-ratelimit-output-tokens-reset",
                    OutputTokens,
                    Reset,
                ),
            ],
            Dialect::Cerebras => &[
                ("x-ratelimit-limit-requests-day", Requests, Cap),
                ("x-ratelimit-remaining-requests-day", Requests, Remaining),
                ("x-ratelimit-reset-requests-day", Requests, Reset),
                ("x-ratelimit-limit-tokens-minute", Tokens, Cap),
                ("x-ratelimit-remaining-tokens-minute", Tokens, Remaining),
                ("x-ratelimit-reset-tokens-minute", Tokens, Reset),
            ],
        }
    }

    fn header_name(self, slot: Slot, field: Field) -> &'static str {
        self.known()
            .iter()
            .find(|&&(_, s, f)| s == slot && f == field)
            .map_or("", |&(name, _, _)| name)
    }

    /// Which of our limits a slot describes. Groq's request limit is per day although its
    /// header names are OpenAI's, which count requests per minute.
    fn limit_of(self, slot: Slot) -> Limit {
        match (self, slot) {
            (Dialect::OpenAi | Dialect::Anthropic, Slot::Requests) => {
                Limit::new(Unit::Requests, Window::Minute)
            }
            (Dialect::Groq | Dialect::Cerebras, Slot::Requests) => {
                Limit::new(Unit::Requests, Window::Day)
            }
            (_, Slot::Tokens | Slot::InputTokens | Slot::OutputTokens) => {
                Limit::new(Unit::Tokens, Window::Minute)
            }
        }
    }

    fn parse_reset(self, value: &str, now: Millis) -> Result<Millis, String> {
        match self {
            Dialect::OpenAi | Dialect::Groq => {
                parse_duration(value).map(|wait| now.saturating_add(wait))
            }
            Dialect::Anthropic => DateTime::parse_from_rfc3339(value)
                .map(|at| at.timestamp_millis())
                .map_err(|_| {
                    format!("{value:?} is not an RFC 3339 instant (like 2026-01-01T00:00:30Z)")
                }),
            // A bare decimal is seconds to parse_duration; checking first keeps `5m` out and
            // gives a note that names the expected form.
            Dialect::Cerebras if is_decimal(value) => {
                parse_duration(value).map(|wait| now.saturating_add(wait))
            }
            Dialect::Cerebras => Err(format!("{value:?} is not a number of seconds")),
        }
    }
}

/// One limit as a provider reports it; a dialect's headers come in slots of three fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Requests,
    Tokens,
    /// Anthropic's split token limits, used only when it sends no combined one.
    InputTokens,
    OutputTokens,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Cap,
    Remaining,
    Reset,
}

/// What the provider says of one limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    /// Which of our six limits the headers describe.
    pub limit: Limit,
    /// The provider's limit, when sent.
    pub cap: Option<u64>,
    /// Never above `cap`.
    pub remaining: u64,
    /// The absolute instant the provider's window resets; may be before `now` when the
    /// provider's clock or a stale dump says so.
    pub resets_at: Millis,
}

/// What one response says of the endpoint's limits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    pub status: Option<u16>,
    /// Absolute instant from `retry-after` (seconds or HTTP date) or `retry-after-ms`; the
    /// later if both.
    pub retry_after: Option<Millis>,
    pub readings: Vec<Reading>,
    /// One line per header that was ignored: unknown rate-limit headers, malformed values, a
    /// limit without remaining or reset, a non-header line. In the order of the dump.
    pub notes: Vec<String>,
}

/// A note tied to the dump line it is about, so notes made late still print in dump order.
type Note = (usize, String);

/// A field of a slot as far as the dump told it.
#[derive(Clone, Copy, Debug, Default)]
enum Got<T> {
    #[default]
    Absent,
    /// Sent but unreadable; the header already has its note.
    Bad,
    Good {
        value: T,
        line: usize,
    },
}

impl<T: Copy> Got<T> {
    /// Records a header's parsed value; Err is why the header is ignored.
    fn fill(&mut self, parsed: Result<T, String>, line: usize) -> Result<(), String> {
        if !matches!(self, Got::Absent) {
            // Two values cannot both be right; the first is as good a guess as the last,
            // and the user hears of the conflict.
            return Err("sent twice; the first value counts".to_string());
        }
        match parsed {
            Ok(value) => {
                *self = Got::Good { value, line };
                Ok(())
            }
            Err(reason) => {
                *self = Got::Bad;
                Err(reason)
            }
        }
    }

    fn value(self) -> Option<T> {
        match self {
            Got::Good { value, .. } => Some(value),
            Got::Absent | Got::Bad => None,
        }
    }

    /// The dump line the value came from.
    fn line(self) -> Option<usize> {
        match self {
            Got::Good { line, .. } => Some(line),
            Got::Absent | Got::Bad => None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Parts {
    cap: Got<u64>,
    remaining: Got<u64>,
    reset: Got<Millis>,
}

impl Parts {
    fn is_absent(&self) -> bool {
        matches!(
            (self.cap, self.remaining, self.reset),
            (Got::Absent, Got::Absent, Got::Absent)
        )
    }
}

const SLOTS: [Slot; 4] = [
    Slot::Requests,
    Slot::Tokens,
    Slot::InputTokens,
    Slot::OutputTokens,
];

/// The status of the last response in a dump (`curl -D` writes one per response it saw);
/// `None` when the dump has no status line.
pub fn last_status(dump: &str) -> Option<u16> {
    split_dump(dump).0
}

/// The most of a header dump that is read (SPEC 15): headers come first, and a dump larger
/// than this is a body or an attack. Read before the ledger's lock, parsed under it, so it
/// bounds the lock too.
pub const DUMP_CAP: u64 = 1 << 20;

/// Reads a header dump up to [`DUMP_CAP`]; true when there was more, which is ignored.
pub fn read_dump(reader: impl std::io::Read) -> std::io::Result<(String, bool)> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    reader.take(DUMP_CAP + 1).read_to_end(&mut bytes)?;
    let more = bytes.len() as u64 > DUMP_CAP;
    bytes.truncate(DUMP_CAP as usize);
    // Header values are ASCII; a stray byte must not cost the record.
    Ok((String::from_utf8_lossy(&bytes).into_owned(), more))
}

/// The note for a dump cut at [`DUMP_CAP`].
pub const DUMP_CUT: &str = "the header dump is over 1 MiB; the rest was ignored";

/// The furthest ahead a provider's time is taken: a cooldown or a reset years away (a typo,
/// a hostile dump) would otherwise shut an endpoint until someone runs `reset`.
const FURTHEST_MS: Millis = 32 * 24 * 60 * 60 * 1000;
const BEYOND: &str = "is more than 32 days ahead; taken as 32 days";

/// Never fails: whatever cannot be read becomes a note.
pub fn read(dump: &str, dialect: Dialect, now: Millis) -> Response {
    let (status, headers, mut notes) = split_dump(dump);
    let mut retry_after: Option<Millis> = None;
    let mut parts = [Parts::default(); SLOTS.len()];
    // Notes about Anthropic's split token headers wait until we know whether they are used.
    let mut slot_notes: [Vec<Note>; SLOTS.len()] = Default::default();

    for Header { line, name, value } in headers {
        let note = |reason: String| (line, format!("ignored {name}: {reason}"));
        if name == "retry-after" || name == "retry-after-ms" {
            let wait = if name == "retry-after" {
                parse_retry_after(value, now)
            } else if is_decimal(value) {
                parse_duration(&format!("{value}ms"))
            } else {
                Err(format!("{value:?} is not a number of milliseconds"))
            };
            match wait {
                Ok(wait) => {
                    if wait > FURTHEST_MS {
                        notes.push((line, format!("{name}: {value:?} {BEYOND}")));
                    }
                    let wait = wait.min(FURTHEST_MS);
                    retry_after = retry_after.max(Some(now.saturating_add(wait)));
                }
                Err(reason) => notes.push(note(reason)),
            }
        } else if let Some(&(_, slot, field)) = dialect.known().iter().find(|k| k.0 == name) {
            let part = &mut parts[slot as usize];
            let recorded = match field {
                Field::Cap => part.cap.fill(whole_number(value), line),
                Field::Remaining => part.remaining.fill(whole_number(value), line),
                Field::Reset => part.reset.fill(dialect.parse_reset(value, now), line),
            };
            if let Err(reason) = recorded {
                slot_notes[slot as usize].push(note(reason));
            }
        } else if name.starts_with("x-ratelimit-") || name.starts_with("anthropic-ratelimit-") {
            notes.push(note(format!(
                "not a rate-limit header of the {} dialect",
                dialect.name()
            )));
        }
    }

    let mut readings: [Option<Reading>; SLOTS.len()] = [None; SLOTS.len()];
    for slot in SLOTS {
        let i = slot as usize;
        readings[i] = reading(dialect, slot, &parts[i], &mut slot_notes[i]);
        if let Some(r) = &mut readings[i]
            && r.resets_at > now.saturating_add(FURTHEST_MS)
        {
            let line = parts[i].reset.line().unwrap_or(0);
            notes.push((line, format!("the {} reset {BEYOND}", r.limit.name())));
            r.resets_at = now.saturating_add(FURTHEST_MS);
        }
    }
    let split = [Slot::InputTokens as usize, Slot::OutputTokens as usize];
    if readings[Slot::Tokens as usize].is_some() {
        // The combined limit is the one that binds; the split ones are known and unneeded.
        for i in split {
            readings[i] = None;
            slot_notes[i].clear();
        }
    } else if let [Some(input), Some(output)] = split.map(|i| readings[i]) {
        // Both bind; the one with less left runs out first. On a tie, the later reset is
        // the cautious choice.
        let dropped = if (input.remaining, output.resets_at) <= (output.remaining, input.resets_at)
        {
            split[1]
        } else {
            split[0]
        };
        readings[dropped] = None;
    }
    notes.extend(slot_notes.into_iter().flatten());
    notes.sort_by_key(|&(line, _)| line);

    Response {
        status,
        retry_after,
        readings: readings.into_iter().flatten().collect(),
        notes: notes.into_iter().map(|(_, note)| note).collect(),
    }
}

/// The reading of one slot, or notes on each of its headers when it lacks remaining or reset.
fn reading(dialect: Dialect, slot: Slot, parts: &Parts, notes: &mut Vec<Note>) -> Option<Reading> {
    if parts.is_absent() {
        return None;
    }
    if let (Some(remaining), Some(resets_at)) = (parts.remaining.value(), parts.reset.value()) {
        let cap = parts.cap.value();
        return Some(Reading {
            limit: dialect.limit_of(slot),
            cap,
            remaining: cap.map_or(remaining, |cap| remaining.min(cap)),
            resets_at,
        });
    }
    let missing: Vec<&str> = [
        (parts.remaining.value().is_none(), Field::Remaining),
        (parts.reset.value().is_none(), Field::Reset),
    ]
    .into_iter()
    .filter(|&(missing, _)| missing)
    .map(|(_, field)| dialect.header_name(slot, field))
    .collect();
    let missing = missing.join(" or ");
    let sent = [
        (Field::Cap, got_line(parts.cap)),
        (Field::Remaining, got_line(parts.remaining)),
        (Field::Reset, got_line(parts.reset)),
    ];
    for (field, line) in sent {
        if let Some(line) = line {
            let name = dialect.header_name(slot, field);
            notes.push((line, format!("ignored {name}: no usable {missing}")));
        }
    }
    None
}

fn got_line<T>(got: Got<T>) -> Option<usize> {
    match got {
        Got::Good { line, .. } => Some(line),
        Got::Absent | Got::Bad => None,
    }
}

struct Header<'a> {
    /// 1-based line of the dump.
    line: usize,
    /// Lowercase: header names are case-insensitive and HTTP/2 sends them lowercase anyway.
    name: String,
    value: &'a str,
}

/// The status and headers of the last response in the dump, and notes on lines that are not
/// headers.
fn split_dump(dump: &str) -> (Option<u16>, Vec<Header<'_>>, Vec<Note>) {
    let dump = dump.strip_prefix('\u{feff}').unwrap_or(dump);
    let lines: Vec<(usize, &str)> = dump.lines().enumerate().map(|(i, l)| (i + 1, l)).collect();
    let mut notes = Vec::new();
    // curl -D writes every response it saw (100 Continue, redirects, a proxy's CONNECT);
    // the last one answered the request. A response follows only the blank line that ends
    // an interim one: after the final response's headers comes its body (`curl -i`), and a
    // status line in a body is text, never a response.
    let first = lines.iter().position(|&(_, l)| !l.trim().is_empty());
    let (status, block) = match first.filter(|&i| is_status_line(lines[i].1)) {
        Some(mut i) => loop {
            let status = parse_status(lines[i], &mut notes);
            let block = &lines[i + 1..];
            let blank = block.iter().position(|&(_, l)| l.trim().is_empty());
            let next = blank.map(|b| i + 1 + b + 1).filter(|&n| n < lines.len());
            match next {
                Some(n) if is_interim(lines[i].1, status) && is_status_line(lines[n].1) => i = n,
                _ => break (status, block),
            }
        },
        None => (None, &lines[first.unwrap_or(lines.len())..]),
    };
    let end = block
        .iter()
        .position(|&(_, l)| l.trim().is_empty())
        .unwrap_or(block.len());
    let (header_lines, after) = block.split_at(end);
    let mut headers = Vec::new();
    for &(line, text) in header_lines {
        match text.split_once(':') {
            Some((name, value)) if is_header_name(name) => headers.push(Header {
                line,
                name: name.to_ascii_lowercase(),
                value: value.trim(),
            }),
            _ => notes.push((
                line,
                format!("ignored line {line}: {} is not a header", quoted(text)),
            )),
        }
    }
    // `curl -i` puts the body after the headers; it holds no headers, but the user may have
    // meant the lines as headers, so say that they were skipped.
    let extra: Vec<usize> = after
        .iter()
        .filter(|&&(_, l)| !l.trim().is_empty())
        .map(|&(line, _)| line)
        .collect();
    if let (Some(&first), count) = (extra.first(), extra.len()) {
        let lines = if count == 1 { "line" } else { "lines" };
        notes.push((
            first,
            format!("ignored {count} {lines} from line {first} on: after the blank line that ends the headers"),
        ));
    }
    (status, headers, notes)
}

/// A response that another follows: informational (1xx), a redirect (3xx), or a proxy's
/// answer to CONNECT (`200 Connection established`).
fn is_interim(line: &str, status: Option<u16>) -> bool {
    match status {
        Some(100..=199 | 300..=399) => true,
        Some(200) => line.to_ascii_lowercase().contains("connection established"),
        _ => false,
    }
}

fn is_status_line(line: &str) -> bool {
    line.get(..5)
        .is_some_and(|start| start.eq_ignore_ascii_case("http/"))
}

fn parse_status((line, text): (usize, &str), notes: &mut Vec<Note>) -> Option<u16> {
    let code = text.split_whitespace().nth(1).unwrap_or("");
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) {
        code.parse().ok()
    } else {
        notes.push((
            line,
            format!("ignored status line {}: no status code", quoted(text)),
        ));
        None
    }
}

/// An HTTP token: what a header name may be made of.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn whole_number(value: &str) -> Result<u64, String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{value:?} is not a whole number"));
    }
    value
        .parse()
        .map_err(|_| format!("{value:?} is too large a number"))
}

/// Digits with at most one decimal point, as `parse_duration` reads as seconds.
fn is_decimal(value: &str) -> bool {
    value.bytes().any(|b| b.is_ascii_digit())
        && value.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && value.bytes().filter(|&b| b == b'.').count() <= 1
}

/// A line quoted for a note, cut short: a stray body line can be kilobytes long.
fn quoted(text: &str) -> String {
    const MAX_CHARS: usize = 60;
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(last_status(&dump), Some(200), "a body line hides nothing");
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
        assert_eq!(read("", Dialect::OpenAi, NOW), Response::default());
        assert_eq!(read("\r\n\r\n", Dialect::Groq, NOW), Response::default());
        assert_eq!(
            read("\u{feff}", Dialect::Cerebras, NOW),
            Response::default()
        );
    }

    #[test]
    fn a_status_line_alone_has_only_a_status() {
        let response = read("HTTP/2 204\r\n", Dialect::Anthropic, NOW);
        assert_eq!(
            response,
            Response {
                status: Some(204),
                ..Response::default()
            }
        );
    }
}
