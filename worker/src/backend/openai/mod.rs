//! Backend for any OpenAI-compatible endpoint (OpenAI, vLLM, SGLang, TGI,
//! LiteLLM, FastChat): `/chat/completions` and `/completions`, with
//! concurrency, requests-per-minute and tokens-per-minute limits, retries
//! honouring `Retry-After`, and a circuit breaker that fails fast when the
//! endpoint itself is unusable.
//!
//! One backend value is shared by every shard of its model in a worker (see
//! `BackendCache`), so its concurrency and rate limits are per worker
//! process part, not per shard.

mod request;
mod response;
mod transport;

use async_trait::async_trait;
use jobs::spec::{Endpoint, ModelSpec};
use jobs::{InferenceOutput, InferenceRequest};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

use super::breaker::{CircuitBreaker, DEFAULT_COOLDOWN, DEFAULT_THRESHOLD};
use super::http_client;
use super::key_policy::KeyPolicy;
use super::rate_limit::TokenBucket;
use super::{Backend, BackendError, ErrorReach};
use client::retry::Backoff;

/// Default backoff between retries: 0.5 s doubling up to 30 s, jittered.
pub const DEFAULT_BACKOFF: Backoff =
    Backoff::full_jitter(Duration::from_millis(500), Duration::from_secs(30));

/// Longest `Retry-After` honoured; longer asks are clamped so that a
/// misbehaving proxy cannot park a worker for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Retries after a failed connection (refused, DNS): a server that refuses
/// outright rarely comes back within a request's backoff, and the circuit
/// breaker handles the endpoint as a whole.
const MAX_CONNECT_RETRIES: u32 = 2;

/// The servers whose `/v1/completions` scores a prompt (`echo` with
/// `logprobs`), named when an endpoint cannot.
pub(crate) const LOGLIKELIHOOD_SERVERS: &str = "vLLM, SGLang and llama.cpp's server (llama-server)";

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
    /// from the environment variables the spec names (the key only where
    /// `keys` allows it).
    pub fn from_spec(model: &ModelSpec, keys: &KeyPolicy) -> Result<Self, BackendError> {
        let base_url = resolve_base_url(model, keys)?;
        let api_key = match &model.api_key_env {
            None => None,
            Some(var) => Some(ApiKey(keys.read(var, &base_url)?)),
        };
        if model.timeout_secs == 0 {
            return Err(BackendError::Config(
                "model.timeout_secs must be at least 1".into(),
            ));
        }
        let http = http_client::build(
            http_client::client_builder(model)?
                // Sized for the concurrency so connections are reused.
                .pool_max_idle_per_host(usize::try_from(model.concurrency).unwrap_or(usize::MAX)),
        )?;
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
}

#[async_trait]
impl Backend for OpenAiBackend {
    fn concurrency(&self) -> usize {
        self.concurrency
    }

    async fn run(&self, req: &InferenceRequest) -> Result<InferenceOutput, BackendError> {
        // Fail fast, without waiting for a permit, while the endpoint is
        // known to be unusable.
        self.breaker.check()?;
        let (path, body) = self.build_body(req)?;
        let url = self.url(path);
        // Held across retries so that a struggling endpoint sees less load.
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| BackendError::Config("the backend was shut down".into()))?;
        let estimate = Self::estimate_tokens(req);
        let (answer, latency, attempts) = self
            .send_with_retries(&url, &body, estimate, req.request_type)
            .await?;
        if let Some(bucket) = &self.tokens_per_minute {
            let usage = Self::usage_of(&answer);
            let actual = usage.prompt_tokens.saturating_add(usage.completion_tokens) as f64;
            if actual > 0.0 {
                bucket.adjust(estimate - actual);
            }
        }
        self.output_from_answer(req, &url, &answer, latency, attempts)
            .map_err(|e| self.trip_if_incompatible(e))
    }
}

impl OpenAiBackend {
    /// Where an error first arises: one that every request of the job
    /// would meet opens the breaker at once, so the requests queued behind
    /// it fail without each paying a request to learn it.
    pub(super) fn trip_if_incompatible(&self, error: BackendError) -> BackendError {
        if error.reach() == ErrorReach::Job {
            self.breaker.trip(error)
        } else {
            error
        }
    }
}

/// The endpoint's base URL: `model.base_url`, or the value of the variable
/// `model.base_url_env` names (never a coordinator token's), if this worker
/// may send requests there. A value read
/// from a variable is not quoted in errors: the job's author may not see
/// this worker's environment.
pub(crate) fn resolve_base_url(
    model: &ModelSpec,
    keys: &KeyPolicy,
) -> Result<String, BackendError> {
    let (raw, shown) = match (&model.base_url, &model.base_url_env) {
        (Some(url), _) => (url.clone(), None),
        (None, Some(var)) => {
            keys.check_not_token(var, "base_url_env")?;
            match std::env::var(var) {
                Ok(url) if !url.trim().is_empty() => {
                    (url, Some(format!("in {var} (named by model.base_url_env)")))
                }
                _ => {
                    return Err(BackendError::Config(format!(
                        "environment variable {var} (named by model.base_url_env) is not set; \
                         export it with the endpoint's base URL, e.g. http://localhost:8000/v1"
                    )))
                }
            }
        }
        (None, None) => {
            return Err(BackendError::Config(
                "[model] needs base_url (e.g. \"http://localhost:8000/v1\") or base_url_env \
                 naming an environment variable that holds it"
                    .into(),
            ))
        }
    };
    let trimmed = raw.trim().trim_end_matches('/').to_string();
    let shown = shown.unwrap_or_else(|| format!("{trimmed:?}"));
    match reqwest::Url::parse(&trimmed) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => {
            keys.check_endpoint(&trimmed, &shown)?;
            Ok(trimmed)
        }
        Ok(_) => Err(BackendError::Config(format!(
            "model base URL {shown} must start with http:// or https://"
        ))),
        Err(e) => Err(BackendError::Config(format!(
            "model base URL {shown} is not a URL: {e}"
        ))),
    }
}
