//! Backend for any OpenAI-compatible endpoint (OpenAI, vLLM, SGLang, TGI,
//! LiteLLM, FastChat): `/chat/completions` and `/completions`, with
//! concurrency, requests-per-minute and tokens-per-minute limits, retries
//! honouring `Retry-After`, and a circuit breaker that fails fast when the
//! endpoint itself is unusable.
//!
//! One backend value is shared by every shard of its model in a worker (see
//! `BackendCache`), so its concurrency and rate limits are per worker
//! process part, not per shard.

use async_trait::async_trait;
use jobs::spec::{Endpoint, ModelSpec};
use jobs::{
    ChatMessage, InferenceOutput, InferenceRequest, LoglikelihoodOutput, RenderedInput,
    RequestType, Usage,
};
use reqwest::StatusCode;
use serde_json::{json, Map, Value};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use super::breaker::{CircuitBreaker, DEFAULT_COOLDOWN, DEFAULT_THRESHOLD};
use super::rate_limit::TokenBucket;
use super::{Backend, BackendError};
use client::retry::{parse_retry_after, Backoff};

/// Default backoff between retries: 0.5 s doubling up to 30 s, jittered.
pub const DEFAULT_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30));

/// Longest `Retry-After` honoured; longer asks are clamped so that a
/// misbehaving proxy cannot park a worker for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Retries after a failed connection (refused, DNS): a server that refuses
/// outright rarely comes back within a request's backoff, and the circuit
/// breaker handles the endpoint as a whole.
const MAX_CONNECT_RETRIES: u32 = 2;

/// Token counts above this in `usage` are treated as bogus and clamped, so
/// that a broken server cannot poison job totals.
const MAX_REPORTED_TOKENS: u64 = 1 << 32;

/// An API key that never shows up in `Debug` output or logs.
#[derive(Clone)]
struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

pub struct OpenAiBackend {
    http: reqwest::Client,
    base_url: String,
    api_key: Option<ApiKey>,
    /// Named in errors when the endpoint rejects the key (never the key).
    api_key_env: Option<String>,
    model: String,
    endpoint: Endpoint,
    concurrency: usize,
    max_retries: u32,
    backoff: Backoff,
    in_flight: Arc<Semaphore>,
    requests_per_minute: Option<TokenBucket>,
    tokens_per_minute: Option<TokenBucket>,
    breaker: CircuitBreaker,
}

impl fmt::Debug for OpenAiBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiBackend")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("endpoint", &self.endpoint)
            .field("concurrency", &self.concurrency)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

impl OpenAiBackend {
    /// Builds the backend from `[model]`, reading the base URL and API key
    /// from the environment variables the spec names.
    pub fn from_spec(model: &ModelSpec) -> Result<Self, BackendError> {
        let base_url = resolve_base_url(model)?;
        let api_key = match &model.api_key_env {
            None => None,
            Some(var) => match std::env::var(var) {
                Ok(key) if !key.trim().is_empty() => Some(ApiKey(key.trim().to_string())),
                Ok(_) => {
                    return Err(BackendError::Config(format!(
                        "environment variable {var} (named by model.api_key_env) is empty; \
                         set it to the API key of {base_url}"
                    )))
                }
                Err(_) => {
                    return Err(BackendError::Config(format!(
                        "environment variable {var} (named by model.api_key_env) is not set; \
                         export it with the API key of {base_url} on every worker"
                    )))
                }
            },
        };
        if model.timeout_secs == 0 {
            return Err(BackendError::Config(
                "model.timeout_secs must be at least 1".into(),
            ));
        }
        let timeout = Duration::from_secs(model.timeout_secs);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .danger_accept_invalid_certs(!model.ssl_verify)
            // Sized for the concurrency so connections are reused.
            .pool_max_idle_per_host(usize::try_from(model.concurrency).unwrap_or(usize::MAX))
            .build()
            .map_err(|e| BackendError::Config(format!("cannot build the HTTP client: {e}")))?;
        let concurrency = usize::try_from(model.concurrency.max(1)).unwrap_or(usize::MAX);
        Ok(OpenAiBackend {
            http,
            base_url,
            api_key,
            api_key_env: model.api_key_env.clone(),
            model: model.model.clone(),
            endpoint: model.endpoint,
            concurrency,
            max_retries: model.max_retries,
            backoff: DEFAULT_BACKOFF,
            in_flight: Arc::new(Semaphore::new(concurrency)),
            requests_per_minute: model.requests_per_minute.map(TokenBucket::per_minute),
            tokens_per_minute: model.tokens_per_minute.map(TokenBucket::per_minute),
            breaker: CircuitBreaker::new(DEFAULT_THRESHOLD, DEFAULT_COOLDOWN),
        })
    }

