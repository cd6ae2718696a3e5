//! Reading a 2xx answer: the generated text, or the continuation's score
//! from the prompt's token logprobs, and the usage.

use jobs::spec::Endpoint;
use jobs::{InferenceOutput, InferenceRequest, LoglikelihoodOutput, RequestType, Usage};
use serde_json::Value;
use std::time::Duration;

use super::request::{loglikelihood_parts, loglikelihood_prompt};
use super::{OpenAiBackend, LOGLIKELIHOOD_SERVERS, MAX_REPORTED_TOKENS};
use crate::backend::BackendError;

impl OpenAiBackend {
    /// The usage an answer reports (for the tokens-per-minute bucket).
    pub(super) fn usage_of(answer: &Value) -> Usage {
        parse_usage(answer)
    }

    /// Reads a 2xx answer to `req` (from `url`): the generated text or the
    /// continuation's score, and the usage. The Batch API backend reads the
    /// bodies of its output files with it.
    pub(crate) fn output_from_answer(
        &self,
        req: &InferenceRequest,
        url: &str,
        answer: &Value,
        latency: Duration,
        attempts: u32,
    ) -> Result<InferenceOutput, BackendError> {
        let usage = parse_usage(answer);
        let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        match req.request_type {
            RequestType::Generate => {
                let (text, finish_reason) =
                    parse_generation(answer, self.endpoint).map_err(|message| {
                        BackendError::BadResponse {
                            url: url.to_string(),
                            message,
                        }
                    })?;
                Ok(InferenceOutput {
                    text: Some(text),
                    finish_reason,
                    loglikelihood: None,
                    usage,
                    latency_ms,
                    attempts,
                })
            }
            RequestType::Loglikelihood => {
                let (context, continuation) = loglikelihood_parts(req)?;
                let (prompt, boundary) = loglikelihood_prompt(context, continuation);
                let scored =
                    parse_loglikelihood(answer, boundary, &prompt).map_err(|e| match e {
                        LoglikelihoodError::Straddles(message) => BackendError::Unscorable(message),
                        LoglikelihoodError::Malformed(message) => BackendError::BadResponse {
                            url: url.to_string(),
                            message,
                        },
                        LoglikelihoodError::Unsupported(what) => BackendError::Incompatible {
                            url: url.to_string(),
                            message: format!(
                                "endpoint {url} {what}: log-likelihood scoring (multiple_choice) \
                             reads the log-probabilities of the prompt's own tokens, so it needs \
                             a /v1/completions route that honours `echo` and `logprobs`, which \
                             {LOGLIKELIHOOD_SERVERS} provide; serve the model with one of them"
                            ),
                        },
                    })?;
                Ok(InferenceOutput {
                    text: None,
                    finish_reason: None,
                    loglikelihood: Some(scored),
                    usage,
                    latency_ms,
                    attempts,
                })
            }
        }
    }
}

/// Server-reported token counts; missing ones count 0 and absurd ones are
/// clamped to [`MAX_REPORTED_TOKENS`] so later sums stay meaningful.
fn parse_usage(answer: &Value) -> Usage {
    let field = |name: &str| {
        answer
            .pointer(&format!("/usage/{name}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(MAX_REPORTED_TOKENS)
    };
    Usage {
        prompt_tokens: field("prompt_tokens"),
        completion_tokens: field("completion_tokens"),
    }
}

fn first_choice(answer: &Value) -> Result<&Value, String> {
    answer
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| "the answer has no choices[0]".to_string())
}

fn parse_generation(
    answer: &Value,
    endpoint: Endpoint,
) -> Result<(String, Option<String>), String> {
    let choice = first_choice(answer)?;
    let text = match endpoint {
        Endpoint::Chat => choice.pointer("/message/content"),
        Endpoint::Completions => choice.get("text"),
    };
    let text = match text {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(format!(
                "choices[0] {} is not a string: {other}",
                if endpoint == Endpoint::Chat {
                    "message.content"
                } else {
                    "text"
                }
            ))
        }
    };
    let finish_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok((text, finish_reason))
}

#[derive(Debug)]
enum LoglikelihoodError {
    /// The answer does not follow the API.
    Malformed(String),
    /// A token spans the context/continuation boundary, so no set of whole
    /// tokens is exactly the continuation.
    Straddles(String),
    /// The server does not do what scoring needs (it ignored `echo`, or
    /// returned no `logprobs`), for every request alike; says what it did.
    Unsupported(String),
}

