//! The completion scripts in `completions/` are the program's output (SPEC 4, completions).
//! When they are stale, refresh them with `LLM_ROTATE_BLESS=1 cargo test --test cli completions`.

use std::path::Path;

use crate::Env;

const FILES: [(&str, &str); 5] = [
    ("bash", "llm-rotate.bash"),
    ("zsh", "_llm-rotate"),
    ("fish", "llm-rotate.fish"),
    ("elvish", "llm-rotate.elv"),
    ("powershell", "_llm-rotate.ps1"),
];

#[test]
fn completion_files_are_current() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
    let bless = std::env::var_os("LLM_ROTATE_BLESS").is_some_and(|v| v == "1");
    let env = Env::new();
    let mut stale = Vec::new();
    for (shell, file) in FILES {
        let out = env.run(["completions", shell]);
        out.code(0);
        assert!(out.stdout.contains("llm-rotate"), "{shell}: {out}");
        let path = folder.join(file);
        if bless {
            std::fs::create_dir_all(&folder).expect("create completions/");
            std::fs::write(&path, &out.stdout).expect("write a completion script");
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(out.stdout.as_str()) {
            stale.push(format!("completions/{file}"));
        }
    }
    assert!(
        stale.is_empty(),
        "stale or missing: {}; refresh them with `LLM_ROTATE_BLESS=1 cargo test --test cli \
         completions` (or `for s in bash zsh fish elvish powershell; do llm-rotate completions \
         $s > ...; done`) and commit the result",
        stale.join(", ")
    );
    // The program opened no database to print them.
    assert!(!env.db().exists());
}

