//! The endpoints file (SPEC 2): CSV and Markdown, the forgiving parts, the errors with
//! `FILE:LINE: column NAME: "VALUE"`, and where the file is looked for.

use serde_json::{Value, json};

use crate::{Env, assert_json, json};

/// `limits` of every endpoint in `state --format json`, keyed by id, in file order.
fn ids_and_limits(env: &Env) -> Vec<(String, Value)> {
    env.state()
        .into_iter()
        .map(|row| {
            (
                row["id"].as_str().expect("id").to_string(),
                row["limits"].clone(),
            )
        })
        .collect()
}

fn limits(rpm: Value, tpm: Value, rph: Value, tph: Value, rpd: Value, tpd: Value) -> Value {
    let mut all = json!({"rpm": rpm, "tpm": tpm, "rph": rph, "tph": tph, "rpd": rpd, "tpd": tpd});
    // The limits by kind, by month and of money, none set by these files.
    for name in [
        "itpm", "itph", "itpd", "otpm", "otph", "otpd", "rpmo", "tpmo", "usd_pd", "usd_pmo",
    ] {
        all[name] = Value::Null;
    }
    all
}

#[test]
fn a_markdown_pipe_table_loads() {
    let env = Env::with_endpoints(
        "# Markdown table of endpoints\n\
         \n\
         | Provider | model | rpm | tpm | rpd | priority |\n\
         |:---|---|---:|:---:|---|---|\n\
         | groq | llama-3.1-8b-instant | 30 | 6k | 14_400 | low |\n\
         |openai|gpt-4o-mini|500|200k| | high |\n\
         | cerebras | llama3.1-8b | 30 | 1m |\n",
    );
    let got = ids_and_limits(&env);
    let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "groq/llama-3.1-8b-instant",
            "openai/gpt-4o-mini",
            "cerebras/llama3.1-8b"
        ]
    );
    let null = Value::Null;
    assert_json(
        &got[0].1,
        &limits(
            json!(30),
            json!(6000),
            null.clone(),
            null.clone(),
            json!(14400),
            null.clone(),
        ),
    );
    assert_json(
        &got[1].1,
        &limits(
            json!(500),
            json!(200_000),
            null.clone(),
            null.clone(),
            null.clone(),
            null.clone(),
        ),
    );
    assert_json(
        &got[2].1,
        &limits(
            json!(30),
            json!(1_000_000),
            null.clone(),
            null.clone(),
            null.clone(),
            null,
        ),
    );
    let state = env.state();
    assert_eq!(state[0]["model"], "llama-3.1-8b-instant");
    assert_eq!(state[0]["priority"], 1);
    assert_eq!(state[1]["priority"], 3);
    assert_eq!(state[2]["priority"], 2);
    assert_eq!(env.pick(&[]), "openai/gpt-4o-mini");
}

