//! The endpoints file (CSV, or a Markdown pipe table) read into checked `Endpoint`s.
//! Every problem in the file is reported at once, as `file:line: column name: "value" reason`
//! with physical line numbers; the secret in the `key` column never appears in a message.

mod columns;
mod pools;
mod rows;

use std::fmt;
use std::path::Path;

use anyhow::{Context, bail};

use crate::anchor::DayAnchor;
use crate::env;
use crate::quota::Limits;
use columns::build;
use rows::{csv_rows, is_markdown, markdown_rows};

use crate::money::Money;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The `id` column, default `provider/model`; unique in the file.
    pub id: String,
    pub provider: String,
    pub model: String,
    /// `None` is no limit; `Some(0)` disables the endpoint.
    pub limits: Limits,
    /// Higher is preferred: high=3, medium=2 (default), low=1, or any whole number.
    pub priority: i64,
    /// At least 1, default 1.
    pub weight: u32,
    /// Most open reservations at once, at least 1; `None` is no limit.
    pub concurrency: Option<u64>,
    pub pace: Pace,
    pub day_reset: DayReset,
    /// The rate-limit header dialect, lower-cased; `None` means "from the provider".
    pub headers: Option<String>,
    /// An API key. Secret: never put it into an error message or the database.
    pub key: Option<String>,
    /// What a call costs (`price_*` columns); 0 where not given.
    pub prices: Prices,
    /// Whether cached input tokens count toward the token limits (`cache_reads`).
    pub cache_reads: crate::quota::CacheReads,
    /// Every other column in file order: (header as written, cell), empty cells included.
    pub props: Vec<(String, String)>,
    /// The physical line (1-based) on which the row starts.
    pub line: usize,
    /// The shared pool the row draws on, with every row of it.
    /// One copy for all of them, however many rows the pool has.
    pub pool: Option<std::sync::Arc<Pool>>,
}

/// Rows that share limits: several keys of one organisation, the free models of one
/// account. The pool's limits apply to the sum of its rows' usage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    /// From the `pool_*` columns: one value per limit, written on any of its rows.
    pub limits: Limits,
    /// The ids of its rows, in file order.
    pub members: Vec<String>,
    /// Whether each of its rows (in the order of `members`) counts its cached tokens.
    pub caches: Vec<crate::quota::CacheReads>,
}

impl Endpoint {
    /// The variables that describe a chosen endpoint, as `pick --format shell` exports them
    /// and `exec` sets them: every property, the key, then the endpoint and its lease.
    pub fn exported(&self, lease: Option<&str>, tokens: u64) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = self
            .props
            .iter()
            .map(|(name, value)| (env::exported_name(name), value.clone()))
            .collect();
        // The parser refuses a property named like one of ours, so none is overridden below.
        let mut own =
            |name: &str, value: &str| vars.push((env::exported_name(name), value.to_owned()));
        if let Some(key) = &self.key {
            own("key", key);
        }
        own("id", &self.id);
        own("provider", &self.provider);
        own("model", &self.model);
        if let Some(lease) = lease {
            own("lease", lease);
        }
        own("tokens", &tokens.to_string());
        vars
    }
}

/// An endpoint's prices: of one token of each kind, and of a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prices {
    pub input: Money,
    pub output: Money,
    /// Cached input tokens; `price_in` when not given.
    pub cached: Option<Money>,
    pub call: Money,
}

impl Prices {
    /// What `usage` costs: each kind of token times its price, and the price of a call
    /// per request.
    pub fn cost(&self, usage: &crate::quota::Request) -> Money {
        self.input
            .times(usage.input)
            .plus(self.cached.unwrap_or(self.input).times(usage.cached))
            .plus(self.output.times(usage.output))
            .plus(self.call.times(usage.requests))
    }

    /// `usage` with its cost.
    pub fn priced(&self, usage: crate::quota::Request) -> crate::quota::Request {
        crate::quota::Request {
            cost: self.cost(&usage).0,
            ..usage
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    Burst,
    Smooth,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DayReset {
    Rolling,
    /// Day windows are calendar days that end at this local time.
    At(DayAnchor),
}

/// All problems found in a file, one per line, in line order.
#[derive(Debug)]
pub struct FileErrors {
    pub problems: Vec<String>,
}

impl fmt::Display for FileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("\n"))
    }
}