/// The test's PATH with the binary's folder first: the scripts call `llm-rotate` back.
fn path_with_binary() -> String {
    let bin_dir = crate::bin().parent().expect("a folder").to_owned();
    format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Runs `program` in `shell` (with `args`) in the folder of `env`, the committed script for
/// that shell as `$1`; returns its lines of output.
fn in_shell(env: &Env, shell: &str, args: &[&str], program: &str, file: &str) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("completions")
        .join(file);
    let out = env
        .std_command(shell)
        .args(args)
        .arg(program)
        .arg(shell)
        .arg(&script)
        .env("PATH", path_with_binary())
        .output()
        .expect("run the shell");
    assert!(out.status.success(), "{shell}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').next().unwrap_or(l).to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// What the bash completion registered for `llm-rotate` offers for `words` (the word
/// under the cursor is the last one, possibly empty), asked through a real bash.
fn complete_in(env: &Env, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        r#"source "$1"
function=$(complete -p llm-rotate | sed 's/.*-F \([^ ]*\) .*/\1/')
COMP_WORDS=({words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
"$function" llm-rotate "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        words = quoted.join(" ")
    );
    in_shell(
        env,
        "bash",
        &["--norc", "--noprofile", "-c"],
        &program,
        "llm-rotate.bash",
    )
}

fn complete(words: &[&str]) -> Vec<String> {
    complete_in(&Env::new(), words)
}

#[test]
fn bash_completes_subcommands_options_and_values() {
    let top = complete(&["llm-rotate", ""]);
    for sub in ["pick", "exec", "state", "history", "man", "completions"] {
        assert!(top.contains(&sub.to_string()), "{sub} in {top:?}");
    }
    let options = complete(&["llm-rotate", "pick", "--"]);
    for option in [
        "--tokens",
        "--tokens-from",
        "--format",
        "--strategy",
        "--wait",
        "--db",
    ] {
        assert!(
            options.contains(&option.to_string()),
            "{option} in {options:?}"
        );
    }
    assert_eq!(
        complete(&["llm-rotate", "pick", "--format", ""]),
        ["text", "json", "shell"]
    );
    assert_eq!(
        complete(&["llm-rotate", "pick", "--strategy", ""]),
        [
            "order",
            "weighted",
            "spread",
            "round-robin",
            "cheapest",
            "fastest"
        ]
    );
    let shells = complete(&["llm-rotate", "completions", ""]);
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        assert!(shells.contains(&shell.to_string()), "{shell} in {shells:?}");
    }
    assert_eq!(
        complete(&["llm-rotate", "state", "--format", "p"]),
        ["prometheus"]
    );
}

const IDS: &str = "provider,model\ngroq,llama-8b\ngroq,llama-70b\nopenai,gpt-4o\n";

/// Where an id or pattern goes, each shell offers the ids of the endpoints file in use,
/// read when TAB is pressed: `--endpoints` on the line, else the variable.
#[test]
fn bash_completes_endpoint_ids_from_the_file_in_use() {
    let env = Env::with_endpoints(IDS);
    env.write("other.csv", "provider,model\nmistral,small\n");
    let groq = ["groq/llama-8b", "groq/llama-70b"];
    for words in [
        &[
            "llm-rotate",
            "--endpoints",
            "endpoints.csv",
            "pick",
            "--only",
            "g",
        ][..],
        &[
            "llm-rotate",
            "--endpoints",
            "endpoints.csv",
            "exec",
            "--exclude",
            "gr",
        ],
        &["llm-rotate", "--endpoints", "endpoints.csv", "record", "g"],
        &["llm-rotate", "--endpoints", "endpoints.csv", "reset", "g"],
        &["llm-rotate", "--endpoints", "endpoints.csv", "state", "g"],
        &["llm-rotate", "--endpoints", "endpoints.csv", "history", "g"],
    ] {
        assert_eq!(complete_in(&env, words), groq, "{words:?}");
    }
    let other = complete_in(
        &env,
        &["llm-rotate", "--endpoints", "other.csv", "state", ""],
    );
    assert!(other.contains(&"mistral/small".to_string()), "{other:?}");
    assert!(!other.iter().any(|id| id.starts_with("groq")), "{other:?}");
    // A file edited after the script was installed is read as it is now.
    env.write("endpoints.csv", "provider,model\ngroq,new\n");
    assert_eq!(
        complete_in(
            &env,
            &["llm-rotate", "--endpoints", "endpoints.csv", "state", "g"]
        ),
        ["groq/new"]
    );
    // A file that is not there offers nothing, and says nothing.
    assert!(
        complete_in(
            &env,
            &["llm-rotate", "--endpoints", "gone.csv", "state", "g"]
        )
        .is_empty()
    );
}

#[test]
fn zsh_completes_shells_values_and_endpoint_ids() {
    if !crate::installed("zsh", "zsh") {
        return;
    }
    let env = Env::with_endpoints(IDS);
    // The registered function runs in a real zsh; `_describe`, which would draw the menu,
    // prints what it was given instead, and `compdef` needs no completion system.
    let ask = |line: &str| {
        let program = format!(
            r#"compdef() {{ :; }}
_describe() {{ print -l -- "${{(@P)${{@[-1]}}}}"; }}
source "$1"
words=({line})
CURRENT=${{#words}}
_clap_dynamic_completer_llm_rotate"#
        );
        // `_describe` takes `value:description`.
        let offered = in_shell(&env, "zsh", &["-f", "-c"], &program, "_llm-rotate");
        offered
            .iter()
            .map(|o| o.split(':').next().unwrap_or(o).to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ask("llm-rotate --endpoints endpoints.csv pick --only g"),
        ["groq/llama-8b", "groq/llama-70b"]
    );
    let shells = ask("llm-rotate completions ''");
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.contains(&shell.to_string()), "{shell} in {shells:?}");
    }
    assert_eq!(ask("llm-rotate pick --format j"), ["json"]);
}

#[test]
fn fish_completes_shells_values_and_endpoint_ids() {
    if !crate::installed("fish", "fish") {
        return;
    }
    let env = Env::with_endpoints(IDS);
    let ask = |line: &str| {
        let program = format!(r#"source $argv[-1]; complete --do-complete "{line}""#);
        // fish -c hands what follows the program to $argv: the script's path comes last.
        in_shell(
            &env,
            "fish",
            &["--no-config", "-c"],
            &program,
            "llm-rotate.fish",
        )
    };
    assert_eq!(
        ask("llm-rotate --endpoints endpoints.csv reset g"),
        ["groq/llama-8b", "groq/llama-70b"]
    );
    let shells = ask("llm-rotate completions ");
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.contains(&shell.to_string()), "{shell} in {shells:?}");
    }
    assert!(
        !shells.iter().any(|s| s.contains('.')),
        "no files: {shells:?}"
    );
    assert_eq!(ask("llm-rotate state --format p"), ["prometheus"]);
}

#[test]
fn the_readmes_install_lines_work_on_a_fresh_home() {
    let readme = include_str!("../../README.md");
    let env = Env::new();
    let bin_dir = crate::bin().parent().expect("a folder").to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let lines: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with("mkdir -p ~/"))
        .collect();
    assert!(lines.len() >= 4, "{lines:?}");
    for line in lines {
        // The manual's line ends by opening it; the rest is what is tested.
        let line = line.split(" && man ").next().expect("a line");
        let out = crate::Out::from(
            env.std_command("sh")
                .env("PATH", &path)
                .args(["-c", line])
                .output()
                .expect("run sh"),
        );
        out.code(0);
    }
    let home = env.dir();
    for file in [
        ".local/share/bash-completion/completions/llm-rotate",
        ".zfunc/_llm-rotate",
        ".config/fish/completions/llm-rotate.fish",
        ".cargo/share/man/man1/llm-rotate.1",
    ] {
        let text = std::fs::read_to_string(home.join(file)).expect(file);
        assert!(text.len() > 100, "{file} is nearly empty");
    }
}

#[test]
fn the_manual_page_documents_every_option_of_every_subcommand() {
    use clap::CommandFactory;
    let page = Env::new().ok(["man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH llm-rotate 1"),
        "{}",
        &page[..200]
    );
    let cli = llm_rotate::cli::Cli::command();
    for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
        let heading = format!(".SH \"LLM-ROTATE {}\"", sub.get_name().to_uppercase());
        let section = page
            .split(&heading)
            .nth(1)
            .unwrap_or_else(|| panic!("no section {heading}"));
        let section = section.split("\n.SH ").next().unwrap_or(section);
        for arg in sub.get_arguments().filter_map(|a| a.get_long()) {
            let roff = format!("\\-\\-{}", arg.replace('-', "\\-"));
            assert!(
                section.contains(&roff),
                "{} --{arg} is not in its section",
                sub.get_name()
            );
        }
    }
}

