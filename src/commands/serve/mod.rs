//! `serve`: the OpenAI API on a local address; each request is made by the forwarder
//! with an endpoint that has quota (SPEC 13). The runtime starts here, for this subcommand
//! and `call` alone: the others never pay for it.

mod page;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::Context;
use crate::cli::{ForwardArgs, ServeArgs, StateFormat};
use crate::forward::{Answer, Call, Forwarder, LARGEST, Options, Refusal, Relayed};
use crate::output;

/// How long requests in flight are given to finish after SIGTERM or SIGINT.
const DRAIN: Duration = Duration::from_secs(30);

struct Server {
    forwarder: Arc<Forwarder>,
    /// `Authorization: Bearer <this>` is required when set.
    token: Option<String>,
    log: bool,
}

pub fn run(ctx: &Context, args: &ServeArgs) -> Result<ExitCode> {
    let token = match &args.token_env {
        Some(var) => Some(
            crate::env::get(var)
                .and_then(|v| v.into_string().ok())
                .with_context(|| format!("--token-env {var}: ${var} is not set"))?,
        ),
        None => None,
    };
    if token.is_none() && !args.listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {} without --token-env: beyond loopback, anyone who can \
             reach it could spend your quota",
            args.listen
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (forwarder, notes) = forwarder(ctx, &args.forward, Arc::clone(&stop))?;
    output::notes(&notes);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the HTTP runtime")?;
    let server = Arc::new(Server {
        forwarder: Arc::new(forwarder),
        token,
        log: !args.quiet,
    });
    runtime.block_on(serve(server, args.listen, stop))?;
    Ok(ExitCode::SUCCESS)
}

/// The forwarder `serve` and `call` make their calls with.
pub fn forwarder(
    ctx: &Context,
    args: &ForwardArgs,
    stop: Arc<AtomicBool>,
) -> Result<(Forwarder, Vec<String>)> {
    let options = Options {
        only: args.choosing.only.clone(),
        exclude: args.choosing.exclude.clone(),
        strategy: args.choosing.strategy,
        wait: args.choosing.wait,
        attempts: args.attempts,
        max_output: args.max_output,
    };
    Forwarder::new(ctx.endpoints()?, ctx.ledger_location()?, options, stop)
}

async fn serve(server: Arc<Server>, listen: SocketAddr, stop: Arc<AtomicBool>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let bound = listener.local_addr()?;
    let rows = server.forwarder.endpoints().len();
    let plural = if rows == 1 { "" } else { "s" };
    output::message(&format!(
        "serving {rows} endpoint{plural} on http://{bound}/v1"
    ));
    let forwarder = Arc::clone(&server.forwarder);
    let app = Router::new()
        .route("/v1/chat/completions", post(forward))
        .route("/v1/completions", post(forward))
        .route("/v1/embeddings", post(forward))
        .route("/v1/models", get(models))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/", get(page))
        .fallback(|| async {
            refusal(&Refusal::new(
                404,
                "llm_rotate_no_route",
                "no such route".to_owned(),
            ))
        })
        .with_state(server);
    let (signalled, on_signal) = tokio::sync::watch::channel(false);
    let stopping = async move {
        signal().await;
        // A request waiting for quota stops waiting and gets its 429.
        stop.store(true, Ordering::SeqCst);
        let _ = signalled.send(true);
    };
    // A response's head and its body go out in separate writes: without TCP_NODELAY the
    // second waits for the client's delayed acknowledgement (40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let serving = axum::serve(listener, app).with_graceful_shutdown(stopping);
    let mut drained = on_signal.clone();
    tokio::select! {
        done = serving => done.context("the server stopped")?,
        () = async move {
            let _ = drained.wait_for(|&s| s).await;
            tokio::time::sleep(DRAIN).await;
        } => output::message("requests still in flight after 30 s were cut off"),
    }
    // Responses that ended are settled before the process exits.
    let settling = async {
        while forwarder.in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), settling).await;
    Ok(())
}

/// SIGTERM or SIGINT.
async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

impl Server {
    /// The answer to a request without the token, when one is required.
    fn refused_access(&self, headers: &HeaderMap) -> Option<Response> {
        let token = self.token.as_deref()?;
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given.is_some_and(|given| same(given.as_bytes(), token.as_bytes())) {
            return None;
        }
        Some(refusal(&Refusal::new(
            401,
            "llm_rotate_unauthorized",
            "this server needs Authorization: Bearer <its token>".to_owned(),
        )))
    }

    /// A GET route's answer, behind the token, and its log line.
    async fn read(
        &self,
        path: &str,
        headers: &HeaderMap,
        answer: impl Future<Output = Response>,
    ) -> Response {
        let response = match self.refused_access(headers) {
            Some(refused) => refused,
            None => answer.await,
        };
        self.log(format_args!("GET {path} - {}", response.status().as_u16()));
        response
    }

