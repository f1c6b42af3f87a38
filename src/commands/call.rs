//! `call`: one request made as `serve` makes each (SPEC 13), without a server: its body
//! from `--data` or stdin, the response body on stdout as it comes.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context as _, Result, bail};
use reqwest::header::HeaderMap;

use super::{Context, EXHAUSTED};
use crate::cli::{CallArgs, CallFormat};
use crate::forward::{Answer, Call, LARGEST};
use crate::output;

pub fn run(ctx: &Context, args: &CallArgs) -> Result<ExitCode> {
    // The path is checked on the command line: `/v1/` and the rest.
    let after_v1 = args.path.trim_start_matches("/v1").to_owned();
    let body = read_body(args.data.as_deref())?;
    // Rows it cannot call are said only when the request needed them (its 503 says so):
    // a cron job would repeat them every run.
    let (forwarder, _) =
        super::serve::forwarder(ctx, &args.forward, Arc::new(AtomicBool::new(false)))?;
    let forwarder = Arc::new(forwarder);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the HTTP runtime")?;
    runtime.block_on(async {
        let headers = HeaderMap::new();
        let call = Call {
            path: &after_v1,
            headers: &headers,
            body: &body,
        };
        match forwarder.forward(call).await {
            Answer::Own(own) => {
                output::message(&own.message);
                if args.format == CallFormat::Json {
                    let body: serde_json::Value = serde_json::from_str(&own.body())?;
                    print_json(own.status, None, None, body)?;
                }
                Ok(ExitCode::from(if own.status == 429 { EXHAUSTED } else { 1 }))
            }
            Answer::Relayed(mut relayed) => {
                let mut kept = Vec::new();
                let mut stdout = std::io::stdout().lock();
                while let Some(chunk) = relayed.body.recv().await {
                    let chunk = chunk.context("the response was cut short")?;
                    match args.format {
                        CallFormat::Body => {
                            stdout.write_all(&chunk)?;
                            stdout.flush()?;
                        }
                        CallFormat::Json => kept.extend_from_slice(&chunk),
                    }
                }
                drop(stdout);
                let settled = relayed.settled.await.unwrap_or_default();
                if args.format == CallFormat::Json {
                    let body = serde_json::from_slice(&kept).unwrap_or_else(|_| {
                        serde_json::Value::String(String::from_utf8_lossy(&kept).into_owned())
                    });
                    let usage = settled.usage.map(|u| {
                        serde_json::json!({"input": u.input, "cached": u.cached, "output": u.output})
                    });
                    print_json(relayed.status, Some(&relayed.endpoint), usage, body)?;
                }
                Ok(match relayed.status {
                    200..=299 => ExitCode::SUCCESS,
                    status => {
                        output::message(&format!("{}: status {status}", relayed.endpoint));
                        ExitCode::from(if status == 429 { EXHAUSTED } else { 1 })
                    }
                })
            }
        }
    })
}

/// `--format json`: what came back, in one line.
#[derive(serde::Serialize)]
struct Report<'a> {
    status: u16,
    endpoint: Option<&'a str>,
    usage: Option<serde_json::Value>,
    body: serde_json::Value,
}

fn print_json(
    status: u16,
    endpoint: Option<&str>,
    usage: Option<serde_json::Value>,
    body: serde_json::Value,
) -> Result<()> {
    let report = Report {
        status,
        endpoint,
        usage,
        body,
    };
    output::data(&format!("{}\n", serde_json::to_string(&report)?))?;
    Ok(())
}

/// The request body: FILE, or stdin; at most 32 MiB.
fn read_body(data: Option<&std::path::Path>) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let reader: Box<dyn Read> = match data {
        Some(path) => Box::new(
            std::fs::File::open(path)
                .with_context(|| format!("cannot read --data {}", path.display()))?,
        ),
        None => Box::new(std::io::stdin()),
    };
    reader
        .take(LARGEST as u64 + 1)
        .read_to_end(&mut bytes)
        .context("cannot read the request body")?;
    if bytes.len() > LARGEST {
        bail!("the request body is over 32 MiB");
    }
    Ok(bytes)
}
