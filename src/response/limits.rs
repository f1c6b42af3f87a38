//! Reads the rate-limit headers of a response as readings of our limits. Providers name and
//! scale these headers differently, so a dialect says how to read them; nothing here fails,
//! because a record must not be lost to a header a provider changed.

use super::dump::Header;
use super::{BEYOND, FURTHEST_MS, Note, is_decimal};
use crate::clock::Millis;
use crate::duration::parse_duration;
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

/// How many rate-limit headers of one response are read: a dialect knows at most twelve,
/// and these are read under the ledger's lock.
pub const MOST: usize = 64;

/// The readings that `headers` (at most [`MOST`]) give in `dialect` at `now`, and notes on
/// those it could not use. Never fails: whatever cannot be read becomes a note.
pub fn readings(headers: &[Header], dialect: Dialect, now: Millis) -> (Vec<Reading>, Vec<Note>) {
    let mut notes = Vec::new();
    let mut parts = [Parts::default(); SLOTS.len()];
    // Notes about Anthropic's split token headers wait until we know whether they are used.
    let mut slot_notes: [Vec<Note>; SLOTS.len()] = Default::default();

    for Header { line, name, value } in headers.iter().take(MOST) {
        let (line, value) = (*line, value.as_str());
        let note = |reason: String| (line, format!("ignored {name}: {reason}"));
        if let Some(&(_, slot, field)) = dialect.known().iter().find(|k| k.0 == name) {
            let part = &mut parts[slot as usize];
            let recorded = match field {
                Field::Cap => part.cap.fill(whole_number(value), line),
                Field::Remaining => part.remaining.fill(whole_number(value), line),
                Field::Reset => part.reset.fill(dialect.parse_reset(value, now), line),
            };
            if let Err(reason) = recorded {
                slot_notes[slot as usize].push(note(reason));
            }
        } else {
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
    (readings.into_iter().flatten().collect(), notes)
}

/// Whether a header is a rate-limit header of some dialect, to be read under the lock.
pub fn is_limit(name: &str) -> bool {
    name.starts_with("x-ratelimit-") || name.starts_with("anthropic-ratelimit-")
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

fn whole_number(value: &str) -> Result<u64, String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{value:?} is not a whole number"));
    }
    value
        .parse()
        .map_err(|_| format!("{value:?} is too large a number"))
}
