//! Sending a request body: retries with backoff honouring `Retry-After`,
//! the rate limits, the circuit breaker that declares the endpoint
//! unusable, and the failures no retry can get past (a refused TLS
//! certificate, a missing route, a model the server does not have).

use jobs::redact::scrub;
use jobs::spec::Endpoint;
use jobs::RequestType;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};

use super::{OpenAiBackend, LOGLIKELIHOOD_SERVERS, MAX_CONNECT_RETRIES, MAX_RETRY_AFTER};
use crate::backend::{tls, BackendError};
use client::retry::parse_retry_after;

impl OpenAiBackend {
    /// Sends `body` (a request of `request_type`) with retries; returns the
    /// parsed JSON answer, the latency of the successful attempt and the
    /// attempts it took.
    pub(super) async fn send_with_retries(
        &self,
        url: &str,
        body: &Value,
        token_estimate: f64,
        request_type: RequestType,
    ) -> Result<(Value, Duration, u32), BackendError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            // Checked before every attempt so that requests already in their
            // retry loop stop too once the endpoint is known to be unusable.
            self.breaker.check()?;
            if let Some(bucket) = &self.requests_per_minute {
                bucket.acquire(1.0).await;
            }
            if let Some(bucket) = &self.tokens_per_minute {
                bucket.acquire(token_estimate).await;
            }
            let started = Instant::now();
            let failure = match self.send_once(url, body).await {
                Attempt::Answered(value) => {
                    self.breaker.record_healthy();
                    return Ok((value, started.elapsed(), attempt));
                }
                Attempt::Fatal(error) => return Err(self.trip_if_incompatible(error)),
                Attempt::RouteMissing { status, message } => {
                    let error = self.route_missing(url, status, &message, request_type);
                    return Err(self.trip_if_incompatible(error));
                }
                Attempt::Rejected { status, message } => {
                    if let Some(symptom) = Symptom::of_status(status) {
                        if let Some(open) = self.note_unusable(symptom, &message) {
                            return Err(open);
                        }
                    } else {
                        self.breaker.record_healthy();
                    }
                    return Err(BackendError::Http {
                        url: url.to_string(),
                        status,
                        message,
                        attempts: attempt,
                    });
                }
                Attempt::Retryable(failure) => failure,
            };
            let retry_limit = match &failure {
                RetryableFailure::Transport {
                    message,
                    connect: true,
                } => {
                    if let Some(open) = self.note_unusable(Symptom::Unreachable, message) {
                        return Err(open);
                    }
                    self.max_retries.min(MAX_CONNECT_RETRIES)
                }
                // A timeout says nothing about the endpoint as a whole (it
                // accepted the connection); a status means it is reachable.
                RetryableFailure::Transport { .. } => self.max_retries,
                RetryableFailure::Status { .. } => {
                    self.breaker.record_healthy();
                    self.max_retries
                }
            };
            let last_error = failure.to_error(url, attempt);
            if attempt > retry_limit {
                return Err(last_error);
            }
            let delay = match failure.retry_after() {
                Some(asked) => asked.min(MAX_RETRY_AFTER),
                None => self.backoff.delay(attempt - 1),
            };
            tracing::debug!(url, attempt, delay_ms = delay.as_millis() as u64, error = %last_error,
                "inference request failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// Counts an endpoint-level failure; `Some(error)` once the breaker is
    /// open.
    fn note_unusable(&self, symptom: Symptom, detail: &str) -> Option<BackendError> {
        self.breaker
            .record_unusable(|count| BackendError::EndpointUnusable {
                url: self.base_url.clone(),
                message: self.unusable_message(symptom, count, detail),
            })
    }

    /// The server has no route at `url`: every request of the job would get
    /// the same answer.
    fn route_missing(
        &self,
        url: &str,
        status: u16,
        detail: &str,
        request_type: RequestType,
    ) -> BackendError {
        let base = &self.base_url;
        let what = format!("endpoint {base} has no route for POST {url} (HTTP {status}: {detail})");
        let message = match (request_type, self.endpoint) {
            (RequestType::Loglikelihood, _) => format!(
                "{what}: log-likelihood scoring (multiple_choice) needs an OpenAI-compatible \
                 /v1/completions route that accepts `echo` and `logprobs`, which \
                 {LOGLIKELIHOOD_SERVERS} provide; serve the model with one of them, and check \
                 that model.base_url includes the API prefix (e.g. /v1)"
            ),
            (RequestType::Generate, Endpoint::Chat) => format!(
                "{what}: check that model.base_url includes the API prefix (e.g. /v1), and that \
                 the server offers the chat API; for one that offers only /completions, set \
                 endpoint = \"completions\" in [model] with a `prompt` template in [task]"
            ),
            (RequestType::Generate, Endpoint::Completions) => format!(
                "{what}: check that model.base_url includes the API prefix (e.g. /v1), and that \
                 the server offers the completions API; for one that offers only \
                 /chat/completions, set endpoint = \"chat\" in [model]"
            ),
        };
        BackendError::Incompatible {
            url: url.to_string(),
            message,
        }
    }

    /// One error naming the endpoint, what went wrong and what to check.
    fn unusable_message(&self, symptom: Symptom, count: u32, detail: &str) -> String {
        let base = &self.base_url;
        match symptom {
            Symptom::Unreachable => format!(
                "endpoint {base} is unreachable: {count} connection attempts in a row failed \
                 (last: {detail}); the server is down or model.base_url is wrong — start the \
                 server or fix the URL, then retry the job"
            ),
            Symptom::Unauthorized(status) => match &self.api_key_env {
                Some(var) => format!(
                    "endpoint {base} rejected the API key from environment variable {var} \
                     (HTTP {status} on {count} requests in a row: {detail}); put a valid key for \
                     this endpoint in {var} on every worker"
                ),
                None => format!(
                    "endpoint {base} requires an API key (HTTP {status} on {count} requests in a \
                     row: {detail}); set model.api_key_env to the name of an environment variable \
                     holding the key"
                ),
            },
        }
    }

    /// The server answered that it has no model of the job's name.
    fn model_missing(&self, detail: &str) -> String {
        let base = &self.base_url;
        format!(
            "endpoint {base} does not serve model {:?} (HTTP 404: {detail}); check model.model \
             against the names GET {base}/models lists, and that model.base_url includes the \
             API prefix (e.g. /v1)",
            self.model
        )
    }

    /// One HTTP attempt, classified.
    async fn send_once(&self, url: &str, body: &Value) -> Attempt {
        let mut request = self.http.post(url).json(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(&key.0);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                if let Some(problem) = tls::certificate_problem(&e) {
                    // The same certificate comes back on every retry.
                    return Attempt::Fatal(BackendError::Incompatible {
                        url: url.to_string(),
                        message: tls::untrusted_message(&self.base_url, &problem),
                    });
                }
                return Attempt::Retryable(RetryableFailure::transport(&e));
            }
        };
        let status = response.status();
        let retry_after = parse_retry_after(response.headers());
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return Attempt::Retryable(RetryableFailure::transport(&e)),
        };
        if status.is_success() {
            return match serde_json::from_slice(&bytes) {
                Ok(value) => Attempt::Answered(value),
                Err(e) => Attempt::Fatal(BackendError::BadResponse {
                    url: url.to_string(),
                    message: format!("the body is not JSON ({e})"),
                }),
            };
        }
        // An endpoint may echo the request's key into its error.
        let known: Vec<&str> = self.api_key.iter().map(|k| k.0.as_str()).collect();
        let message = scrub(&server_error_message(&bytes, status), &known).into_owned();
        if is_retryable_status(status) {
            return Attempt::Retryable(RetryableFailure::Status {
                status: status.as_u16(),
                message,
                retry_after,
            });
        }
        if is_route_missing(status, &bytes, &self.model) {
            return Attempt::RouteMissing {
                status: status.as_u16(),
                message,
            };
        }
        if status == StatusCode::NOT_FOUND {
            // The server named the model in its 404: it has no such model,
            // and it will say the same to every request of the job.
            return Attempt::Fatal(BackendError::Incompatible {
                url: url.to_string(),
                message: self.model_missing(&message),
            });
        }
        Attempt::Rejected {
            status: status.as_u16(),
            message,
        }
    }
}

