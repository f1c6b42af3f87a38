//! Running `llm-rotate serve` for a test, and a small HTTP/1.1 client to talk to it: real
//! sockets, one connection per request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::Env;

/// A running `serve`, stopped (SIGKILL) when dropped unless [`Served::stop`] ended it.
pub struct Served {
    child: Option<Child>,
    pub port: u16,
    /// Its stderr, line by line, as it comes.
    log: Arc<Mutex<Vec<String>>>,
}

impl Env {
    /// Starts `llm-rotate serve ARGS` on a free loopback port (unless ARGS has --listen)
    /// and waits until it listens.
    pub fn serve(&self, args: &[&str]) -> Served {
        self.serve_with(args, &[])
    }

    /// [`Env::serve`] with extra environment variables.
    pub fn serve_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Served {
        self.start_serve(args, vars, false)
    }

    /// [`Env::serve`] on this machine's clock: no `LLM_ROTATE_NOW`.
    pub fn serve_on_the_real_clock(&self, args: &[&str]) -> Served {
        self.start_serve(args, &[], true)
    }

    fn start_serve(&self, args: &[&str], vars: &[(&str, &str)], real_clock: bool) -> Served {
        let mut all = vec!["serve"];
        if !args.contains(&"--listen") {
            all.extend(["--listen", "127.0.0.1:0"]);
        }
        all.extend(args);
        let mut cmd = self.program(&all);
        cmd.envs(vars.iter().copied());
        if real_clock {
            cmd.env_remove("LLM_ROTATE_NOW");
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start serve");
        let stderr = child.stderr.take().expect("its stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut port_tx = Some(port_tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .split("http://127.0.0.1:")
                    .nth(1)
                    .and_then(|rest| rest.split('/').next())
                    .and_then(|port| port.parse::<u16>().ok())
                    && let Some(tx) = port_tx.take()
                {
                    let _ = tx.send(port);
                }
                lines.lock().expect("log").push(line);
            }
        });
        let port = match port_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("serve's output");
                panic!(
                    "serve did not start: {:?}\n{}",
                    out.status,
                    log.lock().expect("log").join("\n")
                );
            }
        };
        Served {
            child: Some(child),
            port,
            log,
        }
    }
}

impl Served {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What it wrote to stderr so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }

    /// Its log lines about requests (not the start line or notes).
    pub fn requests_logged(&self) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|l| l.contains(" POST "))
            .collect()
    }

    /// Waits until `n` requests are logged (each is logged once settled).
    #[track_caller]
    pub fn wait_logged(&self, n: usize) -> Vec<String> {
        for _ in 0..3000 {
            let logged = self.requests_logged();
            if logged.len() >= n {
                return logged;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{n} requests were not logged:\n{}", self.log().join("\n"));
    }

    pub fn post(&self, path: &str, body: &str) -> Reply {
        http(self.port, "POST", path, &[], body.as_bytes())
    }

    pub fn get(&self, path: &str) -> Reply {
        http(self.port, "GET", path, &[], b"")
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(mut self) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().expect("wait for serve").code()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        crate::json(&self.body)
    }

    /// The `error.code` of an OpenAI-style error body.
    #[track_caller]
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.body))
            .to_owned()
    }
}

/// One request on a connection of its own; the body read whole (chunked or not).
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to serve");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send the head");
    // A server that refuses early may close before the whole body is sent.
    let _ = stream.write_all(body);
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("the status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("a header");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            if reader.read_line(&mut size).unwrap_or(0) == 0 {
                break;
            }
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            if reader.read_exact(&mut chunk).is_err() {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        let _ = reader.read_to_end(&mut body);
    }
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}
