//! The Redis ledger: one namespace on a Redis (or Valkey) server shared by every machine
//! that points at it, for fleets that draw on one provider key.
//!
//! A step that writes holds the namespace's lock, as a step on SQLite holds the file's.
//! Its first look is one script: it takes the lock (a key with a random token, expiring
//! after a few seconds), reads the server's TIME, the newest stamp, and the accounts
//! and leases the step said it would read first (`Ledger::expect`). The step then
//! WATCHes the lock and the namespace's version, decides in Rust, and sends every
//! write, an increment of the version and the lock's release in one MULTI/EXEC: two
//! round trips for a pick or a settle. Steps that find the lock taken wait on the
//! server (BLPOP on a list the releasing step pushes to) rather than run and lose: the
//! work a step does is never thrown away because another committed, so goodput holds
//! however many processes pick at once. Should a step outlive its lock and another take
//! it, the WATCH makes its EXEC do nothing, and the step runs again. So checking and
//! reserving is one atomic step for any number of processes on any number of machines,
//! and the time of every step is the server's clock, read with the lock held, never
//! earlier than the newest entry. A step that only reads takes no lock.
//!
//! Reads see the ledger as the step found it (and the running totals its own writes add);
//! writes are seen by the steps after it. The commands never read what they just wrote.

mod book;
mod buckets;
mod journal;
mod keys;
mod reply;
mod scripts;
#[cfg(test)]
pub mod test_server;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use redis::{Connection, ErrorKind, Value};

use super::{Access, Finding, FirstRead, Ledger, Step};
use crate::clock::{self, Millis};
use crate::output;
use crate::quota;
use crate::random;
use keys::{Global, Keys, Of};

/// The layout of the namespace this build reads and writes. 2: calls and buckets carry
/// every kind of token and cost, months and seconds have keys of their own. This build
/// reads a namespace of layout 1 as one whose tokens are input tokens; its first write
/// marks it 2, which an older build refuses rather than misreads.
const LAYOUT: i64 = 2;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the server may take to answer a command (`?timeout=SECONDS` changes it): a
/// server that stops answering is an error, not a hang.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a step may hold the lock: one that stalls longer loses it to the next.
const LOCK_MS: u64 = 5_000;
/// How long a step waits for the lock before it gives up with a message.
const LOCK_WAIT: Duration = Duration::from_secs(30);
/// How long one wait on the server lasts before the step tries the lock again anyway (a
/// holder that vanished pushes no wake-up).
const WAKE_S: &str = "1";
/// A step that lost its lock while it ran runs again; past this many, give up.
const MOST_RUNS: usize = 5;

/// How a run of a step ended.
enum Ran {
    Done,
    /// Another step holds the lock: wait and run again.
    Locked,
    /// The lock was lost before the writes got through: run again.
    Lost,
}

pub struct RedisLedger {
    con: Connection,
    keys: Keys,
    /// `host:port, prefix NAME`, for messages: never the password.
    place: String,
    /// What the next step will read first, read with its first look.
    expected: FirstRead,
    /// For tests: the server's clock, as the test sets it.
    #[cfg(test)]
    server_clock: Option<Millis>,
}

/// True when `--db` names a Redis server rather than an SQLite file.
pub fn is_url(location: &str) -> bool {
    location.starts_with("redis://") || location.starts_with("rediss://")
}

/// What a Redis URL says: the URL for the client (without our parameters), the prefix,
/// `host:port` for messages, and how long a command may take.
struct Place {
    client_url: String,
    prefix: String,
    host_port: String,
    timeout: Duration,
    /// `?ca=PATH`: a CA certificate (PEM) to trust for `rediss://`, instead of the system's.
    ca: Option<PathBuf>,
}

/// `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?prefix=NAME][&timeout=SECONDS]`.
fn parse(url: &str) -> Result<Place> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut prefix = "llm-rotate".to_owned();
    let mut timeout = ANSWER_TIMEOUT;
    let mut ca = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("prefix", name)) if !name.is_empty() => prefix = name.to_owned(),
            Some(("prefix", _)) => bail!("the prefix in the Redis URL is empty"),
            Some(("ca", path)) if !path.is_empty() => ca = Some(PathBuf::from(path)),
            Some(("ca", _)) => bail!("the ca in the Redis URL names no file"),
            Some(("timeout", seconds)) => {
                timeout = seconds
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3_600.0)
                    .map(Duration::from_secs_f64)
                    .with_context(|| {
                        format!(
                            "the timeout in the Redis URL, {seconds:?}, is not a number of \
                             seconds between 0 and 3600"
                        )
                    })?;
            }
            _ => rest.push(pair),
        }
    }
    let after_scheme = base.split_once("://").map_or(base, |(_, r)| r);
    let authority = after_scheme.split('/').next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if host_port.is_empty() {
        bail!("the Redis URL names no host (redis://HOST[:PORT][/DB][?prefix=NAME])");
    }
    let host_port = if host_port.contains(':') && !host_port.ends_with(']') {
        host_port.to_owned()
    } else {
        format!("{host_port}:6379")
    };
    let client_url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok(Place {
        client_url,
        prefix,
        host_port,
        timeout,
        ca,
    })
}

