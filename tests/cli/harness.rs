//! What every CLI test shares: a fresh world per test ([`Env`]), running the real binary,
//! and reading what it printed. Used by `tests/cli` (SQLite) and `tests/redis` (Redis).

#![allow(dead_code)] // each test binary uses its own part

#[path = "../../src/ledger/redis/test_server.rs"]
pub mod test_server;

use std::cell::Cell;
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

/// 2026-01-01T00:00:00Z, in Unix seconds: the instant every test starts at.
pub const T0: i64 = 1_767_225_600;

/// The program under test.
pub fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("llm-rotate")
}

/// A fresh world for one test: a temporary folder that is HOME, the XDG folders, the current
/// folder and the home of the database, and a clock that only moves when told to.
/// The ledger a test binary runs its tests against.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Ledger {
    Sqlite,
    Redis,
}

pub struct Env {
    dir: TempDir,
    /// The test server's URL with a prefix of this Env's own, for the Redis runs.
    redis: Option<String>,
    /// Milliseconds after [`T0`].
    now_ms: Cell<i64>,
    /// Passed as `--endpoints` when set.
    endpoints: Option<PathBuf>,
}

impl Default for Env {
    fn default() -> Env {
        Env::new()
    }
}

impl Env {
    pub fn new() -> Env {
        // Without redis-server installed the Redis runs use SQLite again (the server's
        // module says so once), so that `cargo test` needs only the Rust toolchain.
        let redis = match crate::LEDGER {
            Ledger::Redis => test_server::fresh_url(),
            Ledger::Sqlite => None,
        };
        Env {
            dir: tempfile::tempdir().expect("create a temporary folder"),
            redis,
            now_ms: Cell::new(0),
            endpoints: None,
        }
    }

