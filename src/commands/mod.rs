//! One module per subcommand: each reads its inputs, asks the ledger, and prints. What they
//! share, finding the endpoints file and the database, lives here.

mod exec;
mod history;
mod init;
mod pick;
mod record;
mod reset;
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
        Command::History(mut args) => {
            if args.json {
                args.format = crate::cli::HistoryFormat::Json;
            }
            history::run(&ctx, &args)
        }
        Command::Init(args) => init::run(&ctx, &args),
        Command::Man => {
            crate::output::bytes(&manual()?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            crate::output::data(&completions(shell))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The completion script for `shell`. clap_complete's bash script names the state of a
/// hyphenated command two ways (`llm__rotate__subcmd__pick` where it walks the words,
/// `llm__subcmd__rotate__subcmd__pick` in its case arms), so no arm below the top level
/// ever matched: the arms are renamed to the spelling the walk uses.
fn completions(shell: clap_complete::Shell) -> String {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "llm-rotate", &mut script);
    let script = String::from_utf8_lossy(&script);
    match shell {
        clap_complete::Shell::Bash => script.replace("llm__subcmd__rotate", "llm__rotate"),
        _ => script.into_owned(),
    }
}

/// The manual page: the command's, then a section per subcommand with its synopsis,
/// description and options, all from the definitions `--help` prints.
fn manual() -> Result<Vec<u8>> {
    let cli = Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cli.clone()).render(&mut page)?;
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
    Ok(page)
}

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
        match &self.db {
            Some(path) => ledger::open(path),
            None => ledger::open(&ledger::default_path()?),
        }
    }
}

fn default_endpoints_path() -> Option<PathBuf> {
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