/// What one HTTP attempt came to.
enum Attempt {
    /// A 2xx answer with a JSON body.
    Answered(Value),
    /// A non-retryable error status (4xx other than 408/429, 501, 505).
    Rejected { status: u16, message: String },
    /// 404 or 405 for the path itself, not for the model.
    RouteMissing { status: u16, message: String },
    /// Worth another attempt.
    Retryable(RetryableFailure),
    /// Cannot succeed on retry (a 2xx that is not JSON, a refused TLS
    /// certificate, a model the server says it does not have).
    Fatal(BackendError),
}

/// Endpoint-level failures the circuit breaker counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Symptom {
    /// Connection refused, DNS failure, connect timeout.
    Unreachable,
    /// 401 or 403: the key is missing or wrong.
    Unauthorized(u16),
}

impl Symptom {
    fn of_status(status: u16) -> Option<Symptom> {
        match status {
            401 | 403 => Some(Symptom::Unauthorized(status)),
            _ => None,
        }
    }
}

enum RetryableFailure {
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    Transport {
        message: String,
        /// The connection was never made (refused, DNS, connect timeout).
        connect: bool,
    },
}

impl RetryableFailure {
    fn transport(e: &reqwest::Error) -> Self {
        RetryableFailure::Transport {
            message: describe_transport(e),
            connect: e.is_connect(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            RetryableFailure::Status { retry_after, .. } => *retry_after,
            RetryableFailure::Transport { .. } => None,
        }
    }

    fn to_error(&self, url: &str, attempts: u32) -> BackendError {
        match self {
            RetryableFailure::Status {
                status, message, ..
            } => BackendError::Http {
                url: url.to_string(),
                status: *status,
                message: message.clone(),
                attempts,
            },
            RetryableFailure::Transport { message, .. } => BackendError::Transport {
                url: url.to_string(),
                message: message.clone(),
                attempts,
            },
        }
    }
}

/// 408, 429 and every 5xx except 501 Not Implemented and 505 HTTP Version
/// Not Supported, which no retry changes (so 507, 520–524 from Cloudflare and
/// 529 "overloaded" are retried too).
fn is_retryable_status(status: StatusCode) -> bool {
    match status.as_u16() {
        408 | 429 => true,
        501 | 505 => false,
        code => (500..=599).contains(&code),
    }
}

fn describe_transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "request timed out (model.timeout_secs)".to_string()
    } else if e.is_connect() {
        format!("cannot connect: {}", client::text::error_chain(e))
    } else {
        client::text::error_chain(e)
    }
}

