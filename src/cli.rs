//! The command line, as clap derive types: the doc comments are the help text. Values are
//! checked here only as far as their syntax; the commands give them meaning.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::clock::Millis;
use crate::engine::choose::Strategy;

/// Pick an LLM endpoint that has quota left right now, and keep a ledger of usage that every
/// process on this machine shares.
#[derive(Debug, Parser)]
#[command(name = "llm-rotate", version, max_term_width = 100)]
#[command(after_help = "Exit status: 0 done, 1 error, 2 usage error, 75 no quota right now.")]
pub struct Cli {
    /// Endpoints file: CSV or a Markdown table
    /// [default: endpoints.csv in the user config directory]
    /// [env: LLM_ROTATE_ENDPOINTS]
    #[arg(long, global = true, value_name = "FILE", display_order = 100)]
    pub endpoints: Option<PathBuf>,

    /// Usage database [default: usage.sqlite3 in the user cache directory]
    /// [env: LLM_ROTATE_DB]
    #[arg(long, global = true, value_name = "FILE", display_order = 101)]
    pub db: Option<PathBuf>,

    /// Colour in tables: auto (on a terminal, without NO_COLOR), always or never
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "WHEN",
        default_value_t = ColorChoice::Auto,
        display_order = 102
    )]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Pick(PickArgs),
    Exec(ExecArgs),
    Serve(ServeArgs),
    Call(CallArgs),
    Record(RecordArgs),
    State(StateArgs),
    Reset(ResetArgs),
    History(HistoryArgs),
    Init(InitArgs),
    /// Check the endpoints file and the ledger: for Redis, the server's version, round
    /// trip, clock, eviction policy and persistence; exit 1 when something needs doing
    Doctor,
    /// Print the manual page (roff), from the same definitions as --help
    Man,
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Write the example endpoints file to start from
///
/// Writes it where the endpoints file is looked for (--endpoints, $LLM_ROTATE_ENDPOINTS, else
/// endpoints.csv in the user config directory), or to --output, creating the folders. An
/// existing file is left alone unless --force.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Write to FILE instead
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Replace a file that is already there
    #[arg(long)]
    pub force: bool,
}

/// Choose an endpoint that fits the request now and reserve it
///
/// Prints the endpoint's id. The reservation counts against its limits at once; settle it
/// with `llm-rotate record` when the real token count is known.
#[derive(Debug, Args)]
pub struct PickArgs {
    #[command(flatten)]
    pub request: RequestArgs,

    /// Show what would be chosen; reserve nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Output format
    #[arg(long, value_enum, default_value_t = PickFormat::Text)]
    pub format: PickFormat,

    /// Short for `--format json`
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

/// What `pick` and `exec` share: the request's size, which endpoints may take it, how to
/// choose among them, and how long to wait for one.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// Input tokens the request will use (estimate); `1200`, `4k`, `1_000`
    #[arg(long, value_name = "N", default_value = "0", value_parser = count)]
    pub tokens: u64,

    /// Estimate the tokens from the prompt's size: FILE's bytes / 3, rounded up; `-` for
    /// stdin
    #[arg(long, value_name = "FILE", conflicts_with = "tokens")]
    pub tokens_from: Option<PathBuf>,

    /// Completion tokens allowed (`max_tokens`): the estimate's output tokens
    #[arg(long, value_name = "N", value_parser = count)]
    pub max_output: Option<u64>,

    #[command(flatten)]
    pub choosing: Choosing,
}

/// Which endpoints may take a request, how to choose among them, and how long to wait for
/// one: what `pick`, `exec`, `serve` and `call` share.
#[derive(Debug, Args)]
pub struct Choosing {
    /// Only endpoints whose id matches this glob (`*` any run, `?` one character); repeatable
    #[arg(long, value_name = "PATTERN", add = crate::complete::ids())]
    pub only: Vec<String>,

