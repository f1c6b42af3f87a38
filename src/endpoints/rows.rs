//! The lines of an endpoints file as rows of trimmed cells: CSV (RFC 4180) or a Markdown
//! pipe table, with the physical line each row starts on.

use std::io::Cursor;

use super::Report;

/// One line of the file split into trimmed cells; the first row of a file is its header.
pub(super) struct Row {
    pub(super) line: usize,
    pub(super) cells: Vec<String>,
}

fn is_meaningful(line: &str) -> bool {
    let line = line.trim();
    !line.is_empty() && !line.starts_with('#')
}

pub(super) fn is_markdown(text: &str) -> bool {
    text.lines()
        .find(|line| is_meaningful(line))
        .is_some_and(|line| line.trim_start().starts_with('|'))
}

pub(super) fn markdown_rows(text: &str, report: &mut Report) -> Vec<Row> {
    let mut rows = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        let line_no = index + 1;
        // `trim` also removes the `\r` of a CRLF line end.
        let line = line.trim();
        if !is_meaningful(line) {
            continue;
        }
        let Some(cells) = split_pipes(line) else {
            report.line(line_no, "is not a table row; start comments with #");
            continue;
        };
        // The `|---|` row under the header carries no data; tolerate its absence.
        if rows.len() == 1 && is_separator(&cells) {
            continue;
        }
        if cells.iter().any(|cell| !cell.is_empty()) {
            rows.push(Row {
                line: line_no,
                cells,
            });
        }
    }
    rows
}

/// The trimmed cells between unescaped pipes, or `None` when the line has no pipe at all.
/// Leading and trailing pipes are optional; `\|` is a literal pipe.
fn split_pipes(line: &str) -> Option<Vec<String>> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                cell.push('|');
            }
            '|' => cells.push(std::mem::take(&mut cell).trim().to_owned()),
            _ => cell.push(c),
        }
    }
    if cells.is_empty() {
        return None;
    }
    // Outer pipes leave an empty cell outside the table at either end.
    if line.starts_with('|') {
        cells.remove(0);
    }
    if !line.ends_with('|') || line.ends_with("\\|") {
        cells.push(cell.trim().to_owned());
    }
    Some(cells)
}

fn is_separator(cells: &[String]) -> bool {
    cells.iter().all(|cell| {
        let dashes = cell.strip_prefix(':').unwrap_or(cell);
        let dashes = dashes.strip_suffix(':').unwrap_or(dashes);
        !dashes.is_empty() && dashes.bytes().all(|b| b == b'-')
    })
}

pub(super) fn csv_rows(text: &str, report: &mut Report) -> Vec<Row> {
    // The csv crate counts lines itself, but the position it gives a record is where the
    // previous one ended, before any blank lines it skipped; so lines come from byte offsets.
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let line_of = |byte: usize| line_starts.partition_point(|&start| start <= byte);

    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(Cursor::new(text.as_bytes()));
    let mut record = csv::StringRecord::new();
    let mut rows = Vec::new();
    loop {
        let from = usize::try_from(reader.position().byte()).unwrap_or(text.len());
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(err) => {
                // Unreachable with valid UTF-8 in memory and flexible rows; reported anyway.
                report.line(line_of(from), err);
                break;
            }
        }
        let rest = &text[from..];
        let start = from + (rest.len() - rest.trim_start_matches(['\r', '\n']).len());
        let line_end = text[start..]
            .find('\n')
            .map_or(text.len(), |i| start + i + 1);
        // A comment is exactly one physical line, even when it holds a `"` that opened a
        // quoted cell and made the reader run on; so restart the reader after the line. The
        // csv crate's own comment option would miss comments indented with spaces.
        if text[start..line_end].trim_start().starts_with('#') {
            let mut after = csv::Position::new();
            after.set_byte(line_end as u64);
            if let Err(err) = reader.seek(after) {
                report.line(line_of(start), err);
                break;
            }
            continue;
        }
        let cells: Vec<String> = record.iter().map(|cell| cell.trim().to_owned()).collect();
        // Blank lines, whitespace-only lines and rows of empty cells (`,,,`) say nothing.
        if cells.iter().any(|cell| !cell.is_empty()) {
            rows.push(Row {
                line: line_of(start),
                cells,
            });
        }
    }
    rows
}