#[test]
fn bom_crlf_comments_blank_lines_spaces_short_rows_and_suffixes_load() {
    let text = "\u{feff}# endpoints for the test\r\n\
                \r\n\
                \x20 Provider , MODEL ,rpm, tpm ,rph , tpd ,id\r\n\
                # a comment between rows\r\n\
                groq , llama-3.1-8b-instant , 60k , 1_000 , 1m , 2m ,\r\n\
                \r\n\
                openrouter,meta-llama/llama-3.3-70b-instruct:free,20\r\n\
                vertex, claude-3-5-sonnet@20240620 ,,,,,claude\r\n\
                ollama,qwen2.5:7b@local,1_000_000,,,,\r\n";
    let env = Env::with_endpoints(text);
    let state = env.state();
    let got: Vec<(&str, &str, &str)> = state
        .iter()
        .map(|r| {
            (
                r["id"].as_str().expect("id"),
                r["provider"].as_str().expect("provider"),
                r["model"].as_str().expect("model"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("groq/llama-3.1-8b-instant", "groq", "llama-3.1-8b-instant"),
            (
                "openrouter/meta-llama/llama-3.3-70b-instruct:free",
                "openrouter",
                "meta-llama/llama-3.3-70b-instruct:free"
            ),
            ("claude", "vertex", "claude-3-5-sonnet@20240620"),
            ("ollama/qwen2.5:7b@local", "ollama", "qwen2.5:7b@local"),
        ]
    );
    let null = Value::Null;
    assert_json(
        &state[0]["limits"],
        &limits(
            json!(60_000),
            json!(1_000),
            json!(1_000_000),
            null.clone(),
            null.clone(),
            json!(2_000_000),
        ),
    );
    assert_json(
        &state[1]["limits"],
        &limits(
            json!(20),
            null.clone(),
            null.clone(),
            null.clone(),
            null.clone(),
            null.clone(),
        ),
    );
    assert_json(
        &state[2]["limits"],
        &limits(
            null.clone(),
            null.clone(),
            null.clone(),
            null.clone(),
            null.clone(),
            null.clone(),
        ),
    );
    assert_json(
        &state[3]["limits"],
        &limits(
            json!(1_000_000),
            null.clone(),
            null.clone(),
            null.clone(),
            null.clone(),
            null,
        ),
    );
    // Ids with `:`, `@` and `/` are usable everywhere.
    assert_eq!(
        env.pick(&["--only", "*:free"]),
        "openrouter/meta-llama/llama-3.3-70b-instruct:free"
    );
    env.ok([
        "record",
        "ollama/qwen2.5:7b@local",
        "--add",
        "--tokens",
        "3",
    ]);
    assert_eq!(env.used("ollama/qwen2.5:7b@local", "tpm"), 3);
}

#[test]
fn quoted_csv_cells_follow_rfc_4180() {
    let env = Env::with_endpoints(
        "provider,model,rpm,note\n\
         \"acme, inc\",\"m \"\"quoted\"\"\",\"1_000\",\"two\nlines\"\n\
         b,m2,5,\n",
    );
    let state = env.state();
    assert_eq!(state.len(), 2, "{state:?}");
    assert_eq!(state[0]["id"], "acme, inc/m \"quoted\"");
    assert_eq!(state[0]["limits"]["rpm"], 1000);
    assert_eq!(state[1]["id"], "b/m2");
}

/// What is wrong with how `llm-rotate` treats a bad file, if anything: it must exit 1 with
/// nothing on stdout and every `needle` on stderr, from `state` and from `pick`.
fn check_rejects(file: &str, text: &str, needles: &[&str]) -> Option<String> {
    let env = Env::new();
    env.write(file, text);
    for command in ["state", "pick"] {
        let out = env.run(["--endpoints", file, command]);
        let missing: Vec<&&str> = needles
            .iter()
            .filter(|n| !out.stderr.contains(*n))
            .collect();
        if out.status != Some(1) || !out.stdout.is_empty() || !missing.is_empty() {
            return Some(format!(
                "{command} with {file}:\n{text}\nshould exit 1 and say {missing:?}, but:\n{out}"
            ));
        }
    }
    None
}

#[track_caller]
fn rejects(file: &str, text: &str, needles: &[&str]) {
    if let Some(problem) = check_rejects(file, text, needles) {
        panic!("{problem}");
    }
}

const HEAD: &str = "# bad file\nprovider,model,rpm,priority,weight\n\nok,one,1,high,1\n";

#[test]
fn each_kind_of_bad_cell_names_file_line_column_and_value() {
    // Each case: the bad row, appended at line 5 after a comment, a header, a blank line and
    // a good row; and what stderr must say.
    let cases: &[(&str, &str)] = &[
        ("a,b,30x,,", r#"bad.csv:5: column rpm: "30x""#),
        ("a,b,-1,,", r#"bad.csv:5: column rpm: "-1""#),
        ("a,b,1.5,,", r#"bad.csv:5: column rpm: "1.5""#),
        ("a,b,6kk,,", r#"bad.csv:5: column rpm: "6kk""#),
        (",b,1,,", r#"bad.csv:5: column provider: """#),
        ("a,,1,,", r#"bad.csv:5: column model: """#),
        ("a,b,1,urgent,", r#"bad.csv:5: column priority: "urgent""#),
        ("a,b,1,,0", r#"bad.csv:5: column weight: "0""#),
        ("a,b,1,,heavy", r#"bad.csv:5: column weight: "heavy""#),
        ("ok,one,2,,", r#"bad.csv:5: column id: "ok/one""#),
    ];
    let problems: Vec<String> = cases
        .iter()
        .filter_map(|(row, needle)| check_rejects("bad.csv", &format!("{HEAD}{row}\n"), &[needle]))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn a_row_with_too_many_cells_is_an_error() {
    rejects(
        "bad.csv",
        &format!("{HEAD}a,b,1,,,extra\n"),
        &["bad.csv:5: column ", r#""extra""#],
    );
}

#[test]
fn a_missing_required_column_is_an_error_at_the_header() {
    rejects(
        "bad.csv",
        "# no model column\nprovider,rpm\na,1\n",
        &["bad.csv:2: ", "model"],
    );
    rejects(
        "bad.csv",
        "# no provider column\nmodel,rpm\na,1\n",
        &["bad.csv:2: ", "provider"],
    );
}

#[test]
fn a_duplicate_id_says_to_add_an_id_column() {
    rejects(
        "dup.csv",
        "provider,model\na,b\nc,d\na,b\n",
        &[r#"dup.csv:4: column id: "a/b""#, "id"],
    );
    // With an id column, the same provider/model twice is fine...
    let env = Env::with_endpoints("provider,model,id\na,b,one\na,b,two\n");
    assert_eq!(env.state().len(), 2);
    // ...but the same id twice is not.
    rejects(
        "dup.csv",
        "provider,model,id\na,b,x\nc,d,x\n",
        &[r#"dup.csv:3: column id: "x""#],
    );
}

#[test]
fn every_bad_row_is_reported_not_just_the_first() {
    rejects(
        "two.csv",
        "# two bad rows\nprovider,model,rpm,tpm\na,b,30x,1\n# fine\nc,d,1,1\n\ne,f,2,lots\n",
        &[
            r#"two.csv:3: column rpm: "30x""#,
            r#"two.csv:7: column tpm: "lots""#,
        ],
    );
}

#[test]
fn markdown_errors_count_physical_lines_too() {
    rejects(
        "bad.md",
        "# title\n\n| provider | model | rpm |\n| --- | --- | --- |\n| a | b | 1 |\n| c | d | 30x |\n",
        &[r#"bad.md:6: column rpm: "30x""#],
    );
}

#[test]
fn crlf_and_bom_do_not_shift_line_numbers() {
    rejects(
        "crlf.csv",
        "\u{feff}# c\r\nprovider,model,rpm\r\n\r\na,b,30x\r\n",
        &[r#"crlf.csv:4: column rpm: "30x""#],
    );
}

#[test]
fn a_missing_endpoints_file_names_every_place_looked_at() {
    let env = Env::new();
    let config = env.path("llm-rotate/endpoints.csv");
    env.fails(["pick"], 1).no_stdout().says(&[
        "--endpoints",
        "LLM_ROTATE_ENDPOINTS",
        &config.display().to_string(),
    ]);
    env.fails(["state"], 1).no_stdout();

    // A named file that does not exist is an error naming it.
    env.fails(["--endpoints", "nowhere.csv", "pick"], 1)
        .no_stdout()
        .says(&["nowhere.csv"]);
    let out = crate::Out::from(
        env.cmd()
            .env("LLM_ROTATE_ENDPOINTS", env.path("gone.csv"))
            .arg("pick")
            .output()
            .expect("run llm-rotate"),
    );
    out.code(1).no_stdout().says(&["gone.csv"]);
}

#[test]
fn the_endpoints_file_comes_from_the_flag_then_the_variable_then_the_config_folder() {
    let env = Env::new();
    env.write("llm-rotate/endpoints.csv", "provider,model\nconfig,dir\n");
    env.write("from-env.csv", "provider,model\nfrom,env\n");
    env.write("from-flag.csv", "provider,model\nfrom,flag\n");

    assert_eq!(env.ok(["pick", "--dry-run"]), "config/dir\n");
    env.cmd()
        .env("LLM_ROTATE_ENDPOINTS", env.path("from-env.csv"))
        .args(["pick", "--dry-run"])
        .assert()
        .code(0)
        .stdout("from/env\n");
    env.cmd()
        .env("LLM_ROTATE_ENDPOINTS", env.path("from-env.csv"))
        .args(["--endpoints", "from-flag.csv", "pick", "--dry-run"])
        .assert()
        .code(0)
        .stdout("from/flag\n");
}

#[test]
fn the_shipped_example_parses_and_pick_takes_its_first_high_priority_row() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("endpoints.example.csv");
    let text = std::fs::read_to_string(&example).expect("read endpoints.example.csv");
    let rows = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .count()
        - 1;

    let env = Env::new();
    let example = example.to_str().expect("a UTF-8 path");
    let state = json(&env.ok(["--endpoints", example, "state", "--format", "json"]));
    let state = state.as_array().expect("an array");
    assert_eq!(
        state.len(),
        rows,
        "one state row per data row of the example"
    );
    let best = state
        .iter()
        .map(|r| r["priority"].as_i64().expect("numeric priority"))
        .max()
        .expect("some rows");
    let first_best = state
        .iter()
        .find(|r| r["priority"] == best)
        .and_then(|r| r["id"].as_str())
        .expect("an id");
    assert_eq!(best, 3, "the example has high-priority rows");
    assert_eq!(
        env.ok(["--endpoints", example, "pick"]),
        format!("{first_best}\n")
    );
}

#[test]
fn json_is_short_for_format_json_and_usage_errors_speak_as_llm_rotate() {
    let env = Env::with_endpoints("provider,model,rpm\np,m,5\n");
    let long = env.ok(["pick", "--dry-run", "--format", "json"]);
    let short = env.ok(["pick", "--dry-run", "--json"]);
    assert_eq!(long, short);
    assert!(short.starts_with('{'), "{short}");
    assert_eq!(
        env.ok(["state", "--json"]),
        env.ok(["state", "--format", "json"])
    );
    assert_eq!(
        env.ok(["history", "--json"]),
        env.ok(["history", "--format", "json"])
    );
    // Every line of a usage error is ours, clap's included; the status is 2.
    for args in [
        &["pick", "--json", "--format", "text"][..],
        &["pick", "--bogus"],
        &["pick", "--tokens", "x"],
        &["frobnicate"],
    ] {
        let out = env.fails(args.iter().copied(), 2);
        assert!(!out.stderr.is_empty(), "{args:?}");
        for line in out.stderr.lines() {
            assert!(line.starts_with("llm-rotate: "), "{args:?}: {line:?}");
        }
    }
    env.fails(["pick", "--bogus"], 2)
        .says(&["llm-rotate: unexpected argument '--bogus' found"]);
}
