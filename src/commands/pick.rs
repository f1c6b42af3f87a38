//! `pick`: choose the first endpoint, by priority then row order, that fits the request,
//! and reserve it in the same transaction that checked it.

use std::process::ExitCode;

use anyhow::{Result, bail};
use serde::Serialize;

use super::{Context, EXHAUSTED, filter};
use crate::cli::{PickArgs, PickFormat};
use crate::clock;
use crate::endpoints::Endpoint;
use crate::output::{self, env_name, shell_quote};
use crate::quota::{self, Limit, Millis, Request};
use crate::store::Tx;

/// Why an endpoint cannot take the request now, and when it can.
struct Blocked<'e> {
    endpoint: &'e Endpoint,
    limit: Limit,
    frees_at: Millis,
}

enum Outcome<'e> {
    Chosen {
        endpoint: &'e Endpoint,
        lease: Option<String>,
    },
    Exhausted(Vec<Blocked<'e>>),
}

pub fn run(ctx: &Context, args: &PickArgs) -> Result<ExitCode> {
    let now = clock::now()?;
    let all = ctx.endpoints()?;
    let request = Request::new(args.tokens);
    let (candidates, never) = candidates(&all, args, request)?;

    let mut ledger = ctx.ledger()?;
    let choose = |tx: &Tx| choose(tx, &candidates, request, now, !args.dry_run);
    let outcome = if args.dry_run {
        ledger.read(choose)?
    } else {
        ledger.write(choose)?
    };

    match outcome {
        Outcome::Chosen { endpoint, lease } => {
            output::data(&render(endpoint, lease.as_deref(), request, args.format))?;
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Exhausted(blocked) => {
            report_exhausted(&blocked, &never, request, now, args.format)?;
            Ok(ExitCode::from(EXHAUSTED))
        }
    }
}

/// The endpoints the filters allow that could ever take the request, best first, and why
/// each of the others never can.
fn candidates<'e>(
    all: &'e [Endpoint],
    args: &PickArgs,
    request: Request,
) -> Result<(Vec<&'e Endpoint>, Vec<String>)> {
    if all.is_empty() {
        bail!("the endpoints file lists no endpoints");
    }
    let mut matched = filter(all, &args.only, &args.exclude);
    if matched.is_empty() {
        bail!("no endpoint matches --only/--exclude");
    }
    let never: Vec<String> = matched
        .iter()
        .filter_map(|e| {
            quota::never_fits(&e.limits, request).map(|why| format!("{}: never fits ({why})", e.id))
        })
        .collect();
    matched.retain(|e| quota::never_fits(&e.limits, request).is_none());
    if matched.is_empty() {
        bail!(
            "no endpoint can ever take {}:\n  {}",
            describe(request),
            never.join("\n  ")
        );
    }
    // Stable: equal priorities keep the file's row order.
    matched.sort_by_key(|e| std::cmp::Reverse(e.priority));
    Ok((matched, never))
}

fn choose<'e>(
    tx: &Tx,
    candidates: &[&'e Endpoint],
    request: Request,
    now: Millis,
    reserve: bool,
) -> Result<Outcome<'e>> {
    if reserve {
        tx.prune(now)?;
    }
    let mut blocked = Vec::new();
    for &endpoint in candidates {
        let used = tx.used(&endpoint.id, now)?;
        let shortfalls = quota::shortfalls(&endpoint.limits, &used, request);
        if shortfalls.is_empty() {
            let lease = if reserve {
                Some(tx.reserve(&endpoint.id, request, now)?)
            } else {
                None
            };
            return Ok(Outcome::Chosen { endpoint, lease });
        }
        // The endpoint fits again once every short limit has freed enough: the latest.
        let mut latest: Option<(Limit, Millis)> = None;
        for short in shortfalls {
            let at = tx
                .frees_at(&endpoint.id, short.limit, short.excess, now)?
                .unwrap_or(now);
            if latest.is_none_or(|(_, t)| at > t) {
                latest = Some((short.limit, at));
            }
        }
        if let Some((limit, frees_at)) = latest {
            blocked.push(Blocked {
                endpoint,
                limit,
                frees_at,
            });
        }
    }
    Ok(Outcome::Exhausted(blocked))
}

fn describe(request: Request) -> String {
    format!("1 request and {} tokens", request.tokens)
}

#[derive(Serialize)]
struct Chosen<'a> {
    id: &'a str,
    provider: &'a str,
    model: &'a str,
    lease: Option<&'a str>,
    tokens: u64,
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
    request: Request,
    format: PickFormat,
) -> String {
    match format {
        PickFormat::Text => format!("{}\n", endpoint.id),
        PickFormat::Json => {
            let chosen = Chosen {
                id: &endpoint.id,
                provider: &endpoint.provider,
                model: &endpoint.model,
                lease,
                tokens: request.tokens,
                props: Props(props(endpoint)),
            };
            format!("{}\n", serde_json::to_string(&chosen).unwrap_or_default())
        }
        PickFormat::Shell => {
            let tokens = request.tokens.to_string();
            // Properties first, so that a column named like a built-in cannot override it.
            let mut vars: Vec<(String, &str)> = props(endpoint)
                .into_iter()
                .map(|(k, v)| (env_name(k), v))
                .collect();
            vars.push((env_name("id"), &endpoint.id));
            vars.push((env_name("provider"), &endpoint.provider));
            vars.push((env_name("model"), &endpoint.model));
            if let Some(lease) = lease {
                vars.push((env_name("lease"), lease));
            }
            vars.push((env_name("tokens"), &tokens));
            vars.iter()
                .map(|(name, value)| format!("export {name}={}\n", shell_quote(value)))
                .collect()
        }
    }
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

fn report_exhausted(
    blocked: &[Blocked],
    never: &[String],
    request: Request,
    now: Millis,
    format: PickFormat,
) -> Result<()> {
    let retry = blocked
        .iter()
        .map(|b| b.frees_at - now)
        .min()
        .unwrap_or(0)
        .max(0);
    let mut text = format!(
        "no endpoint has quota for {} now; retry in {}",
        describe(request),
        output::duration(retry)
    );
    for b in blocked {
        text.push_str(&format!(
            "\n  {}: {} full, frees in {}",
            b.endpoint.id,
            b.limit.name(),
            output::duration(b.frees_at - now)
        ));
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
                    limit: b.limit.name(),
                    frees_in_s: output::seconds((b.frees_at - now).max(0)),
                })
                .collect(),
        };
        output::data(&format!("{}\n", serde_json::to_string(&report)?))?;
    }
    Ok(())
}
