//! The JSON bodies of `/chat/completions` and `/completions` requests
//! (the Batch API backend writes the same bodies into its input files).

use jobs::spec::Endpoint;
use jobs::{ChatMessage, InferenceRequest, RenderedInput, RequestType};
use serde_json::{json, Map, Value};

use super::OpenAiBackend;
use crate::backend::BackendError;

impl OpenAiBackend {
    /// Path (under the base URL) and JSON body of a request. The Batch API
    /// backend writes the same bodies into its input files.
    pub(crate) fn build_body(
        &self,
        req: &InferenceRequest,
    ) -> Result<(&'static str, Value), BackendError> {
        match req.request_type {
            RequestType::Generate => self.generate_body(req),
            RequestType::Loglikelihood => self.loglikelihood_body(req),
        }
    }

    fn generate_body(&self, req: &InferenceRequest) -> Result<(&'static str, Value), BackendError> {
        let mut body = Map::new();
        body.insert("model".into(), Value::from(self.model.clone()));
        let path = match (self.endpoint, &req.input) {
            (Endpoint::Chat, RenderedInput::Messages { messages }) => {
                // Sent exactly as planned: the planner already applied
                // `system_role`, and the request key covers these messages.
                body.insert("messages".into(), messages_json(messages));
                "/chat/completions"
            }
            (Endpoint::Chat, RenderedInput::Prompt { prompt }) => {
                body.insert(
                    "messages".into(),
                    json!([{ "role": "user", "content": prompt }]),
                );
                "/chat/completions"
            }
            (Endpoint::Completions, RenderedInput::Prompt { prompt }) => {
                body.insert("prompt".into(), Value::from(prompt.clone()));
                "/completions"
            }
            (Endpoint::Completions, RenderedInput::Messages { .. }) => {
                return Err(BackendError::Unsupported(
                    "endpoint = \"completions\" takes a plain prompt, but this task renders chat \
                     messages; use a `prompt` template in [task] or set endpoint = \"chat\" in \
                     [model]"
                        .into(),
                ))
            }
        };
        let params = &req.params;
        body.insert("max_tokens".into(), Value::from(params.max_tokens));
        body.insert("temperature".into(), json!(params.temperature));
        if let Some(top_p) = params.top_p {
            body.insert("top_p".into(), json!(top_p));
        }
        if !params.stop.is_empty() {
            body.insert("stop".into(), json!(params.stop));
        }
        if let Some(seed) = req.effective_seed() {
            body.insert("seed".into(), Value::from(seed));
        }
        // extra_body wins over everything above: it is the user's escape
        // hatch for server-specific parameters.
        for (k, v) in &params.extra_body {
            body.insert(k.clone(), v.clone());
        }
        Ok((path, Value::Object(body)))
    }

    /// lm-evaluation-harness's `local-completions` recipe: echo the prompt
    /// with its log-probabilities and read the continuation's tokens back.
    fn loglikelihood_body(
        &self,
        req: &InferenceRequest,
    ) -> Result<(&'static str, Value), BackendError> {
        if self.endpoint != Endpoint::Completions {
            return Err(BackendError::Unsupported(
                "loglikelihood (multiple_choice) needs prompt log-probabilities, which the chat \
                 endpoint cannot return; set endpoint = \"completions\" in [model] (and use a \
                 `prompt` template) for multiple_choice tasks"
                    .into(),
            ));
        }
        let (context, continuation) = loglikelihood_parts(req)?;
        let (prompt, _) = loglikelihood_prompt(context, continuation);
        let mut body = Map::new();
        body.insert("model".into(), Value::from(self.model.clone()));
        body.insert("prompt".into(), Value::from(prompt));
        // 1, not 0: several servers (vLLM among them) reject max_tokens = 0.
        // The generated token lies past the prompt and is ignored.
        body.insert("max_tokens".into(), Value::from(1));
        body.insert("echo".into(), Value::from(true));
        body.insert("logprobs".into(), Value::from(1));
        body.insert("temperature".into(), Value::from(0));
        if let Some(seed) = req.effective_seed() {
            body.insert("seed".into(), Value::from(seed));
        }
        for (k, v) in &req.params.extra_body {
            body.insert(k.clone(), v.clone());
        }
        Ok(("/completions", Value::Object(body)))
    }

    /// Rough token cost for the tokens-per-minute limiter.
    pub(super) fn estimate_tokens(req: &InferenceRequest) -> f64 {
        let chars = match &req.input {
            RenderedInput::Prompt { prompt } => prompt.chars().count(),
            RenderedInput::Messages { messages } => {
                messages.iter().map(|m| m.content.chars().count()).sum()
            }
        } + req.continuation.as_deref().map_or(0, |c| c.chars().count());
        let completion = match req.request_type {
            RequestType::Generate => f64::from(req.params.max_tokens),
            RequestType::Loglikelihood => 1.0,
        };
        (chars as f64 / 4.0).ceil() + completion
    }
}

pub(super) fn loglikelihood_parts(req: &InferenceRequest) -> Result<(&str, &str), BackendError> {
    let context =
        match &req.input {
            RenderedInput::Prompt { prompt } => prompt.as_str(),
            RenderedInput::Messages { .. } => return Err(BackendError::Unsupported(
                "loglikelihood needs a plain prompt, but this task renders chat messages; use a \
                 `prompt` template in [task] for multiple_choice"
                    .into(),
            )),
        };
    let continuation = req.continuation.as_deref().ok_or_else(|| {
        BackendError::Unsupported("a loglikelihood request has no continuation to score".into())
    })?;
    Ok((context, continuation))
}

/// The echoed prompt and the character offset where scoring starts. As in
/// lm-evaluation-harness, the context's trailing whitespace belongs to the
/// continuation: tokenizers attach leading whitespace to the next word, so
/// "Answer: " + "B" is scored as "Answer:" + " B" and the boundary falls on a
/// token boundary. The prompt text itself does not change.
pub(super) fn loglikelihood_prompt(context: &str, continuation: &str) -> (String, usize) {
    let boundary = context.trim_end().chars().count();
    (format!("{context}{continuation}"), boundary)
}

fn messages_json(messages: &[ChatMessage]) -> Value {
    Value::Array(
        messages
            .iter()
            .map(|m| json!({ "role": m.role, "content": m.content }))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_whitespace_moves_to_the_continuation() {
        assert_eq!(
            loglikelihood_prompt("Answer: ", "B"),
            ("Answer: B".to_string(), 7)
        );
        assert_eq!(loglikelihood_prompt("Q:\n", "x"), ("Q:\nx".to_string(), 2));
        assert_eq!(loglikelihood_prompt("é ", " x").1, 1);
        assert_eq!(loglikelihood_prompt("a", " b"), ("a b".to_string(), 1));
    }
}