    /// A world whose commands read `text` as their endpoints file (`--endpoints`).
    pub fn with_endpoints(text: &str) -> Env {
        let mut env = Env::new();
        env.endpoints = Some(env.write("endpoints.csv", text));
        env
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// Writes a file in the temporary folder and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create the file's folder");
        }
        std::fs::write(&path, contents).expect("write a test file");
        path
    }

    /// The database every command uses (`LLM_ROTATE_DB`).
    pub fn db(&self) -> PathBuf {
        self.path("usage.sqlite3")
    }

    /// `LLM_ROTATE_DB`: the SQLite file, or the Redis URL.
    pub fn ledger(&self) -> String {
        match &self.redis {
            Some(url) => url.clone(),
            None => self.db().display().to_string(),
        }
    }

    /// True when the commands use the Redis ledger.
    pub fn on_redis(&self) -> bool {
        self.redis.is_some()
    }

    pub fn endpoints_file(&self) -> &Path {
        self.endpoints
            .as_deref()
            .expect("this Env has an endpoints file")
    }

    /// Moves the clock to `ms` milliseconds after [`T0`] for the commands built from now on.
    pub fn set_time(&self, ms: i64) {
        assert!(ms >= 0, "the tests never go before T0");
        self.now_ms.set(ms);
    }

    /// Moves the clock to an RFC 3339 instant, which must not be before [`T0`].
    #[track_caller]
    pub fn set_utc(&self, rfc3339: &str) {
        let at = chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap_or_else(|e| panic!("{rfc3339:?} is not RFC 3339: {e}"));
        self.set_time(at.timestamp_millis() - T0 * 1000);
    }

    /// `LLM_ROTATE_NOW` as the commands see it: Unix seconds with milliseconds.
    pub fn now_text(&self) -> String {
        let ms = self.now_ms.get();
        format!("{}.{:03}", T0 + ms / 1000, ms % 1000)
    }

    /// `program` with the test's environment: no inherited `LLM_ROTATE_*`, the database and
    /// the clock set, every home folder inside the temporary folder, no colour, 100 columns.
    pub fn std_command(&self, program: impl AsRef<OsStr>) -> std::process::Command {
        let mut cmd = std::process::Command::new(program);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("LLM_ROTATE_") {
                cmd.env_remove(name);
            }
        }
        cmd.env("LLM_ROTATE_DB", self.ledger())
            .env("LLM_ROTATE_NOW", self.now_text())
            .env("HOME", self.dir())
            .env("XDG_CONFIG_HOME", self.dir())
            .env("XDG_CACHE_HOME", self.dir())
            .env("XDG_DATA_HOME", self.dir())
            .env("XDG_STATE_HOME", self.dir())
            .env("NO_COLOR", "1")
            // clap wraps help to $COLUMNS: pin it so that snapshots do not depend on it.
            .env("COLUMNS", "100")
            .current_dir(self.dir());
        cmd
    }

    /// `llm-rotate` with the test's environment, and `--endpoints` when the Env has a file.
    pub fn cmd(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::from_std(self.std_command(bin()));
        if let Some(file) = &self.endpoints {
            cmd.arg("--endpoints").arg(file);
        }
        cmd
    }

    pub fn run<I, S>(&self, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Out::from(self.cmd().args(args).output().expect("run llm-rotate"))
    }

    /// Runs `llm-rotate ARGS` with `input` on its stdin.
    pub fn run_stdin<I, S>(&self, args: I, input: &str) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Out::from(
            self.cmd()
                .args(args)
                .write_stdin(input.as_bytes().to_vec())
                .output()
                .expect("run llm-rotate"),
        )
    }

    /// `llm-rotate ARGS` with the test's environment and endpoints file, not started.
    pub fn program(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = self.std_command(bin());
        if let Some(file) = &self.endpoints {
            cmd.arg("--endpoints").arg(file);
        }
        cmd.args(args);
        cmd
    }

    /// Starts `n` processes of `llm-rotate ARGS`, every one before waiting for any, all at
    /// the same pinned time; returns what each printed, in the order they were started.
    pub fn run_at_once(&self, n: usize, args: &[&str]) -> Vec<Out> {
        at_once((0..n).map(|_| self.program(args)))
    }

    /// Runs `script` in `sh -c` with the test's environment, `$LLM_ROTATE` naming the program
    /// and `$EP` the endpoints file; the script must exit 0; returns its stdout.
    #[track_caller]
    pub fn sh(&self, script: &str) -> String {
        let mut cmd = self.std_command("sh");
        cmd.arg("-c").arg(script).env("LLM_ROTATE", bin());
        if let Some(file) = &self.endpoints {
            cmd.env("EP", file);
        }
        let out = Out::from(
            cmd.stdin(Stdio::null())
                .output()
                .expect("run a shell script"),
        );
        out.code(0);
        out.stdout
    }

    /// Runs a command that must exit 0, and returns its stdout.
    #[track_caller]
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.run(args);
        out.code(0);
        out.stdout
    }

    /// Runs a command that must exit with `code`, and returns what it printed.
    #[track_caller]
    pub fn fails<I, S>(&self, args: I, code: i32) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.run(args);
        out.code(code);
        out
    }

    /// `pick` with these extra arguments; must exit 0; returns the id it printed.
    #[track_caller]
    pub fn pick(&self, args: &[&str]) -> String {
        let stdout = self.ok(["pick"].iter().chain(args));
        stdout
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("pick printed {stdout:?}, not one line"))
            .to_string()
    }

    /// `pick --format json` with these extra arguments; must exit 0.
    #[track_caller]
    pub fn pick_json(&self, args: &[&str]) -> Value {
        json(&self.ok(["pick", "--format", "json"].iter().chain(args)))
    }

    /// `pick --format json` with these extra arguments, which must find nothing fitting now:
    /// exit 75 and the `{"error": "exhausted", ...}` report on stdout, which it returns.
    #[track_caller]
    pub fn exhausted(&self, args: &[&str]) -> Value {
        let out = self.run(["pick", "--format", "json"].iter().chain(args));
        out.code(75);
        let report = json(&out.stdout);
        assert_eq!(report["error"], "exhausted", "{out}");
        report
    }

    /// `state --format json`, parsed.
    #[track_caller]
    pub fn state(&self) -> Vec<Value> {
        match json(&self.ok(["state", "--format", "json"])) {
            Value::Array(rows) => rows,
            other => panic!("state --format json printed {other}, not an array"),
        }
    }

    /// One endpoint's object from `state --format json`.
    #[track_caller]
    pub fn state_of(&self, id: &str) -> Value {
        self.state()
            .into_iter()
            .find(|row| row["id"] == id)
            .unwrap_or_else(|| panic!("state --format json has no endpoint {id:?}"))
    }

    /// When each call in the ledger was stamped, in milliseconds after [`T0`], in the
    /// order the calls were written: read from the SQLite file itself, because the ledger
    /// never looks back in time (a window counts what was stamped after its start).
    pub fn stamps(&self) -> Vec<i64> {
        if let Some(url) = &self.redis {
            return redis_stamps(url);
        }
        let conn = rusqlite::Connection::open(self.db()).expect("open the ledger");
        let mut stmt = conn
            .prepare("SELECT at_ms FROM usage ORDER BY id")
            .expect("query the ledger");
        stmt.query_map([], |r| r.get::<_, i64>(0))
            .expect("read the ledger")
            .map(|at| at.expect("a stamp") - T0 * 1000)
            .collect()
    }

    /// `used.<window>` of one endpoint, from `state --format json`.
    #[track_caller]
    pub fn used(&self, id: &str, window: &str) -> u64 {
        let row = self.state_of(id);
        row["used"][window]
            .as_u64()
            .unwrap_or_else(|| panic!("used.{window} of {id} is not a count: {row}"))
    }
}