impl std::error::Error for FileErrors {}

/// Reads and parses the file; the error names the file. Non-UTF-8 content is an error with
/// the line of the first bad byte.
pub fn load(path: &Path) -> anyhow::Result<Vec<Endpoint>> {
    let label = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {label}"))?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            let valid = &err.as_bytes()[..err.utf8_error().valid_up_to()];
            let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
            bail!("{label}:{line}: is not UTF-8 text; save the file as UTF-8");
        }
    };
    Ok(parse(&text, &label)?)
}

/// Parses the text of an endpoints file; `label` names the file in messages.
pub fn parse(text: &str, label: &str) -> Result<Vec<Endpoint>, FileErrors> {
    // Editors on Windows often save a byte-order mark; it is not part of the first header.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut report = Report {
        label,
        problems: Vec::new(),
    };
    let rows = if is_markdown(text) {
        markdown_rows(text, &mut report)
    } else {
        csv_rows(text, &mut report)
    };
    let endpoints = match rows.split_first() {
        Some((header, rows)) => build(header, rows, &mut report),
        None => {
            report.problems.push((
                0,
                format!("{label}: has no header row; its first line should name the columns, like provider,model,rpm"),
            ));
            Vec::new()
        }
    };
    report.finish(endpoints)
}

/// A whole number >= 0 with optional `_` separators and a `k` (x1000) or `m` (x1_000_000)
/// suffix, case-insensitive. The error is a short reason such as `is not a whole number`.
pub fn parse_count(text: &str) -> Result<u64, String> {
    let (digits, scale) = if let Some(digits) = text.strip_suffix(['k', 'K']) {
        (digits, 1_000)
    } else if let Some(digits) = text.strip_suffix(['m', 'M']) {
        (digits, 1_000_000)
    } else {
        (text, 1)
    };
    // Separators go between digits only, so `_`, `1_` and `k` alone are rejected.
    let is_digit = |c: char| c.is_ascii_digit();
    let well_formed = digits.starts_with(is_digit)
        && digits.ends_with(is_digit)
        && digits.chars().all(|c| is_digit(c) || c == '_');
    if !well_formed {
        return Err("is not a whole number".to_owned());
    }
    // Only digits are left, so the one way to fail is overflow.
    digits
        .replace('_', "")
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| "is too large".to_owned())
}

/// How many problems of one file are listed: a file that is wrong on every one of 10,000
/// lines needs its first few fixed, not a screen per line.
const MOST_PROBLEMS: usize = 50;

/// How much of a bad cell an error shows.
const SHOWN: usize = 80;

/// Text from the file as an error quotes it: `{:?}` escapes control characters, so one
/// problem stays on one line, and a long value is shown by its start.
pub(crate) fn shown(value: &str) -> String {
    match value.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
        None => format!("{value:?}"),
    }
}

/// Problems with the line they belong to, so that they can be listed in line order.
pub(crate) struct Report<'a> {
    label: &'a str,
    problems: Vec<(usize, String)>,
}

impl Report<'_> {
    pub(crate) fn line(&mut self, line: usize, reason: impl fmt::Display) {
        let label = self.label;
        self.problems
            .push((line, format!("{label}:{line}: {reason}")));
    }

    pub(crate) fn cell(&mut self, line: usize, column: &str, value: &str, reason: &str) {
        let shown = shown(value);
        self.line(line, format_args!("column {column}: {shown} {reason}"));
    }

    fn finish(mut self, endpoints: Vec<Endpoint>) -> Result<Vec<Endpoint>, FileErrors> {
        if self.problems.is_empty() {
            return Ok(endpoints);
        }
        // Stable: the problems of one line keep their column order.
        self.problems.sort_by_key(|&(line, _)| line);
        let more = self.problems.len().saturating_sub(MOST_PROBLEMS);
        let mut problems: Vec<String> = self
            .problems
            .into_iter()
            .take(MOST_PROBLEMS)
            .map(|(_, p)| p)
            .collect();
        if more > 0 {
            problems.push(format!("{}: and {more} more problems", self.label));
        }
        Err(FileErrors { problems })
    }
}

