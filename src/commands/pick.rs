//! `pick`: choose an endpoint that fits the request, by priority and then by strategy, and
//! reserve it in the same transaction that checked it; with `--wait`, sleep until the
//! ledger says a slot frees, and try again.

use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use super::{Context, EXHAUSTED};
use crate::cli::{PickArgs, PickFormat};
use crate::clock::{self, Millis, SECOND_MS};
use crate::endpoints::Endpoint;
use crate::engine::choose::{self, Blocked, Choice, Strategy, describe};
use crate::estimate;
use crate::ledger::{Book, Ledger};
use crate::output::{self, shell_quote};
use crate::quota::Request;

/// While waiting, look again at least this often: a settle or a reset by another process
/// can free a slot sooner than the ledger foresaw.
const LONGEST_NAP: Millis = SECOND_MS;

pub fn run(ctx: &Context, args: &PickArgs) -> Result<ExitCode> {
    let all = ctx.endpoints()?;
    let (tokens, _) = estimate::tokens(args.request.estimate(), args.request.max_output)?;
    let request = Request::new(tokens);
    let (candidates, never) =
        choose::candidates(&all, &args.request.only, &args.request.exclude, request)?;
    let mut ledger = ctx.ledger()?;
    let wait = Wait::new(args.request.wait)?;
    let how = How {
        request,
        strategy: args.request.strategy,
        reserve: !args.dry_run,
    };
    match pick(ledger.as_mut(), &candidates, how, &wait)? {
        (Choice::Chosen { endpoint, lease }, _) => {
            output::data(&render(endpoint, lease.as_deref(), request, args.format)?)?;
            Ok(ExitCode::SUCCESS)
        }
        (Choice::Exhausted(blocked), now) => {
            report_exhausted(&blocked, &never, request, now, args.format)?;
            Ok(ExitCode::from(EXHAUSTED))
        }
    }
}

/// `--wait`: not at all, for at most a span, or (`Some(None)`) as long as it takes. The
/// span is measured on the ledger's clock from the first attempt, so that a machine whose
/// clock disagrees with a shared ledger's still waits as long as it was told.
pub struct Wait {
    limit: Option<Option<Millis>>,
    deadline: std::cell::Cell<Option<Millis>>,
}

impl Wait {
    pub fn new(limit: Option<Option<Millis>>) -> Result<Wait> {
        Ok(Wait {
            limit,
            deadline: std::cell::Cell::new(None),
        })
    }

    /// The deadline, once the first attempt has told the ledger's time: `None` for no
    /// waiting, `Some(None)` for no deadline.
    fn deadline(&self, now: Millis) -> Option<Option<Millis>> {
        let span = self.limit?;
        Some(span.map(|span| {
            let deadline = self.deadline.get().unwrap_or(now + span);
            self.deadline.set(Some(deadline));
            deadline
        }))
    }
}

/// What to pick for, and whether to reserve it.
#[derive(Clone, Copy)]
pub struct How {
    pub request: Request,
    pub strategy: Strategy,
    pub reserve: bool,
}

/// Chooses (and reserves) among `candidates` in one step of the ledger; when nothing fits
/// and `wait` allows, sleeps until the ledger says a slot frees, and tries again. Returns
/// the choice and the time of the step that made it.
pub fn pick<'e>(
    ledger: &mut dyn Ledger,
    candidates: &[&'e Endpoint],
    how: How,
    wait: &Wait,
) -> Result<(Choice<'e>, Millis)> {
    loop {
        // The time of each attempt is the ledger's, read under its lock.
        let step = |book: &dyn Book, now: Millis| {
            let choice = choose::choose(
                book,
                candidates,
                how.request,
                how.strategy,
                how.reserve,
                now,
            )?;
            Ok((choice, now))
        };
        let (choice, now) = if how.reserve {
            ledger.write(step)?
        } else {
            ledger.read(step)?
        };
        let Choice::Exhausted(blocked) = &choice else {
            return Ok((choice, now));
        };
        let earliest = blocked.iter().map(|b| b.frees_at).min().unwrap_or(now);
        match wait.deadline(now) {
            Some(deadline) if deadline.is_none_or(|d| now < d) => {
                // A slot the ledger cannot date (or dates in the past) is looked for again
                // after a nap rather than in a tight loop.
                let wake = if earliest > now {
                    earliest
                } else {
                    now + LONGEST_NAP
                };
                let wake = wake.min(now + LONGEST_NAP);
                let wake = deadline.map_or(wake, |d| wake.min(d)).max(now + 1);
                clock::sleep_for(wake - now)?;
            }
            _ => return Ok((choice, now)),
        }
    }
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
) -> Result<String> {
    Ok(match format {
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
            format!("{}\n", serde_json::to_string(&chosen)?)
        }
        PickFormat::Shell => endpoint
            .exported(lease, request.tokens)
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
            "\n  {}: {}, frees in {}",
            b.endpoint.id,
            b.block,
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
                    limit: b.block.name(),
                    frees_in_s: output::seconds((b.frees_at - now).max(0)),
                })
                .collect(),
        };
        output::data(&format!("{}\n", serde_json::to_string(&report)?))?;
    }
    Ok(())
}