    /// Skip endpoints whose id matches this glob; repeatable
    #[arg(long, value_name = "PATTERN", add = crate::complete::ids())]
    pub exclude: Vec<String>,

    /// How to choose among the fitting endpoints of the highest priority
    #[arg(long, value_enum, default_value_t = Strategy::Order)]
    pub strategy: Strategy,

    /// When nothing fits, wait for a slot: at most DURATION (30s, 5m, 1h), or without a
    /// value as long as it takes
    #[arg(long, value_name = "DURATION", num_args = 0..=1, value_parser = duration)]
    pub wait: Option<Option<Millis>>,
}

/// The strategies on the command line; the type is the domain's, kept free of clap.
impl ValueEnum for Strategy {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            Strategy::Order,
            Strategy::Weighted,
            Strategy::Spread,
            Strategy::RoundRobin,
            Strategy::Cheapest,
            Strategy::Fastest,
        ]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let (name, help) = match self {
            Strategy::Order => ("order", "The first in file order"),
            Strategy::Weighted => (
                "weighted",
                "At random, in proportion to the `weight` column",
            ),
            Strategy::Spread => ("spread", "The one with the most of its tightest limit left"),
            Strategy::RoundRobin => (
                "round-robin",
                "Each in turn, in file order; the turn is shared by every process",
            ),
            Strategy::Cheapest => (
                "cheapest",
                "The lowest cost of this request at the `price_*` columns; ties in file order",
            ),
            Strategy::Fastest => (
                "fastest",
                "The lowest median latency over the last hour; unmeasured endpoints first",
            ),
        };
        Some(clap::builder::PossibleValue::new(name).help(help))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PickFormat {
    /// The id alone on one line
    Text,
    /// One JSON object with the lease and the endpoint's properties
    Json,
    /// `export LLM_ROTATE_...='...'` lines for `eval`
    Shell,
}

/// Pick an endpoint, run a command with it, record what happened, and fail over
///
/// COMMAND runs directly (no shell) with the variables of `pick --format shell` set, and
/// LLM_ROTATE_HEADERS (where it may write the response headers: `curl -D
/// "$LLM_ROTATE_HEADERS"`), LLM_ROTATE_USAGE (where it may write the tokens used, or the JSON
/// response) and LLM_ROTATE_ATTEMPT. After a 429, a 408 or a 5xx it is run again on the next
/// endpoint that fits.
#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub request: RequestArgs,

    /// Attempts in all, fail-overs included
    #[arg(long, value_name = "N", default_value = "3", value_parser = clap::value_parser!(u32).range(1..))]
    pub attempts: u32,

    /// Write COMMAND's stdout as it comes (streamed responses); no retry once it wrote
    #[arg(long)]
    pub stream: bool,

    /// The command and its arguments, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

/// Which endpoints a request made by llm-rotate may go to, and how they are tried: what
/// `serve` and `call` share.
#[derive(Debug, Args)]
pub struct ForwardArgs {
    #[command(flatten)]
    pub choosing: Choosing,

    /// Attempts per request, fail-overs included
    #[arg(long, value_name = "N", default_value = "3", value_parser = clap::value_parser!(u32).range(1..))]
    pub attempts: u32,

    /// Output tokens estimated for a request whose body sets no `max_tokens`
    #[arg(long, value_name = "N", default_value = "1k", value_parser = count)]
    pub max_output: u64,
}

/// Serve the OpenAI API locally; each request goes to an endpoint with quota
///
/// Point any OpenAI client at it (OPENAI_BASE_URL=http://127.0.0.1:4141/v1): each request's
/// `model` (an endpoint id, a model name, a glob over ids, or `auto`) names the endpoints it
/// may go to; it is reserved in the ledger, sent with the row's key, failed over after a
/// 429, a 408 or a 5xx, and settled with the usage the response reports. GET /metrics is
/// `state --format prometheus`, live; GET / a page of state and history.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub forward: ForwardArgs,

    /// Where to listen
    #[arg(
        long,
        value_name = "ADDR:PORT",
        env = "LLM_ROTATE_LISTEN",
        default_value = "127.0.0.1:4141"
    )]
    pub listen: std::net::SocketAddr,

    /// Require `Authorization: Bearer <value of VAR>` (needed to listen beyond loopback)
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,

    /// No log line per request
    #[arg(long, short)]
    pub quiet: bool,
}

