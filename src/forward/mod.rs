//! Making the call for a client (SPEC 13): `serve` for each request it is sent, `call` for
//! one. The request's `model` names the endpoints it may go to; each attempt picks and
//! reserves in the same ledger step as `pick`, sends the body with the row's model and key,
//! and settles with what the response says, read by the one reader `exec` and `record`
//! use. A refusal (429, 408, 5xx) or a connection that fails, before any byte has gone to
//! the client, is tried on the next endpoint that fits.

mod body;
mod ledgers;
mod relay;
mod route;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use futures_util::StreamExt as _;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use tokio::sync::{mpsc, oneshot};

pub use body::{Body, LARGEST};
use ledgers::Ledgers;
use relay::Watch;
use route::Key;

use crate::clock::Millis;
use crate::endpoints::Endpoint;
use crate::engine::choose::{self, Choice, Strategy};
use crate::engine::settle::{self, Record, Said};
use crate::engine::wait::Wait;
use crate::estimate::Estimate;
use crate::output;
use crate::response::{Response, Usage, Went, usage};

/// The most of a refused response's body that is read (it goes to the client whole when
/// it is the last attempt).
const REFUSAL_KEPT: usize = 1 << 20;

/// How requests are matched to endpoints and tried: the options `serve` and `call` share.
#[derive(Clone, Debug)]
pub struct Options {
    pub only: Vec<String>,
    pub exclude: Vec<String>,
    pub strategy: Strategy,
    pub wait: Option<Option<Millis>>,
    pub attempts: u32,
    /// Output tokens estimated when the body allows no number.
    pub max_output: u64,
}

pub struct Forwarder {
    endpoints: Arc<Vec<Endpoint>>,
    /// Each endpoint's key, in file order.
    keys: Vec<Key>,
    client: reqwest::Client,
    ledgers: Ledgers,
    options: Options,
    /// Set at shutdown: a request waiting for quota stops waiting.
    stop: Arc<AtomicBool>,
    /// Responses still being passed on, and settled when they end.
    flights: Arc<AtomicUsize>,
}

/// One request for a provider: the path after `/v1` (with its query), the client's
/// headers, and its body.
pub struct Call<'a> {
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// What the client is sent.
pub enum Answer {
    /// llm-rotate's own answer, in the OpenAI error shape: nothing matched, fitted or had
    /// quota.
    Own(Refusal),
    /// A provider's response, its body as it comes.
    Relayed(Relayed),
}

pub struct Refusal {
    pub status: u16,
    pub message: String,
    pub kind: &'static str,
    pub code: &'static str,
    /// Whole seconds until the first candidate frees (a 429).
    pub retry_after: Option<u64>,
}

impl Refusal {
    pub fn new(status: u16, code: &'static str, message: String) -> Refusal {
        let kind = match status {
            429 => "rate_limit_exceeded",
            401 => "authentication_error",
            500.. => "server_error",
            _ => "invalid_request_error",
        };
        Refusal {
            status,
            message,
            kind,
            code,
            retry_after: None,
        }
    }

    /// `{"error": {"message", "type", "code"}}`, as OpenAI's API answers.
    pub fn body(&self) -> String {
        serde_json::json!({
            "error": {"message": self.message, "type": self.kind, "code": self.code}
        })
        .to_string()
    }
}

pub struct Relayed {
    pub status: u16,
    pub headers: HeaderMap,
    pub endpoint: String,
    pub attempts: u32,
    pub body: mpsc::Receiver<std::io::Result<Bytes>>,
    /// Told once the response has ended and been settled.
    pub settled: oneshot::Receiver<Settled>,
}

/// How a relayed response ended.
#[derive(Clone, Copy, Debug, Default)]
pub struct Settled {
    /// What it reported it used; `None` settled the estimate.
    pub usage: Option<Usage>,
    pub first_byte_ms: u64,
    pub total_ms: u64,
}

/// The outcome of one pick.
enum Picked {
    Chosen { index: usize, lease: String },
    Exhausted { retry_after_ms: Millis, why: String },
}