#[test]
fn the_manual_has_every_section_and_names_no_page_that_does_not_exist() {
    let page = Env::new().ok(["man"]);
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH DESCRIPTION",
        ".SH ENVIRONMENT",
        ".SH FILES",
        ".SH \"EXIT STATUS\"",
        ".SH EXAMPLES",
    ] {
        assert!(page.contains(section), "no {section}");
    }
    // The only page named is this one: no llm-rotate-pick(1) and the like.
    let named: Vec<&str> = page
        .split_whitespace()
        .filter(|w| w.contains("(1)") || w.contains("(5)"))
        .collect();
    assert!(named.is_empty(), "{named:?}");
}

#[test]
fn man_finds_the_page_after_the_readmes_install_lines() {
    if !crate::installed("man", "man-db") {
        return;
    }
    // A fresh home where cargo install put the binary.
    let env = Env::new();
    let home = env.dir();
    let bin_dir = home.join(".cargo/bin");
    std::fs::create_dir_all(&bin_dir).expect("mkdir");
    std::fs::copy(crate::bin(), bin_dir.join("llm-rotate")).expect("install");
    let readme = include_str!("../../README.md");
    let line = readme
        .lines()
        .find(|l| l.contains("llm-rotate man >"))
        .expect("the README's install line for the manual");
    let path = format!("{}:/usr/bin:/bin", bin_dir.display());
    let run = |script: &str| {
        let out = env
            .std_command("sh")
            .arg("-c")
            .arg(script)
            .env("HOME", home)
            .env("PATH", &path)
            .env_remove("MANPATH")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .env("MANWIDTH", "80")
            .output()
            .expect("run sh");
        crate::Out::from(out)
    };
    run(line).code(0);
    let out = run("man llm-rotate");
    out.code(0);
    for heading in [
        "NAME",
        "ENVIRONMENT",
        "FILES",
        "EXIT STATUS",
        "EXAMPLES",
        "LLM-ROTATE PICK",
    ] {
        assert!(
            out.stdout.contains(heading),
            "{heading} not in:\n{}",
            out.stdout
        );
    }
}
