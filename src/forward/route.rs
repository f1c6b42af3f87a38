//! Which endpoints a request may go to: the ones its `model` names, and the key each is
//! called with.

use crate::endpoints::Endpoint;
use crate::glob;

/// What a request's `model` names: an endpoint id, a model name (every row with that
/// `model`), a glob over ids (`groq/*`), or `auto` (or no `model`) for any. Of `allowed`
/// (what `--only`/`--exclude` left), in file order; empty when it names none of them.
pub fn named<'e>(allowed: &[&'e Endpoint], model: Option<&str>) -> Vec<&'e Endpoint> {
    let Some(model) = model.filter(|m| *m != "auto" && !m.is_empty()) else {
        return allowed.to_vec();
    };
    if let Some(one) = allowed.iter().find(|e| e.id == model) {
        return vec![one];
    }
    let same_model: Vec<&Endpoint> = allowed
        .iter()
        .copied()
        .filter(|e| e.model == model)
        .collect();
    if !same_model.is_empty() || !model.contains(['*', '?']) {
        return same_model;
    }
    allowed
        .iter()
        .copied()
        .filter(|e| glob::matches(model, &e.id))
        .collect()
}

/// The key a row is called with, found once when `serve` or `call` starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// The row's `key` cell, or the value of the variable its `api_key_env` names.
    Bearer(String),
    /// Neither is given: called without one, as local servers need.
    Without,
    /// `api_key_env` names this variable, and it is not set: the row is skipped.
    Unset(String),
}

impl Key {
    pub fn of(endpoint: &Endpoint) -> Key {
        if let Some(key) = &endpoint.key {
            return Key::Bearer(key.clone());
        }
        let var = endpoint
            .props
            .iter()
            .find(|(name, _)| name == "api_key_env")
            .map(|(_, var)| var.trim())
            .filter(|var| !var.is_empty());
        match var {
            None => Key::Without,
            Some(var) => match crate::env::get(var).and_then(|v| v.into_string().ok()) {
                Some(value) => Key::Bearer(value),
                None => Key::Unset(var.to_owned()),
            },
        }
    }
}

/// Where a route's path goes: the row's `base_url` (which ends where `/chat/completions`
/// follows) and the path after `/v1`.
pub fn url(endpoint: &Endpoint, path_after_v1: &str) -> Option<String> {
    let base = endpoint
        .props
        .iter()
        .find(|(name, _)| name == "base_url")
        .map(|(_, url)| url.trim().trim_end_matches('/'))
        .filter(|url| !url.is_empty())?;
    Some(format!("{base}{path_after_v1}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Endpoint> {
        crate::endpoints::parse(
            "id,provider,model,base_url,api_key_env\n\
             groq/fast,groq,llama-8b,https://g/v1/,\n\
             groq/big,groq,llama-70b,https://g/v1,\n\
             cerebras/fast,cerebras,llama-8b,,LLM_ROTATE_TEST_UNSET_KEY\n",
            "test",
        )
        .expect("valid")
    }

    fn ids(named: &[&Endpoint]) -> Vec<String> {
        named.iter().map(|e| e.id.clone()).collect()
    }

    #[test]
    fn a_model_names_an_id_a_model_a_glob_or_any() {
        let all = rows();
        let allowed: Vec<&Endpoint> = all.iter().collect();
        let cases: [(Option<&str>, &[&str]); 8] = [
            (Some("groq/big"), &["groq/big"]),
            (Some("llama-8b"), &["groq/fast", "cerebras/fast"]),
            (Some("groq/*"), &["groq/fast", "groq/big"]),
            (Some("*/fast"), &["groq/fast", "cerebras/fast"]),
            (Some("auto"), &["groq/fast", "groq/big", "cerebras/fast"]),
            (None, &["groq/fast", "groq/big", "cerebras/fast"]),
            (Some("gpt-4o"), &[]),
            (Some("mistral/*"), &[]),
        ];
        for (model, expected) in cases {
            assert_eq!(ids(&named(&allowed, model)), expected, "{model:?}");
        }
        // What --only/--exclude removed is not there to be named.
        assert_eq!(
            ids(&named(&allowed[..1], Some("groq/big"))),
            [] as [&str; 0]
        );
    }

    #[test]
    fn a_key_comes_from_the_row_or_the_variable_it_names() {
        let all = rows();
        assert_eq!(Key::of(&all[0]), Key::Without);
        assert_eq!(
            Key::of(&all[2]),
            Key::Unset("LLM_ROTATE_TEST_UNSET_KEY".into())
        );
        assert_eq!(
            url(&all[0], "/chat/completions").as_deref(),
            Some("https://g/v1/chat/completions")
        );
        assert_eq!(url(&all[2], "/embeddings"), None);
    }
}
