//! Completion at TAB time: the shells' scripts call the binary back
//! (`LLM_ROTATE_COMPLETE=<shell> llm-rotate -- WORDS`), so option values, shells and the endpoint ids of the endpoints
//! file in use are offered as they are now, not as they were when the script was written.

use std::ffi::OsStr;
use std::path::PathBuf;

use clap::CommandFactory as _;
use clap_complete::engine::{ArgValueCompleter, CompletionCandidate};
use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh};

use crate::cli::Cli;
use crate::env;

/// The variable that asks the binary for completions instead of running: ours, so that a
/// `COMPLETE` some other tool left in the environment cannot turn every call into one.
const VAR: &str = env::COMPLETE;
const NAME: &str = "llm-rotate";

/// Answers a completion request and exits, when the shell's script made one.
pub fn answer_if_asked() {
    clap_complete::CompleteEnv::with_factory(Cli::command)
        .var(VAR)
        .completer(NAME)
        .complete();
}

/// The script that registers completion in `shell`.
pub fn registration(shell: clap_complete::Shell) -> std::io::Result<String> {
    let completer: &dyn EnvCompleter = match shell {
        clap_complete::Shell::Bash => &Bash,
        clap_complete::Shell::Zsh => &Zsh,
        clap_complete::Shell::Fish => &Fish,
        clap_complete::Shell::Elvish => &Elvish,
        clap_complete::Shell::PowerShell => &Powershell,
        _ => &Bash,
    };
    let mut script = Vec::new();
    completer.write_registration(VAR, NAME, NAME, NAME, &mut script)?;
    Ok(String::from_utf8_lossy(&script).into_owned())
}

/// Completes endpoint ids from the endpoints file in use.
pub fn ids() -> ArgValueCompleter {
    ArgValueCompleter::new(endpoint_ids)
}

fn endpoint_ids(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(current) = current.to_str() else {
        return Vec::new();
    };
    let Some(path) = endpoints_in_use() else {
        return Vec::new();
    };
    // A file that cannot be read offers nothing: a TAB must never print an error.
    let Ok(rows) = crate::endpoints::load(&path) else {
        return Vec::new();
    };
    rows.into_iter()
        .filter(|row| row.id.starts_with(current))
        .map(|row| CompletionCandidate::new(row.id))
        .collect()
}

/// The endpoints file the completed command line would use: its `--endpoints`, else the
/// variable, else the default.
fn endpoints_in_use() -> Option<PathBuf> {
    let words: Vec<String> = std::env::args().collect();
    let given =
        words
            .iter()
            .enumerate()
            .find_map(|(i, word)| match word.strip_prefix("--endpoints") {
                Some("") => words.get(i + 1).cloned(),
                Some(value) => value.strip_prefix('=').map(str::to_owned),
                None => None,
            });
    given
        .map(PathBuf::from)
        .or_else(|| env::get(env::ENDPOINTS).map(PathBuf::from))
        .or_else(crate::commands::default_endpoints_path)
}