impl RedisLedger {
    pub fn open(url: &str) -> Result<RedisLedger> {
        let Place {
            client_url,
            prefix,
            host_port,
            timeout,
            ca,
        } = parse(url)?;
        let place = format!("Redis at {host_port}, prefix {prefix}");
        let info = redis::IntoConnectionInfo::into_connection_info(client_url.as_str())
            .map_err(|e| anyhow!("{place}: the URL is not valid: {}", e.kind_text()))?;
        // The client's name and version cost a round trip on every connection.
        let settings = info.redis_settings().clone().set_skip_set_lib_name();
        let info = info.set_redis_settings(settings);
        let client = if url.starts_with("rediss://") {
            // rustls leaves the choice of cryptography to the program; without one it aborts.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let root_cert = match &ca {
                Some(path) => Some(std::fs::read(path).with_context(|| {
                    format!("{place}: cannot read the CA file {}", path.display())
                })?),
                // The system's certificates, or the file SSL_CERT_FILE names.
                None => None,
            };
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert,
            };
            redis::Client::build_with_tls(info, certificates)
        } else {
            redis::Client::open(info)
        }
        .map_err(|e| anyhow!("{place}: the URL is not valid: {}", e.kind_text()))?;
        let con = client
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .map_err(|e| explain(&e, &place))?;
        con.set_read_timeout(Some(timeout))
            .and_then(|()| con.set_write_timeout(Some(timeout)))
            .map_err(|e| explain(&e, &place))?;
        Ok(RedisLedger {
            con,
            keys: Keys { prefix },
            place,
            expected: FirstRead::default(),
            #[cfg(test)]
            server_clock: None,
        })
    }

    /// A namespace written by a newer llm-rotate is refused: its keys may mean other things.
    fn check_layout(&self, layout: Option<String>) -> Result<()> {
        match layout.map(|l| l.parse::<i64>()) {
            None => Ok(()),
            Some(Ok(n)) if n <= LAYOUT => Ok(()),
            Some(Ok(n)) => bail!(
                "{}: the namespace holds a newer layout ({n}; this llm-rotate knows {LAYOUT}); \
                 upgrade llm-rotate or use another prefix",
                self.place
            ),
            Some(Err(_)) => bail!(
                "{}: the namespace's layout key is not a number; is the prefix used by another \
                 program? Use another prefix",
                self.place
            ),
        }
    }

    /// One run of a step; `token` is the step's (empty for a step that only reads), the
    /// same in every run of it.
    fn run_once(&mut self, token: &str, step: &mut Step<'_>) -> Result<Ran> {
        let access = if token.is_empty() {
            Access::Read
        } else {
            Access::Write
        };
        let version = self.keys.global(Global::Version);
        let lock = self.keys.global(Global::Lock);
        // One round trip: the lock (for a write), the server's clock, the newest stamp, the
        // layout, when the namespace was last pruned and the expected accounts and leases,
        // in one reply (the client waits out its timeout once per reply: a server that
        // never answers costs one timeout, two for a write); and the watch, which must
        // follow the taking of the lock.
        let expected: Vec<&str> = self.expected.endpoints.iter().map(String::as_str).collect();
        // The clock the first look guesses the time of the step from: a pinned one, or the
        // server's.
        let pinned = clock::pinned_now()?;
        #[cfg(test)]
        let pinned = pinned.or(self.server_clock);
        let mut begin = scripts::BEGIN.script.prepare_invoke();
        for key in self.keys.for_script(scripts::BEGIN.layout, &expected) {
            begin.key(key);
        }
        begin
            .key(&lock)
            .key(self.keys.global(Global::Newest))
            .key(self.keys.global(Global::Layout))
            .key(self.keys.global(Global::Pruned))
            .key(self.keys.global(Global::Leases))
            .arg(token)
            .arg(LOCK_MS)
            .arg(pinned.map_or_else(String::new, |at| at.to_string()))
            .arg(super::FURTHEST_AHEAD_MS)
            .arg(&quota::Window::ROLLING.map(|w| w.len_ms())[..])
            .arg(super::RESERVATION_OPEN_MS)
            .arg(self.keys.of(Of::Call, ""))
            .arg(&self.expected.leases[..]);
        let mut first = redis::pipe();
        first.invoke_script(&begin);
        if access == Access::Write {
            first.cmd("WATCH").arg(&version).arg(&lock).ignore();
        }
        let replies = match first.query::<Vec<Value>>(&mut self.con) {
            // A server that has not seen the script yet (new, restarted or flushed).
            Err(err) if err.code() == Some("NOSCRIPT") => {
                // The watch that followed counts from before the lock is taken: drop it.
                redis::pipe()
                    .cmd("UNWATCH")
                    .ignore()
                    .load_script(&scripts::BEGIN.script)
                    .ignore()
                    .query::<()>(&mut self.con)
                    .map_err(|e| explain(&e, &self.place))?;
                first.query::<Vec<Value>>(&mut self.con)
            }
            replies => replies,
        };
        let mut replies = replies.map_err(|e| explain(&e, &self.place))?;
        let begun = replies.pop().unwrap_or(Value::Nil).extract_error();
        // Out of memory, a read-only replica, a missing right: said as such.
        let begun = begun.map_err(|e| explain(&e, &self.place))?;
        let found: Vec<Value> = redis::from_redis_value(begun).unwrap_or_default();
        if let [Value::Int(0)] = found[..] {
            self.wait_for_the_lock()?;
            return Ok(Ran::Locked);
        }
        type Found = (
            i64,
            i64,
            i64,
            Option<i64>,
            Option<String>,
            Option<i64>,
            Vec<Value>,
            Vec<Option<(String, Option<String>)>>,
        );
        let (_, seconds, micros, newest, layout, pruned, standings, leases): Found =
            redis::from_redis_value(Value::Array(found)).map_err(|e| {
                anyhow!(
                    "{}: does not answer as a Redis server does ({e})",
                    self.place
                )
            })?;
        let anew = layout.is_none();
        let laid_out = layout.as_deref().and_then(|l| l.parse().ok()) == Some(LAYOUT);
        if let Err(err) = self.check_layout(layout) {
            self.let_go(access);
            return Err(err);
        }
        let server = seconds * 1000 + micros / 1000;
        #[cfg(test)]
        let server = self.server_clock.unwrap_or(server);
        let clock = clock::pinned_now()?.unwrap_or(server);
        let now: Millis = super::step_time(clock, newest);
        let found = book::Found {
            newest,
            server,
            pruned,
            standings: expected
                .iter()
                .map(|&e| e.to_owned())
                .zip(standings)
                .collect(),
            leases: self.expected.leases.iter().cloned().zip(leases).collect(),
        };
        let book = book::RedisBook::new(&mut self.con, &self.keys, found);
        // An error of the server met by a read names the server like every other; what
        // the namespace holds is said with its place too.
        let result = step(&book, now).map_err(|e| match e.downcast_ref::<redis::RedisError>() {
            Some(err) => explain(err, &self.place),
            None if e.to_string().starts_with("the namespace holds") => {
                anyhow!("{}: {e}", self.place)
            }
            None => e,
        });
        let journal = book.into_journal();
        let (mut journal, newest) = match (result, access, journal) {
            (Ok(()), Access::Write, Some(journal)) => journal,
            (result, _, _) => {
                self.let_go(access);
                return result.map(|()| Ran::Done);
            }
        };
        journal.cmd("INCR").arg(&version).ignore();
        if !laid_out {
            journal
                .cmd("SET")
                .arg(self.keys.global(Global::Layout))
                .arg(LAYOUT)
                .ignore();
        }
        if let Some(newest) = newest {
            journal
                .cmd("SET")
                .arg(self.keys.global(Global::Newest))
                .arg(newest)
                .ignore();
        }
        self.release(&mut journal);
        let reply: Value = match journal.atomic().query(&mut self.con) {
            Ok(reply) => reply,
            Err(err) => {
                let err = self.why_not_written(&err);
                self.let_go(access);
                return Err(err);
            }
        };
        // EXEC answers nil when a watched key changed: the lock was lost, nothing was
        // written.
        if matches!(reply, Value::Nil) {
            return Ok(Ran::Lost);
        }
        if anew {
            // A ledger that vanished (flushed, evicted, a restart without persistence) must
            // not pass for a quiet one: its first write says it began anew.
            output::notes([format!(
                "{}: a new, empty namespace: its first use, or the server lost its keys \
                 (flushed, evicted, restarted without persistence)",
                self.place
            )]);
        }
        Ok(Ran::Done)
    }

    /// Queues the lock's release and the wake-up of the first step waiting for it.
    fn release(&self, pipe: &mut redis::Pipeline) {
        let wake = self.keys.global(Global::Wake);
        pipe.cmd("DEL")
            .arg(self.keys.global(Global::Lock))
            .ignore()
            .cmd("RPUSH")
            .arg(&wake)
            .arg(1)
            .ignore()
            .cmd("LTRIM")
            .arg(&wake)
            .arg(-1)
            .arg(-1)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&wake)
            .arg(LOCK_MS)
            .ignore();
    }

    /// Ends a step that writes nothing: lets go of its lock, unless it was lost already
    /// (the WATCH keeps this from releasing another's). A step that only read holds none.
    fn let_go(&mut self, access: Access) {
        if access == Access::Write {
            let mut pipe = redis::pipe();
            self.release(pipe.atomic());
            let _: Result<(), _> = pipe.query(&mut self.con);
        }
    }

    /// Waits on the server for a step to let go of the lock, a little while at most.
    fn wait_for_the_lock(&mut self) -> Result<()> {
        let _: Option<Value> = redis::pipe()
            .cmd("UNWATCH")
            .ignore()
            .cmd("BLPOP")
            .arg(self.keys.global(Global::Wake))
            .arg(WAKE_S)
            .query(&mut self.con)
            .map_err(|e| explain(&e, &self.place))?;
        Ok(())
    }
}