/// What a finished command printed, and how it exited.
pub struct Out {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Out {
    fn from(output: Output) -> Out {
        Out {
            status: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

impl Out {
    #[track_caller]
    pub fn code(&self, code: i32) -> &Out {
        assert_eq!(
            self.status,
            Some(code),
            "expected exit {code}, got:\n{self}"
        );
        self
    }

    /// stderr holds every one of `needles`.
    #[track_caller]
    pub fn says(&self, needles: &[&str]) -> &Out {
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "stderr should contain {needle:?}:\n{self}"
            );
        }
        self
    }

    #[track_caller]
    pub fn no_stdout(&self) -> &Out {
        assert_eq!(self.stdout, "", "stdout should be empty:\n{self}");
        self
    }
}

/// Processes started together and not yet waited on.
pub struct Started(Vec<Child>);

/// Starts every command before waiting for any, so that they really contend (stdin closed,
/// stdout and stderr kept).
pub fn start_all(commands: impl IntoIterator<Item = std::process::Command>) -> Started {
    Started(
        commands
            .into_iter()
            .map(|mut cmd| {
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("start a process")
            })
            .collect(),
    )
}

impl Started {
    /// Waits for each; what each printed, in the order started.
    pub fn outputs(self) -> Vec<Out> {
        self.0
            .into_iter()
            .map(|child| Out::from(child.wait_with_output().expect("wait for a process")))
            .collect()
    }
}

/// Runs the commands at once ([`start_all`]) and returns what each printed.
pub fn at_once(commands: impl IntoIterator<Item = std::process::Command>) -> Vec<Out> {
    start_all(commands).outputs()
}

/// Whether `program` is installed. Without it the test is skipped with a note, so that
/// `cargo test` works with the Rust toolchain alone; with LLM_ROTATE_REQUIRE_TOOLS set (as
/// `.ci/run` sets it), a missing program fails the test instead.
pub fn installed(program: &str, debian_package: &str) -> bool {
    let found = std::process::Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found || std::env::var_os("LLM_ROTATE_REQUIRE_TOOLS").is_none(),
        "{program} is not installed (Debian: apt-get install {debian_package})"
    );
    if !found {
        eprintln!("note: {program} is not installed; skipped");
    }
    found
}

/// Makes, in `dir`, a certificate authority for one test (`ca.pem`) and a certificate for
/// 127.0.0.1 that it signed (`server.pem`, `server.key`), with openssl.
pub fn private_ca(dir: &Path) {
    let made = std::process::Command::new("sh")
        .current_dir(dir)
        .args([
            "-c",
            "set -e
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=llm-rotate test CA' 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj '/CN=127.0.0.1' 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\\n' > ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext 2>/dev/null",
        ])
        .status()
        .expect("run openssl");
    assert!(made.success(), "openssl could not make the certificates");
}

#[track_caller]
pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// The `(limit, frees_in_s)` of `id` in a `pick --format json` exhausted report.
#[track_caller]
pub fn blocked(report: &Value, id: &str) -> (String, f64) {
    let entry = report["blocked"]
        .as_array()
        .and_then(|all| all.iter().find(|b| b["id"] == id))
        .unwrap_or_else(|| panic!("{id} is not in the blocked list of {report}"));
    let limit = entry["limit"]
        .as_str()
        .unwrap_or_else(|| panic!("no limit name in {entry}"));
    (limit.to_string(), num(&entry["frees_in_s"]))
}

/// Asserts two numbers of seconds agree to the millisecond.
#[track_caller]
pub fn assert_secs(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() < 0.0005,
        "{what}: {actual} s, expected {expected} s"
    );
}