#[cfg(test)]
mod tests {
    use jiff::tz::{TimeZone, TimeZoneDatabase};

    use super::*;
    use crate::quota::Limit;

    fn zone(name: &str) -> TimeZone {
        TimeZoneDatabase::bundled()
            .get(name)
            .expect("a bundled zone")
    }

    fn ok(text: &str) -> Vec<Endpoint> {
        parse(text, "endpoints.csv").expect("the file parses")
    }

    fn problems(text: &str) -> Vec<String> {
        parse(text, "endpoints.csv")
            .expect_err("the file has problems")
            .problems
    }

    fn limit(endpoint: &Endpoint, name: &str) -> Option<u64> {
        endpoint
            .limits
            .get(Limit::from_name(name).expect("limit name"))
    }

    fn ids(endpoints: &[Endpoint]) -> Vec<&str> {
        endpoints.iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn ids_are_plain_text_of_at_most_1_kib_and_cells_of_at_most_64_kib() {
        let found = problems(
            "provider,model,id\n\
             p,a,evil\u{202e}txt.exe\n\
             p,b,bad\u{fffe}\n\
             p,c,\u{fdd0}\n\
             p,ok,fine/\u{e9}t\u{e9}\n",
        );
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].starts_with("endpoints.csv:2: column id:"),
            "{found:?}"
        );
        assert!(
            found[0].ends_with("contains a bidirectional override"),
            "{found:?}"
        );
        assert!(
            found[1].ends_with("contains a Unicode non-character"),
            "{found:?}"
        );
        assert!(
            found[2].ends_with("contains a Unicode non-character"),
            "{found:?}"
        );

