//! `pick`: choose an endpoint that fits the request, by priority and then by strategy, and
//! reserve it in the same transaction that checked it; with `--wait`, sleep until the
//! ledger says a slot frees, and try again.

use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use super::{Context, EXHAUSTED};
use crate::cli::{PickArgs, PickFormat};
use crate::clock::Millis;
use crate::endpoints::Endpoint;
use crate::engine::choose::{self, Blocked, Choice};
use crate::engine::wait::{self, How, Wait};
use crate::estimate::{self, Estimate};
use crate::output::{self, shell_quote};
use crate::quota::Request;

pub fn run(ctx: &Context, args: &PickArgs) -> Result<ExitCode> {
    let all = ctx.endpoints()?;
    let (estimate, _) = estimate::tokens(args.request.estimate(), args.request.max_output)?;
    let request = estimate.request();
    let (candidates, never) = choose::candidates(
        &all,
        &args.request.choosing.only,
        &args.request.choosing.exclude,
        request,
    )?;
    let mut ledger = ctx.ledger()?;
    let wait = Wait::new(args.request.choosing.wait)?;
    let how = How {
        estimate,
        strategy: args.request.choosing.strategy,
        reserve: !args.dry_run,
    };
    match wait::pick(ledger.as_mut(), &candidates, how, &wait)? {
        (Choice::Chosen { endpoint, lease }, _) => {
            output::data(&render(endpoint, lease.as_deref(), estimate, args.format)?)?;
            Ok(ExitCode::SUCCESS)
        }
        (Choice::Exhausted(blocked), now) => {
            report_exhausted(&blocked, &never, request, now, args.format)?;
            Ok(ExitCode::from(EXHAUSTED))
        }
    }
}

#[derive(Serialize)]
struct Chosen<'a> {
    id: &'a str,
    provider: &'a str,
    model: &'a str,
    lease: Option<&'a str>,
    /// The estimate's total, and its kinds.
    tokens: u64,
    input_tokens: u64,
    output_tokens: u64,
    props: Props<'a>,
}

/// Extra columns and the key, in file order, as a JSON object.
struct Props<'a>(Vec<(&'a str, &'a str)>);

impl Serialize for Props<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().copied())
    }
}

fn props(endpoint: &Endpoint) -> Vec<(&str, &str)> {
    let mut props: Vec<(&str, &str)> = endpoint
        .props
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if let Some(key) = &endpoint.key {
        props.push(("key", key));
    }
    props
}

fn render(
    endpoint: &Endpoint,
    lease: Option<&str>,
    estimate: Estimate,
    format: PickFormat,
) -> Result<String> {
    let tokens = estimate.request().tokens();
    Ok(match format {
        PickFormat::Text => format!("{}\n", endpoint.id),
        PickFormat::Json => {
            let chosen = Chosen {
                id: &endpoint.id,
                provider: &endpoint.provider,
                model: &endpoint.model,
                lease,
                tokens,
                input_tokens: estimate.input,
                output_tokens: estimate.output,
                props: Props(props(endpoint)),
            };
            format!("{}\n", serde_json::to_string(&chosen)?)
        }
        PickFormat::Shell => endpoint
            .exported(lease, tokens)
            .iter()
            .map(|(name, value)| format!("export {name}={}\n", shell_quote(value)))
            .collect(),
    })
}

#[derive(Serialize)]
struct ExhaustedReport<'a> {
    error: &'static str,
    retry_after_s: f64,
    blocked: Vec<BlockedReport<'a>>,
}

#[derive(Serialize)]
struct BlockedReport<'a> {
    id: &'a str,
    limit: &'static str,
    frees_in_s: f64,
}

pub fn report_exhausted(
    blocked: &[Blocked],
    never: &[String],
    request: Request,
    now: Millis,
    format: PickFormat,
) -> Result<()> {
    let (retry, mut text, reasons) = choose::why_exhausted(blocked, request, now);
    for reason in reasons {
        text.push_str(&format!("\n  {reason}"));
    }
    for why in never {
        text.push_str(&format!("\n  {why}"));
    }
    output::message(&text);
    if format == PickFormat::Json {
        let report = ExhaustedReport {
            error: "exhausted",
            retry_after_s: output::seconds(retry),
            blocked: blocked
                .iter()
                .map(|b| BlockedReport {
                    id: &b.endpoint.id,
                    limit: b.block.name(),
                    frees_in_s: output::seconds((b.frees_at - now).max(0)),
                })
                .collect(),
        };
        output::data(&format!("{}\n", serde_json::to_string(&report)?))?;
    }
    Ok(())
}
