//! `pick`: choose an endpoint that fits the request, by priority and then by strategy, and
//! reserve it in the same transaction that checked it; with `--wait`, sleep until the
//! ledger says a slot frees, and try again.

use std::process::ExitCode;

use anyhow::{Result, bail};
use serde::Serialize;

use super::{Context, EXHAUSTED, filter};
use crate::admit::{self, Block, Standing, Verdict};
use crate::cli::{PickArgs, PickFormat, Strategy};
use crate::clock;
use crate::endpoints::Endpoint;
use crate::output::{self, env_name, shell_quote};
use crate::quota::{self, Millis, Request, SECOND_MS};
use crate::store::Tx;

/// While waiting, look again at least this often: a settle or a reset by another process
/// can free a slot sooner than the ledger foresaw.
const LONGEST_NAP: Millis = SECOND_MS;

/// Why an endpoint cannot take the request now, and when it can.
struct Blocked<'e> {
    endpoint: &'e Endpoint,
    block: Block,
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
    let all = ctx.endpoints()?;
    let request = Request::new(args.tokens);
    let (candidates, never) = candidates(&all, args, request)?;
    let mut ledger = ctx.ledger()?;
    let start = clock::now()?;
    let deadline = args.wait.map(|limit| limit.map(|wait| start + wait));
    loop {
        let now = clock::now()?;
        let choose = |tx: &Tx| choose(tx, &candidates, request, now, args);
        let outcome = if args.dry_run {
            ledger.read(choose)?
        } else {
            ledger.write(choose)?
        };
        let blocked = match outcome {
            Outcome::Chosen { endpoint, lease } => {
                output::data(&render(endpoint, lease.as_deref(), request, args.format)?)?;
                return Ok(ExitCode::SUCCESS);
            }
            Outcome::Exhausted(blocked) => blocked,
        };
        let earliest = blocked.iter().map(|b| b.frees_at).min().unwrap_or(now);
        match deadline {
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
                clock::sleep_until(wake)?;
            }
            _ => {
                report_exhausted(&blocked, &never, request, now, args.format)?;
                return Ok(ExitCode::from(EXHAUSTED));
            }
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
    args: &PickArgs,
) -> Result<Outcome<'e>> {
    let reserve = !args.dry_run;
    if reserve {
        tx.prune(now)?;
    }
    let mut blocked = Vec::new();
    // Candidates are sorted by priority, so each run of equal priority is a group; a lower
    // group is looked at only when nothing in a higher one fits.
    for group in candidates.chunk_by(|a, b| a.priority == b.priority) {
        let mut fits: Vec<(usize, Standing)> = Vec::new();
        for (position, &endpoint) in group.iter().enumerate() {
            let standing = admit::assess(tx, endpoint, request, now)?;
            match standing.verdict {
                Verdict::Fits { .. } => {
                    fits.push((position, standing));
                    if args.strategy == Strategy::Order {
                        break;
                    }
                }
                Verdict::Blocked { block, frees_at } => blocked.push(Blocked {
                    endpoint,
                    block,
                    frees_at,
                }),
                Verdict::Never(_) => {}
            }
        }
        let Some((position, standing)) = select(tx, args.strategy, group, fits, request)? else {
            continue;
        };
        let endpoint = group[position];
        let lease = if reserve {
            let lease = tx.reserve(&endpoint.id, request, now)?;
            if standing.verdict == (Verdict::Fits { probe: true }) {
                tx.mark_probe(&endpoint.id, now)?;
            }
            if args.strategy == Strategy::RoundRobin {
                tx.set_turn(&endpoint.id)?;
            }
            Some(lease)
        } else {
            None
        };
        return Ok(Outcome::Chosen { endpoint, lease });
    }
    Ok(Outcome::Exhausted(blocked))
}

/// Which of the fitting endpoints of one priority group the strategy takes.
fn select(
    tx: &Tx,
    strategy: Strategy,
    group: &[&Endpoint],
    mut fits: Vec<(usize, Standing)>,
    request: Request,
) -> Result<Option<(usize, Standing)>> {
    if fits.is_empty() {
        return Ok(None);
    }
    let index = match strategy {
        Strategy::Order => 0,
        Strategy::Weighted => {
            let weights: Vec<u64> = fits
                .iter()
                .map(|(p, _)| u64::from(group[*p].weight))
                .collect();
            let mut ticket = random_below(weights.iter().sum());
            weights
                .iter()
                .position(|&w| {
                    let hit = ticket < w;
                    ticket = ticket.saturating_sub(w);
                    hit
                })
                .unwrap_or(0)
        }
        Strategy::Spread => {
            let headroom = |s: &Standing| quota::headroom(&s.limits, &s.used, request);
            let mut best = 0;
            for (i, (_, standing)) in fits.iter().enumerate() {
                if headroom(standing) > headroom(&fits[best].1) {
                    best = i;
                }
            }
            best
        }
        Strategy::RoundRobin => {
            // The next fitting endpoint after the last one served, in file order, wrapping.
            let last = tx.last_turn()?;
            let after = last
                .and_then(|id| group.iter().position(|e| e.id == id))
                .map_or(0, |p| p + 1);
            fits.iter().position(|(p, _)| *p >= after).unwrap_or(0)
        }
    };
    Ok(Some(fits.swap_remove(index)))
}

/// A number in `0..n` (0 when n is 0), from std's per-process random hash keys.
fn random_below(n: u64) -> u64 {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    if n == 0 { 0 } else { random % n }
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
