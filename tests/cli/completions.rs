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