        let long_id = "m".repeat(1_100);
        let found = problems(&format!("provider,model\np,{long_id}\n"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("id: is 1102 bytes"), "{found:?}");

        // A 1 MB cell is one short problem, the key's never shown.
        let huge = "x".repeat(1 << 20);
        let found = problems(&format!("provider,model,key,note\np,m,{huge},{huge}\n"));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().all(|f| f.len() < 200), "{found:?}");
        assert!(
            found[0].contains("column key: is 1048576 bytes"),
            "{found:?}"
        );
        assert!(!found[0].contains("xxx"), "{found:?}");
        // A bad value is shown by its start.
        let found = problems(&format!("provider,model,rpm\np,m,{}\n", "9x".repeat(500)));
        assert!(found[0].len() < 200 && found[0].contains("…"), "{found:?}");
        // So is a header that names a huge column twice, and a row with a huge extra cell.
        for text in [
            format!("provider,model,{huge},{huge}\np,m,1,2\n"),
            format!("provider,model\np,m,{huge}\n"),
        ] {
            let found = problems(&text);
            assert_eq!(found.len(), 1, "{}", found.len());
            assert!(found[0].len() < 300, "{:.400}", found[0]);
        }
    }

    #[test]
    fn a_file_wrong_on_every_line_lists_its_first_fifty_problems() {
        let rows: String = (0..10_000).map(|i| format!("p,m{i},x\n")).collect();
        let text = "provider,model,rpm\n".to_owned() + &rows;
        let found = problems(&text);
        assert_eq!(found.len(), 51, "{:?}", &found[..3]);
        assert!(
            found[0].starts_with("endpoints.csv:2: column rpm:"),
            "{}",
            found[0]
        );
        assert_eq!(found[50], "endpoints.csv: and 9950 more problems");
    }

    #[test]
    fn reads_a_realistic_csv() {
        let text = "\
provider,model,rpm,tpm,rpd,tpd,id,priority,weight,concurrency,pace,day_reset,headers,key,base_url
groq,llama-3.1-8b-instant,30,6k,14_400,500k,,high,3,2,smooth,,,gsk_123,https://api.groq.com/openai/v1
gemini,gemini-2.5-flash,10,250k,250,,flash,low,,,burst,00:00 America/Los_Angeles,Google,,
openrouter,meta-llama/llama-3.3-70b-instruct:free,20,,50,,,7,,,,rolling,openai,,https://openrouter.ai/api/v1
";
        let endpoints = ok(text);
        assert_eq!(
            ids(&endpoints),
            [
                "groq/llama-3.1-8b-instant",
                "flash",
                "openrouter/meta-llama/llama-3.3-70b-instruct:free"
            ]
        );
        let groq = &endpoints[0];
        assert_eq!(groq.provider, "groq");
        assert_eq!(groq.model, "llama-3.1-8b-instant");
        assert_eq!(limit(groq, "rpm"), Some(30));
        assert_eq!(limit(groq, "tpm"), Some(6_000));
        assert_eq!(limit(groq, "rpd"), Some(14_400));
        assert_eq!(limit(groq, "tpd"), Some(500_000));
        assert_eq!(limit(groq, "rph"), None);
        assert_eq!(limit(groq, "tph"), None);
        assert_eq!(groq.priority, 3);
        assert_eq!(groq.weight, 3);
        assert_eq!(groq.concurrency, Some(2));
        assert_eq!(groq.pace, Pace::Smooth);
        assert_eq!(groq.day_reset, DayReset::Rolling);
        assert_eq!(groq.headers, None);
        assert_eq!(groq.key.as_deref(), Some("gsk_123"));
        assert_eq!(
            groq.props,
            [(
                "base_url".to_owned(),
                "https://api.groq.com/openai/v1".to_owned()
            )]
        );
        assert_eq!(groq.line, 2);

        let flash = &endpoints[1];
        assert_eq!(flash.priority, 1);
        assert_eq!(flash.weight, 1);
        assert_eq!(flash.concurrency, None);
        assert_eq!(flash.pace, Pace::Burst);
        assert_eq!(
            flash.day_reset,
            DayReset::At(DayAnchor {
                minute_of_day: 0,
                zone: zone("America/Los_Angeles")
            })
        );
        assert_eq!(flash.headers.as_deref(), Some("google"));
        assert_eq!(flash.key, None);
        assert_eq!(flash.props, [("base_url".to_owned(), String::new())]);

        let router = &endpoints[2];
        assert_eq!(router.model, "meta-llama/llama-3.3-70b-instruct:free");
        assert_eq!(router.priority, 7);
        assert_eq!(router.line, 4);
    }

    #[test]
    fn reads_a_markdown_table() {
        let text = "| provider | model | rpm | tpm | rpd |\n\
                    |---|---|---|---|---|\n\
                    | groq | llama-3.1-8b-instant | 30 | 6000 | 14400 |";
        let endpoints = ok(text);
        assert_eq!(ids(&endpoints), ["groq/llama-3.1-8b-instant"]);
        let groq = &endpoints[0];
        assert_eq!(limit(groq, "rpm"), Some(30));
        assert_eq!(limit(groq, "tpm"), Some(6000));
        assert_eq!(limit(groq, "rpd"), Some(14400));
        assert_eq!(limit(groq, "tph"), None);
        assert_eq!(groq.line, 3);
    }

    #[test]
    fn markdown_tolerates_outer_pipes_alignment_escapes_and_a_missing_separator() {
        let text = "# Free tiers\r\n\
                    \r\n\
                    | Provider | Model | Notes |\r\n\
                    | :--- | :---: | ---: |\r\n\
                    | groq | a | x \\| y |\r\n\
                    | groq | b |\r\n\
                    gemini | c | z\r\n\
                    |  |  |  |\r\n";
        let endpoints = ok(text);
        assert_eq!(ids(&endpoints), ["groq/a", "groq/b", "gemini/c"]);
        assert_eq!(
            endpoints[0].props,
            [("Notes".to_owned(), "x | y".to_owned())]
        );
        assert_eq!(endpoints[1].props, [("Notes".to_owned(), String::new())]);
        assert_eq!(
            ids(&ok("|provider|model\ngroq|a\n")),
            ["groq/a"],
            "no separator row; only the first line needs its pipe to mark a table"
        );
        assert_eq!(
            [endpoints[0].line, endpoints[1].line, endpoints[2].line],
            [5, 6, 7]
        );
    }

    #[test]
    fn markdown_reports_text_that_is_not_a_table_row() {
        let text = "| provider | model | rpm |\n|---|---|---|\n| groq | a | 3 |\n\nSee the docs.\n| groq | b | 4x |\n";
        assert_eq!(
            problems(text),
            [
                "endpoints.csv:5: is not a table row; start comments with #",
                r#"endpoints.csv:6: column rpm: "4x" is not a whole number"#,
            ]
        );
    }

    #[test]
    fn ignores_bom_blank_lines_comments_crlf_and_spaces() {
        let text = "\u{feff}# endpoints\r\n\
                    \r\n\
                    \x20 Provider , MODEL ,RPM\r\n\
                    \x20 # indented comment, \"with an open quote\r\n\
                    \t \r\n\
                    ,,\r\n\
                    \x20groq ,  llama , 30 \r\n\
                    #last";
        let endpoints = ok(text);
        assert_eq!(ids(&endpoints), ["groq/llama"]);
        assert_eq!(limit(&endpoints[0], "rpm"), Some(30));
        assert_eq!(endpoints[0].line, 7);
    }

    #[test]
    fn short_rows_have_empty_trailing_cells_and_absent_limits_are_none() {
        let endpoints = ok("provider,model,tpm,priority,base_url\ngroq,a\ngroq,b,1m\n");
        assert_eq!(endpoints.len(), 2);
        assert_eq!(limit(&endpoints[0], "tpm"), None);
        assert_eq!(endpoints[0].priority, 2);
        assert_eq!(endpoints[0].props, [("base_url".to_owned(), String::new())]);
        assert_eq!(limit(&endpoints[1], "tpm"), Some(1_000_000));
        assert!(
            Limit::ALL
                .iter()
                .all(|&l| ok("provider,model\np,m\n")[0].limits.get(l).is_none())
        );
    }

    #[test]
    fn quoted_cells_hold_commas_quotes_and_newlines_and_lines_stay_physical() {
        let text = "provider,model,note,rpm\r\n\
                    groq,\"a,b\",\"say \"\"hi\"\"\",1\r\n\
                    groq,c,\"two\r\nlines\r\n# not a comment\",2\r\n\
                    \r\n\
                    # comment\r\n\
                    groq,d,,3x\r\n";
        let errors = problems(text);
        assert_eq!(
            errors,
            [r#"endpoints.csv:8: column rpm: "3x" is not a whole number"#]
        );
        let endpoints = ok(&text.replace("3x", "3"));
        assert_eq!(ids(&endpoints), ["groq/a,b", "groq/c", "groq/d"]);
        assert_eq!(endpoints[0].props[0].1, "say \"hi\"");
        assert_eq!(endpoints[1].props[0].1, "two\r\nlines\r\n# not a comment");
        assert_eq!(
            endpoints.iter().map(|e| e.line).collect::<Vec<_>>(),
            [2, 3, 8]
        );
    }

    #[test]
    fn a_comment_with_an_open_quote_does_not_swallow_the_next_lines() {
        let text = "provider,model\n# a,\"quote\ngroq,a\n\ngroq,b,extra\n";
        assert_eq!(
            problems(text),
            [
                r#"endpoints.csv:5: column 3: "extra" is one of 3 cells, but the header has 2 columns"#
            ]
        );
    }

    #[test]
    fn counts_accept_separators_and_suffixes() {
        assert_eq!(parse_count("0"), Ok(0));
        assert_eq!(parse_count("60k"), Ok(60_000));
        assert_eq!(parse_count("60K"), Ok(60_000));
        assert_eq!(parse_count("1_000_000"), Ok(1_000_000));
        assert_eq!(parse_count("1m"), Ok(1_000_000));
        assert_eq!(parse_count("2_5M"), Ok(25_000_000));
        assert_eq!(parse_count("18446744073709551615"), Ok(u64::MAX));
        for bad in [
            "", "k", "-1", "+1", "1.5k", "_1", "1_", "1_k", "30x", "1 000", "1km", "٣",
        ] {
            assert_eq!(
                parse_count(bad),
                Err("is not a whole number".to_owned()),
                "{bad:?}"
            );
        }
        for big in [
            "18446744073709551616",
            "18446744073709552k",
            "99999999999999m",
        ] {
            assert_eq!(parse_count(big), Err("is too large".to_owned()), "{big:?}");
        }
    }

    #[test]
    fn every_kind_of_bad_cell_has_its_message() {
        let text = "\
provider,Model,RPM,tpd,id,priority,weight,concurrency,pace,day_reset
,m1
p,,
p,m3,30x
p,m4,,99999999999999999999
p,m5,,,\"a\x07b\"
p,m6,,,,urgent
p,m7,,,,9223372036854775808
p,m8,,,,,0
p,m9,,,,,5_000_000_000
p,m10,,,,,,0
p,m11,,,,,,,fast
p,m12,,,,,,,,noon
p,m13,,,,,,,,24:00 Europe/Paris
p,m14,,,,,,,,23:60 Europe/Paris
p,m15,,,,,,,,9:00 Europe/Paris
p,m16,,,,,,,,09:00 Europe Paris
p,m17,,,,,,,,09:00
p,m18,1,2,3,4,5,6,7,8,9
";
        assert_eq!(
            problems(text),
            [
                "endpoints.csv:2: column provider: \"\" is empty",
                "endpoints.csv:3: column Model: \"\" is empty",
                r#"endpoints.csv:4: column RPM: "30x" is not a whole number"#,
                r#"endpoints.csv:5: column tpd: "99999999999999999999" is too large"#,
                r#"endpoints.csv:6: column id: "a\u{7}b" contains a control character"#,
                r#"endpoints.csv:7: column priority: "urgent" is not high, medium, low or a whole number"#,
                r#"endpoints.csv:8: column priority: "9223372036854775808" is too large"#,
                r#"endpoints.csv:9: column weight: "0" must be at least 1"#,
                r#"endpoints.csv:10: column weight: "5_000_000_000" is too large (the most is 4294967295)"#,
                r#"endpoints.csv:11: column concurrency: "0" must be at least 1 (leave it empty for no limit)"#,
                r#"endpoints.csv:12: column pace: "fast" is not smooth or burst"#,
                r#"endpoints.csv:13: column day_reset: "noon" is not rolling or HH:MM Area/City (like 00:00 America/Los_Angeles)"#,
                r#"endpoints.csv:14: column day_reset: "24:00 Europe/Paris" has an hour above 23"#,
                r#"endpoints.csv:15: column day_reset: "23:60 Europe/Paris" has minutes above 59"#,
                r#"endpoints.csv:16: column day_reset: "9:00 Europe/Paris" is not rolling or HH:MM Area/City (like 00:00 America/Los_Angeles)"#,
                r#"endpoints.csv:17: column day_reset: "09:00 Europe Paris" is not rolling or HH:MM Area/City (like 00:00 America/Los_Angeles)"#,
                r#"endpoints.csv:18: column day_reset: "09:00" is not rolling or HH:MM Area/City (like 00:00 America/Los_Angeles)"#,
                r#"endpoints.csv:19: column 11: "9" is one of 11 cells, but the header has 10 columns"#,
            ]
        );
    }

    #[test]
    fn good_values_of_the_optional_columns() {
        let text = "provider,model,priority,pace,day_reset,concurrency\n\
                    p,a,HIGH,SMOOTH,ROLLING,1\n\
                    p,b,0,Burst,23:59 Asia/Kolkata,7\n\
                    p,c,medium,,,\n";
        let e = ok(text);
        assert_eq!(e.iter().map(|e| e.priority).collect::<Vec<_>>(), [3, 0, 2]);
        assert_eq!(
            e.iter().map(|e| e.pace).collect::<Vec<_>>(),
            [Pace::Smooth, Pace::Burst, Pace::Burst]
        );
        assert_eq!(
            e[1].day_reset,
            DayReset::At(DayAnchor {
                minute_of_day: 23 * 60 + 59,
                zone: zone("Asia/Kolkata")
            })
        );
        assert_eq!(e[0].day_reset, DayReset::Rolling);
        assert_eq!(
            e.iter().map(|e| e.concurrency).collect::<Vec<_>>(),
            [Some(1), Some(7), None]
        );
    }

    #[test]
    fn a_day_reset_parses_to_its_anchor() {
        let text = "provider,model,day_reset\n\
                    gemini,flash,00:00 America/Los_Angeles\n\
                    p,b,09:30 europe/berlin\n\
                    p,c,  17:05   UTC  \n";
        let e = ok(text);
        let anchors: Vec<_> = e
            .iter()
            .map(|e| match &e.day_reset {
                DayReset::At(anchor) => anchor.to_string(),
                DayReset::Rolling => "rolling".to_owned(),
            })
            .collect();
        assert_eq!(
            anchors,
            [
                "00:00 America/Los_Angeles",
                "09:30 Europe/Berlin",
                "17:05 UTC"
            ]
        );
        assert_eq!(
            e[1].day_reset,
            DayReset::At(DayAnchor {
                minute_of_day: 9 * 60 + 30,
                zone: zone("Europe/Berlin")
            })
        );
    }

    #[test]
    fn an_unknown_time_zone_is_an_error_on_its_line() {
        let text = "provider,model,day_reset\n\
                    # Gemini resets at midnight Pacific time\n\
                    gemini,flash,00:00 America/Los_Angeles\n\
                    \n\
                    p,mars,00:00 Mars/Olympus\n\
                    p,typo,00:00 America/Los_Angles\n\
                    p,offset,00:00 UTC+2\n";
        assert_eq!(
            problems(text),
            [
                r#"endpoints.csv:5: column day_reset: "00:00 Mars/Olympus" has an unknown time zone (use an IANA name like America/Los_Angeles)"#,
                r#"endpoints.csv:6: column day_reset: "00:00 America/Los_Angles" has an unknown time zone (use an IANA name like America/Los_Angeles)"#,
                r#"endpoints.csv:7: column day_reset: "00:00 UTC+2" has an unknown time zone (use an IANA name like America/Los_Angeles)"#,
            ]
        );
    }

    #[test]
    fn jiffs_placeholder_for_no_zone_is_an_unknown_zone() {
        assert_eq!(
            problems("provider,model,day_reset\np,m,00:00 etc/unknown\n"),
            [
                r#"endpoints.csv:2: column day_reset: "00:00 etc/unknown" has an unknown time zone (use an IANA name like America/Los_Angeles)"#
            ]
        );
    }

    #[test]
    fn a_bad_cell_after_a_comment_and_a_blank_line_names_its_physical_line() {
        let text = "provider,model,rpm\n# free tier\n\ngroq,llama,30x\n";
        assert_eq!(
            problems(text),
            [r#"endpoints.csv:4: column rpm: "30x" is not a whole number"#]
        );
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(
            problems(&crlf),
            [r#"endpoints.csv:4: column rpm: "30x" is not a whole number"#]
        );
        let bom = format!("\u{feff}\n{text}");
        assert_eq!(
            problems(&bom),
            [r#"endpoints.csv:5: column rpm: "30x" is not a whole number"#]
        );
    }

    #[test]
    fn reports_every_problem_of_every_row_in_line_order() {
        let text = "provider,model,rpm,tpm\n,a,1x,2y\n# ok\np,b,3,4\np,c,,-5\n";
        let err = parse(text, "my.csv").expect_err("bad cells");
        assert_eq!(
            err.to_string(),
            "my.csv:2: column provider: \"\" is empty\n\
             my.csv:2: column rpm: \"1x\" is not a whole number\n\
             my.csv:2: column tpm: \"2y\" is not a whole number\n\
             my.csv:5: column tpm: \"-5\" is not a whole number"
        );
    }

    #[test]
    fn duplicate_ids_name_the_first_line_and_say_how_to_fix_them() {
        assert_eq!(
            problems("provider,model\ngroq,a\n\ngroq,a\n"),
            [
                r#"endpoints.csv:4: column id: "groq/a" (provider/model) is already the id on line 2; add an id column to tell the rows apart"#
            ]
        );
        assert_eq!(
            problems("provider,model,ID\ngroq,a,\ngroq,a,\ngroq,b,x\ngroq,c,x\n"),
            [
                r#"endpoints.csv:3: column ID: "" leaves the id "groq/a" (provider/model), which is already the id on line 2; give one of the rows its own id"#,
                r#"endpoints.csv:5: column ID: "x" is already the id on line 4"#,
            ]
        );
        let endpoints = ok("provider,model,id\ngroq,a,\ngroq,a,groq-a-2\n");
        assert_eq!(ids(&endpoints), ["groq/a", "groq-a-2"]);
        // A row with another bad cell still takes part in the check.
        assert_eq!(
            problems("provider,model,rpm\ngroq,a,x\ngroq,a,1\n").len(),
            2
        );
    }

    #[test]
    fn the_key_never_appears_in_a_message() {
        let secret = "sk-SECRET-42";
        let text = format!(
            "provider,model,key,rpm\n\
             ,m,{secret},1x\n\
             p,m,{secret},2,{secret}\n\
             p,m,{secret},3\n\
             p,m,{secret},3\n"
        );
        let err = parse(&text, "endpoints.csv").expect_err("bad rows");
        assert_eq!(err.problems.len(), 4, "{err}");
        assert!(!err.to_string().contains("SECRET"), "{err}");
        assert!(!format!("{err:?}").contains("SECRET"), "{err:?}");
        let endpoints = ok(&format!("provider,model,KEY\np,m,{secret}\n"));
        assert_eq!(endpoints[0].key.as_deref(), Some(secret));
        assert!(endpoints[0].props.is_empty(), "the key is not a property");
    }

    #[test]
    fn props_keep_file_order_and_the_header_spelling() {
        let endpoints = ok("Base_URL,provider,API_KEY_ENV,model,Extra\n\
                            https://x , p , X_KEY , m ,\n");
        assert_eq!(
            endpoints[0].props,
            [
                ("Base_URL".to_owned(), "https://x".to_owned()),
                ("API_KEY_ENV".to_owned(), "X_KEY".to_owned()),
                ("Extra".to_owned(), String::new()),
            ]
        );
    }

    #[test]
    fn a_header_of_many_columns_finds_its_one_duplicate() {
        let mut header: Vec<String> = (0..131_072).map(|i| format!("c{i}")).collect();
        header.extend(["provider".into(), "model".into(), "C7".into()]);
        let text = format!("{}\np,m\n", header.join(","));
        assert_eq!(
            problems(&text),
            ["endpoints.csv:1: column \"C7\" appears twice in the header"]
        );
    }

    #[test]
    fn header_problems_are_reported_on_the_header_line() {
        assert_eq!(
            problems("# comment\nprovider,rpm\ngroq,30x\n"),
            ["endpoints.csv:2: the header has no model column; provider and model are required"]
        );
        assert_eq!(
            problems("groq,llama,30\n"),
            [
                "endpoints.csv:1: the header has no provider column; provider and model are required",
                "endpoints.csv:1: the header has no model column; provider and model are required",
            ]
        );
        assert_eq!(
            problems("provider,model,rpm,RPM,,x\n"),
            [
                r#"endpoints.csv:1: column "RPM" appears twice in the header"#,
                "endpoints.csv:1: column 5 of the header has no name",
            ]
        );
    }

    #[test]
    fn a_header_without_rows_is_empty_and_no_header_is_an_error() {
        assert!(ok("provider,model,rpm\n\n# none yet\n").is_empty());
        assert!(ok("| provider | model |\n|---|---|\n").is_empty());
        assert_eq!(
            problems("\u{feff}# nothing\n\n"),
            [
                "endpoints.csv: has no header row; its first line should name the columns, like provider,model,rpm"
            ]
        );
        assert_eq!(problems("").len(), 1);
    }

    #[test]
    fn load_names_the_file_and_the_line_of_bad_utf8() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("endpoints.csv");
        std::fs::write(&path, b"provider,model\ngroq,a\ngroq,\xff\n").expect("write");
        let err = load(&path).expect_err("not UTF-8");
        assert_eq!(
            err.to_string(),
            format!(
                "{}:3: is not UTF-8 text; save the file as UTF-8",
                path.display()
            )
        );

        std::fs::write(&path, "provider,model\ngroq,a\n").expect("write");
        assert_eq!(ids(&load(&path).expect("loads")), ["groq/a"]);

        std::fs::write(&path, "provider,model,rpm\ngroq,a,x\n").expect("write");
        let err = load(&path).expect_err("bad cell");
        assert!(err.downcast_ref::<FileErrors>().is_some());
        assert!(
            err.to_string()
                .starts_with(&format!("{}:2: ", path.display()))
        );

        let missing = dir.path().join("missing.csv");
        let err = load(&missing).expect_err("missing");
        assert!(format!("{err:#}").contains("missing.csv"), "{err:#}");
    }
}
