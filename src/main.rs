//! llm-rotate: which LLM endpoint may this script call right now?

mod cli;
mod clock;
mod commands;
mod endpoints;
mod glob;
mod output;
mod quota;
mod store;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // clap prints usage errors itself and exits 2; --help and --version exit 0.
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) if output::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            output::message(&format!("{err:#}"));
            ExitCode::FAILURE
        }
    }
}