    /// Replaces the circuit breaker's settings: endpoint-level failures in a
    /// row before failing fast (default 20), and how long to fail fast
    /// before probing again (default 30 s).
    pub fn with_circuit_breaker(mut self, threshold: u32, cooldown: Duration) -> Self {
        self.breaker = CircuitBreaker::new(threshold, cooldown);
        self
    }

    /// Replaces the backoff between retries (tests use short ones).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

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
    fn estimate_tokens(req: &InferenceRequest) -> f64 {
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

    /// Sends `body` with retries; returns the parsed JSON answer, the
    /// latency of the successful attempt and the attempts it took.
    async fn send_with_retries(
        &self,
        url: &str,
        body: &Value,
        token_estimate: f64,
    ) -> Result<(Value, Duration, u32), BackendError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            // Checked before every attempt so that requests already in their
            // retry loop stop too once the endpoint is known to be unusable.
            self.breaker
                .check()
                .map_err(|message| self.unusable(message))?;
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
                Attempt::Fatal(error) => return Err(error),
                Attempt::Rejected { status, message } => {
                    if let Some(symptom) = Symptom::of_status(status) {
                        if let Some(open) = self.note_unusable(symptom, &message) {
                            return Err(self.unusable(open));
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
                        return Err(self.unusable(open));
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

    /// Counts an endpoint-level failure; `Some(message)` once the breaker is
    /// open.
    fn note_unusable(&self, symptom: Symptom, detail: &str) -> Option<String> {
        self.breaker
            .record_unusable(|count| self.unusable_message(symptom, count, detail))
    }

    fn unusable(&self, message: String) -> BackendError {
        BackendError::EndpointUnusable {
            url: self.base_url.clone(),
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
            Symptom::NotFound => format!(
                "endpoint {base} does not serve model {:?} (HTTP 404 on {count} requests in a \
                 row: {detail}); check model.model against the server's /models list and that \
                 model.base_url includes the API prefix (e.g. /v1)",
                self.model
            ),
        }
    }

    /// One HTTP attempt, classified.
    async fn send_once(&self, url: &str, body: &Value) -> Attempt {
        let mut request = self.http.post(url).json(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(&key.0);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Attempt::Retryable(RetryableFailure::transport(&e)),
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
        let message = server_error_message(&bytes, status);
        if is_retryable_status(status) {
            return Attempt::Retryable(RetryableFailure::Status {
                status: status.as_u16(),
                message,
                retry_after,
            });
        }
        Attempt::Rejected {
            status: status.as_u16(),
            message,
        }
    }
}

#[async_trait]
impl Backend for OpenAiBackend {
    fn concurrency(&self) -> usize {
        self.concurrency
    }

    async fn run(&self, req: &InferenceRequest) -> Result<InferenceOutput, BackendError> {
        // Fail fast, without waiting for a permit, while the endpoint is
        // known to be unusable.
        self.breaker
            .check()
            .map_err(|message| self.unusable(message))?;
        let (path, body) = self.build_body(req)?;
        let url = self.url(path);
        // Held across retries so that a struggling endpoint sees less load.
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| BackendError::Config("the backend was shut down".into()))?;
        let estimate = Self::estimate_tokens(req);
        let (answer, latency, attempts) = self.send_with_retries(&url, &body, estimate).await?;
        if let Some(bucket) = &self.tokens_per_minute {
            let usage = parse_usage(&answer);
            let actual = usage.prompt_tokens.saturating_add(usage.completion_tokens) as f64;
            if actual > 0.0 {
                bucket.adjust(estimate - actual);
            }
        }
        self.output_from_answer(req, &url, &answer, latency, attempts)
    }
}

impl OpenAiBackend {
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
                let scored = parse_loglikelihood(answer, boundary, prompt.chars().count())
                    .map_err(|e| match e {
                        LoglikelihoodError::Straddles(message) => BackendError::Unscorable(message),
                        LoglikelihoodError::Malformed(message) => BackendError::BadResponse {
                            url: url.to_string(),
                            message,
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

/// What one HTTP attempt came to.
enum Attempt {
    /// A 2xx answer with a JSON body.
    Answered(Value),
    /// A non-retryable error status (4xx other than 408/429, 501, 505).
    Rejected { status: u16, message: String },
    /// Worth another attempt.
    Retryable(RetryableFailure),
    /// Cannot succeed on retry (a 2xx that is not JSON).
    Fatal(BackendError),
}

/// Endpoint-level failures the circuit breaker counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Symptom {
    /// Connection refused, DNS failure, connect timeout.
    Unreachable,
    /// 401 or 403: the key is missing or wrong.
    Unauthorized(u16),
    /// 404: the model is unknown (or the URL lacks the API prefix).
    NotFound,
}

impl Symptom {
    fn of_status(status: u16) -> Option<Symptom> {
        match status {
            401 | 403 => Some(Symptom::Unauthorized(status)),
            404 => Some(Symptom::NotFound),
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

pub(crate) fn resolve_base_url(model: &ModelSpec) -> Result<String, BackendError> {
    let raw = match (&model.base_url, &model.base_url_env) {
        (Some(url), _) => url.clone(),
        (None, Some(var)) => match std::env::var(var) {
            Ok(url) if !url.trim().is_empty() => url,
            _ => {
                return Err(BackendError::Config(format!(
                    "environment variable {var} (named by model.base_url_env) is not set; \
                     export it with the endpoint's base URL, e.g. http://localhost:8000/v1"
                )))
            }
        },
        (None, None) => {
            return Err(BackendError::Config(
                "[model] needs base_url (e.g. \"http://localhost:8000/v1\") or base_url_env \
                 naming an environment variable that holds it"
                    .into(),
            ))
        }
    };
    let trimmed = raw.trim().trim_end_matches('/').to_string();
    match reqwest::Url::parse(&trimmed) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(trimmed),
        Ok(_) => Err(BackendError::Config(format!(
            "model base URL {trimmed:?} must start with http:// or https://"
        ))),
        Err(e) => Err(BackendError::Config(format!(
            "model base URL {trimmed:?} is not a URL: {e}"
        ))),
    }
}

fn loglikelihood_parts(req: &InferenceRequest) -> Result<(&str, &str), BackendError> {
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
fn loglikelihood_prompt(context: &str, continuation: &str) -> (String, usize) {
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
    prompt_chars: usize,
) -> Result<LoglikelihoodOutput, LoglikelihoodError> {
    let choice = first_choice(answer)?;
    let logprobs = choice
        .get("logprobs")
        .filter(|v| !v.is_null())
        .ok_or("choices[0].logprobs is missing; the server must support echo=true with logprobs on /completions")?;
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

    #[test]
    fn loglikelihood_sums_continuation_tokens_only() {
        // prompt "The sky is blue" + generated "."; context "The sky is".
        let answer = json!({"choices": [{"text": "The sky is blue.", "logprobs": {
            "text_offset": [0, 3, 7, 10, 15],
            "tokens": ["The", " sky", " is", " blue", "."],
            "token_logprobs": [null, -1.0, -0.5, -0.25, -3.0],
            "top_logprobs": [null, {" sky": -1.0}, {" is": -0.5}, {" blue": -0.25, " red": -2.0}, {".": -3.0}]
        }}]});
        let out = parse_loglikelihood(&answer, 10, 15).unwrap();
        assert_eq!(out.logprob, -0.25);
        assert!(out.is_greedy);
        assert_eq!(out.token_logprobs, vec![-0.25]);

        let out = parse_loglikelihood(&answer, 3, 15).unwrap();
        assert_eq!(out.logprob, -1.75);

        let not_greedy = json!({"choices": [{"logprobs": {
            "text_offset": [0, 3], "tokens": ["ab", "c"], "token_logprobs": [null, -2.0],
            "top_logprobs": [null, {"d": -0.1, "c": -2.0}]
        }}]});
        let out = parse_loglikelihood(&not_greedy, 3, 4).unwrap();
        assert!(!out.is_greedy);
        assert!(parse_loglikelihood(&json!({"choices": [{}]}), 1, 2).is_err());
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
        match parse_loglikelihood(&answer, 8, 14) {
            Err(LoglikelihoodError::Straddles(message)) => {
                assert!(message.contains("\" color\""), "{message}")
            }
            _ => panic!("expected a straddle error"),
        }
        // On the token boundary it scores.
        let out = parse_loglikelihood(&answer, 9, 14).unwrap();
        assert_eq!(out.token_logprobs, vec![-0.5]);
    }

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
    fn absurd_usage_is_clamped() {
        let answer = json!({"usage": {"prompt_tokens": u64::MAX, "completion_tokens": 7}});
        let usage = parse_usage(&answer);
        assert_eq!(usage.prompt_tokens, MAX_REPORTED_TOKENS);
        assert_eq!(usage.completion_tokens, 7);
        assert_eq!(parse_usage(&json!({})), Usage::default());
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
