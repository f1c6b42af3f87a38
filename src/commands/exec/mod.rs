//! `exec`: pick and reserve as `pick` does, run COMMAND with the endpoint, settle the
//! reservation with what the attempt shows (its header dump, or its exit status, and the
//! tokens it reports), and after a 429, a 408 or a 5xx try the next endpoint that fits.

mod attempt;

use std::process::ExitCode;

use anyhow::Result;

use super::pick::report_exhausted;
use super::{Context, EXHAUSTED};
use crate::cli::{ExecArgs, PickFormat};
use crate::endpoints::Endpoint;
use crate::engine::choose::{self, Choice};
use crate::engine::settle::{self, Record, Said};
use crate::engine::wait::{self, How, Wait};
use crate::estimate;
use crate::output;
use crate::response::{Response, Usage, Went, usage};
use attempt::{Finished, Input, Signals};

/// How one attempt went, as the fail-over sees it: as its response says (read as `record
/// --headers` reads it), else as its exit status says.
struct Verdict {
    went: Went,
    /// The status of the response when the command wrote a header dump.
    status: Option<u16>,
    /// The provider refused the call (429, 408, 5xx): another endpoint may take it.
    refused: bool,
    interrupted: bool,
}

impl Verdict {
    fn of(finished: &Finished) -> Verdict {
        let response = finished.response.as_ref();
        let went = response
            .and_then(Response::went)
            .unwrap_or(if finished.status.success() {
                Went::Success
            } else {
                Went::Failed
            });
        Verdict {
            went,
            status: response.and_then(|r| r.status),
            refused: response.is_some_and(Response::refused),
            interrupted: finished.interrupted,
        }
    }

    /// What the ledger is told: a response speaks for itself; without one, a failed
    /// command is a failed call.
    fn said(&self) -> Said<'static> {
        match self.went {
            _ if self.interrupted => Said::Interrupted,
            Went::Failed if self.status.is_none() => Said::Failed,
            _ => Said::Nothing,
        }
    }

    /// A refusal that another endpoint might not give.
    fn worth_another_endpoint(&self) -> bool {
        self.refused
    }

    fn reason(&self, finished: &Finished) -> String {
        match (self.went, self.status) {
            (Went::Refused, Some(status)) => format!("rate-limited ({status})"),
            (Went::Refused, None) => "rate-limited (Retry-After)".to_owned(),
            (_, Some(status)) => format!("failed (status {status})"),
            _ => format!("failed (exit status {})", finished.code()),
        }
    }

    /// The exit status of `exec` when this attempt is the last: the command's when it
    /// failed; when it exited 0 but the response was a refusal, 75 for a 429 and 1 else.
    fn exit_code(&self, finished: &Finished) -> i32 {
        match (finished.code(), self.went, self.status) {
            (0, Went::Refused, Some(429)) => i32::from(EXHAUSTED),
            (0, Went::Refused | Went::Failed, Some(_)) => 1,
            (code, _, _) => code,
        }
    }
}

