//! Watching quota (SPEC 11): Prometheus metrics written atomically, CSV readings a cron job
//! can append, colour only where asked, and a table that fits 80 columns.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use std::process::Stdio;

use crate::{Env, Out};

const TWO: &str = "provider,model,rpm,tpm,pool,pool_rpd\np,a,5,100,shared,40\np,b,,,shared,\n";

/// The samples of a Prometheus text, by `name{labels}`.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("a sample line");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

fn series(name: &str, endpoint: &str, window: Option<&str>) -> String {
    let model = endpoint.trim_start_matches("p/");
    match window {
        Some(w) => {
            format!(r#"{name}{{endpoint="{endpoint}",provider="p",model="{model}",window="{w}"}}"#)
        }
        None => format!(r#"{name}{{endpoint="{endpoint}",provider="p",model="{model}"}}"#),
    }
}

#[test]
fn prometheus_metrics_hold_every_family_and_counters_survive_pruning() {
    let env = Env::with_endpoints(TWO);
    env.pick(&["--only", "p/a", "--tokens", "60"]);
    env.ok(["record", "p/a", "--tokens", "40"]);
    env.pick(&["--only", "p/a", "--tokens", "30"]);
    env.ok(["record", "p/b", "--rate-limited", "--retry-after", "90"]);
    env.ok(["record", "p/b", "--add", "--failed"]);
    env.set_time(10_000);
    let text = env.ok(["state", "--format", "prometheus"]);
    let m = samples(&text);
    let get = |name: &str, ep: &str, w: Option<&str>| {
        *m.get(&series(name, ep, w))
            .unwrap_or_else(|| panic!("no {name} for {ep} {w:?}:\n{text}"))
    };
    assert_eq!(get("llm_rotate_requests_used", "p/a", Some("minute")), 2.0);
    assert_eq!(get("llm_rotate_tokens_used", "p/a", Some("minute")), 70.0);
    assert_eq!(get("llm_rotate_requests_limit", "p/a", Some("minute")), 5.0);
    assert!(
        !m.contains_key(&series("llm_rotate_requests_limit", "p/a", Some("hour"))),
        "only limited windows"
    );
    assert_eq!(get("llm_rotate_available", "p/a", None), 1.0);
    assert_eq!(get("llm_rotate_frees_in_seconds", "p/a", None), 0.0);
    assert_eq!(get("llm_rotate_open_reservations", "p/a", None), 1.0);
    assert_eq!(get("llm_rotate_available", "p/b", None), 0.0);
    assert_eq!(get("llm_rotate_cooldown_seconds_left", "p/b", None), 80.0);
    assert_eq!(get("llm_rotate_frees_in_seconds", "p/b", None), 80.0);
    // Counters count what is final: the open reservation's 30 tokens are not in yet.
    assert_eq!(get("llm_rotate_requests_total", "p/a", None), 2.0);
    assert_eq!(get("llm_rotate_tokens_total", "p/a", None), 40.0);
    assert_eq!(get("llm_rotate_rate_limited_total", "p/b", None), 1.0);
    assert_eq!(get("llm_rotate_failed_total", "p/b", None), 1.0);
    assert_eq!(
        m[r#"llm_rotate_pool_requests_used{pool="shared",window="day"}"#],
        4.0
    );
    assert_eq!(
        m[r#"llm_rotate_pool_requests_limit{pool="shared",window="day"}"#],
        40.0
    );
    for family in ["requests_used", "requests_total", "tokens_total"] {
        let name = format!("llm_rotate_{family}");
        assert!(text.contains(&format!("# TYPE {name} ")), "{name}:\n{text}");
    }
    assert!(
        text.contains("# TYPE llm_rotate_requests_total counter"),
        "{text}"
    );

    // Two days on, the calls are pruned from the windows, not from the counters; the
    // reservation left open now counts at its estimate.
    env.set_time(2 * 86_400_000);
    env.ok(["record", "p/b", "--add"]);
    let m = samples(&env.ok(["state", "--format", "prometheus"]));
    assert_eq!(
        m[&series("llm_rotate_requests_used", "p/a", Some("day"))],
        0.0
    );
    assert_eq!(m[&series("llm_rotate_requests_total", "p/a", None)], 2.0);
    assert_eq!(m[&series("llm_rotate_tokens_total", "p/a", None)], 70.0);
    env.ok(["reset", "p/a"]);
    let m = samples(&env.ok(["state", "--format", "prometheus"]));
    assert_eq!(m[&series("llm_rotate_requests_total", "p/a", None)], 0.0);
}

#[test]
fn label_values_are_escaped() {
    let env = Env::with_endpoints("provider,model,id\np,m,\"say \"\"hi\"\" \\ there\"\n");
    let text = env.ok(["state", "--format", "prometheus"]);
    assert!(text.contains(r#"endpoint="say \"hi\" \\ there""#), "{text}");
}

#[test]
fn promtool_accepts_the_metrics_when_it_is_installed() {
    if !crate::harness::installed("promtool", "prometheus") {
        return;
    }
    let env = Env::with_endpoints(TWO);
    env.pick(&[]);
    let file = env.path("llm.prom");
    env.ok([
        "state",
        "--format",
        "prometheus",
        "--output",
        file.to_str().expect("utf-8"),
    ]);
    let out = Out::from(
        std::process::Command::new("sh")
            .arg("-c")
            .arg("promtool check metrics < \"$1\"")
            .arg("sh")
            .arg(&file)
            .output()
            .expect("run promtool"),
    );
    out.code(0);
}

#[test]
fn output_replaces_the_file_at_once_with_a_new_files_permissions() {
    let env = Env::with_endpoints(TWO);
    let file = env.path("metrics/llm.prom");
    std::fs::create_dir_all(file.parent().expect("a folder")).expect("mkdir");
    std::fs::write(&file, "old").expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = env.ok([
        "state",
        "--format",
        "prometheus",
        "--output",
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(out, "", "nothing on stdout");
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(text.starts_with("# HELP"), "{text}");
    let mode = std::fs::metadata(&file).expect("stat").permissions().mode() & 0o777;
    let mask = Out::from(
        std::process::Command::new("sh")
            .args(["-c", "umask"])
            .output()
            .expect("umask"),
    );
    let umask = u32::from_str_radix(mask.stdout.trim(), 8).expect("octal");
    assert_eq!(mode, 0o666 & !umask, "mode {mode:o}");
    let left: Vec<_> = std::fs::read_dir(file.parent().expect("a folder"))
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left.len(), 1, "no temporary file left: {left:?}");
    // A folder that does not exist is an error, and nothing is written.
    env.fails(["state", "--output", "missing/llm.prom"], 1)
        .says(&["cannot write missing/llm.prom"]);
}

#[test]
fn csv_readings_append_to_one_file() {
    let env = Env::with_endpoints(TWO);
    let first = env.ok(["state", "--format", "csv"]);
    env.set_time(900_000);
    let more = env.ok(["state", "--format", "csv", "--no-header"]);
    assert_eq!(first.lines().count(), 3);
    assert_eq!(more.lines().count(), 2);
    assert!(first.starts_with("at,id,"), "{first}");
    assert!(more.starts_with("2026-01-01T00:15:00.000Z,p/a,"), "{more}");
}

#[test]
fn colour_only_in_tables_and_only_when_asked() {
    let env = Env::with_endpoints(TWO);
    let escape = '\u{1b}';
    assert!(!env.ok(["state"]).contains(escape), "not a terminal");
    assert!(env.ok(["--color", "always", "state"]).contains(escape));
    assert!(!env.ok(["state", "--color", "never"]).contains(escape));
    for format in ["json", "csv", "prometheus"] {
        let text = env.ok(["--color", "always", "state", "--format", format]);
        assert!(!text.contains(escape), "{format}");
    }
    env.fails(["--color", "sometimes", "state"], 2);
}

#[test]
fn the_table_fits_80_columns_and_a_full_token_window_is_not_plain_ready() {
    let env = Env::with_endpoints(
        "provider,model,priority,rpm,tpm,rph,tph,rpd,tpd,pool,pool_rpm,base_url\n\
         openrouter,meta-llama/llama-3.3-70b-instruct:free,low,20,100,1000,1m,50,2m,or-free,20,x\n\
         groq,llama-3.1-8b-instant,high,30,6k,1000,1m,14400,500k,,,y\n",
    );
    env.pick(&["--only", "openrouter/*", "--tokens", "100"]);
    let table = Out::from(
        env.cmd()
            .env("COLUMNS", "80")
            .arg("state")
            .output()
            .expect("run state"),
    );
    table.code(0);
    for line in table.stdout.lines() {
        assert!(
            line.chars().count() <= 80,
            "{} columns:\n{}",
            line.chars().count(),
            table.stdout
        );
    }
    // The status wraps in its cell: "ready, but tpm is full".
    assert!(
        table.stdout.contains("ready, but tpm is"),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("fullest"),
        "the windows fold into one column:\n{}",
        table.stdout
    );
    // Wide enough, every window has its column.
    let wide = Out::from(
        env.cmd()
            .env("COLUMNS", "200")
            .arg("state")
            .output()
            .expect("run"),
    );
    assert!(
        wide.stdout.contains("tph") && wide.stdout.contains("priority"),
        "{}",
        wide.stdout
    );
}

#[test]
fn output_to_a_fifo_writes_into_it_and_leaves_it_a_fifo() {
    use std::io::Read as _;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let env = Env::with_endpoints(TWO);
    let fifo = env.path("metrics.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    // Held open for reading and writing, the FIFO takes the output without a reader
    // waiting, and this end reads it afterwards without blocking.
    let mut end = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open the fifo");
    env.ok([
        "state",
        "--format",
        "prometheus",
        "--output",
        fifo.to_str().expect("utf-8"),
    ]);
    let kind = std::fs::symlink_metadata(&fifo)
        .expect("still there")
        .file_type();
    assert!(kind.is_fifo(), "replaced by {kind:?}");
    let mut text = String::new();
    let _ = end.read_to_string(&mut text);
    assert!(text.contains("llm_rotate_requests_used"), "{text}");
    let strays: Vec<_> = std::fs::read_dir(env.dir())
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(strays.is_empty(), "{strays:?}");
}

#[test]
fn devices_are_written_in_place_and_exec_never_reads_one() {
    // Devices are made only on a tmpfs in a private mount namespace, never in the real
    // /dev; that needs root, which CI has.
    let env = Env::with_endpoints(TWO);
    let private = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .stderr(Stdio::null())
        .status();
    if !private.is_ok_and(|s| s.success()) {
        eprintln!("note: no private mount namespace (root and unshare are needed); skipped");
        return;
    }
    let dev = env.path("dev");
    std::fs::create_dir(&dev).expect("mkdir");
    let script = r#"set -e
mount -t tmpfs none "$DEV"
mknod "$DEV/null" c 1 3
"$BIN" --endpoints "$EP" state --format prometheus --output "$DEV/null"
stat -c %F "$DEV/null"
timeout 20 "$BIN" --endpoints "$EP" exec --tokens 50 -- sh -c \
  'mknod "$LLM_ROTATE_USAGE" c 1 5; mknod "$LLM_ROTATE_HEADERS" c 1 5; echo done'
"#;
    let out = env
        .std_command("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("DEV", &dev)
        .env("BIN", crate::bin())
        .env("EP", env.endpoints_file())
        .output()
        .expect("run unshare");
    let out = Out::from(out);
    out.code(0);
    assert_eq!(out.stdout, "character special file\ndone\n", "{out}");
    assert_eq!(out.stderr, "", "no note: a device is not read");
    assert_eq!(env.used("p/a", "tpm"), 50, "the estimate stands");
}
