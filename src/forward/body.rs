//! A request body as `serve` and `call` read it: once, before any step of the ledger. What
//! it asks for (`model`, `stream`, its usage chunk), what it is estimated to use, and the
//! body each endpoint is sent: its own `model`, and for a stream, usage in the last chunk.

use serde_json::{Map, Value};

use crate::estimate::{self, Estimate};

/// The largest request body taken (SPEC 13): larger is refused with 413.
pub const LARGEST: usize = 32 << 20;

pub struct Body {
    fields: Map<String, Value>,
    /// The `model` it names, if any.
    pub model: Option<String>,
    /// `"stream": true`.
    pub stream: bool,
    /// The client asked for the usage chunk itself (`stream_options.include_usage`); when
    /// it did not, the chunk llm-rotate asks for is not passed on.
    pub usage_asked: bool,
    pub estimate: Estimate,
}

impl Body {
    /// The body, or why it cannot be forwarded. Output tokens are estimated from its
    /// `max_tokens` or `max_completion_tokens`, else `max_output`.
    pub fn parse(bytes: &[u8], max_output: u64) -> Result<Body, String> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|err| format!("the request body is not JSON: {err}"))?;
        let Value::Object(fields) = value else {
            return Err("the request body is not a JSON object".to_owned());
        };
        let model = match fields.get("model") {
            None | Some(Value::Null) => None,
            Some(Value::String(model)) => Some(model.clone()),
            Some(_) => return Err("`model` is not a string".to_owned()),
        };
        let stream = fields.get("stream").and_then(Value::as_bool) == Some(true);
        let usage_asked = fields
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            == Some(true);
        let estimate = Estimate {
            input: estimate::of_size(bytes.len() as u64),
            output: estimate::asked_output(bytes).unwrap_or(max_output),
        };
        Ok(Body {
            fields,
            model,
            stream,
            usage_asked,
            estimate,
        })
    }

    /// What `endpoint_model` is sent: this body with its model, and for a stream the usage
    /// chunk asked for. The rest passes unchanged.
    pub fn for_model(&self, endpoint_model: &str) -> Vec<u8> {
        let mut fields = self.fields.clone();
        fields.insert("model".to_owned(), Value::String(endpoint_model.to_owned()));
        if self.stream {
            let options = fields
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(options) = options {
                options.insert("include_usage".to_owned(), Value::Bool(true));
            } else {
                *options = serde_json::json!({"include_usage": true});
            }
        }
        serde_json::to_vec(&Value::Object(fields)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::Body;
    use serde_json::Value;

    #[test]
    fn each_endpoint_gets_its_model_and_a_stream_its_usage_chunk() {
        let body = Body::parse(
            br#"{"model":"auto","stream":true,"messages":[{"role":"user","content":"hi"}],"max_tokens":20}"#,
            1000,
        )
        .expect("valid");
        assert_eq!(body.model.as_deref(), Some("auto"));
        assert!(body.stream && !body.usage_asked);
        assert_eq!(body.estimate.output, 20);
        let sent: Value = serde_json::from_slice(&body.for_model("llama-8b")).expect("json");
        assert_eq!(sent["model"], "llama-8b");
        assert_eq!(sent["stream_options"]["include_usage"], true);
        assert_eq!(sent["messages"][0]["content"], "hi");

        let plain = Body::parse(br#"{"input":"x"}"#, 1000).expect("valid");
        assert_eq!(
            (plain.model.as_deref(), plain.stream, plain.estimate.output),
            (None, false, 1000)
        );
        let sent: Value = serde_json::from_slice(&plain.for_model("m")).expect("json");
        assert!(sent.get("stream_options").is_none());
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused_with_its_reason() {
        for (bytes, reason) in [
            (&b"{not json"[..], "not JSON"),
            (b"[1,2]", "not a JSON object"),
            (br#"{"model":3}"#, "not a string"),
        ] {
            let err = Body::parse(bytes, 1).err().expect("refused");
            assert!(err.contains(reason), "{err}");
        }
    }
}