pub fn run(ctx: &Context, args: &ExecArgs) -> Result<ExitCode> {
    let all = ctx.endpoints()?;
    // `--tokens-from -` reads stdin for the estimate; every attempt then gets those bytes.
    let (estimate, stdin) = estimate::tokens(args.request.estimate(), args.request.max_output)?;
    let request = estimate.request();
    let (candidates, never) = choose::candidates(
        &all,
        &args.request.choosing.only,
        &args.request.choosing.exclude,
        request,
    )?;
    let (program, program_args) = args.command.split_first().expect("clap requires a command");
    let input = match stdin {
        Some(bytes) => Input::Bytes(std::sync::Arc::new(bytes)),
        None => Input::read_stdin()?,
    };
    let mut ledger = ctx.ledger()?;
    // A signal while waiting for quota ends the run at once, and no COMMAND starts.
    let signals = Signals::start()?;
    let wait = Wait::new(args.request.choosing.wait)?.stopped_by(signals.flag());
    let how = How {
        estimate,
        strategy: args.request.choosing.strategy,
        reserve: true,
    };

    let mut tried: Vec<&str> = Vec::new();
    // The attempt that ended last, and why the run would go on from it.
    let mut last: Option<(Finished, Verdict, &Endpoint)> = None;
    for number in 1..=args.attempts {
        let left: Vec<&Endpoint> = candidates
            .iter()
            .copied()
            .filter(|e| !tried.contains(&e.id.as_str()))
            .collect();
        let chosen = if left.is_empty() {
            None
        } else {
            let picked = match wait::pick(ledger.as_mut(), &left, how, &wait) {
                Ok(picked) => picked,
                // A signal can cut a read off (a socket with a timeout is not restarted):
                // the run ends as the signal asked, not with the error it caused.
                Err(_) if signals.interrupted() && last.is_none() => {
                    return Ok(ExitCode::from(signals.exit_code()));
                }
                Err(err) => return Err(err),
            };
            if signals.interrupted() && last.is_none() {
                if let (
                    Choice::Chosen {
                        endpoint,
                        lease: Some(lease),
                    },
                    _,
                ) = &picked
                {
                    // Nothing was called: the reservation is given back.
                    let call = settle_call(
                        endpoint,
                        lease,
                        Some(0),
                        Some(Usage::default()),
                        Said::Interrupted,
                        None,
                    );
                    settle::record_in(ledger.as_mut(), &call, &all)?;
                }
                return Ok(ExitCode::from(signals.exit_code()));
            }
            match picked {
                (Choice::Chosen { endpoint, lease }, _) => Some((endpoint, lease)),
                (Choice::Exhausted(blocked), now) if last.is_none() => {
                    report_exhausted(&blocked, &never, request, now, PickFormat::Text)?;
                    return Ok(ExitCode::from(EXHAUSTED));
                }
                (Choice::Exhausted(_), _) => None,
            }
        };
        let Some((endpoint, Some(lease))) = chosen else {
            if let Some((finished, verdict, previous)) = &last {
                // Full (or refused already) is not the same as left out: say which.
                let why = if left.is_empty() && candidates.len() < all.len() {
                    "no other endpoint to try: the rest are left out by --only/--exclude or \
                     can never take the request"
                } else {
                    "no other endpoint has quota now"
                };
                output::message(&format!(
                    "{}: {}; {why}",
                    previous.id,
                    verdict.reason(finished)
                ));
            }
            break;
        };
        if let Some((finished, verdict, left)) = &last {
            output::message(&format!(
                "{}: {}; trying {}",
                left.id,
                verdict.reason(finished),
                endpoint.id
            ));
        }
        tried.push(&endpoint.id);

        let vars = endpoint.exported(Some(&lease), request.tokens());
        let finished = attempt::run(
            program,
            program_args,
            &vars,
            number,
            &input,
            args.stream,
            &signals,
        );
        let finished = match finished {
            Ok(finished) => finished,
            Err(err) => {
                // No call was made: the reservation is settled at nothing.
                let nothing = Some(Usage::default());
                let call = settle_call(endpoint, &lease, Some(0), nothing, Said::Interrupted, None);
                settle::record_in(ledger.as_mut(), &call, &all)?;
                return Err(err);
            }
        };
        let verdict = Verdict::of(&finished);
        let used = finished
            .usage
            .as_deref()
            .and_then(usage::in_file)
            .or_else(|| {
                (!args.stream)
                    .then(|| usage::in_body(&finished.stdout))
                    .flatten()
            })
            // A 429 used nothing, whatever its body says (SPEC 14).
            .filter(|_| verdict.went != Went::Refused);
        let mut call = settle_call(
            endpoint,
            &lease,
            None,
            used,
            verdict.said(),
            finished.response.as_ref(),
        );
        call.latency_ms = Some(u64::try_from(finished.took.as_millis()).unwrap_or(u64::MAX));
        let notes = settle::record_in(ledger.as_mut(), &call, &all)?;
        output::notes(finished.notes.iter().chain(&notes));
        let again = verdict.worth_another_endpoint()
            && number < args.attempts
            && !finished.streamed
            && !signals.interrupted();
        last = Some((finished, verdict, endpoint));
        if !again {
            break;
        }
    }
    let (finished, verdict, _) = last.expect("the first attempt ran or returned");
    // A reader that went away (`| head -1`) does not change what COMMAND's status says.
    if let Err(err) = output::bytes(&finished.stdout)
        && err.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(err.into());
    }
    Ok(ExitCode::from(
        verdict.exit_code(&finished).clamp(0, 255) as u8
    ))
}

fn settle_call<'a>(
    endpoint: &'a Endpoint,
    lease: &'a str,
    requests: Option<u64>,
    usage: Option<Usage>,
    said: Said<'a>,
    response: Option<&'a Response>,
) -> Record<'a> {
    Record {
        lease: Some(lease),
        id: Some(&endpoint.id),
        add: false,
        requests,
        usage,
        latency_ms: None,
        said,
        response,
    }
}
