//! llm-rotate's environment variables: their names, how a value is read (set but empty
//! counts as unset, as CI files often leave them), and how a column becomes a variable name.

use std::ffi::OsString;

pub const ENDPOINTS: &str = "LLM_ROTATE_ENDPOINTS";
pub const DB: &str = "LLM_ROTATE_DB";
pub const NOW: &str = "LLM_ROTATE_NOW";
/// Set by the completion scripts when they ask for completions.
pub const COMPLETE: &str = "LLM_ROTATE_COMPLETE";

/// Every variable llm-rotate reads or exports itself. A property column exported under one
/// of these names would re-point every later llm-rotate call in a shell that evals it.
pub const OWN: &[&str] = &[
    ENDPOINTS,
    DB,
    NOW,
    COMPLETE,
    "LLM_ROTATE_ID",
    "LLM_ROTATE_PROVIDER",
    "LLM_ROTATE_MODEL",
    "LLM_ROTATE_LEASE",
    "LLM_ROTATE_TOKENS",
    "LLM_ROTATE_KEY",
    "LLM_ROTATE_HEADERS",
    "LLM_ROTATE_USAGE",
    "LLM_ROTATE_ATTEMPT",
];

/// The variable's value; `None` when it is unset or empty.
pub fn get(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|value| !value.is_empty())
}

/// `LLM_ROTATE_<NAME>`: upper case, every character that is not a letter or digit `_`.
pub fn exported_name(name: &str) -> String {
    let tail: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("LLM_ROTATE_{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_names_are_portable() {
        assert_eq!(exported_name("base_url"), "LLM_ROTATE_BASE_URL");
        assert_eq!(exported_name("Api-Key Env"), "LLM_ROTATE_API_KEY_ENV");
        assert_eq!(exported_name("é"), "LLM_ROTATE__");
    }

    #[test]
    fn columns_that_would_shadow_our_variables_are_recognised() {
        for column in [
            "db",
            "Now",
            "lease",
            "endpoints",
            "usage",
            "attempt",
            "TOKENS",
        ] {
            assert!(OWN.contains(&exported_name(column).as_str()), "{column}");
        }
        for column in ["db_name", "lease_note", "base_url"] {
            assert!(!OWN.contains(&exported_name(column).as_str()), "{column}");
        }
    }
}