impl Ledger for RedisLedger {
    /// The server as a shared ledger needs it: its version, the round trip and its clock
    /// against ours, eviction and persistence. What the user may not read (an ACL without
    /// INFO or CONFIG) is said as such.
    fn findings(&mut self) -> Result<Vec<Finding>> {
        let place = self.place.clone();
        let mut findings = vec![Finding::fine("ledger", place.clone())];
        let info = |con: &mut Connection, section: &str| -> Option<String> {
            redis::cmd("INFO").arg(section).query::<String>(con).ok()
        };
        let field = |text: &str, name: &str| -> Option<String> {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        };
        match info(&mut self.con, "server").and_then(|t| field(&t, "redis_version")) {
            Some(version) => findings.push(Finding::fine("server", format!("Redis {version}"))),
            None => findings.push(Finding::wrong(
                "server",
                "version unknown",
                "INFO is not allowed for this user; the rest of these findings may be too",
            )),
        }
        let mut trips = Vec::new();
        for _ in 0..5 {
            let start = std::time::Instant::now();
            redis::cmd("PING")
                .query::<String>(&mut self.con)
                .map_err(|e| explain(&e, &place))?;
            trips.push(start.elapsed());
        }
        trips.sort();
        findings.push(Finding::fine(
            "round trip",
            format!("{:.2} ms (median of 5)", trips[2].as_secs_f64() * 1_000.0),
        ));
        let (seconds, micros): (i64, i64) = redis::cmd("TIME")
            .query(&mut self.con)
            .map_err(|e| explain(&e, &place))?;
        let offset = seconds * 1_000 + micros / 1_000 - clock::now()?;
        findings.push(Finding::fine(
            "clock",
            format!("the server's is {offset:+} ms from this machine's (steps use the server's)"),
        ));
        let policy: Option<Vec<String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query(&mut self.con)
            .ok();
        findings.push(match policy.as_ref().and_then(|p| p.get(1)) {
            Some(policy) if policy == "noeviction" => Finding::fine("eviction", "noeviction"),
            Some(policy) => Finding::wrong(
                "eviction",
                policy.clone(),
                "the server may evict usage when full and llm-rotate would admit too much: \
                 run it with --maxmemory-policy noeviction",
            ),
            None => Finding::wrong(
                "eviction",
                "unknown",
                "CONFIG GET is not allowed for this user: check maxmemory-policy is noeviction",
            ),
        });
        let persistence = info(&mut self.con, "persistence");
        let aof = persistence.as_deref().and_then(|t| field(t, "aof_enabled"));
        findings.push(match aof.as_deref() {
            Some("1") => Finding::fine("persistence", "append-only file"),
            Some(_) => Finding::wrong(
                "persistence",
                "no append-only file",
                "usage since the last snapshot is lost when the server restarts: run it with \
                 --appendonly yes",
            ),
            None => Finding::wrong(
                "persistence",
                "unknown",
                "INFO is not allowed for this user: check appendonly is yes",
            ),
        });
        findings.push(Finding::fine(
            "rights",
            format!(
                "a user limited to this namespace needs ~{}:* +@read +@write +@transaction \
                 +@scripting +@connection +time",
                self.keys.prefix
            ),
        ));
        Ok(findings)
    }

