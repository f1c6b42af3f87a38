//! `init`: write the example endpoints file, which the binary carries, where the endpoints
//! file is looked for (or to `--output`), so that an installed binary can start from it.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};

use super::Context;
use crate::cli::InitArgs;
use crate::output;

/// The example file of the repository, compiled in.
const EXAMPLE: &str = include_str!("../../endpoints.example.csv");

pub fn run(ctx: &Context, args: &InitArgs) -> Result<ExitCode> {
    let path = match &args.output {
        Some(path) => path.clone(),
        None => ctx
            .endpoints_path()
            .context("cannot find the user config directory (is HOME set?); pass --output FILE")?,
    };
    if let Some(folder) = path.parent().filter(|f| !f.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create the folder {}", folder.display()))?;
    }
    let mut open = std::fs::OpenOptions::new();
    open.write(true);
    if args.force {
        open.create(true).truncate(true);
    } else {
        // Created only if absent, in one step: an existing file is never touched.
        open.create_new(true);
    }
    let mut file = match open.open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{} already exists; left as it is (pass --force to replace it with the example)",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot write {}", path.display())),
    };
    file.write_all(EXAMPLE.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    output::message(&format!(
        "wrote the example endpoints file to {}; keep the rows you have keys for, set \
         their limits, then run `llm-rotate state`",
        path.display()
    ));
    Ok(ExitCode::SUCCESS)
}