/// Make one OpenAI API call with an endpoint that has quota, as `serve` makes each
///
/// The request body comes from --data or stdin; the response body goes to stdout as it
/// comes. Exit 0 for a 2xx, 75 when nothing had quota (or the last attempt was a 429), 1 for any
/// other answer (its status on stderr).
#[derive(Debug, Args)]
pub struct CallArgs {
    #[command(flatten)]
    pub forward: ForwardArgs,

    /// The API path
    #[arg(long, value_name = "PATH", default_value = "/v1/chat/completions", value_parser = api_path)]
    pub path: String,

    /// The request body (JSON) from FILE; stdin when not given
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,

    /// `body`: the response body as it comes; `json`: {"status", "endpoint", "usage",
    /// "body"} at the end
    #[arg(long, value_enum, default_value_t = CallFormat::Body)]
    pub format: CallFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CallFormat {
    Body,
    Json,
}

/// Settle a reservation with the real usage, or record a call made without pick
///
/// With --lease, settles that reservation. With an ID alone, settles the endpoint's oldest
/// open reservation, or, when none is open, records a new call now.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Endpoint id
    #[arg(required_unless_present = "lease", add = crate::complete::ids())]
    pub id: Option<String>,

    /// The lease printed by `pick --format json|shell`
    #[arg(long, value_name = "LEASE")]
    pub lease: Option<String>,

    /// Tokens really used (replaces the reservation's estimate)
    #[arg(long, value_name = "N", value_parser = count)]
    pub tokens: Option<u64>,

    /// Read the tokens used from FILE (`-` for stdin): the response body, JSON or an SSE
    /// stream, in the shapes `exec` reads, or a whole number; whatever the status
    #[arg(long, value_name = "FILE", conflicts_with = "tokens")]
    pub usage: Option<PathBuf>,

    /// Prompt tokens not read from a cache (cache writes included)
    #[arg(long, value_name = "N", value_parser = count, conflicts_with_all = ["tokens", "usage"])]
    pub input_tokens: Option<u64>,

    /// Completion tokens (reasoning included)
    #[arg(long, value_name = "N", value_parser = count, conflicts_with_all = ["tokens", "usage"])]
    pub output_tokens: Option<u64>,

    /// Prompt tokens read from a cache
    #[arg(long, value_name = "N", value_parser = count, conflicts_with_all = ["tokens", "usage"])]
    pub cached_tokens: Option<u64>,

    /// Requests made [default: 1]
    #[arg(long, value_name = "N", value_parser = count)]
    pub requests: Option<u64>,

    /// How long the call took (1.2s, 850ms); kept for a call that succeeded
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub latency: Option<Millis>,

    /// Record a new call now, even when a reservation is open
    #[arg(long, requires = "id", conflicts_with = "lease")]
    pub add: bool,

    /// The call was refused with 429 Too Many Requests: skip the endpoint for a while
    #[arg(long, conflicts_with = "failed")]
    pub rate_limited: bool,

    /// How long the provider asked to wait (its Retry-After): 30, 30s, 2m, or an HTTP date
    #[arg(long, value_name = "DURATION", requires = "rate_limited", value_parser = retry_after)]
    pub retry_after: Option<String>,

    /// The call failed (other than a 429); three in a row skip the endpoint for a while
    #[arg(long)]
    pub failed: bool,

