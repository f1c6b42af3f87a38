//! Exit codes and streams (SPEC 4 and 5): usage errors are 2, bad environment is 1, help
//! and version are 0, and a closed stdout ends quietly with 0.

use std::process::Stdio;

use crate::{Env, Out, bin};

const ONE: &str = "provider,model\np,m\n";

#[test]
fn bad_flags_and_values_on_the_command_line_are_usage_errors() {
    let env = Env::with_endpoints(ONE);
    for args in [
        &["pick", "--bogus"][..],
        &["--bogus"],
        &["frobnicate"],
        &[],
        &["pick", "--tokens", "abc"],
        &["pick", "--tokens", "-5"],
        &["pick", "--tokens", "1.5"],
        &["pick", "--tokens", "99999999999999999999"],
        &["pick", "--tokens"],
        &["pick", "--format", "yaml"],
        &["state", "--format", "xml"],
        &["record", "p/m", "--tokens", "many"],
        &["record", "p/m", "--requests", "x"],
        &["record", "p/m", "--add", "--lease", "abc"],
        &["completions", "tcsh"],
        &["completions"],
    ] {
        let out = env.run(args);
        assert_eq!(out.status, Some(2), "{args:?}\n{out}");
        assert_eq!(out.stdout, "", "{args:?}\n{out}");
        assert!(!out.stderr.is_empty(), "{args:?}\n{out}");
    }
    // None of them reserved anything.
    assert_eq!(env.used("p/m", "rpm"), 0);
}

#[test]
fn a_bad_clock_variable_is_an_error_not_a_usage_error() {
    let env = Env::with_endpoints(ONE);
    for bad in ["tomorrow", "1767225600s", "2026-13-01T00:00:00Z"] {
        for args in [&["pick"][..], &["state"], &["record", "p/m"]] {
            let out = Out::from(
                env.cmd()
                    .env("LLM_ROTATE_NOW", bad)
                    .args(args)
                    .output()
                    .expect("run llm-rotate"),
            );
            out.code(1)
                .no_stdout()
                .says(&["llm-rotate: ", "LLM_ROTATE_NOW"]);
        }
    }
}

#[test]
fn help_and_version_exit_0_on_stdout() {
    let env = Env::new();
    for args in [
        &["--help"][..],
        &["-h"],
        &["help"],
        &["pick", "--help"],
        &["record", "--help"],
        &["state", "--help"],
        &["reset", "--help"],
        &["completions", "--help"],
    ] {
        let out = env.run(args);
        out.code(0);
        assert!(out.stdout.contains("Usage"), "{args:?}\n{out}");
        assert_eq!(out.stderr, "", "{args:?}\n{out}");
    }
    for flag in ["--version", "-V"] {
        let out = env.run([flag]);
        out.code(0);
        assert_eq!(
            out.stdout,
            format!("llm-rotate {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
    // Neither needs, nor creates, a database or an endpoints file.
    assert!(!env.db().exists());
}

/// Runs `llm-rotate ARGS` with its stdout a pipe whose reader is gone before it writes.
fn into_a_closed_pipe(env: &Env, args: &[&str]) -> Out {
    let mut cmd = env.std_command(bin());
    cmd.arg("--endpoints")
        .arg(env.endpoints_file())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start llm-rotate");
    drop(child.stdout.take());
    Out::from(child.wait_with_output().expect("wait for llm-rotate"))
}

#[test]
fn a_closed_stdout_ends_quietly_with_0() {
    // Enough endpoints that `state` writes more than a pipe holds: the write must fail.
    let mut text = String::from("provider,model,rpm,tpm,rph,tph,rpd,tpd\n");
    for i in 0..400 {
        text.push_str(&format!("provider{i},model-{i},1,2,3,4,5,6\n"));
    }
    let env = Env::with_endpoints(&text);
    for args in [
        &["state", "--format", "json"][..],
        &["state", "--format", "csv"],
        &["state"],
        &["completions", "bash"],
        &["completions", "zsh"],
        &["pick"],
        &["pick", "--format", "json"],
        &["pick", "--format", "shell"],
        &["--help"],
    ] {
        let out = into_a_closed_pipe(&env, args);
        assert_eq!(out.status, Some(0), "{args:?}\n{out}");
        assert_eq!(
            out.stderr, "",
            "{args:?}: nothing to say about a closed pipe\n{out}"
        );
    }
    // The picks were made all the same.
    assert_eq!(env.used("provider0/model-0", "rpm"), 1);
    assert_eq!(env.used("provider1/model-1", "rpm"), 1);
    assert_eq!(env.used("provider2/model-2", "rpm"), 1);
}

#[test]
fn messages_go_to_stderr_with_the_program_name() {
    let env = Env::with_endpoints("provider,model,rpm\np,m,1\n");
    let out = env.run(["pick"]);
    out.code(0);
    assert_eq!(out.stdout, "p/m\n");
    assert_eq!(out.stderr, "", "{out}");
    let out = env.fails(["pick"], 75);
    out.no_stdout();
    for line in out.stderr.lines() {
        assert!(line.starts_with("llm-rotate: "), "{out}");
    }
}

#[test]
fn init_writes_the_example_where_endpoints_are_looked_for_and_never_overwrites() {
    let env = Env::new();
    // Nothing yet: the error says how to start.
    env.fails(["state"], 1)
        .says(&["`llm-rotate init` writes an example"]);
    let out = env.run(["init"]);
    out.code(0)
        .no_stdout()
        .says(&["wrote the example endpoints file to"]);
    let written = env.path("llm-rotate/endpoints.csv");
    let example = include_str!("../../endpoints.example.csv");
    assert_eq!(std::fs::read_to_string(&written).expect("written"), example);
    // The file is in use at once.
    let rows = env.state();
    assert_eq!(
        rows.len(),
        example.lines().filter(|l| l.contains(",http")).count()
    );
    // A second init leaves the user's edits alone; --force replaces them.
    std::fs::write(&written, "provider,model\nmine,m\n").expect("edit");
    env.fails(["init"], 1)
        .says(&["already exists; left as it is"]);
    assert_eq!(
        std::fs::read_to_string(&written).expect("kept"),
        "provider,model\nmine,m\n"
    );
    env.ok(["init", "--force"]);
    assert_eq!(
        std::fs::read_to_string(&written).expect("replaced"),
        example
    );
    // --output and --endpoints name the file; folders are created.
    env.ok(["init", "--output", "a/b/e.csv"]);
    assert!(env.path("a/b/e.csv").is_file());
    env.fails(["--endpoints", "c/e.csv", "state"], 1).says(&[
        "no endpoints file at c/e.csv",
        "llm-rotate --endpoints c/e.csv init",
    ]);
    env.ok(["--endpoints", "c/e.csv", "init"]);
    assert!(env.path("c/e.csv").is_file());
}