/// Why the attempts ended without a response to pass on as it comes.
enum Last {
    /// A refusal, read whole and settled, for the client when nothing else takes it.
    Refused(Relayed),
    /// No connection could be made.
    Unreachable { endpoint: String, error: String },
}

impl Forwarder {
    /// Reads every row's key and opens the ledger; the notes name rows that cannot be
    /// called (their key's variable is unset, or they have no `base_url`).
    pub fn new(
        endpoints: Vec<Endpoint>,
        ledger: PathBuf,
        options: Options,
        stop: Arc<AtomicBool>,
    ) -> Result<(Forwarder, Vec<String>)> {
        let keys: Vec<Key> = endpoints.iter().map(Key::of).collect();
        let mut notes = Vec::new();
        for (endpoint, key) in endpoints.iter().zip(&keys) {
            if let Key::Unset(var) = key {
                notes.push(format!(
                    "{}: ${var} is not set; requests skip it",
                    endpoint.id
                ));
            }
            if route::url(endpoint, "").is_none() {
                notes.push(format!("{}: no base_url; requests skip it", endpoint.id));
            }
        }
        // rustls needs a crypto provider; ring builds with a C compiler alone.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // A provider that stops sending for this long has gone away.
            .read_timeout(Duration::from_secs(600))
            .build()
            .context("cannot set up the HTTP client")?;
        let forwarder = Forwarder {
            endpoints: Arc::new(endpoints),
            keys,
            client,
            ledgers: Ledgers::open(&ledger)?,
            options,
            stop,
            flights: Arc::new(AtomicUsize::new(0)),
        };
        Ok((forwarder, notes))
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Runs `work` on the ledger's reading connection, off the runtime's threads.
    pub async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Forwarder, &mut dyn crate::ledger::Ledger) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || me.ledgers.read(|ledger| work(&me, ledger)))
            .await
            .context("a ledger step stopped")?
    }

    /// Responses still being passed on.
    pub fn in_flight(&self) -> usize {
        self.flights.load(Ordering::SeqCst)
    }

    /// Finds endpoints for `call` and tries them in turn.
    pub async fn forward(self: &Arc<Self>, call: Call<'_>) -> Answer {
        let body = match Body::parse(call.body, self.options.max_output) {
            Ok(body) => body,
            Err(why) => return Answer::Own(Refusal::new(400, "llm_rotate_bad_request", why)),
        };
        let candidates = match self.candidates(&body) {
            Ok(candidates) => candidates,
            Err(refusal) => return Answer::Own(refusal),
        };
        let mut tried: Vec<usize> = Vec::new();
        let mut last: Option<Last> = None;
        for number in 1..=self.options.attempts.max(1) {
            let left: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|i| !tried.contains(i))
                .collect();
            if left.is_empty() {
                break;
            }
            let (index, lease) = match self.pick(left, body.estimate).await {
                Ok(Picked::Chosen { index, lease }) => (index, lease),
                Ok(Picked::Exhausted { .. }) | Err(_) if last.is_some() => break,
                Ok(Picked::Exhausted {
                    retry_after_ms,
                    why,
                }) => {
                    let mut refusal = Refusal::new(429, "llm_rotate_exhausted", why);
                    refusal.retry_after = Some((retry_after_ms.max(1) as u64).div_ceil(1000));
                    return Answer::Own(refusal);
                }
                Err(err) => {
                    return Answer::Own(Refusal::new(500, "llm_rotate_ledger", format!("{err:#}")));
                }
            };
            tried.push(index);
            let endpoint = &self.endpoints[index];
            let url = route::url(endpoint, call.path).unwrap_or_default();
            let started = Instant::now();
            let sent = self
                .client
                .post(url)
                .headers(self.headers_for(index, call.headers))
                .body(body.for_model(&endpoint.model))
                .send()
                .await;
            let reply = match sent {
                Ok(reply) => reply,
                Err(err) => {
                    // Nothing reached the provider: the reservation is given back, and the
                    // failure counts towards the endpoint's cooldown.
                    let nothing = Settling {
                        endpoint: endpoint.id.clone(),
                        lease,
                        requests: Some(0),
                        usage: Some(Usage::default()),
                        said: Said::Failed,
                        response: None,
                        latency_ms: None,
                    };
                    self.settle(nothing).await;
                    last = Some(Last::Unreachable {
                        endpoint: endpoint.id.clone(),
                        error: error_chain(&err),
                    });
                    continue;
                }
            };
            let status = reply.status().as_u16();
            let response = Response::parse(&dump(status, reply.headers()));
            let headers = passed_headers(reply.headers(), &endpoint.id);
            if response.refused() {
                let kept = read_some(reply, REFUSAL_KEPT).await;
                // A 429 used nothing, whatever its body says (SPEC 14).
                let used = usage::in_body(&kept).filter(|_| response.went() != Some(Went::Refused));
                let (settled, told) = oneshot::channel();
                let refused = Settling {
                    endpoint: endpoint.id.clone(),
                    lease,
                    requests: None,
                    usage: used,
                    said: Said::Nothing,
                    response: Some(response),
                    latency_ms: None,
                };
                self.settle(refused).await;
                let took = millis(started.elapsed());
                let _ = settled.send(Settled {
                    usage: used,
                    first_byte_ms: took,
                    total_ms: took,
                });
                let (tx, rx) = mpsc::channel(1);
                let _ = tx.try_send(Ok(Bytes::from(kept)));
                last = Some(Last::Refused(Relayed {
                    status,
                    headers,
                    endpoint: endpoint.id.clone(),
                    attempts: number,
                    body: rx,
                    settled: told,
                }));
                continue;
            }
            let relayed = Relayed {
                status,
                headers,
                endpoint: endpoint.id.clone(),
                attempts: number,
                body: mpsc::channel(1).1,
                settled: oneshot::channel().1,
            };
            let strip = body.stream && !body.usage_asked;
            return Answer::Relayed(self.relay(reply, relayed, lease, response, strip, started));
        }
        match last {
            Some(Last::Refused(relayed)) => Answer::Relayed(relayed),
            Some(Last::Unreachable { endpoint, error }) => Answer::Own(Refusal::new(
                502,
                "llm_rotate_unreachable",
                format!("cannot reach {endpoint}: {error}"),
            )),
            None => Answer::Own(Refusal::new(
                500,
                "llm_rotate_no_attempt",
                "no attempt was made".to_owned(),
            )),
        }
    }

    /// The endpoints that may take the request, best first (as indexes), or the answer that
    /// says why none may.
    fn candidates(&self, body: &Body) -> Result<Vec<usize>, Refusal> {
        let allowed = choose::filter(&self.endpoints, &self.options.only, &self.options.exclude);
        let named = route::named(&allowed, body.model.as_deref());
        if named.is_empty() {
            let model = body.model.as_deref().unwrap_or("auto");
            return Err(Refusal::new(
                404,
                "llm_rotate_no_endpoint",
                format!(
                    "no endpoint matches the model {model:?} (an endpoint id, a model name, a glob over ids, or auto)"
                ),
            ));
        }
        let unset: Vec<String> = named
            .iter()
            .filter_map(|e| match &self.keys[self.index_of(e)] {
                Key::Unset(var) => Some(format!("{} needs ${var}", e.id)),
                _ => None,
            })
            .collect();
        let callable: Vec<&Endpoint> = named
            .into_iter()
            .filter(|e| {
                !matches!(self.keys[self.index_of(e)], Key::Unset(_)) && route::url(e, "").is_some()
            })
            .collect();
        if callable.is_empty() {
            let why = if unset.is_empty() {
                "no endpoint that matches has a base_url".to_owned()
            } else {
                format!("no endpoint that matches has its key: {}", unset.join(", "))
            };
            return Err(Refusal::new(503, "llm_rotate_no_key", why));
        }
        match choose::fitting(callable, body.estimate.request()) {
            Ok((fitting, _)) => Ok(fitting.iter().map(|e| self.index_of(e)).collect()),
            Err(err) => Err(Refusal::new(
                400,
                "llm_rotate_too_large",
                format!("{err:#}"),
            )),
        }
    }

    fn index_of(&self, endpoint: &Endpoint) -> usize {
        self.endpoints
            .iter()
            .position(|e| std::ptr::eq(e, endpoint))
            .expect("an endpoint of this forwarder")
    }

    /// Picks and reserves among `left` as `pick` does, waiting as `--wait` says.
    async fn pick(self: &Arc<Self>, left: Vec<usize>, estimate: Estimate) -> Result<Picked> {
        let wait = Wait::new(self.options.wait)?.stopped_by(Arc::clone(&self.stop));
        loop {
            let endpoints = Arc::clone(&self.endpoints);
            let (left, strategy) = (left.clone(), self.options.strategy);
            let candidates: Vec<&Endpoint> = left.iter().map(|&i| &endpoints[i]).collect();
            let expected = choose::expected(&candidates, strategy);
            let (picked, earliest, now) = self
                .ledgers
                .write(expected, move |book, now| {
                    let candidates: Vec<&Endpoint> = left.iter().map(|&i| &endpoints[i]).collect();
                    let choice = choose::choose(book, &candidates, estimate, strategy, true, now)?;
                    Ok(match choice {
                        Choice::Chosen { endpoint, lease } => {
                            let index = endpoints
                                .iter()
                                .position(|e| std::ptr::eq(e, endpoint))
                                .context("the endpoint chosen")?;
                            let lease = lease.context("a pick that reserves has a lease")?;
                            (Picked::Chosen { index, lease }, None, now)
                        }
                        Choice::Exhausted(blocked) => {
                            let earliest = blocked.iter().map(|b| b.frees_at).min();
                            (exhausted(&blocked, estimate, now), earliest, now)
                        }
                    })
                })
                .await?;
            let nap = match picked {
                Picked::Chosen { .. } => None,
                Picked::Exhausted { .. } => wait.nap(earliest, now),
            };
            match nap {
                // The nap is on the ledger's clock: pinned, it moves the pinned time.
                Some(nap) => {
                    tokio::task::spawn_blocking(move || crate::clock::sleep_for(nap))
                        .await
                        .context("a wait stopped")??;
                }
                None => return Ok(picked),
            }
        }
    }

    /// The client's headers, less its `Authorization`, what belongs to one connection, and
    /// `Accept-Encoding` (the body is read for its usage); with the row's key.
    fn headers_for(&self, index: usize, client: &HeaderMap) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in client {
            if !is_hop(name) && name != header::AUTHORIZATION && name != header::ACCEPT_ENCODING {
                headers.append(name.clone(), value.clone());
            }
        }
        headers
            .entry(header::CONTENT_TYPE)
            .or_insert(HeaderValue::from_static("application/json"));
        if let Key::Bearer(key) = &self.keys[index]
            && let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {key}"))
        {
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        headers
    }

    /// Passes `reply`'s body on as it comes, then settles it.
    #[allow(clippy::too_many_arguments)]
    fn relay(
        self: &Arc<Self>,
        reply: reqwest::Response,
        mut relayed: Relayed,
        lease: String,
        response: Response,
        strip_usage: bool,
        started: Instant,
    ) -> Relayed {
        let first_byte_ms = millis(started.elapsed());
        let sse = reply
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let (tx, rx) = mpsc::channel(16);
        let (settled, told) = oneshot::channel();
        relayed.body = rx;
        relayed.settled = told;
        let me = Arc::clone(self);
        me.flights.fetch_add(1, Ordering::SeqCst);
        let endpoint = relayed.endpoint.clone();
        tokio::spawn(async move {
            let mut watch = Watch::new(sse, strip_usage);
            let mut chunks = reply.bytes_stream();
            let mut gone = false;
            let mut cut = false;
            while let Some(chunk) = chunks.next().await {
                let passed = match chunk {
                    Ok(chunk) => watch.pass(chunk),
                    Err(err) => {
                        // The client sees the stream end as cut, not as complete.
                        cut = true;
                        let _ = tx.send(Err(std::io::Error::other(err))).await;
                        break;
                    }
                };
                if !passed.is_empty() && tx.send(Ok(passed)).await.is_err() {
                    gone = true;
                    break;
                }
            }
            if !gone && !cut {
                let rest = watch.finish();
                if !rest.is_empty() {
                    let _ = tx.send(Ok(rest)).await;
                }
            }
            drop(tx);
            let total_ms = millis(started.elapsed());
            // A stream cut short settles at the usage it showed, else at the estimate.
            let used = watch.usage();
            let done = Settling {
                endpoint,
                lease,
                requests: None,
                usage: used,
                said: if gone {
                    Said::Interrupted
                } else {
                    Said::Nothing
                },
                response: Some(response),
                latency_ms: Some(total_ms),
            };
            me.settle(done).await;
            let _ = settled.send(Settled {
                usage: used,
                first_byte_ms,
                total_ms,
            });
            me.flights.fetch_sub(1, Ordering::SeqCst);
        });
        relayed
    }

    /// Settles an attempt in a write step; a ledger that fails is said on stderr, and the
    /// reservation is left to expire.
    async fn settle(self: &Arc<Self>, attempt: Settling) {
        let endpoints = Arc::clone(&self.endpoints);
        let first = settle::first_read(&attempt.record());
        let done = self
            .ledgers
            .write(first, move |book, now| {
                settle::record(book, &attempt.record(), &endpoints, now)
            })
            .await;
        match done {
            Ok(notes) => output::notes(&notes),
            Err(err) => output::message(&format!("cannot settle a call: {err:#}")),
        }
    }
}