    /// The response's headers, as `curl -D` writes them (`-` for stdin): read the provider's
    /// rate-limit headers and Retry-After
    #[arg(long, value_name = "FILE")]
    pub headers: Option<PathBuf>,
}

/// Show each endpoint's usage against its limits
#[derive(Debug, Args)]
pub struct StateArgs {
    /// Only endpoints whose id matches one of these globs
    #[arg(value_name = "PATTERN", add = crate::complete::ids())]
    pub patterns: Vec<String>,

    /// Output format
    #[arg(long, value_enum, default_value_t = StateFormat::Table)]
    pub format: StateFormat,

    /// Short for `--format json`
    #[arg(long, conflicts_with = "format")]
    pub json: bool,

    /// Write to FILE atomically (a temporary file in its folder, then a rename) instead of
    /// stdout
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// CSV without its header row, for appending readings to one file
    #[arg(long)]
    pub no_header: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateFormat {
    /// A table for people
    Table,
    /// An array of objects with the raw numbers
    Json,
    /// One row per endpoint with the raw numbers and the time of the reading
    Csv,
    /// The Prometheus text format, for node_exporter's textfile collector
    Prometheus,
}

/// Requests and tokens per endpoint per UTC hour or day (kept 90 days)
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only endpoints whose id matches one of these globs
    #[arg(value_name = "PATTERN", add = crate::complete::ids())]
    pub patterns: Vec<String>,

    /// How far back: 24h, 7d, 90d [default: 24h by hour, 30d by day]
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub since: Option<Millis>,

    /// One row (or point) per UTC hour or day
    #[arg(long, value_enum, default_value_t = Period::Hour)]
    pub by: Period,

    /// What the table's bars and the chart show
    #[arg(long, value_enum, default_value_t = Metric::Requests)]
    pub metric: Metric,

    /// Output format
    #[arg(long, value_enum, default_value_t = HistoryFormat::Table)]
    pub format: HistoryFormat,

    /// Short for `--format json`
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Metric {
    /// Requests made
    Requests,
    /// Tokens of every kind
    Tokens,
    /// Cost in US dollars, at the `price_*` columns
    Spend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Period {
    Hour,
    Day,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HistoryFormat {
    /// A bar per period, for people
    Table,
    /// An array of endpoints with their periods
    Json,
    /// endpoint,period_start,requests,tokens
    Csv,
    /// A line chart a browser shows as it is
    Svg,
}

/// Forget the usage and reservations of endpoints
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["names", "all"]))]
pub struct ResetArgs {
    /// Endpoint ids or globs
    #[arg(value_name = "ID|PATTERN", add = crate::complete::ids())]
    pub names: Vec<String>,

    /// Every endpoint in the database
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
}

fn duration(text: &str) -> Result<Millis, String> {
    crate::duration::parse_duration(text)
}

/// Checked here for its syntax; its meaning (a date) needs the time of the record.
fn retry_after(text: &str) -> Result<String, String> {
    crate::duration::parse_retry_after(text).map(|_| text.to_owned())
}

/// Counts on the command line take the file's syntax, and stay within SQLite's integers.
/// The path of an OpenAI route: `/v1/` and the rest.
fn api_path(text: &str) -> Result<String, String> {
    match text.strip_prefix("/v1/") {
        Some(rest) if !rest.is_empty() => Ok(text.to_owned()),
        _ => Err("the path of an OpenAI route, such as /v1/chat/completions".to_owned()),
    }
}

fn count(text: &str) -> Result<u64, String> {
    let n = crate::endpoints::parse_count(text)?;
    if n > i64::MAX as u64 {
        return Err("is too large".into());
    }
    Ok(n)
}

impl RequestArgs {
    /// Where the token estimate comes from.
    pub fn estimate(&self) -> crate::estimate::Source<'_> {
        match &self.tokens_from {
            Some(path) => crate::estimate::Source::File(path),
            None => crate::estimate::Source::Count(self.tokens),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
