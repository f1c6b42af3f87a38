//! Everything written for a reader: data on stdout, messages on stderr, and the small
//! formats both share. A closed stdout is not an error: whoever read the data has it.

use std::io::{self, Write};
use std::path::Path;

use crate::clock::{Millis, SECOND_MS};

pub const PROGRAM: &str = "llm-rotate";

/// Writes data to stdout.
pub fn data(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Writes raw bytes to stdout: a command's output passed through.
pub fn bytes(data: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(data)?;
    out.flush()
}

/// Replaces `path` with `data` atomically: a temporary file in the same folder, then a
/// rename, so a reader (a metrics collector) never sees half a file. The file gets the
/// permissions any new file would (the umask's), so a collector running as another user
/// can read it. What is not a regular file (a device, a FIFO, `/dev/stdout`) is written in
/// place: a rename would put a regular file where it was.
pub fn replace_file(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        return file
            .write_all(data)
            .with_context(|| format!("cannot write {}", path.display()));
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().context("--output needs a file name")?;
    // A name nobody can guess, created only if new: another user cannot plant a file or a
    // link there for this process to write through or to remove.
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        crate::random::id()
    ));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(err) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(err).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

/// Says each note once, in order, with how often it came when it repeated; each cut at 200
/// characters with its control characters escaped: a note often quotes what came from
/// outside (a header's value), which may be long, many, or meant for a terminal.
pub fn notes<S: AsRef<str>>(notes: impl IntoIterator<Item = S>) {
    let mut said: Vec<(String, usize)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for note in notes {
        let note = note.as_ref();
        let cut: String = note.chars().take(NOTE_CHARS).collect();
        let mut text = plain(&cut);
        if note.chars().nth(NOTE_CHARS).is_some() {
            text.push('…');
        }
        match index.get(&text) {
            Some(&i) => said[i].1 += 1,
            None => {
                index.insert(text.clone(), said.len());
                said.push((text, 1));
            }
        }
    }
    for (text, times) in said {
        match times {
            1 => message(&format!("note: {text}")),
            n => message(&format!("note: {text} ({n} times)")),
        }
    }
}

/// Text from outside (an id read back from a shared ledger) with its control characters
/// escaped, so that it cannot move a terminal's cursor or clear its screen.
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c.is_control() {
            true => out.extend(c.escape_default()),
            false => out.push(c),
        }
    }
    out
}

/// How much of a note is said.
const NOTE_CHARS: usize = 200;

/// Writes a message to stderr, each line prefixed with the program's name.
pub fn message(text: &str) {
    let mut err = io::stderr().lock();
    for line in text.lines() {
        // Nothing useful can be done when stderr itself is gone.
        let _ = writeln!(err, "{PROGRAM}: {line}");
    }
}

/// True when an error comes from writing to a pipe whose reader has gone.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Seconds with millisecond precision, for JSON and CSV.
pub fn seconds(ms: Millis) -> f64 {
    ms as f64 / SECOND_MS as f64
}

/// An instant as RFC 3339 in UTC, to the millisecond: `2026-01-01T00:00:00.000Z`.
pub fn rfc3339(at: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(at)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// An instant as RFC 3339 in UTC, to the second: `2026-01-01T00:00:00Z`.
pub fn rfc3339_seconds(at: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(at)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// A wait for people, rounded up to the second: `12s`, `2m5s`, `3h`, `1h2m`.
pub fn duration(ms: Millis) -> String {
    let total = (ms.max(0) as u64).div_ceil(SECOND_MS as u64);
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        // Past an hour the seconds are noise.
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

/// A count for people: exact below 10,000, then `12.3k` or `1.5m` rounded down, so that a
/// count short of its limit never looks like the limit.
pub fn count(n: u64) -> String {
    fn scaled(n: u64, unit: u64, suffix: &str) -> String {
        let tenths = n / (unit / 10);
        if tenths % 10 == 0 {
            format!("{}{suffix}", tenths / 10)
        } else {
            format!("{}.{}{suffix}", tenths / 10, tenths % 10)
        }
    }
    match n {
        0..10_000 => n.to_string(),
        10_000..1_000_000 => scaled(n, 1_000, "k"),
        _ => scaled(n, 1_000_000, "m"),
    }
}

/// Quotes text for a POSIX shell: inside single quotes nothing is special but the quote.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_up_to_the_second() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(1), "1s");
        assert_eq!(duration(12_000), "12s");
        assert_eq!(duration(12_001), "13s");
        assert_eq!(duration(120_000), "2m");
        assert_eq!(duration(125_000), "2m5s");
        assert_eq!(duration(3_600_000), "1h");
        assert_eq!(duration(3_725_000), "1h2m");
    }

    #[test]
    fn counts_shorten_without_reaching_the_next_value() {
        assert_eq!(count(12), "12");
        assert_eq!(count(9_999), "9999");
        assert_eq!(count(60_000), "60k");
        assert_eq!(count(4_250), "4250");
        assert_eq!(count(14_399), "14.3k");
        assert_eq!(count(14_400), "14.4k");
        assert_eq!(count(1_500_000), "1.5m");
        assert_eq!(count(2_000_000), "2m");
    }

    #[test]
    fn shell_quoting_survives_every_character() {
        assert_eq!(shell_quote("plain"), "'plain'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(
            shell_quote("$(rm -rf /) `x` \"y\"\n"),
            "'$(rm -rf /) `x` \"y\"\n'"
        );
    }
}
