//! Where a header dump's final response is, and which of its lines are headers. `curl -D`
//! writes every response it saw; `curl -i` puts the body after the headers.

use super::Note;

/// One header line of the final response.
#[derive(Clone, Debug)]
pub struct Header {
    /// 1-based line of the dump.
    pub line: usize,
    /// Lowercase: header names are case-insensitive and HTTP/2 sends them lowercase anyway.
    pub name: String,
    pub value: String,
}

/// The status and headers of the last response in the dump, and notes on lines that are not
/// headers.
pub fn split(dump: &str) -> (Option<u16>, Vec<Header>, Vec<Note>) {
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
                value: value.trim().to_owned(),
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

/// A line quoted for a note, cut short: a stray body line can be kilobytes long.
fn quoted(text: &str) -> String {
    const MAX_CHARS: usize = 60;
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}
