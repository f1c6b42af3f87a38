//! The `llm-rotate` command: parse, run, map the outcome to an exit status.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use llm_rotate::{cli::Cli, output};

fn main() -> ExitCode {
    // A shell's completion script calls back with COMPLETE set: answer and exit.
    llm_rotate::complete::answer_if_asked();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    match llm_rotate::run(cli) {
        Ok(code) => code,
        Err(err) if output::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            output::message(&format!("{err:#}"));
            ExitCode::FAILURE
        }
    }
}

/// --help and --version print as clap prints them and exit 0; a usage error is one of our
/// messages (`llm-rotate: ...`, like every other) with clap's usage lines after it, exit 2.
fn usage_error(err: &clap::Error) -> ExitCode {
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = err.print();
        return ExitCode::from(if err.use_stderr() { 2 } else { 0 });
    }
    let text = err.render().to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    output::message(&lines.join("\n"));
    ExitCode::from(2)
}
