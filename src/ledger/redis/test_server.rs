//! A redis-server of the tests' own: started once per test process on a free loopback port,
//! in a temporary folder, without persistence, and stopped when the process ends (a shell
//! watches the test process's pipe and kills the server when it closes). Shared by the
//! unit tests and the CLI tests (included by path).
//!
//! Without redis-server on PATH the Redis tests are skipped with a note, so that `cargo
//! test` works on a machine with only the Rust toolchain; `.ci/run` installs it and sets
//! LLM_ROTATE_REQUIRE_TOOLS=1, which turns a missing server into a failure.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Server {
    port: u16,
    /// Holds the watchdog's stdin open for as long as the test process lives.
    _watchdog: Mutex<Child>,
}

static SERVER: OnceLock<Option<Server>> = OnceLock::new();
static PREFIXES: AtomicU64 = AtomicU64::new(0);

/// A `redis://` URL with a prefix no other test uses, or `None` (with a note) when
/// redis-server is not installed.
pub fn fresh_url() -> Option<String> {
    let server = SERVER.get_or_init(start).as_ref()?;
    let n = PREFIXES.fetch_add(1, Ordering::Relaxed);
    let prefix = format!("t{}-{n}", std::process::id());
    // The namespace exists already, as a ledger in use would: the note a new one gets is
    // for the tests that are about it.
    if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", server.port)) {
        let _ = stream.write_all(format!("SET {prefix}:layout 1\r\n").as_bytes());
        let mut reply = String::new();
        let _ = BufReader::new(&stream).read_line(&mut reply);
    }
    Some(format!(
        "redis://127.0.0.1:{}/?prefix={prefix}",
        server.port
    ))
}

/// The port of the test server, for tests that talk to it directly.
pub fn port() -> Option<u16> {
    SERVER.get_or_init(start).as_ref().map(|s| s.port)
}

/// The CPU seconds the server on `port` has used, user and system (for the benchmarks).
#[allow(dead_code)]
pub fn cpu_s(port: u16) -> f64 {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "INFO", "cpu"])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            matches!(name, "used_cpu_sys" | "used_cpu_user")
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

fn start() -> Option<Server> {
    let installed = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        assert!(
            std::env::var_os("LLM_ROTATE_REQUIRE_TOOLS").is_none(),
            "redis-server is not installed (Debian: apt-get install redis-server)"
        );
        eprintln!("note: redis-server is not installed; the Redis ledger tests are skipped");
        return None;
    }
    // A port found free may be taken by another server before this one binds it: that
    // one then exits, and another port is tried.
    (0..20)
        .find_map(|_| started_on_a_free_port())
        .or_else(|| panic!("redis-server did not start on any of 20 free ports"))
}

/// The server started on a port found free, once it answers; `None` when another server
/// answers there.
// The watchdog outlives every test on purpose: it ends with the test process.
#[allow(clippy::zombie_processes)]
fn started_on_a_free_port() -> Option<Server> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = std::env::temp_dir().join(format!("llm-rotate-redis-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("the server's folder");
    let script = r#"redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no --dir "$2" --maxmemory-policy noeviction >"$2/log" 2>&1 & pid=$!
echo "$pid"
read _ignored
kill "$pid"; wait "$pid" 2>/dev/null; rm -rf "$2""#;
    let mut watchdog = Command::new("sh")
        .args(["-c", script, "sh", &port.to_string()])
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start redis-server");
    let mut line = String::new();
    BufReader::new(watchdog.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the watchdog started");
    let pid: u32 = line.trim().parse().expect("the server's process id");
    // Wait until it answers; it takes a few milliseconds.
    for _ in 0..2_000 {
        match pid_at(port) {
            // Dropping the watchdog closes its stdin: it stops what it started.
            Some(other) if other != pid => return None,
            Some(_) => {
                return Some(Server {
                    port,
                    _watchdog: Mutex::new(watchdog),
                });
            }
            None => std::thread::sleep(std::time::Duration::from_millis(5)),
        }
    }
    panic!(
        "redis-server did not start on port {port}; see {}/log",
        dir.display()
    );
}

/// The process id of the server answering on `port`, from `INFO server`.
#[allow(dead_code)]
pub fn pid_at(port: u16) -> Option<u32> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    stream.write_all(b"INFO server\r\n").ok()?;
    BufReader::new(stream)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("process_id:")?.trim().parse().ok())
}