    fn log(&self, line: std::fmt::Arguments) {
        if self.log {
            use std::io::Write as _;
            let at = output::rfc3339(crate::clock::now().unwrap_or_default());
            // A closed stderr must not stop the server.
            let _ = writeln!(std::io::stderr().lock(), "{at} {line}");
        }
    }
}

/// Compares in time that does not depend on where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

async fn forward(State(server): State<Arc<Server>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let route = parts.uri.path().to_owned();
    if let Some(refused) = server.refused_access(&parts.headers) {
        server.log(format_args!("POST {route} - 401"));
        return refused;
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bytes = match declared {
        Some(size) if size > LARGEST as u64 => None,
        _ => axum::body::to_bytes(body, LARGEST).await.ok(),
    };
    let Some(bytes) = bytes else {
        server.log(format_args!("POST {route} - 413"));
        return refusal(&Refusal::new(
            413,
            "llm_rotate_too_large_body",
            "the request body is over 32 MiB".to_owned(),
        ));
    };
    let after_v1 = parts
        .uri
        .path_and_query()
        .map_or(route.as_str(), |p| p.as_str())
        .trim_start_matches("/v1")
        .to_owned();
    let call = Call {
        path: &after_v1,
        headers: &parts.headers,
        body: &bytes,
    };
    match server.forwarder.forward(call).await {
        Answer::Own(own) => {
            server.log(format_args!("POST {route} - {} {}", own.status, own.code));
            refusal(&own)
        }
        Answer::Relayed(relayed) => relay(server, route, relayed),
    }
}

/// The provider's response, its body as it comes; the log line once it is settled.
fn relay(server: Arc<Server>, route: String, relayed: Relayed) -> Response {
    let Relayed {
        status,
        headers,
        endpoint,
        attempts,
        body,
        settled,
    } = relayed;
    let chunks =
        futures_util::stream::unfold(body, |mut rx| async { rx.recv().await.map(|c| (c, rx)) });
    let mut response = Response::new(Body::from_stream(chunks));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    *response.headers_mut() = headers;
    tokio::spawn(async move {
        let Ok(done) = settled.await else { return };
        let tokens = done.usage.map_or("estimate".to_owned(), |u| {
            format!("{}+{}+{}", u.input, u.cached, u.output)
        });
        server.log(format_args!(
            "POST {route} {endpoint} {status} tokens={tokens} ms={} first_byte_ms={} attempts={attempts}",
            done.total_ms, done.first_byte_ms
        ));
    });
    response
}

/// llm-rotate's own answer, in the OpenAI error shape.
fn refusal(own: &Refusal) -> Response {
    let mut response = (
        StatusCode::from_u16(own.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        own.body(),
    )
        .into_response();
    if let Some(seconds) = own.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// One entry per endpoint id and per distinct model name: what a request's `model` may be.
async fn models(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    server
        .read("/v1/models", &headers, async { models_list(&server) })
        .await
}

fn models_list(server: &Server) -> Response {
    let endpoints = server.forwarder.endpoints();
    let mut data: Vec<serde_json::Value> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let entries = endpoints
        .iter()
        .map(|e| (&e.id, &e.provider))
        .chain(endpoints.iter().map(|e| (&e.model, &e.provider)));
    for (id, owner) in entries {
        if seen.insert(id.as_str()) {
            data.push(
                serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": owner}),
            );
        }
    }
    let body = serde_json::json!({"object": "list", "data": data}).to_string();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `state --format prometheus`, read now.
async fn metrics(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    server
        .read("/metrics", &headers, metrics_text(&server))
        .await
}

async fn metrics_text(server: &Server) -> Response {
    let text = server
        .forwarder
        .read(|me, ledger| {
            super::state::render(
                me.endpoints(),
                ledger,
                &[],
                StateFormat::Prometheus,
                super::state::Shown {
                    header: true,
                    colour: false,
                },
            )
        })
        .await;
    match text {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(err) => refusal(&Refusal::new(500, "llm_rotate_ledger", format!("{err:#}"))),
    }
}

async fn page(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    server.read("/", &headers, page_html(&server)).await
}

async fn page_html(server: &Server) -> Response {
    match server
        .forwarder
        .read(|me, ledger| page::render(me.endpoints(), ledger))
        .await
    {
        Ok(html) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                // Nothing from elsewhere: no script, style or image it did not bring.
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
                ),
            ],
            html,
        )
            .into_response(),
        Err(err) => refusal(&Refusal::new(500, "llm_rotate_ledger", format!("{err:#}"))),
    }
}
