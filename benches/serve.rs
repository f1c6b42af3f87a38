//! The `serve` line of SPEC section 8, measured in one run against a provider stand-in in
//! this process that answers at once: the same load sent to the stand-in directly and
//! through `llm-rotate serve` (the release binary, SQLite ledger, every request reserved
//! and settled). Run with `cargo bench --bench serve`.
//!
//! - throughput: 64 clients, each sending its next request when the last is answered;
//! - added latency: 200 requests a second arriving on a fixed schedule, median and 99th
//!   percentile, through `serve` minus directly;
//! - memory: 256 streams open at once through `serve`, its peak resident size.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::post;
use tokio::sync::Notify;

#[path = "../src/ledger/redis/test_server.rs"]
#[allow(dead_code)]
mod test_server;

const BIN: &str = env!("CARGO_BIN_EXE_llm-rotate");
const BODY: &str =
    r#"{"model":"auto","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}"#;
const STREAM_BODY: &str = r#"{"model":"auto","stream":true,"messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}"#;
const ANSWER: &str = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14}}"#;
const STREAMS: usize = 256;

/// The stand-in's streams: how many are open, and the signal that lets them end.
#[derive(Default)]
struct Streams {
    open: AtomicUsize,
    release: Notify,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let streams = Arc::new(Streams::default());
    let provider = stand_in(Arc::clone(&streams)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let endpoints = dir.path().join("endpoints.csv");
    std::fs::write(
        &endpoints,
        format!(
            "id,provider,model,rpm,tpm,base_url\nstand-in,openai,m,10m,1000m,http://{provider}/v1\n"
        ),
    )
    .expect("write endpoints");
    let (mut serve, port) = start_serve(&endpoints, &dir.path().join("usage.sqlite3"));
    let direct = format!("http://{provider}/v1/chat/completions");
    let through = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();

    // Warm both paths (connections, the ledger's file, page cache).
    closed_loop(&client, &direct, 8, Duration::from_secs(1)).await;
    closed_loop(&client, &through, 8, Duration::from_secs(1)).await;

    let mut lines = Vec::new();
    let mut over = 0;
    let mut verdict = |ok: bool| {
        if ok {
            "ok"
        } else {
            over += 1;
            "OVER BUDGET"
        }
    };
    let length = Duration::from_secs(5);
    let direct_rps = closed_loop(&client, &direct, 64, length).await;
    let serve_rps = closed_loop(&client, &through, 64, length).await;
    lines.push(format!(
        "| serve: throughput, 64 clients | {serve_rps:.0} requests/s (directly: {direct_rps:.0}/s) | {:.2}x of direct | >= 1000/s | {} |",
        serve_rps / direct_rps,
        verdict(serve_rps >= 1000.0)
    ));

    // Directly and through serve by turns, one second each, so that both see the same
    // machine.
    let mut direct_ms = Vec::new();
    let mut serve_ms = Vec::new();
    for _ in 0..10 {
        direct_ms.extend(open_loop(&client, &direct, 200, Duration::from_secs(1)).await);
        serve_ms.extend(open_loop(&client, &through, 200, Duration::from_secs(1)).await);
    }
    let (d50, d99) = (
        percentile(&mut direct_ms, 0.50),
        percentile(&mut direct_ms, 0.99),
    );
    let (s50, s99) = (
        percentile(&mut serve_ms, 0.50),
        percentile(&mut serve_ms, 0.99),
    );
    lines.push(format!(
        "| serve: median added at 200/s | {:.2} ms ({s50:.2} ms vs {d50:.2} ms directly, {} requests each) | | <= 1 ms | {} |",
        s50 - d50,
        serve_ms.len(),
        verdict(s50 - d50 <= 1.0)
    ));
    lines.push(format!(
        "| serve: 99th percentile added at 200/s | {:.2} ms ({s99:.2} ms vs {d99:.2} ms) | | <= 5 ms | {} |",
        s99 - d99,
        verdict(s99 - d99 <= 5.0)
    ));

    let before_kib = peak_kib(serve.id());
    let peak = open_streams(&client, &through, &streams, serve.id()).await;
    let mib = peak as f64 / 1024.0;
    lines.push(format!(
        "| serve: peak memory, {STREAMS} streams open | {mib:.1} MiB (before them: {:.1} MiB) | | <= 64 MiB | {} |",
        before_kib as f64 / 1024.0,
        verdict(mib <= 64.0)
    ));

    let _ = serve.kill();
    let _ = serve.wait();

    // The same on a Redis ledger (redis-server on this machine), when one is installed:
    // where a fleet's shared quota meets one process that makes many calls.
    if let Some(url) = test_server::fresh_url() {
        let (mut on_redis, port) = start_serve(&endpoints, std::path::Path::new(&url));
        let through = format!("http://127.0.0.1:{port}/v1/chat/completions");
        closed_loop(&client, &through, 8, Duration::from_secs(1)).await;
        let server = test_server::port().expect("the server");
        let cpu_before = test_server::cpu_s(server);
        let rps = closed_loop(&client, &through, 64, length).await;
        // A request is two steps (its reservation, then its settling) on one connection
        // kept open: the ledger's own work, without a process's connecting.
        let cpu_ms = (test_server::cpu_s(server) - cpu_before) * 1000.0
            / (rps * length.as_secs_f64()).max(1.0);
        let mut direct_ms = Vec::new();
        let mut redis_ms = Vec::new();
        for _ in 0..5 {
            direct_ms.extend(open_loop(&client, &direct, 200, Duration::from_secs(1)).await);
            redis_ms.extend(open_loop(&client, &through, 200, Duration::from_secs(1)).await);
        }
        let (d50, d99) = (
            percentile(&mut direct_ms, 0.50),
            percentile(&mut direct_ms, 0.99),
        );
        let (r50, r99) = (
            percentile(&mut redis_ms, 0.50),
            percentile(&mut redis_ms, 0.99),
        );
        lines.push(format!(
            "| serve on Redis: throughput, 64 clients | {rps:.0} requests/s; server CPU {cpu_ms:.3} ms a request | {:.2}x of serve on SQLite | | |",
            rps / serve_rps
        ));
        lines.push(format!(
            "| serve on Redis: added at 200/s | median {:.2} ms, 99th percentile {:.2} ms | | | |",
            r50 - d50,
            r99 - d99
        ));
        let _ = on_redis.kill();
        let _ = on_redis.wait();
    }
    println!("| what | measured | ratio | budget | verdict |");
    println!("|---|---|---|---|---|");
    for line in &lines {
        println!("{line}");
    }
    if over > 0 {
        println!("{over} over budget");
    }
}

/// The stand-in: a chat completion at once, or for `"stream": true` a stream that sends
/// its first chunk and then waits until every stream is open.
async fn stand_in(streams: Arc<Streams>) -> SocketAddr {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |body: String| {
            let streams = Arc::clone(&streams);
            async move {
                if !body.contains("\"stream\":true") {
                    return Response::builder()
                        .header("content-type", "application/json")
                        .body(Body::from(ANSWER))
                        .expect("response");
                }
                let first = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hel\"}}],\"usage\":null}\n\n";
                let last = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";
                let chunks = futures_util::stream::unfold(0, move |step| {
                    let streams = Arc::clone(&streams);
                    async move {
                        match step {
                            0 => Some((Ok::<_, std::io::Error>(first.to_owned()), 1)),
                            1 => {
                                let released = streams.release.notified();
                                streams.open.fetch_add(1, Ordering::SeqCst);
                                released.await;
                                Some((Ok(last.to_owned()), 2))
                            }
                            _ => None,
                        }
                    }
                });
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::from_stream(chunks))
                    .expect("response")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn start_serve(endpoints: &std::path::Path, db: &std::path::Path) -> (Child, u16) {
    let mut child = Command::new(BIN)
        .args(["--endpoints"])
        .arg(endpoints)
        .arg("--db")
        .arg(db)
        .args([
            "serve",
            "--quiet",
            "--listen",
            "127.0.0.1:0",
            "--attempts",
            "1",
        ])
        .env_remove("LLM_ROTATE_NOW")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stderr), &mut line).expect("read");
    let port = line
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("serve said {line:?}"));
    (child, port)
}

