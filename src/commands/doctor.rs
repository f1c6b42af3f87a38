//! `doctor`: how the endpoints file and the ledger are set up, one finding a line, with
//! what to do about each that is not as it should be. Exit 1 when any is not.

use std::process::ExitCode;

use anyhow::Result;

use super::Context;
use crate::ledger::Finding;
use crate::output;

pub fn run(ctx: &Context) -> Result<ExitCode> {
    let mut findings = vec![match ctx.endpoints() {
        Ok(rows) => Finding::fine(
            "endpoints",
            format!(
                "{} rows in {}",
                rows.len(),
                ctx.endpoints_path()
                    .map_or_else(|| "?".to_owned(), |p| p.display().to_string())
            ),
        ),
        Err(err) => Finding::wrong("endpoints", "not usable", format!("{err:#}")),
    }];
    findings.extend(ctx.ledger()?.findings()?);
    let width = findings.iter().map(|f| f.what.len()).max().unwrap_or(0);
    let mut text = String::new();
    for finding in &findings {
        let mark = if finding.advice.is_some() { "!!" } else { "ok" };
        text.push_str(&format!(
            "{mark} {:width$}  {}\n",
            finding.what,
            output::plain(&finding.value)
        ));
        if let Some(advice) = &finding.advice {
            for line in advice.lines() {
                text.push_str(&format!("   {:width$}  {}\n", "", output::plain(line)));
            }
        }
    }
    output::data(&text)?;
    Ok(if findings.iter().any(|f| f.advice.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