/// JSON equality where numbers compare by value: `40`, `40.0` and `4e1` are the same.
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, x)| ys.get(k).is_some_and(|y| same_json(x, y)))
        }
        _ => a == b,
    }
}

#[track_caller]
pub fn assert_json(actual: &Value, expected: &Value) {
    assert!(
        same_json(actual, expected),
        "JSON differs\n--- actual ---\n{:#}\n--- expected ---\n{:#}",
        actual,
        expected
    );
}

/// A number from JSON, whatever its spelling.
#[track_caller]
pub fn num(value: &Value) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{value} is not a number"))
}

/// Every call's stamp in a Redis namespace, in milliseconds after [`T0`], ascending (Redis
/// keeps no order of writing; the stamps' order is the time order).
fn redis_stamps(url: &str) -> Vec<i64> {
    let (base, query) = url.split_once('?').expect("a prefix");
    let prefix = query.trim_start_matches("prefix=");
    let client = redis::Client::open(base).expect("a Redis URL");
    let mut con = client.get_connection().expect("connect to the test server");
    let endpoints: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{prefix}:endpoints"))
        .query(&mut con)
        .expect("endpoints");
    let mut stamps = Vec::new();
    for endpoint in endpoints {
        let scores: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(format!("{prefix}:calls:{endpoint}"))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query(&mut con)
            .expect("calls");
        stamps.extend(scores.into_iter().map(|(_, at)| at as i64 - T0 * 1000));
    }
    stamps.sort_unstable();
    stamps
}

/// This machine's clock, in milliseconds since the epoch.
pub fn real_now_ms() -> i64 {
    std::time::UNIX_EPOCH
        .elapsed()
        .map_or(0, |d| d.as_millis() as i64)
}

/// `shells` shells at once, each running `pick ARGS` `picks` times in a row on the real
/// clock (no `LLM_ROTATE_NOW`) and printing `rc=STATUS` after each; what each printed.
pub fn picking_on_the_real_clock(env: &Env, shells: usize, picks: usize, args: &str) -> Vec<Out> {
    let script = format!(
        r#"i=0; while [ $i -lt {picks} ]; do "$LLM_ROTATE_BIN" --endpoints "$EP" pick {args} >/dev/null; echo "rc=$?"; i=$((i+1)); done"#
    );
    let shells = (0..shells).map(|_| {
        let mut cmd = env.std_command("sh");
        cmd.env_remove("LLM_ROTATE_NOW")
            .arg("-c")
            .arg(&script)
            .env("LLM_ROTATE_BIN", bin())
            .env("EP", env.endpoints_file());
        cmd
    });
    at_once(shells)
}
