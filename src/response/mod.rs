//! One reader of what a call left behind, shared by `exec` and `record` (and whatever makes
//! the call itself): the header dump's status, Retry-After and rate-limit headers, and the
//! tokens its body or usage file reports. A dump is read and parsed before the ledger's
//! lock; under it, only what needs the ledger's `now` or the endpoint's dialect is
//! finished, over at most [`limits::MOST`] headers.

mod dump;
mod limits;
pub mod usage;

pub use limits::{Dialect, Reading};
pub use usage::Usage;

use crate::clock::Millis;
use crate::duration::{Later, parse_duration, parse_retry_after};

/// The most of a header dump that is read (SPEC 15): headers come first, and a dump larger
/// than this is a body or an attack.
pub const DUMP_CAP: u64 = 1 << 20;

/// The furthest ahead a provider's time is taken: a cooldown or a reset years away (a typo,
/// a hostile dump) would otherwise shut an endpoint until someone runs `reset`.
const FURTHEST_MS: Millis = 32 * 24 * 60 * 60 * 1000;
const BEYOND: &str = "is more than 32 days ahead; taken as 32 days";

/// A note tied to the dump line it is about, so notes made late still print in dump order.
type Note = (usize, String);

/// How a response says the call went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Went {
    /// A 2xx.
    Success,
    /// A 429; a 503 or a dump without a status that carries a Retry-After.
    Refused,
    /// Any other status: another endpoint may do better after a 408 or a 5xx.
    Failed,
}

/// A header dump, parsed.
#[derive(Clone, Debug, Default)]
pub struct Response {
    /// The status of the final response; `None` when the dump has no status line.
    pub status: Option<u16>,
    /// The longest Retry-After wait and the latest Retry-After date, each with the note
    /// that says it was cut to 32 days: which is later depends on the step's `now`.
    wait: Option<(Millis, Note)>,
    until: Option<(Millis, Note)>,
    /// Rate-limit headers, for the endpoint's dialect to read; at most [`limits::MOST`].
    limits: Vec<dump::Header>,
    notes: Vec<Note>,
}

/// What a response tells at the moment it is recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Told {
    pub status: Option<u16>,
    /// When the provider asked to be called again; only on a refusal (see [`Went`]).
    pub retry_after: Option<Millis>,
    pub readings: Vec<Reading>,
    /// One line per thing that was ignored, in the order of the dump.
    pub notes: Vec<String>,
}

impl Response {
    /// Reads a dump up to [`DUMP_CAP`] (a note says when there was more) and parses it.
    pub fn read_from(reader: impl std::io::Read) -> std::io::Result<Response> {
        use std::io::Read as _;
        let mut bytes = Vec::new();
        reader.take(DUMP_CAP + 1).read_to_end(&mut bytes)?;
        let cut = bytes.len() as u64 > DUMP_CAP;
        bytes.truncate(DUMP_CAP as usize);
        // Header values are ASCII; a stray byte must not cost the record.
        let mut response = Response::parse(&String::from_utf8_lossy(&bytes));
        if cut {
            response.notes.push((
                usize::MAX,
                "the header dump is over 1 MiB; the rest was ignored".to_owned(),
            ));
        }
        Ok(response)
    }

    /// Never fails: whatever cannot be read becomes a note.
    pub fn parse(dump: &str) -> Response {
        let (status, headers, mut notes) = dump::split(dump);
        let mut wait: Option<(Millis, Note)> = None;
        let mut until: Option<(Millis, Note)> = None;
        let mut limits = Vec::new();
        let mut more_limits: Option<(usize, usize)> = None;
        for header in headers {
            let (line, name, value) = (header.line, &header.name, header.value.as_str());
            if name == "retry-after" || name == "retry-after-ms" {
                let later = if name == "retry-after" {
                    parse_retry_after(value)
                } else if is_decimal(value) {
                    parse_duration(&format!("{value}ms")).map(Later::In)
                } else {
                    Err(format!("{value:?} is not a number of milliseconds"))
                };
                let (kept, time) = match later {
                    Ok(Later::In(ms)) => (&mut wait, ms),
                    Ok(Later::At(at)) => (&mut until, at),
                    Err(reason) => {
                        notes.push((line, format!("ignored {name}: {reason}")));
                        continue;
                    }
                };
                if kept.as_ref().is_none_or(|&(known, _)| time > known) {
                    *kept = Some((time, (line, format!("{name}: {value:?} {BEYOND}"))));
                }
            } else if limits::is_limit(name) {
                if limits.len() < limits::MOST {
                    limits.push(header);
                } else {
                    more_limits.get_or_insert((line, 0)).1 += 1;
                }
            }
        }
        if let Some((first, count)) = more_limits {
            notes.push((
                first,
                format!(
                    "ignored {count} more rate-limit headers from line {first} on: at most {} are read",
                    limits::MOST
                ),
            ));
        }
        Response {
            status,
            wait,
            until,
            limits,
            notes,
        }
    }

    /// How the call went, as far as the response says; `None` when it has no status and no
    /// Retry-After, and the caller's own word (an exit status) decides.
    pub fn went(&self) -> Option<Went> {
        match self.status {
            Some(200..=299) => Some(Went::Success),
            Some(429) => Some(Went::Refused),
            Some(503) | None if self.wait.is_some() || self.until.is_some() => Some(Went::Refused),
            None => None,
            Some(_) => Some(Went::Failed),
        }
    }

    /// Whether the provider refused the call rather than answer it: a refusal (see
    /// [`Went`]), a 408 or a 5xx. Another endpoint may take it, and it used no tokens.
    pub fn refused(&self) -> bool {
        self.went() == Some(Went::Refused) || matches!(self.status, Some(408 | 500..=599))
    }

    /// Whether the response has rate-limit headers for a dialect to read.
    pub fn has_limits(&self) -> bool {
        !self.limits.is_empty()
    }

    /// What the response tells at `now`, its rate-limit headers read in `dialect` (none
    /// when there is no dialect to read them in).
    pub fn at(&self, dialect: Option<Dialect>, now: Millis) -> Told {
        let mut notes = self.notes.clone();
        // A Retry-After says how long a refusal lasts, not a success that carries one.
        let furthest = now.saturating_add(FURTHEST_MS);
        let asked = [
            self.wait
                .as_ref()
                .map(|(wait, note)| (now.saturating_add(*wait), note)),
            self.until.as_ref().map(|(at, note)| ((*at).max(now), note)),
        ];
        let retry_after = asked
            .into_iter()
            .flatten()
            .max_by_key(|&(at, _)| at)
            .filter(|_| self.went() == Some(Went::Refused))
            .map(|(at, note)| {
                if at > furthest {
                    notes.push(note.clone());
                }
                at.min(furthest)
            });
        let readings = match dialect {
            Some(dialect) => {
                let (readings, more) = limits::readings(&self.limits, dialect, now);
                notes.extend(more);
                readings
            }
            None => Vec::new(),
        };
        notes.sort_by_key(|&(line, _)| line);
        Told {
            status: self.status,
            retry_after,
            readings,
            notes: notes.into_iter().map(|(_, note)| note).collect(),
        }
    }
}

/// Digits with at most one decimal point, as `parse_duration` reads as seconds.
fn is_decimal(value: &str) -> bool {
    value.bytes().any(|b| b.is_ascii_digit())
        && value.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && value.bytes().filter(|&b| b == b'.').count() <= 1
}

#[cfg(test)]
mod tests;