/// Nothing fits now: when the first candidate frees, and why each is blocked.
fn exhausted(blocked: &[choose::Blocked], estimate: Estimate, now: Millis) -> Picked {
    let (retry, mut why, reasons) = choose::why_exhausted(blocked, estimate.request(), now);
    for reason in reasons {
        why.push_str(&format!("; {reason}"));
    }
    Picked::Exhausted {
        retry_after_ms: retry,
        why,
    }
}

/// What settling an attempt needs, owned, for a step off the runtime.
struct Settling {
    /// The endpoint the lease was taken on: the step reads its account with its first look.
    endpoint: String,
    lease: String,
    requests: Option<u64>,
    usage: Option<Usage>,
    said: Said<'static>,
    response: Option<Response>,
    latency_ms: Option<u64>,
}

impl Settling {
    fn record(&self) -> Record<'_> {
        Record {
            lease: Some(&self.lease),
            id: Some(&self.endpoint),
            add: false,
            requests: self.requests,
            usage: self.usage,
            latency_ms: self.latency_ms,
            said: self.said,
            response: self.response.as_ref(),
        }
    }
}

/// Headers that belong to one connection, not to the request or response.
fn is_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

/// The provider's headers for the client, and the endpoint that answered.
fn passed_headers(provider: &HeaderMap, endpoint: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in provider {
        if !is_hop(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    if let Ok(value) = HeaderValue::from_str(endpoint) {
        headers.insert("x-llm-rotate-endpoint", value);
    }
    headers
}

/// A response's status and headers as a header dump, for the one reader of responses.
fn dump(status: u16, headers: &HeaderMap) -> String {
    let mut dump = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        dump.push_str(name.as_str());
        dump.push_str(": ");
        dump.push_str(&String::from_utf8_lossy(value.as_bytes()));
        dump.push_str("\r\n");
    }
    dump
}

/// At most `most` bytes of a body.
async fn read_some(reply: reqwest::Response, most: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut chunks = reply.bytes_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        let room = most - kept.len();
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if kept.len() == most {
            break;
        }
    }
    kept
}

/// An error and its causes, on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn millis(span: Duration) -> u64 {
    u64::try_from(span.as_millis()).unwrap_or(u64::MAX)
}