/// Whether a 404 or 405 says the server has no such route, rather than no
/// such model. OpenAI's documented answer for an unknown model is a 404
/// with `code: "model_not_found"` (or `param: "model"`); vLLM, Ollama and
/// others name the model in the message. A 404 saying neither (FastAPI's
/// `{"detail": "Not Found"}`, OpenAI's `Invalid URL`, an HTML page) is about
/// the path, and so is a 405: the path exists for other methods only.
fn is_route_missing(status: StatusCode, body: &[u8], model: &str) -> bool {
    match status.as_u16() {
        405 => true,
        404 => !names_the_model(body, model),
        _ => false,
    }
}

fn names_the_model(body: &[u8], model: &str) -> bool {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        let error = value.get("error").unwrap_or(&value);
        if error.get("code").and_then(Value::as_str) == Some("model_not_found")
            || error.get("param").and_then(Value::as_str) == Some("model")
        {
            return true;
        }
    }
    !model.is_empty() && String::from_utf8_lossy(body).contains(model)
}

/// `error.message` (OpenAI), `error` as a string, `message` or `detail`
/// (FastAPI), else the start of the raw body.
fn server_error_message(body: &[u8], status: StatusCode) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        let found = value
            .pointer("/error/message")
            .or_else(|| value.get("error").filter(|v| v.is_string()))
            .or_else(|| value.get("message"))
            .or_else(|| value.get("detail"));
        if let Some(found) = found {
            return match found {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("no message")
            .to_string()
    } else {
        client::text::truncate_chars(text, 500)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_5xx_but_501_and_505_is_retried() {
        for code in [
            408, 429, 500, 502, 503, 504, 507, 520, 521, 522, 523, 524, 529, 599,
        ] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(is_retryable_status(status), "{code}");
        }
        for code in [400, 401, 403, 404, 422, 501, 505] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(!is_retryable_status(status), "{code}");
        }
    }

    #[test]
    fn a_missing_route_is_told_from_a_missing_model() {
        let not_found = StatusCode::NOT_FOUND;
        let m = "fake-model";
        // OpenAI's documented unknown-model answer, vLLM's and Ollama's.
        let openai = br#"{"error":{"message":"The model `x` does not exist","type":"invalid_request_error","param":"model","code":"model_not_found"}}"#;
        assert!(!is_route_missing(not_found, openai, m));
        let vllm = br#"{"object":"error","message":"The model `fake-model` does not exist.","type":"NotFoundError","param":null,"code":404}"#;
        assert!(!is_route_missing(not_found, vllm, m));
        assert!(!is_route_missing(
            not_found,
            br#"{"error":"model \"fake-model\" not found"}"#,
            m
        ));
        // Routes: FastAPI, OpenAI's unknown URL, llama.cpp, a bare page, 405.
        assert!(is_route_missing(not_found, br#"{"detail":"Not Found"}"#, m));
        let invalid_url = br#"{"error":{"message":"Invalid URL (POST /v1/completions)","type":"invalid_request_error","param":null,"code":null}}"#;
        assert!(is_route_missing(not_found, invalid_url, m));
        assert!(is_route_missing(not_found, b"<html>404</html>", m));
        assert!(is_route_missing(StatusCode::METHOD_NOT_ALLOWED, b"", m));
        assert!(!is_route_missing(StatusCode::BAD_REQUEST, b"", m));
    }

    #[test]
    fn server_error_messages_are_extracted() {
        let status = StatusCode::BAD_REQUEST;
        assert_eq!(
            server_error_message(br#"{"error":{"message":"bad model","type":"x"}}"#, status),
            "bad model"
        );
        assert_eq!(
            server_error_message(br#"{"detail":"nope"}"#, status),
            "nope"
        );
        assert_eq!(server_error_message(b"plain text", status), "plain text");
        assert_eq!(server_error_message(b"", status), "Bad Request");
    }
}
