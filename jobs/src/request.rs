//! Inference requests and their content-addressed keys.
//!
//! A request key is the sha256 of the canonical JSON of everything that can
//! change a model's output (docs/architecture.md, "The request key"). Two
//! models never share a key, and sampled requests are cached per sample
//! index.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fmt;
use utoipa::ToSchema;

/// Bumped whenever the key's inputs or their encoding change, so that old
/// cache entries are never mistaken for new ones.
pub const KEY_VERSION: u32 = 1;

/// What a request asks of the model.
#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RequestType {
    /// Free-form generation.
    Generate,
    /// Sum of log-probabilities of `continuation` given the context, as
    /// lm-evaluation-harness defines `loglikelihood`.
    Loglikelihood,
}

impl RequestType {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::Generate => "generate",
            RequestType::Loglikelihood => "loglikelihood",
        }
    }
}

/// One chat turn.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// The rendered model input: chat messages or a raw prompt.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RenderedInput {
    Messages { messages: Vec<ChatMessage> },
    Prompt { prompt: String },
}

impl RenderedInput {
    /// A single string for display in `samples.jsonl` and in errors.
    pub fn display_text(&self) -> String {
        match self {
            RenderedInput::Prompt { prompt } => prompt.clone(),
            RenderedInput::Messages { messages } => messages
                .iter()
                .map(|m| format!("[{}] {}", m.role, m.content))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// Every generation parameter that reaches the backend. All of them are part
/// of the request key.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct GenerationParams {
    pub max_tokens: u32,
    pub temperature: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Base seed; sample `i` is sent with `seed + i` so samples differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Passed through verbatim to the endpoint's request body (e.g. `top_k`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub extra_body: Map<String, Value>,
}

/// The model identity that goes into every key: for the engine a hash of
/// weights, tokenizer and chat template; for an API `api:{provider}:{model}`;
/// or a user's `cache_namespace`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct ModelFingerprint(pub String);

impl ModelFingerprint {
    pub fn api(provider: &str, model: &str) -> Self {
        ModelFingerprint(format!("api:{provider}:{model}"))
    }
    pub fn namespace(namespace: &str) -> Self {
        ModelFingerprint(format!("ns:{namespace}"))
    }
}

impl fmt::Display for ModelFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A request key: 64 lowercase hex characters of sha256.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(transparent)]
pub struct RequestKey(pub String);

impl RequestKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One unit of inference work, as planned into a shard and sent to a worker.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct InferenceRequest {
    pub key: RequestKey,
    /// Index of the dataset document this request belongs to (for messages).
    pub doc_index: u64,
    pub request_type: RequestType,
    pub input: RenderedInput,
    /// The continuation scored by a `loglikelihood` request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<String>,
    pub params: GenerationParams,
    pub sample_index: u32,
}

impl InferenceRequest {
    /// Builds a request and computes its key.
    pub fn new(
        fingerprint: &ModelFingerprint,
        doc_index: u64,
        request_type: RequestType,
        input: RenderedInput,
        continuation: Option<String>,
        params: GenerationParams,
        sample_index: u32,
    ) -> Self {
        let key = compute_key(
            fingerprint,
            request_type,
            &input,
            continuation.as_deref(),
            &params,
            sample_index,
        );
        InferenceRequest {
            key,
            doc_index,
            request_type,
            input,
            continuation,
            params,
            sample_index,
        }
    }

    /// The seed to send for this sample, if the job set one.
    pub fn effective_seed(&self) -> Option<u64> {
        self.params
            .seed
            .map(|s| s.wrapping_add(u64::from(self.sample_index)))
    }
}

/// sha256 over the canonical JSON of the key's inputs.
pub fn compute_key(
    fingerprint: &ModelFingerprint,
    request_type: RequestType,
    input: &RenderedInput,
    continuation: Option<&str>,
    params: &GenerationParams,
    sample_index: u32,
) -> RequestKey {
    let doc = serde_json::json!({
        "v": KEY_VERSION,
        "model": fingerprint.0,
        "type": request_type.as_str(),
        "input": input,
        "continuation": continuation,
        "params": params,
        "sample": sample_index,
    });
    let mut hasher = Sha256::new();
    hasher.update(canonical_json(&doc).as_bytes());
    RequestKey(hex::encode(hasher.finalize()))
}

/// JSON with object keys sorted at every level and no insignificant
/// whitespace, so that equal values always hash equally.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&map[*k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// sha256 hex of a string, used for the doc/prompt/target hashes in results.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> GenerationParams {
        GenerationParams {
            max_tokens: 16,
            temperature: 0.0,
            top_p: None,
            stop: vec![],
            seed: Some(1),
            extra_body: Map::new(),
        }
    }

    fn prompt(p: &str) -> RenderedInput {
        RenderedInput::Prompt {
            prompt: p.to_string(),
        }
    }

    #[test]
    fn canonical_json_sorts_keys_recursively() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":"x"}}"#).unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":"x","d":[{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn key_changes_with_every_input() {
        let fp = ModelFingerprint::api("openai", "m");
        let base = compute_key(
            &fp,
            RequestType::Generate,
            &prompt("hi"),
            None,
            &params(),
            0,
        );
        assert_eq!(base.0.len(), 64);
        assert_eq!(
            base,
            compute_key(
                &fp,
                RequestType::Generate,
                &prompt("hi"),
                None,
                &params(),
                0
            )
        );
        let other_model = ModelFingerprint::api("openai", "m2");
        assert_ne!(
            base,
            compute_key(
                &other_model,
                RequestType::Generate,
                &prompt("hi"),
                None,
                &params(),
                0
            )
        );
        assert_ne!(
            base,
            compute_key(
                &fp,
                RequestType::Loglikelihood,
                &prompt("hi"),
                None,
                &params(),
                0
            )
        );
        assert_ne!(
            base,
            compute_key(
                &fp,
                RequestType::Generate,
                &prompt("ho"),
                None,
                &params(),
                0
            )
        );
        assert_ne!(
            base,
            compute_key(
                &fp,
                RequestType::Generate,
                &prompt("hi"),
                Some(" x"),
                &params(),
                0
            )
        );
        assert_ne!(
            base,
            compute_key(
                &fp,
                RequestType::Generate,
                &prompt("hi"),
                None,
                &params(),
                1
            )
        );
        let mut p = params();
        p.seed = Some(2);
        assert_ne!(
            base,
            compute_key(&fp, RequestType::Generate, &prompt("hi"), None, &p, 0)
        );
        let mut p = params();
        p.extra_body.insert("top_k".into(), Value::from(1));
        assert_ne!(
            base,
            compute_key(&fp, RequestType::Generate, &prompt("hi"), None, &p, 0)
        );
        let mut p = params();
        p.stop.push("\n".into());
        assert_ne!(
            base,
            compute_key(&fp, RequestType::Generate, &prompt("hi"), None, &p, 0)
        );
    }

    #[test]
    fn extra_body_order_does_not_change_the_key() {
        let fp = ModelFingerprint::api("openai", "m");
        let mut a = params();
        a.extra_body.insert("top_k".into(), Value::from(1));
        a.extra_body.insert("min_p".into(), Value::from(0.1));
        let mut b = params();
        b.extra_body.insert("min_p".into(), Value::from(0.1));
        b.extra_body.insert("top_k".into(), Value::from(1));
        assert_eq!(
            compute_key(&fp, RequestType::Generate, &prompt("hi"), None, &a, 0),
            compute_key(&fp, RequestType::Generate, &prompt("hi"), None, &b, 0)
        );
    }
}
