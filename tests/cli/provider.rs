//! A provider stand-in for `serve` and `call`: an HTTP/1.1 server on a free loopback port
//! that answers each path prefix from a script (a status and headers, a JSON body, a
//! stream of server-sent events, slowly or cut short) and records every request it
//! received. Real sockets, real HTTP: llm-rotate's client cannot tell it from a provider.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A status, extra headers, and a JSON body.
    Json {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// `200 text/event-stream`, chunked: each event after `pause`; `cut` ends the
    /// connection without the last chunk.
    Events {
        events: Vec<String>,
        pause: Duration,
        cut: bool,
    },
}

impl Reply {
    /// A chat completion of `input` prompt and `output` completion tokens.
    pub fn ok(input: u64, output: u64) -> Reply {
        Reply::Json {
            status: 200,
            headers: Vec::new(),
            body: format!(
                r#"{{"id":"c1","object":"chat.completion","created":1,"model":"stand-in","choices":[{{"index":0,"message":{{"role":"assistant","content":"hello"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":{input},"completion_tokens":{output},"total_tokens":{}}}}}"#,
                input + output
            ),
        }
    }

    /// A status with a `Retry-After` (when given) and an OpenAI-style error body.
    pub fn status(status: u16, retry_after: Option<&str>) -> Reply {
        Reply::Json {
            status,
            headers: retry_after
                .map(|r| vec![("retry-after".to_owned(), r.to_owned())])
                .unwrap_or_default(),
            body: format!(
                r#"{{"error":{{"message":"status {status} from the stand-in","type":"x","code":"{status}"}}}}"#
            ),
        }
    }

    /// An OpenAI chat stream of `words`, and the usage chunk when the request asked for it.
    pub fn stream(words: &[&str], usage: Option<(u64, u64)>) -> Reply {
        let mut events: Vec<String> = words
            .iter()
            .map(|w| {
                format!(
                    r#"data: {{"id":"s1","object":"chat.completion.chunk","created":1,"model":"stand-in","choices":[{{"index":0,"delta":{{"content":"{w}"}},"finish_reason":null}}],"usage":null}}"#
                ) + "\n\n"
            })
            .collect();
        if let Some((input, output)) = usage {
            events.push(format!(
                r#"data: {{"id":"s1","object":"chat.completion.chunk","created":1,"model":"stand-in","choices":[],"usage":{{"prompt_tokens":{input},"completion_tokens":{output},"total_tokens":{}}}}}"#,
                input + output
            ) + "\n\n");
        }
        events.push("data: [DONE]\n\n".to_owned());
        Reply::Events {
            events,
            pause: Duration::ZERO,
            cut: false,
        }
    }
}

/// A request the stand-in received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a JSON request body")
    }
}

#[derive(Default)]
struct Script {
    /// Answers by path prefix, first in first out; when a prefix has none left, `Reply::ok`.
    queued: HashMap<String, VecDeque<Reply>>,
    /// Answers given to every request of a prefix once its queue is empty.
    always: HashMap<String, Reply>,
    received: Vec<Received>,
}

pub struct Provider {
    pub port: u16,
    script: Arc<Mutex<Script>>,
}

impl Provider {
    pub fn start() -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stand-in");
        let port = listener.local_addr().expect("its address").port();
        let script = Arc::new(Mutex::new(Script::default()));
        let shared = Arc::clone(&script);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let script = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &script));
            }
        });
        Provider { port, script }
    }

    /// The `base_url` of a provider at `prefix` (`/a`): `http://127.0.0.1:PORT/a/v1`.
    pub fn base_url(&self, prefix: &str) -> String {
        format!("http://127.0.0.1:{}{prefix}/v1", self.port)
    }

    /// The next answers for requests under `prefix`, in order.
    pub fn then(&self, prefix: &str, replies: impl IntoIterator<Item = Reply>) {
        let mut script = self.script.lock().expect("script");
        script
            .queued
            .entry(prefix.to_owned())
            .or_default()
            .extend(replies);
    }

    /// The answer for every request under `prefix` once its queue is empty.
    pub fn always(&self, prefix: &str, reply: Reply) {
        let mut script = self.script.lock().expect("script");
        script.always.insert(prefix.to_owned(), reply);
    }

    pub fn received(&self) -> Vec<Received> {
        self.script.lock().expect("script").received.clone()
    }

    /// How many requests came under `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.received()
            .iter()
            .filter(|r| r.path.starts_with(&format!("{prefix}/")))
            .count()
    }
}

fn serve(stream: TcpStream, script: &Mutex<Script>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone the socket"));
    let mut out = stream;
    // One connection, many requests: clients keep connections and reuse them.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let mut headers = HashMap::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let size: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; size];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let reply = {
            let mut script = script.lock().expect("script");
            script.received.push(Received {
                path: path.clone(),
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            let prefix = script
                .queued
                .keys()
                .chain(script.always.keys())
                .filter(|p| path.starts_with(&format!("{p}/")))
                .max_by_key(|p| p.len())
                .cloned();
            prefix
                .and_then(|p| {
                    let queued = script.queued.get_mut(&p).and_then(VecDeque::pop_front);
                    queued.or_else(|| script.always.get(&p).cloned())
                })
                .unwrap_or_else(|| Reply::ok(10, 5))
        };
        if answer(&mut out, &reply).is_err() {
            return;
        }
    }
}

fn answer(out: &mut TcpStream, reply: &Reply) -> std::io::Result<()> {
    match reply {
        Reply::Json {
            status,
            headers,
            body,
        } => {
            let mut head = format!(
                "HTTP/1.1 {status} Stand-in\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                body.len()
            );
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            out.write_all(head.as_bytes())?;
            out.write_all(body.as_bytes())?;
            out.flush()
        }
        Reply::Events { events, pause, cut } => {
            out.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
            )?;
            out.flush()?;
            for event in events {
                std::thread::sleep(*pause);
                out.write_all(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes())?;
                out.flush()?;
            }
            if *cut {
                out.shutdown(std::net::Shutdown::Both)?;
                return Err(std::io::Error::other("cut"));
            }
            out.write_all(b"0\r\n\r\n")?;
            out.flush()
        }
    }
}
