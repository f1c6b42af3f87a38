//! The `llm-rotate` command: parse, run, map the outcome to an exit status.

use std::process::ExitCode;

use clap::Parser;
use llm_rotate::{cli::Cli, output};

fn main() -> ExitCode {
    // clap prints usage errors itself and exits 2; --help and --version exit 0.
    let cli = Cli::parse();
    match llm_rotate::run(cli) {
        Ok(code) => code,
        Err(err) if output::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            output::message(&format!("{err:#}"));
            ExitCode::FAILURE
        }
    }
}