    fn expect(&mut self, first: &FirstRead) {
        self.expected = first.clone();
    }

    #[cfg(test)]
    fn set_server_clock(&mut self, at: Millis) {
        self.server_clock = Some(at);
    }

    fn run(&mut self, access: Access, step: &mut Step<'_>) -> Result<()> {
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let mut lost = 0;
        let token = match access {
            Access::Write => random::id(),
            Access::Read => String::new(),
        };
        loop {
            let ran = self.run_once(&token, step);
            if !matches!(ran, Ok(Ran::Locked | Ran::Lost)) {
                self.expected = FirstRead::default();
            }
            match ran? {
                Ran::Done => return Ok(()),
                Ran::Lost if lost + 1 < MOST_RUNS => lost += 1,
                Ran::Lost => bail!(
                    "{}: a step took longer than the ledger's lock lasts ({} s) {MOST_RUNS} \
                     times over; is this machine or the server overloaded?",
                    self.place,
                    LOCK_MS / 1000
                ),
                Ran::Locked if std::time::Instant::now() < deadline => {}
                Ran::Locked => bail!(
                    "{}: other processes held the ledger's lock for {} s; try again",
                    self.place,
                    LOCK_WAIT.as_secs()
                ),
            }
        }
    }
}

impl RedisLedger {
    /// Why a step's writes were refused. A server refuses a whole transaction
    /// (`EXECABORT`) for what it would have refused of one command, and does not say what;
    /// one write outside it, to a key of our own that expires at once, tells.
    fn why_not_written(&mut self, err: &redis::RedisError) -> anyhow::Error {
        if err.code() != Some("EXECABORT") {
            return explain(err, &self.place);
        }
        let probe = redis::cmd("SET")
            .arg(format!("{}:probe", self.keys.prefix))
            .arg(1)
            .arg("PX")
            .arg(1)
            .query::<()>(&mut self.con);
        match probe {
            Err(reason) => explain(&reason, &self.place),
            Ok(()) => explain(err, &self.place),
        }
    }
}

