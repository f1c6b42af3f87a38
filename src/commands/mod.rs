//! One module per subcommand: each reads its inputs, asks the ledger, and prints. What they
//! share, finding the endpoints file and the database, lives here.

mod call;
mod doctor;
mod exec;
mod history;
mod init;
mod pick;
mod record;
mod reset;
mod serve;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::CommandFactory;

use crate::cli::{Cli, ColorChoice, Command};
use crate::endpoints::{self, Endpoint};
use crate::env;
use crate::ledger::{self, Ledger};

/// Exit status when no endpoint has quota right now (EX_TEMPFAIL).
pub const EXHAUSTED: u8 = 75;

pub fn run(cli: Cli) -> Result<ExitCode> {
    // A variable that is set but empty counts as unset.
    let ctx = Context {
        endpoints: cli
            .endpoints
            .or_else(|| env::get(env::ENDPOINTS).map(PathBuf::from)),
        db: cli.db.or_else(|| env::get(env::DB).map(PathBuf::from)),
        color: cli.color,
    };
    match cli.command {
        Command::Pick(mut args) => {
            if args.json {
                args.format = crate::cli::PickFormat::Json;
            }
            pick::run(&ctx, &args)
        }
        Command::Record(args) => record::run(&ctx, &args),
        Command::State(mut args) => {
            if args.json {
                args.format = crate::cli::StateFormat::Json;
            }
            state::run(&ctx, &args)
        }
        Command::Reset(args) => reset::run(&ctx, &args),
        Command::Exec(args) => exec::run(&ctx, &args),
        Command::Serve(args) => serve::run(&ctx, &args),
        Command::Call(args) => call::run(&ctx, &args),
        Command::History(mut args) => {
            if args.json {
                args.format = crate::cli::HistoryFormat::Json;
            }
            history::run(&ctx, &args)
        }
        Command::Init(args) => init::run(&ctx, &args),
        Command::Doctor => doctor::run(&ctx),
        Command::Man => {
            crate::output::bytes(&manual()?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            crate::output::data(&crate::complete::registration(shell)?)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The manual page: NAME, SYNOPSIS, DESCRIPTION and the global options from the
/// definitions `--help` prints, a section per subcommand (synopsis, description, options),
/// then ENVIRONMENT, FILES, EXIT STATUS and EXAMPLES. One page: it names no other.
fn manual() -> Result<Vec<u8>> {
    let cli = Cli::command();
    let man = clap_mangen::Man::new(cli.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("llm-rotate {}", sub.get_name());
        let sub = sub.clone().bin_name(name.clone());
        let man = clap_mangen::Man::new(sub);
        let mut part = Vec::new();
        man.render_synopsis_section(&mut part)?;
        man.render_description_section(&mut part)?;
        man.render_options_section(&mut part)?;
        // Inside the one page, a subcommand's sections are subsections of its own.
        let part = String::from_utf8_lossy(&part).replace(".SH ", ".SS ");
        page.extend_from_slice(format!(".SH \"{}\"\n", name.to_uppercase()).as_bytes());
        page.extend_from_slice(part.as_bytes());
    }
    page.extend_from_slice(MANUAL_END.as_bytes());
    Ok(page)
}

/// The sections of the manual that no `--help` holds.
const MANUAL_END: &str = r#".SH ENVIRONMENT
.TP
\fBLLM_ROTATE_ENDPOINTS\fR
The endpoints file, when \-\-endpoints is not given.
.TP
\fBLLM_ROTATE_DB\fR
The ledger: an SQLite file, or a redis:// or rediss:// URL (a shared ledger), when \-\-db is not given.
.TP
\fBLLM_ROTATE_NOW\fR
The time, as Unix seconds or RFC 3339, instead of the clock (for tests and what\-ifs).
.TP
\fBLLM_ROTATE_LISTEN\fR
Where serve listens (ADDR:PORT), when \-\-listen is not given.
.TP
\fBSSL_CERT_FILE\fR
The certificates to trust instead of the system's: for a rediss:// ledger (or ?ca=PATH in the URL), and for the providers serve and call reach over HTTPS.
.TP
\fBLLM_ROTATE_COMPLETE\fR
Set by the completion scripts when they ask the binary for completions at TAB time.
.TP
\fBNO_COLOR\fR
When set, tables get no colour unless \-\-color always.
.TP
\fBLLM_ROTATE_ID\fR, \fBLLM_ROTATE_PROVIDER\fR, \fBLLM_ROTATE_MODEL\fR, \fBLLM_ROTATE_LEASE\fR, \fBLLM_ROTATE_TOKENS\fR, \fBLLM_ROTATE_KEY\fR, \fBLLM_ROTATE_\fR\fINAME\fR
Exported by pick \-\-format shell and set for the command of exec: the endpoint chosen, its lease, the estimate, its key and every property column (NAME in upper case).
.TP
\fBLLM_ROTATE_HEADERS\fR, \fBLLM_ROTATE_USAGE\fR, \fBLLM_ROTATE_ATTEMPT\fR
Set by exec for its command: where to write the response's header dump and its usage, and the attempt's number.
.SH FILES
.TP
\fI~/.config/llm\-rotate/endpoints.csv\fR
The endpoints file (under $XDG_CONFIG_HOME when set); llm\-rotate init writes an example there.
.TP
\fI~/.cache/llm\-rotate/usage.sqlite3\fR
The ledger of usage (under $XDG_CACHE_HOME when set), shared by every process of the user.
.SH "EXIT STATUS"
.TP
\fB0\fR
Done: an endpoint was chosen, a record was taken.
.TP
\fB1\fR
An error: a bad endpoints file, a damaged ledger, an unreachable server.
.TP
\fB2\fR
A usage error: a bad option or value.
.TP
\fB75\fR
No endpoint has quota right now (EX_TEMPFAIL); try again later, or use \-\-wait.
.PP
exec exits with its command's status (128 + N when a signal N killed it); when the command exited 0 but its response was refused, 75 for a 429 and 1 otherwise.
.SH EXAMPLES
Write the example endpoints file, then see what each endpoint has left:
.PP
.nf
.RS 4
llm\-rotate init
llm\-rotate state
.RE
.fi
.PP
Pick an endpoint for a call of about 1200 tokens, stopping when none has quota:
.PP
.nf
.RS 4
vars=$(llm\-rotate pick \-\-tokens 1200 \-\-format shell) || exit
eval "$vars"
.RE
.fi
.PP
Let exec pick, run curl with the endpoint, record what happened and fail over after a 429:
.PP
.nf
.RS 4
llm\-rotate exec \-\-tokens\-from request.json \-\- sh \-c \(aq
  curl \-sS \-D "$LLM_ROTATE_HEADERS" "$LLM_ROTATE_BASE_URL/chat/completions" \e
    \-H "Authorization: Bearer $(printenv "$LLM_ROTATE_API_KEY_ENV")" \e
    \-H "Content\-Type: application/json" \-d @request.json\(aq
.RE
.fi
.PP
Serve the OpenAI API locally, and point any OpenAI client at it:
.PP
.nf
.RS 4
llm\-rotate serve &
OPENAI_BASE_URL=http://127.0.0.1:4141/v1 OPENAI_API_KEY=unused python agent.py
.RE
.fi
.PP
Install this page where man finds it for a binary in ~/.cargo/bin:
.PP
.nf
.RS 4
mkdir \-p ~/.cargo/share/man/man1
llm\-rotate man > ~/.cargo/share/man/man1/llm\-rotate.1
.RE
.fi
"#;

/// Where the endpoints file and the database are, as the global options (or their
/// variables) say.
pub struct Context {
    endpoints: Option<PathBuf>,
    db: Option<PathBuf>,
    color: ColorChoice,
}

impl Context {
    /// The endpoints: `--endpoints`, else `$LLM_ROTATE_ENDPOINTS`, else the config folder's
    /// `endpoints.csv`. When none exists, the error names every place looked at.
    pub fn endpoints(&self) -> Result<Vec<Endpoint>> {
        if let Some(path) = &self.endpoints {
            if !path.exists() {
                bail!(
                    "no endpoints file at {0}; `llm-rotate --endpoints {0} init` writes an \
                     example there to start from",
                    path.display()
                );
            }
            return endpoints::load(path);
        }
        let default = default_endpoints_path();
        match &default {
            Some(path) if path.exists() => endpoints::load(path),
            _ => bail!(
                "no endpoints file: looked for --endpoints (not given), ${} \
                 (not set) and {}; `llm-rotate init` writes an example there to start from, or pass \
                 --endpoints FILE",
                env::ENDPOINTS,
                default.as_deref().map_or(
                    "the user config directory (not found)".into(),
                    |p| format!("{} (not found)", p.display())
                )
            ),
        }
    }

    /// Where the endpoints file is looked for: `--endpoints`, `$LLM_ROTATE_ENDPOINTS`, else
    /// the config folder's `endpoints.csv`.
    pub fn endpoints_path(&self) -> Option<PathBuf> {
        self.endpoints.clone().or_else(default_endpoints_path)
    }

    /// The endpoints when a file is configured or present; `None` when there is none at all.
    pub fn endpoints_if_any(&self) -> Result<Option<Vec<Endpoint>>> {
        let explicit = self.endpoints.is_some();
        if explicit || default_endpoints_path().is_some_and(|p| p.exists()) {
            self.endpoints().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Whether tables get colour: `--color`, else only on a terminal and without
    /// `NO_COLOR`. Never in a file.
    pub fn colour(&self, to_stdout: bool) -> bool {
        match self.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                to_stdout
                    && std::io::IsTerminal::is_terminal(&std::io::stdout())
                    && std::env::var_os("NO_COLOR").is_none()
            }
        }
    }

    pub fn ledger(&self) -> Result<Box<dyn Ledger>> {
        Ok(ledger::open(&self.ledger_location()?)?)
    }

    /// Where the ledger is: `--db`, `$LLM_ROTATE_DB`, else the user cache folder's file.
    pub fn ledger_location(&self) -> Result<PathBuf> {
        match &self.db {
            Some(path) => Ok(path.clone()),
            None => ledger::default_path(),
        }
    }
}

pub fn default_endpoints_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "llm-rotate")
        .map(|dirs| dirs.config_dir().join("endpoints.csv"))
}

/// The endpoint with this id, or an error that lists what the file has.
pub fn find<'e>(all: &'e [Endpoint], id: &str) -> Result<&'e Endpoint> {
    all.iter().find(|e| e.id == id).with_context(|| {
        let ids: Vec<&str> = all.iter().map(|e| e.id.as_str()).collect();
        format!("unknown endpoint {id:?}; the file has: {}", ids.join(", "))
    })
}