/// Requests a second, `clients` at a time, each sending its next once answered.
async fn closed_loop(client: &reqwest::Client, url: &str, clients: usize, length: Duration) -> f64 {
    let done = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + length;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url, done) = (client.clone(), url.to_owned(), Arc::clone(&done));
            tokio::spawn(async move {
                while Instant::now() < until {
                    let reply = client.post(&url).body(BODY).send().await.expect("send");
                    assert!(reply.status().is_success(), "{}", reply.status());
                    reply.bytes().await.expect("body");
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let started = Instant::now();
    for task in tasks {
        task.await.expect("client");
    }
    done.load(Ordering::SeqCst) as f64 / started.elapsed().as_secs_f64()
}

/// `rate` requests a second for `length`, each sent on schedule whatever the others do;
/// each one's time to its whole answer, in milliseconds.
async fn open_loop(client: &reqwest::Client, url: &str, rate: u32, length: Duration) -> Vec<f64> {
    let every = Duration::from_secs(1) / rate;
    let count = (length.as_secs_f64() * f64::from(rate)) as u32;
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for n in 0..count {
        tokio::time::sleep_until(start + every * n).await;
        let (client, url) = (client.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let reply = client.post(&url).body(BODY).send().await.expect("send");
            assert!(reply.status().is_success(), "{}", reply.status());
            reply.bytes().await.expect("body");
            sent.elapsed().as_secs_f64() * 1000.0
        }));
    }
    let mut times = Vec::new();
    for task in tasks {
        times.push(task.await.expect("request"));
    }
    times
}

/// Opens [`STREAMS`] streams through `url`, reads `serve`'s peak memory once all are open,
/// then lets them end and checks each did.
async fn open_streams(client: &reqwest::Client, url: &str, streams: &Streams, pid: u32) -> u64 {
    streams.open.store(0, Ordering::SeqCst);
    let tasks: Vec<_> = (0..STREAMS)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_owned());
            tokio::spawn(async move {
                let reply = client
                    .post(&url)
                    .body(STREAM_BODY)
                    .send()
                    .await
                    .expect("send");
                assert!(reply.status().is_success(), "{}", reply.status());
                let body = reply.text().await.expect("body");
                assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
            })
        })
        .collect();
    while streams.open.load(Ordering::SeqCst) < STREAMS {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let peak = peak_kib(pid);
    // Every stream waits on the release; a stream that has not begun to wait yet is let go
    // by a later call.
    while tasks.iter().any(|t| !t.is_finished()) {
        streams.release.notify_waiters();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for task in tasks {
        task.await.expect("stream");
    }
    peak
}

/// A process's peak resident size (VmHWM), in KiB.
fn peak_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let index = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[index]
}