/// Says what went wrong in words that name the server and never the password.
fn explain(err: &redis::RedisError, place: &str) -> anyhow::Error {
    // A pipeline's error holds the server's errors of its commands: the first says why.
    let first: Option<redis::RedisError> = err
        .clone()
        .into_server_errors()
        .and_then(|errors| errors.first().map(|(_, e)| e.clone().into()));
    let err = first.as_ref().unwrap_or(err);
    let server = match err.code() {
        Some("OOM") => Some(
            "is out of memory and refuses writes (maxmemory with noeviction): nothing was \
             written; give it memory or free some"
                .to_owned(),
        ),
        Some("READONLY") => Some("is a read-only replica: point --db at the primary".to_owned()),
        Some("NOPERM") => Some(format!(
            "refused an ACL right: {}; the README lists the rights llm-rotate needs",
            err.detail().unwrap_or("a command or key")
        )),
        Some("LOADING") => {
            Some("is still loading its data after a restart: try again in a moment".to_owned())
        }
        _ => None,
    };
    if let Some(what) = server {
        return anyhow!("{place}: {what}; llm-rotate admits nothing without its ledger");
    }
    let what = match err.kind() {
        ErrorKind::AuthenticationFailed => "refused the user or password".to_owned(),
        ErrorKind::Io if err.is_timeout() => "did not answer in time".to_owned(),
        ErrorKind::Io if err.is_connection_refusal() => {
            "refused the connection (is it running?)".to_owned()
        }
        // The I/O error says what went wrong (a TLS certificate nobody vouches for, say);
        // it holds nothing of the URL.
        ErrorKind::Io => format!("cannot be reached ({err})"),
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => {
            "does not answer as a Redis server does".to_owned()
        }
        _ => match err.detail() {
            Some(detail) if detail.contains("NOAUTH") || detail.contains("WRONGPASS") => {
                "refused the user or password".to_owned()
            }
            _ => format!("answered with an error: {}", err.kind_text()),
        },
    };
    anyhow!("{place}: {what}; llm-rotate admits nothing without its ledger")
}

trait KindText {
    fn kind_text(&self) -> String;
}

impl KindText for redis::RedisError {
    /// The error without anything from the URL: its category, code and detail.
    fn kind_text(&self) -> String {
        match (self.code(), self.detail()) {
            (Some(code), Some(detail)) => format!("{code} {detail}"),
            (None, Some(detail)) => detail.to_owned(),
            _ => format!("{:?}", self.kind()),
        }
    }
}
