//! What only the Redis ledger has (SPEC 9): the server's clock for every machine, its
//! namespaces, its errors, and keys that expire by themselves.

use std::io::{Read, Write};
use std::net::TcpListener;

use crate::{Env, Out, T0, bin, harness};

/// The test server's port; `None` (the test is skipped) only when redis-server is missing
/// and not required.
fn port(env: &Env) -> Option<u16> {
    if !harness::installed("redis-server", "redis-server") {
        return None;
    }
    let url = env.ledger();
    let rest = url.strip_prefix("redis://127.0.0.1:");
    let port = rest.and_then(|r| r.split('/').next()?.parse().ok());
    assert!(port.is_some(), "the Redis tests run on SQLite: {url}");
    port
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("url");
    let mut con = client.get_connection().expect("connect");
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    let value: redis::Value = cmd.query(&mut con).expect("a command");
    format!("{value:?}")
}

/// `llm-rotate ARGS` with `--db URL`.
fn with_db(env: &Env, url: &str, args: &[&str]) -> Out {
    Out::from(
        env.cmd()
            .env("LLM_ROTATE_DB", url)
            .args(args)
            .output()
            .expect("run llm-rotate"),
    )
}

#[test]
fn an_unreachable_server_names_host_port_and_prefix_and_never_the_password() {
    let env = Env::with_endpoints("provider,model\np,m\n");
    let closed = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let url = format!("redis://me:hunter2@127.0.0.1:{port}/?prefix=team");
    for args in [
        &["pick"][..],
        &["state"],
        &["record", "p/m", "--add"],
        &["reset", "--all"],
        &["serve", "--listen", "127.0.0.1:0"],
        &["call", "--data", "/dev/null"],
    ] {
        let out = with_db(&env, &url, args);
        out.code(1).no_stdout().says(&[
            &format!("Redis at 127.0.0.1:{port}, prefix team"),
            "refused the connection",
            "admits nothing without its ledger",
        ]);
        assert!(!out.stderr.contains("hunter2"), "{out}");
    }
}

#[test]
fn a_wrong_password_and_a_server_that_is_not_redis_are_errors() {
    let env = Env::with_endpoints("provider,model\np,m\n");
    let Some(port) = port(&env) else { return };
    redis_cli(
        port,
        &["ACL", "SETUSER", "tester", "on", ">right", "~*", "+@all"],
    );
    let url = format!("redis://tester:wrong@127.0.0.1:{port}/?prefix=p");
    let out = with_db(&env, &url, &["pick"]);
    out.code(1).says(&["refused the user or password"]);
    assert!(!out.stderr.contains("wrong"), "{out}");
    let url = format!("redis://tester:right@127.0.0.1:{port}/?prefix=p");
    assert_eq!(with_db(&env, &url, &["pick"]).code(0).stdout, "p/m\n");

    // Something else listening on the port: it answers, but not in Redis's protocol.
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let other = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 512];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    let out = with_db(&env, &format!("redis://127.0.0.1:{other}/"), &["pick"]);
    out.code(1)
        .says(&[&format!("127.0.0.1:{other}"), "prefix llm-rotate"]);
}

#[test]
fn a_namespace_of_a_newer_layout_is_refused_and_left_alone() {
    let env = Env::with_endpoints("provider,model\np,m\n");
    let Some(port) = port(&env) else { return };
    let url = format!("redis://127.0.0.1:{port}/?prefix=future");
    redis_cli(port, &["SET", "future:layout", "3"]);
    with_db(&env, &url, &["pick"])
        .code(1)
        .says(&["newer layout (3", "prefix future"]);
    let layout = redis_cli(port, &["GET", "future:layout"]);
    assert!(layout.contains('3'), "left as it was: {layout}");
    assert_eq!(redis_cli(port, &["EXISTS", "future:version"]), "int(0)");
}

#[test]
fn prefixes_are_independent_ledgers_and_reset_all_clears_its_own() {
    let env = Env::with_endpoints("provider,model,rpm\np,m,1\n");
    let Some(port) = port(&env) else { return };
    let a = format!("redis://127.0.0.1:{port}/?prefix=iso-a");
    let b = format!("redis://127.0.0.1:{port}/?prefix=iso-b");
    with_db(&env, &a, &["pick"]).code(0);
    with_db(&env, &a, &["pick"]).code(75);
    with_db(&env, &b, &["pick"]).code(0);
    with_db(&env, &b, &["reset", "--all"]).code(0);
    with_db(&env, &b, &["pick"]).code(0);
    with_db(&env, &a, &["pick"]).code(75);
}

