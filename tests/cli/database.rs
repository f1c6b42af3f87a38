//! The ledger file (SPEC 3): created private, with its folders, where the user expects it;
//! a file that is not a usable ledger is an error that names it and leaves it untouched.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::{Env, Out};

const ONE: &str = "provider,model,rpm\np,m,5\n";

/// Every subcommand that opens the database, run against `db`: each must exit 1, name the
/// path on stderr and print nothing on stdout.
#[track_caller]
fn every_command_refuses(env: &Env, db: &Path, needle: &str) {
    let db = db.to_str().expect("a UTF-8 path");
    for args in [
        &["pick"][..],
        &["pick", "--dry-run"],
        &["state"],
        &["record", "p/m", "--add", "--tokens", "1"],
        &["reset", "--all"],
    ] {
        let out = Out::from(
            env.cmd()
                .arg("--db")
                .arg(db)
                .args(args)
                .output()
                .expect("run llm-rotate"),
        );
        out.code(1).no_stdout().says(&["llm-rotate: ", needle]);
        assert!(!out.stderr.contains("panicked"), "{out}");
    }
}

/// Bytes that are certainly not an SQLite file, the same on every run.
fn junk(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn a_file_of_random_bytes_is_an_error_and_is_left_as_it_was() {
    let env = Env::with_endpoints(ONE);
    let bytes = junk(8192);
    let db = env.write("junk.db", &bytes);
    every_command_refuses(&env, &db, &db.display().to_string());
    assert_eq!(std::fs::read(&db).expect("read junk.db"), bytes, "changed");
}

#[test]
fn a_database_folder_that_cannot_be_created_is_an_error_naming_it() {
    let env = Env::with_endpoints(ONE);
    // A regular file where a folder should be: root cannot get past that either.
    env.write("blocker", "not a folder");
    let db = env.path("blocker/sub/usage.sqlite3");
    let folder = env.path("blocker/sub");
    every_command_refuses(&env, &db, &folder.display().to_string());
    assert_eq!(
        std::fs::read_to_string(env.path("blocker")).expect("read blocker"),
        "not a folder"
    );
}

#[test]
fn another_programs_sqlite_file_is_an_error_and_is_left_as_it_was() {
    let env = Env::with_endpoints(ONE);
    let db = env.path("other.sqlite3");
    {
        let conn = rusqlite::Connection::open(&db).expect("create another program's database");
        conn.execute_batch(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
             INSERT INTO notes (body) VALUES ('keep me');",
        )
        .expect("fill it");
    }
    let before = std::fs::read(&db).expect("read it");
    every_command_refuses(&env, &db, &db.display().to_string());
    assert_eq!(
        std::fs::read(&db).expect("read it again"),
        before,
        "changed"
    );
}

#[test]
fn a_ledger_from_a_newer_version_is_an_error_and_is_left_as_it_was() {
    let env = Env::with_endpoints(ONE);
    env.pick(&[]);
    {
        let conn = rusqlite::Connection::open(env.db()).expect("open the ledger");
        conn.pragma_update(None, "user_version", 999)
            .expect("pretend a newer schema");
    }
    let before = std::fs::read(env.db()).expect("read the ledger");
    every_command_refuses(&env, &env.db(), &env.db().display().to_string());
    assert_eq!(
        std::fs::read(env.db()).expect("read it again"),
        before,
        "changed"
    );
}

#[test]
fn the_database_is_created_with_its_folders_and_mode_0600() {
    let env = Env::with_endpoints(ONE);
    let db = env.path("deep/er/usage.sqlite3");
    let out = Out::from(
        env.cmd()
            .arg("--db")
            .arg(&db)
            .arg("pick")
            .output()
            .expect("run llm-rotate"),
    );
    out.code(0);
    let mode = std::fs::metadata(&db)
        .expect("the database exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    // Its companions hold the same data, so they must be as private.
    for suffix in ["-wal", "-shm", "-journal"] {
        let companion = db.with_file_name(format!("usage.sqlite3{suffix}"));
        if let Ok(meta) = std::fs::metadata(&companion) {
            let mode = meta.permissions().mode();
            assert_eq!(mode & 0o077, 0, "{}: mode {mode:o}", companion.display());
        }
    }
}

#[test]
fn without_db_or_variable_the_ledger_lives_in_the_user_cache_folder() {
    let env = Env::with_endpoints(ONE);
    let out = Out::from(
        env.cmd()
            .env_remove("LLM_ROTATE_DB")
            .arg("pick")
            .output()
            .expect("run llm-rotate"),
    );
    out.code(0);
    let db = env.path("llm-rotate/usage.sqlite3");
    let mode = std::fs::metadata(&db)
        .unwrap_or_else(|e| panic!("{}: {e}", db.display()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    assert!(
        !env.db().exists(),
        "LLM_ROTATE_DB was removed; nothing goes there"
    );

    // --db wins over LLM_ROTATE_DB.
    let flag_db = env.path("flag.sqlite3");
    Out::from(
        env.cmd()
            .arg("--db")
            .arg(&flag_db)
            .arg("pick")
            .output()
            .expect("run llm-rotate"),
    )
    .code(0);
    assert!(flag_db.exists());
    assert!(!env.db().exists());
}

#[test]
fn usage_survives_between_runs_and_endpoints_files() {
    let env = Env::new();
    env.write("one.csv", "provider,model,rpm\np,m,1\n");
    // Another file with the same id and another limit shares the usage.
    env.write("other.csv", "provider,model,rpm\np,m,2\nq,n,\n");
    assert_eq!(env.ok(["--endpoints", "one.csv", "pick"]), "p/m\n");
    env.fails(["--endpoints", "one.csv", "pick"], 75);
    let state = crate::json(&env.ok(["--endpoints", "other.csv", "state", "--format", "json"]));
    assert_eq!(state[0]["used"]["rpm"], 1, "{state}");
    assert_eq!(state[0]["limits"]["rpm"], 2, "{state}");
    assert_eq!(env.ok(["--endpoints", "other.csv", "pick"]), "p/m\n");
    assert_eq!(env.ok(["--endpoints", "other.csv", "pick"]), "q/n\n");
}

#[test]
fn a_database_truncated_to_a_few_bytes_is_refused_not_replaced() {
    let env = Env::with_endpoints(ONE);
    env.ok(["record", "p/m", "--add"]);
    for len in [1, 15, 99] {
        let whole = std::fs::read(env.db()).expect("read the ledger");
        let db = env.write(&format!("cut-{len}.sqlite3"), &whole[..len]);
        every_command_refuses(&env, &db, "move it aside");
        assert_eq!(std::fs::read(&db).expect("read").len(), len, "changed");
    }
}

#[test]
fn sums_too_large_to_store_saturate_and_leave_the_ledger_readable() {
    let env = Env::with_endpoints("provider,model\np,m\n");
    let most = i64::MAX.to_string();
    env.pick(&["--tokens", &most]);
    env.pick(&["--tokens", &most]);
    let row = env.state_of("p/m");
    assert_eq!(row["used"]["rpm"], 2, "{row}");
    assert!(crate::num(&row["used"]["tpm"]) >= i64::MAX as f64, "{row}");
    env.ok(["state"]);
    // One more than SQLite can store is refused on the command line.
    env.fails(["pick", "--tokens", "9223372036854775808"], 2)
        .says(&["too large"]);
}

#[test]
fn variables_set_but_empty_count_as_unset() {
    let env = Env::with_endpoints(ONE);
    let out = Out::from(
        env.cmd()
            .env("LLM_ROTATE_DB", "")
            .env("LLM_ROTATE_NOW", "")
            .arg("pick")
            .output()
            .expect("run llm-rotate"),
    );
    out.code(0);
    assert!(env.path("llm-rotate/usage.sqlite3").exists(), "{out}");

    let out = Out::from(
        env.std_command(crate::bin())
            .env("LLM_ROTATE_ENDPOINTS", "")
            .arg("state")
            .output()
            .expect("run llm-rotate"),
    );
    out.code(1)
        .says(&["no endpoints file", "LLM_ROTATE_ENDPOINTS (not set)"]);
}

#[test]
fn ids_read_back_from_the_ledger_reach_the_terminal_escaped() {
    let env = Env::with_endpoints("provider,model\np,m\n");
    env.ok(["record", "p/m", "--add"]);
    // A ledger another program (or a tampered shared one) wrote an id into.
    let conn = rusqlite::Connection::open(env.db()).expect("open the ledger");
    conn.execute(
        "INSERT INTO hourly (endpoint, hour, requests, tokens) SELECT ?1, hour, 1, 0 FROM hourly",
        ["evil\u{1b}[2J"],
    )
    .expect("insert");
    conn.execute(
        "INSERT INTO counters (endpoint, requests) VALUES (?1, 1)",
        ["evil\u{1b}[2J"],
    )
    .expect("insert");
    drop(conn);
    let text = env.ok(["history", "--format", "csv"]);
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert!(text.contains("evil\\u{1b}[2J"), "{text:?}");
    let out = env.run(["reset", "--all"]);
    out.code(0);
    assert!(!out.stderr.contains('\u{1b}'), "{:?}", out.stderr);
    assert!(out.stderr.contains("evil\\u{1b}[2J"), "{:?}", out.stderr);
}

#[test]
fn doctor_reports_the_file_and_the_endpoints() {
    let env = Env::with_endpoints("provider,model\np,a\np,b\n");
    env.ok(["pick"]);
    let out = env.run(["doctor"]);
    out.code(0);
    shows(
        &out,
        &[
            "ok endpoints  2 rows in",
            "ok ledger     SQLite file",
            "ok schema     6 of 6",
            "ok journal    write-ahead log",
        ],
    );
    // A broken endpoints file is a finding, and the exit status says something needs doing.
    env.write("endpoints.csv", "provider\np\n");
    let broken = env.run(["doctor"]);
    broken.code(1);
    shows(&broken, &["!! endpoints  not usable", "no model column"]);
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