impl From<String> for LoglikelihoodError {
    fn from(message: String) -> Self {
        LoglikelihoodError::Malformed(message)
    }
}

impl From<&str> for LoglikelihoodError {
    fn from(message: &str) -> Self {
        LoglikelihoodError::Malformed(message.to_string())
    }
}

/// Scores the continuation from an echoed `/completions` answer: the tokens
/// starting at or after the context's end and before the prompt's end (the
/// one generated token comes after it). Offsets count characters, as vLLM and
/// OpenAI report them. A prompt token that starts in the context but reaches
/// into the continuation is an error, not a silently shorter score.
fn parse_loglikelihood(
    answer: &Value,
    context_chars: usize,
    prompt: &str,
) -> Result<LoglikelihoodOutput, LoglikelihoodError> {
    let prompt_chars = prompt.chars().count();
    let choice = first_choice(answer)?;
    // With `echo` the text is the prompt and then the generated token.
    if let Some(text) = choice.get("text").and_then(Value::as_str) {
        if !text.starts_with(prompt) {
            return Err(LoglikelihoodError::Unsupported(
                "ignored `echo`: its answer's text does not repeat the prompt".into(),
            ));
        }
    }
    let logprobs = choice
        .get("logprobs")
        .filter(|v| !v.is_null())
        .ok_or_else(|| {
            LoglikelihoodError::Unsupported(
                "returned no `logprobs` (choices[0].logprobs is missing)".into(),
            )
        })?;
    let array = |name: &str| -> Result<&Vec<Value>, String> {
        logprobs
            .get(name)
            .and_then(Value::as_array)
            .ok_or_else(|| format!("choices[0].logprobs.{name} is missing"))
    };
    let offsets = array("text_offset")?;
    let tokens = array("tokens")?;
    let token_logprobs = array("token_logprobs")?;
    let top = logprobs.get("top_logprobs").and_then(Value::as_array);
    let covers_context = offsets
        .iter()
        .any(|o| o.as_u64().is_some_and(|o| (o as usize) < context_chars));
    if context_chars > 0 && !offsets.is_empty() && !covers_context {
        return Err(LoglikelihoodError::Unsupported(
            "ignored `echo`: its `logprobs` cover the generated tokens only, none of the prompt's"
                .into(),
        ));
    }
    if offsets.len() != tokens.len() || token_logprobs.len() != tokens.len() {
        return Err(LoglikelihoodError::Malformed(format!(
            "choices[0].logprobs arrays differ in length (text_offset {}, tokens {}, token_logprobs {})",
            offsets.len(),
            tokens.len(),
            token_logprobs.len()
        )));
    }
    let mut sum = 0.0;
    let mut is_greedy = true;
    let mut scored = Vec::new();
    for (i, offset) in offsets.iter().enumerate() {
        let offset = offset
            .as_u64()
            .ok_or_else(|| format!("text_offset[{i}] is not a number"))?;
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        if offset < context_chars {
            let token = tokens[i].as_str().unwrap_or_default();
            let end = offset.saturating_add(token.chars().count());
            if end > context_chars {
                return Err(LoglikelihoodError::Straddles(format!(
                    "the server's token {token:?} (characters {offset}..{end} of the prompt) spans                      the end of the context at character {context_chars}, so the continuation's                      log-probability cannot be read from whole tokens; end the context on a word                      boundary (e.g. no trailing text glued to the choices) or start each choice                      with a space"
                )));
            }
            continue;
        }
        if offset >= prompt_chars {
            continue;
        }
        let logprob = token_logprobs[i]
            .as_f64()
            .ok_or_else(|| format!("token_logprobs[{i}] of a continuation token is null"))?;
        sum += logprob;
        scored.push(logprob);
        let token = tokens[i].as_str().unwrap_or_default();
        let argmax = top
            .and_then(|t| t.get(i))
            .and_then(Value::as_object)
            .and_then(|alternatives| {
                alternatives
                    .iter()
                    .filter_map(|(tok, lp)| lp.as_f64().map(|lp| (tok, lp)))
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(tok, _)| tok.as_str())
            });
        // Without top_logprobs greediness is unknown; report it as false
        // rather than claim an argmax we never saw.
        if argmax != Some(token) {
            is_greedy = false;
        }
    }
    if scored.is_empty() {
        return Err(LoglikelihoodError::Malformed(
            "no tokens of the continuation in the echoed prompt; the server must return \
             text_offset/tokens/token_logprobs for the prompt (echo=true, logprobs=1)"
                .into(),
        ));
    }
    Ok(LoglikelihoodOutput {
        logprob: sum,
        is_greedy,
        token_logprobs: scored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn loglikelihood_sums_continuation_tokens_only() {
        // prompt "The sky is blue" + generated "."; context "The sky is".
        let answer = json!({"choices": [{"text": "The sky is blue.", "logprobs": {
            "text_offset": [0, 3, 7, 10, 15],
            "tokens": ["The", " sky", " is", " blue", "."],
            "token_logprobs": [null, -1.0, -0.5, -0.25, -3.0],
            "top_logprobs": [null, {" sky": -1.0}, {" is": -0.5}, {" blue": -0.25, " red": -2.0}, {".": -3.0}]
        }}]});
        let out = parse_loglikelihood(&answer, 10, "The sky is blue").unwrap();
        assert_eq!(out.logprob, -0.25);
        assert!(out.is_greedy);
        assert_eq!(out.token_logprobs, vec![-0.25]);

        let out = parse_loglikelihood(&answer, 3, "The sky is blue").unwrap();
        assert_eq!(out.logprob, -1.75);

        let not_greedy = json!({"choices": [{"logprobs": {
            "text_offset": [0, 3], "tokens": ["ab", "c"], "token_logprobs": [null, -2.0],
            "top_logprobs": [null, {"d": -0.1, "c": -2.0}]
        }}]});
        let out = parse_loglikelihood(&not_greedy, 3, "abcd").unwrap();
        assert!(!out.is_greedy);
        assert!(parse_loglikelihood(&json!({"choices": []}), 1, "ab").is_err());
    }

    #[test]
    fn a_server_without_echo_or_logprobs_is_unsupported() {
        let unsupported = |answer: Value| match parse_loglikelihood(&answer, 10, "The sky is blue")
        {
            Err(LoglikelihoodError::Unsupported(what)) => what,
            other => panic!("expected unsupported, got {other:?}"),
        };
        // No logprobs at all.
        let what =
            unsupported(json!({"choices": [{"text": "The sky is blue.", "logprobs": null}]}));
        assert!(what.contains("no `logprobs`"), "{what}");
        assert!(unsupported(json!({"choices": [{}]})).contains("no `logprobs`"));
        // `echo` ignored: the text is the generated token alone ...
        let what = unsupported(json!({"choices": [{"text": ".", "logprobs": {
            "text_offset": [0], "tokens": ["."], "token_logprobs": [-3.0]
        }}]}));
        assert!(what.contains("ignored `echo`"), "{what}");
        // ... or, without a text, the offsets start past the prompt.
        let what = unsupported(json!({"choices": [{"logprobs": {
            "text_offset": [15], "tokens": ["."], "token_logprobs": [-3.0]
        }}]}));
        assert!(what.contains("ignored `echo`"), "{what}");
    }

    #[test]
    fn a_token_straddling_the_boundary_is_an_error() {
        // Context "The colo", continuation "r blue": the token " color"
        // starts in the context and ends in the continuation.
        let answer = json!({"choices": [{"logprobs": {
            "text_offset": [0, 3, 9, 14],
            "tokens": ["The", " color", " blue", "."],
            "token_logprobs": [null, -1.0, -0.5, -3.0],
        }}]});
        match parse_loglikelihood(&answer, 8, "The color blue") {
            Err(LoglikelihoodError::Straddles(message)) => {
                assert!(message.contains("\" color\""), "{message}")
            }
            _ => panic!("expected a straddle error"),
        }
        // On the token boundary it scores.
        let out = parse_loglikelihood(&answer, 9, "The color blue").unwrap();
        assert_eq!(out.token_logprobs, vec![-0.5]);
    }

    #[test]
    fn absurd_usage_is_clamped() {
        let answer = json!({"usage": {"prompt_tokens": u64::MAX, "completion_tokens": 7}});
        let usage = parse_usage(&answer);
        assert_eq!(usage.prompt_tokens, MAX_REPORTED_TOKENS);
        assert_eq!(usage.completion_tokens, 7);
        assert_eq!(parse_usage(&json!({})), Usage::default());
    }
}