#[test]
fn usage_keys_expire_by_themselves() {
    let env = Env::with_endpoints("provider,model\np,m\n");
    let Some(port) = port(&env) else { return };
    env.pick(&[]);
    let prefix = env
        .ledger()
        .rsplit_once("prefix=")
        .expect("a prefix")
        .1
        .to_owned();
    for kind in ["calls", "call", "cum", "sec", "mon", "hourr", "life"] {
        let ttl = redis_cli(port, &["TTL", &format!("{prefix}:{kind}:p/m")]);
        let seconds: i64 = ttl
            .trim_start_matches("int(")
            .trim_end_matches(')')
            .parse()
            .unwrap_or_else(|_| panic!("{kind}: {ttl}"));
        assert!(seconds > 0, "{kind} has no expiry: {ttl}");
    }
}

#[test]
fn machines_whose_clocks_disagree_share_the_windows_on_the_servers_clock() {
    let env = Env::with_endpoints("provider,model,rpm\np,m,4\n");
    if port(&env).is_none() {
        return;
    }
    if !harness::installed("faketime", "faketime") {
        return;
    }
    // Three machines, ten minutes apart, on the real clock (no LLM_ROTATE_NOW), each
    // picking three times.
    let mut admitted = 0;
    for offset in ["-10m", "+0", "+10m"] {
        for _ in 0..3 {
            let out = Out::from(
                env.std_command("faketime")
                    .env_remove("LLM_ROTATE_NOW")
                    .args(["-f", offset])
                    .arg(bin())
                    .arg("--endpoints")
                    .arg(env.endpoints_file())
                    .arg("pick")
                    .output()
                    .expect("run under faketime"),
            );
            match out.status {
                Some(0) => admitted += 1,
                Some(75) => {}
                _ => panic!("{out}"),
            }
        }
    }
    assert_eq!(admitted, 4, "the minute's 4 slots, shared");
    // Every call is stamped with the server's time: within a minute of this machine's,
    // not ten minutes off.
    let real = harness::real_now_ms() - T0 * 1000;
    for stamp in env.stamps() {
        assert!((stamp - real).abs() < 60_000, "stamp {stamp} vs now {real}");
    }
}

#[test]
fn a_server_that_never_answers_is_an_error_after_one_timeout() {
    let env = Env::with_endpoints("provider,model\np,m\n");
    // It accepts connections and reads, and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let url = format!("redis://127.0.0.1:{port}/?prefix=quiet&timeout=0.2");
    for args in [&["pick"][..], &["state"], &["record", "p/m", "--add"]] {
        with_db(&env, &url, args).code(1).no_stdout().says(&[
            &format!("Redis at 127.0.0.1:{port}, prefix quiet"),
            "did not answer in time",
        ]);
    }
    let bad = format!("redis://127.0.0.1:{port}/?timeout=soon");
    with_db(&env, &bad, &["pick"])
        .code(1)
        .says(&["timeout in the Redis URL", "\"soon\""]);
}

/// A redis-server of one test's own (its settings are the test's to break); stops when
/// dropped.
struct OwnServer {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A redis-server speaking only TLS, with a certificate from a CA made for the test.
fn tls_server() -> Option<OwnServer> {
    if !harness::installed("redis-server", "redis-server")
        || !harness::installed("openssl", "openssl")
    {
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    harness::private_ca(dir.path());
    let path = |name: &str| dir.path().join(name).display().to_string();
    let files = [
        "--tls-cert-file".to_owned(),
        path("server.pem"),
        "--tls-key-file".to_owned(),
        path("server.key"),
        "--tls-ca-cert-file".to_owned(),
        path("ca.pem"),
    ];
    let args = move |port: u16| {
        [
            vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
            ],
            ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
                .map(String::from)
                .to_vec(),
            files.to_vec(),
            ["--tls-auth-clients", "no"].map(String::from).to_vec(),
        ]
        .concat()
    };
    Some(started(dir, true, args))
}

/// A plain redis-server of the test's own.
fn own_server() -> Option<OwnServer> {
    if !harness::installed("redis-server", "redis-server") {
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let args = |port: u16| {
        [
            vec!["--port".into(), port.to_string()],
            ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
                .map(String::from)
                .to_vec(),
        ]
        .concat()
    };
    Some(started(dir, false, args))
}

/// Starts redis-server with `args(port)` on a free port, in `dir`, once it listens. A port
/// found free may be taken by another test's server before this one binds it: this one
/// then exits, and another port is tried.
fn started(dir: tempfile::TempDir, tls: bool, args: impl Fn(u16) -> Vec<String>) -> OwnServer {
    for _ in 0..20 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = std::process::Command::new("redis-server")
            .args(args(port))
            .args(["--dir", &dir.path().display().to_string()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server");
        for _ in 0..2_000 {
            if child.try_wait().expect("the server's status").is_some() {
                break;
            }
            // Listening, and it is this server that bound the port, not another that had
            // it: its process id says so; over TLS, it is still running a while later.
            let ours = match tls {
                false => harness::test_server::pid_at(port).map(|pid| pid == child.id()),
                true => std::net::TcpStream::connect(("127.0.0.1", port))
                    .ok()
                    .map(|_| {
                        std::thread::sleep(std::time::Duration::from_millis(300));
                        child.try_wait().expect("the server's status").is_none()
                    }),
            };
            match ours {
                Some(true) => return OwnServer { child, port, dir },
                Some(false) => break,
                None => {}
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("redis-server did not start on any of 20 free ports");
}

#[test]
fn a_full_server_a_replica_and_a_missing_right_each_say_so() {
    let Some(server) = own_server() else { return };
    let env = Env::with_endpoints("provider,model\np,m\n");
    let url = format!("redis://127.0.0.1:{}/?prefix=team", server.port);
    assert_eq!(with_db(&env, &url, &["pick"]).code(0).stdout, "p/m\n");
    let place = format!("Redis at 127.0.0.1:{}, prefix team", server.port);
    redis_cli(server.port, &["CONFIG", "SET", "maxmemory", "1"]);
    with_db(&env, &url, &["pick"])
        .code(1)
        .no_stdout()
        .says(&[&place, "is out of memory and refuses writes"]);
    redis_cli(server.port, &["CONFIG", "SET", "maxmemory", "0"]);
    // The rights the README lists are enough; without scripting, the command is named.
    redis_cli(
        server.port,
        &[
            "ACL",
            "SETUSER",
            "rot",
            "on",
            ">pw",
            "~team:*",
            "+@read",
            "+@write",
            "+@transaction",
            "+@scripting",
            "+@connection",
            "+time",
        ],
    );
    let user = format!("redis://rot:pw@127.0.0.1:{}/?prefix=team", server.port);
    for args in [
        &["pick"][..],
        &["record", "p/m", "--add"],
        &["state"],
        &["reset", "--all"],
    ] {
        with_db(&env, &user, args).code(0);
    }
    redis_cli(server.port, &["ACL", "SETUSER", "rot", "-@scripting"]);
    with_db(&env, &user, &["pick"])
        .code(1)
        .says(&[&place, "refused an ACL right", "'evalsha'"]);
    // A replica refuses writes.
    redis_cli(server.port, &["REPLICAOF", "127.0.0.1", "1"]);
    with_db(&env, &url, &["pick"])
        .code(1)
        .says(&[&place, "is a read-only replica"]);
    redis_cli(server.port, &["REPLICAOF", "NO", "ONE"]);
}

#[test]
fn rediss_trusts_a_ca_named_in_the_url_or_by_ssl_cert_file_and_says_when_it_cannot() {
    let Some(server) = tls_server() else { return };
    let env = Env::with_endpoints("provider,model,rpm\np,m,5\n");
    let ca = server.dir.path().join("ca.pem");
    let base = format!("rediss://127.0.0.1:{}/?prefix=tls", server.port);
    // The CA in the URL: picks and state work, and share one ledger.
    let with_ca = format!("{base}&ca={}", ca.display());
    assert_eq!(with_db(&env, &with_ca, &["pick"]).code(0).stdout, "p/m\n");
    // The system's certificates, as SSL_CERT_FILE names them.
    let out = Out::from(
        env.cmd()
            .env("LLM_ROTATE_DB", &base)
            .env("SSL_CERT_FILE", &ca)
            .args(["state", "--json"])
            .output()
            .expect("run llm-rotate"),
    );
    out.code(0);
    assert_eq!(crate::json(&out.stdout)[0]["used"]["rpm"], 1, "{out}");
    // A certificate nobody vouches for is an error naming the server, not an abort.
    let out = Out::from(
        env.cmd()
            .env("LLM_ROTATE_DB", &base)
            // The system's certificates alone, which do not hold the test's CA.
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .args(["pick"])
            .output()
            .expect("run llm-rotate"),
    );
    out.code(1).no_stdout().says(&[
        &format!("Redis at 127.0.0.1:{}, prefix tls", server.port),
        // The reason follows: an unknown issuer where the system has certificates.
        "cannot be reached (",
    ]);
    // A CA file that is not there.
    with_db(&env, &format!("{base}&ca=/nonexistent/ca.pem"), &["pick"])
        .code(1)
        .says(&["cannot read the CA file /nonexistent/ca.pem"]);
}

#[test]
fn a_namespace_that_begins_anew_says_so_once_so_a_flushed_ledger_is_seen() {
    let Some(server) = own_server() else { return };
    let env = Env::with_endpoints("provider,model,rpm\np,m,5\n");
    let url = format!("redis://127.0.0.1:{}/?prefix=fleet", server.port);
    let first = with_db(&env, &url, &["pick"]);
    first
        .code(0)
        .says(&["prefix fleet: a new, empty namespace"]);
    let again = with_db(&env, &url, &["pick"]);
    again.code(0);
    assert_eq!(again.stderr, "", "{again}");
    // Reads of an empty namespace write nothing and say nothing.
    redis_cli(server.port, &["FLUSHALL"]);
    let read = with_db(&env, &url, &["state"]);
    read.code(0);
    assert_eq!(read.stderr, "", "{read}");
    // The usage vanished with the flush: the next pick says so.
    with_db(&env, &url, &["pick"]).code(0).says(&[
        "prefix fleet: a new, empty namespace",
        "the server lost its keys",
    ]);
}

#[test]
fn doctor_reports_the_server_and_what_to_change() {
    let Some(server) = own_server() else { return };
    let env = Env::with_endpoints("provider,model\np,m\n");
    let url = format!("redis://127.0.0.1:{}/?prefix=team", server.port);
    redis_cli(
        server.port,
        &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"],
    );
    let out = with_db(&env, &url, &["doctor"]);
    out.code(1);
    shows(
        &out,
        &[
            "ok server",
            "ok round trip",
            "ok clock",
            "!! eviction     allkeys-lru",
            "--maxmemory-policy noeviction",
            "!! persistence  no append-only file",
            "~team:* +@read +@write",
        ],
    );
    redis_cli(
        server.port,
        &["CONFIG", "SET", "maxmemory-policy", "noeviction"],
    );
    redis_cli(server.port, &["CONFIG", "SET", "appendonly", "yes"]);
    // The append-only file is turned on in the background; doctor reads it once on.
    let mut out = with_db(&env, &url, &["doctor"]);
    for _ in 0..200 {
        if out.stdout.contains("ok persistence") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        out = with_db(&env, &url, &["doctor"]);
    }
    out.code(0);
    shows(
        &out,
        &[
            "ok eviction     noeviction",
            "ok persistence  append-only file",
        ],
    );
}

/// `doctor` reports on stdout: every needle is in it.
#[track_caller]
fn shows(out: &Out, needles: &[&str]) {
    for needle in needles {
        assert!(
            out.stdout.contains(needle),
            "{needle:?} not in:\n{}",
            out.stdout
        );
    }
}

#[test]
fn a_lock_left_by_a_vanished_step_expires_and_every_step_lets_go_of_its_own() {
    let env = Env::with_endpoints("provider,model,rpm\np,m,3\n");
    let Some(port) = port(&env) else { return };
    let prefix = env
        .ledger()
        .rsplit_once("prefix=")
        .expect("a prefix")
        .1
        .to_owned();
    let lock = format!("{prefix}:lock");
    // A step that took the lock and vanished: its lock expires, and the picks behind it
    // wait for that rather than fail or go ahead without it.
    redis_cli(port, &["SET", &lock, "gone", "PX", "1500"]);
    let outs = env.run_at_once(4, &["pick"]);
    let admitted = outs.iter().filter(|o| o.status == Some(0)).count();
    let refused = outs.iter().filter(|o| o.status == Some(75)).count();
    assert_eq!((admitted, refused), (3, 1), "rpm 3 of 4 picks");
    // Each step let go of its lock, whether it wrote (a pick) or not (exit 75, state).
    env.ok(["state"]);
    assert_eq!(redis_cli(port, &["EXISTS", &lock]), "int(0)");
}

#[test]
fn no_step_writes_while_another_holds_the_lock() {
    let env = Env::with_endpoints("provider,model\np,m\n");
    let Some(port) = port(&env) else { return };
    let prefix = env
        .ledger()
        .rsplit_once("prefix=")
        .expect("a prefix")
        .1
        .to_owned();
    let lock = format!("{prefix}:lock");
    redis_cli(port, &["SET", &lock, "held"]);
    let picks = harness::start_all((0..3).map(|_| env.program(&["pick"])));
    // Processes contending for the lock, not the ledger's time: a real wait.
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert!(
        env.stamps().is_empty(),
        "a pick wrote while the lock was held"
    );
    redis_cli(port, &["DEL", &lock]);
    redis_cli(port, &["RPUSH", &format!("{prefix}:wake"), "1"]);
    for out in picks.outputs() {
        out.code(0);
    }
    assert_eq!(env.stamps().len(), 3);
}

#[test]
fn a_namespace_of_layout_1_reads_on_and_is_marked_2_by_its_first_write() {
    let env = Env::with_endpoints("provider,model,tpm\np,m,1000\n");
    let Some(port) = port(&env) else { return };
    let prefix = env
        .ledger()
        .rsplit_once("prefix=")
        .expect("a prefix")
        .1
        .to_owned();
    // A call of 300 tokens as layout 1 wrote it, at the pinned time: its value, its place
    // among the calls, and its minute bucket.
    let at = (T0 * 1000).to_string();
    let minute = (T0 / 60).to_string();
    redis_cli(
        port,
        &[
            "HSET",
            &format!("{prefix}:call:p/m"),
            "+old",
            &format!("{at} 1 300 0"),
        ],
    );
    redis_cli(port, &["ZADD", &format!("{prefix}:calls:p/m"), &at, "+old"]);
    redis_cli(
        port,
        &[
            "ZADD",
            &format!("{prefix}:cum:p/m"),
            &minute,
            &format!("{minute} 1 300 1 300"),
        ],
    );
    redis_cli(port, &["SADD", &format!("{prefix}:endpoints"), "p/m"]);
    assert_eq!(env.used("p/m", "itpm"), 300, "its tokens are input tokens");
    assert_eq!(env.used("p/m", "tpm"), 300);
    env.ok([
        "record",
        "p/m",
        "--add",
        "--input-tokens",
        "100",
        "--output-tokens",
        "50",
    ]);
    assert_eq!(env.used("p/m", "tpm"), 450);
    assert_eq!(env.used("p/m", "otpm"), 50);
    let layout = redis_cli(port, &["GET", &format!("{prefix}:layout")]);
    assert!(layout.contains('2'), "{layout}");
}

#[test]
fn a_server_that_has_not_seen_the_scripts_costs_a_pick_no_wasted_step() {
    let Some(server) = own_server() else { return };
    let env = Env::with_endpoints("provider,model,rpm\np,m,5\n");
    let url = format!("redis://127.0.0.1:{}/?prefix=fresh", server.port);
    with_db(&env, &url, &["pick"]).code(0);
    // A restart, a failover or SCRIPT FLUSH: the server knows no script. The pick loads
    // them and writes in one transaction; it used to lose its first one to its own lock
    // and wait for that lock to expire.
    redis_cli(server.port, &["SCRIPT", "FLUSH"]);
    let (_, stats) = counted(server.port, &env, &url, &["pick"]);
    assert_eq!(answered(&stats, "exec"), 1, "{stats}");
    assert!(!stats.contains("cmdstat_blpop"), "{stats}");
    assert_eq!(
        with_db(&env, &url, &["state", "--json"])
            .code(0)
            .stdout
            .matches("\"rpm\": 2")
            .count(),
        1
    );
}

#[test]
fn a_pick_reads_with_its_first_look_and_writes_with_its_second() {
    let Some(server) = own_server() else { return };
    let env = Env::with_endpoints("provider,model,rpm\np,a,5\np,b,5\n");
    let url = format!("redis://127.0.0.1:{}/?prefix=trips", server.port);
    with_db(&env, &url, &["pick"]).code(0);
    for args in [&["pick"][..], &["pick", "--strategy", "round-robin"]] {
        let (_, stats) = counted(server.port, &env, &url, args);
        // One script takes the lock and reads every account the choice reads first; one
        // transaction writes. Nothing else is asked of the server.
        assert_eq!(answered(&stats, "evalsha"), 1, "{args:?}: {stats}");
        assert_eq!(answered(&stats, "exec"), 1, "{args:?}: {stats}");
    }
}

/// `llm-rotate ARGS` with `--db URL`, which must succeed, and the server's `INFO
/// commandstats` for it alone.
fn counted(port: u16, env: &Env, url: &str, args: &[&str]) -> (Out, String) {
    redis_cli(port, &["CONFIG", "RESETSTAT"]);
    let out = with_db(env, url, args);
    out.code(0);
    (out, redis_cli(port, &["INFO", "commandstats"]))
}

/// How many calls of `command` the server answered, from `INFO commandstats`: one refused
/// as a script the server had not seen yet is then loaded and sent again.
fn answered(stats: &str, command: &str) -> u32 {
    let line = stats
        .split(&format!("cmdstat_{command}:"))
        .nth(1)
        .unwrap_or("");
    let field = |name: &str| {
        let rest = line.split(&format!("{name}=")).nth(1);
        rest.and_then(|r| r.split([',', '\\', '"']).next()?.parse::<u32>().ok())
            .unwrap_or(0)
    };
    field("calls") - field("failed_calls")
}

#[test]
fn a_call_is_settled_with_the_first_look_of_its_step_when_its_endpoint_is_known() {
    let Some(server) = own_server() else { return };
    let env = Env::with_endpoints("provider,model,rpm\np,a,5\n");
    let url = format!("redis://127.0.0.1:{}/?prefix=settles", server.port);
    with_db(&env, &url, &["pick"]).code(0);
    let scripts_and_transactions = |args: &[&str]| {
        let (out, stats) = counted(server.port, &env, &url, args);
        (out, answered(&stats, "evalsha"), answered(&stats, "exec"))
    };
    // exec knows the endpoint it picked: its pick and its settling are one first look
    // and one transaction each; the lease is read by the settling's first look.
    let usage = r#"echo '{"usage":{"prompt_tokens":5,"completion_tokens":7}}'"#;
    let (_, looks, writes) = scripts_and_transactions(&["exec", "--", "sh", "-c", usage]);
    assert_eq!((looks, writes), (2, 2));
    // A lease alone names its endpoint only once it is read: one more look, for its account.
    let (picked, _, _) = scripts_and_transactions(&["pick", "--format", "json"]);
    let picked: serde_json::Value = serde_json::from_str(&picked.stdout).expect("json");
    let lease = picked["lease"].as_str().expect("a lease").to_owned();
    let record = ["record", "--lease", &lease, "--tokens", "3"];
    let (_, looks, writes) = scripts_and_transactions(&record);
    assert_eq!((looks, writes), (2, 1));
    // Both settled at what was said: 5 in and 7 out, then 3.
    let state = with_db(&env, &url, &["state", "--format", "json"]);
    let state: serde_json::Value = serde_json::from_str(&state.stdout).expect("json");
    assert_eq!(state[0]["used"]["tpm"], 15, "{state}");
    assert_eq!(state[0]["used"]["rpm"], 3, "{state}");
}

#[test]
fn a_bucket_another_program_wrote_is_an_error_naming_the_place_and_nothing_is_written() {
    let Some(server) = own_server() else { return };
    let env = Env::with_endpoints("provider,model,rpm\np,m,5\n");
    let url = format!("redis://127.0.0.1:{}/?prefix=odd", server.port);
    with_db(&env, &url, &["pick"]).code(0);
    let junk = format!("{} {}", i64::MAX, "x".repeat(100_000));
    redis_cli(server.port, &["ZADD", "odd:cum:p/m", "99999999999", &junk]);
    let before = redis_cli(server.port, &["ZCARD", "odd:calls:p/m"]);
    let out = with_db(&env, &url, &["pick"]);
    out.code(1).no_stdout().says(&[
        &format!("Redis at 127.0.0.1:{}, prefix odd", server.port),
        "a usage bucket that is not llm-rotate's",
    ]);
    // Quoted by its start, on one line.
    assert!(out.stderr.len() < 600, "{out}");
    assert_eq!(redis_cli(server.port, &["ZCARD", "odd:calls:p/m"]), before);
    // A reset of the endpoint clears it.
    with_db(&env, &url, &["reset", "p/m"]).code(0);
    with_db(&env, &url, &["pick"]).code(0);
}
