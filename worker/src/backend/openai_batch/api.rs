//! HTTP client of OpenAI's Files and Batches API: upload an input file, create, retrieve, list
//! and cancel batches, download output and error files. Transient failures (429, 5xx, timeouts,
//! lost connections) are retried with backoff, honouring `Retry-After`, except where a retry
//! could create a second batch: see [`BatchApi::create`].
//!
//! The API key comes from the environment variable the spec names and is never logged or
//! stored.

use bytes::Bytes;
use jobs::redact::scrub;
use jobs::spec::ModelSpec;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::fmt;
use std::time::Duration;

use crate::backend::openai::resolve_base_url;
use crate::backend::{http_client, tls};
use crate::backend::{BackendError, KeyPolicy};
use client::retry::{parse_retry_after, Backoff};

/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Uploads and downloads of files up to 200 MB get more time than JSON calls.
const FILE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchApiError {
    /// A non-retryable error status, or a retryable one after the retries.
    #[error("HTTP {status} from {method} {url}: {message}")]
    Http {
        method: String,
        url: String,
        status: u16,
        message: String,
        /// The error's `code` (e.g. `token_limit_exceeded`), when given.
        code: Option<String>,
    },
    /// Timeouts and connection failures, after the retries.
    #[error("{method} {url}: {message}")]
    Transport {
        method: String,
        url: String,
        message: String,
        /// The connection was never made, so the request had no effect.
        connect: bool,
    },
    /// A 2xx answer that does not follow the API.
    #[error("unexpected answer from {url}: {message}")]
    BadResponse { url: String, message: String },
    /// The server's TLS certificate was refused; no retry changes it.
    #[error("{message}")]
    Untrusted { url: String, message: String },
}

impl BatchApiError {
    /// Whether the request may have taken effect (a create that timed out
    /// may still have created its batch).
    pub fn is_ambiguous(&self) -> bool {
        match self {
            BatchApiError::Transport { connect, .. } => !connect,
            BatchApiError::Http { status, .. } => *status >= 500,
            BatchApiError::BadResponse { .. } => true,
            // Refused in the handshake, before any request was sent.
            BatchApiError::Untrusted { .. } => false,
        }
    }

    /// Whether trying again later can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            BatchApiError::Transport { .. } => true,
            BatchApiError::Http { status, .. } => is_retryable_status(*status),
            BatchApiError::BadResponse { .. } | BatchApiError::Untrusted { .. } => false,
        }
    }
}

impl From<BatchApiError> for BackendError {
    fn from(e: BatchApiError) -> Self {
        match e {
            BatchApiError::Http {
                url,
                status,
                message,
                ..
            } => BackendError::Http {
                url,
                status,
                message,
                attempts: 1,
            },
            BatchApiError::Transport { url, message, .. } => BackendError::Transport {
                url,
                message,
                attempts: 1,
            },
            BatchApiError::BadResponse { url, message } => {
                BackendError::BadResponse { url, message }
            }
            BatchApiError::Untrusted { url, message } => {
                BackendError::Incompatible { url, message }
            }
        }
    }
}

fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429) || ((500..=599).contains(&status) && !matches!(status, 501 | 505))
}

/// An API key that never shows up in `Debug` output or logs.
#[derive(Clone)]
struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `request_counts` of a batch.
#[derive(Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub completed: u64,
    #[serde(default)]
    pub failed: u64,
}

/// One entry of a failed batch's `errors.data`.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
pub struct BatchErrorEntry {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default)]
    pub line: Option<u64>,
}

#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
pub struct BatchErrors {
    #[serde(default)]
    pub data: Vec<BatchErrorEntry>,
}

/// The fields of a batch object this backend reads.
#[derive(Deserialize, Clone, Debug, PartialEq)]
pub struct BatchObject {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub output_file_id: Option<String>,
    #[serde(default)]
    pub error_file_id: Option<String>,
    #[serde(default)]
    pub errors: Option<BatchErrors>,
    #[serde(default)]
    pub request_counts: Option<RequestCounts>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub created_at: Option<i64>,
}

impl BatchObject {
    /// The validation errors as one line: `line 3: invalid_request: …; …`.
    pub fn error_summary(&self) -> String {
        let entries = self
            .errors
            .as_ref()
            .map(|e| e.data.as_slice())
            .unwrap_or_default();
        if entries.is_empty() {
            return "no reason given".to_string();
        }
        let shown: Vec<String> = entries
            .iter()
            .take(5)
            .map(|e| {
                let mut s = String::new();
                if let Some(line) = e.line.filter(|l| *l > 0) {
                    s.push_str(&format!("line {line}: "));
                }
                if let Some(code) = &e.code {
                    s.push_str(code);
                    s.push_str(": ");
                }
                s.push_str(e.message.as_deref().unwrap_or("no message"));
                s
            })
            .collect();
        let more = entries.len().saturating_sub(shown.len());
        if more > 0 {
            format!("{} (and {more} more)", shown.join("; "))
        } else {
            shown.join("; ")
        }
    }

    /// Whether it failed only because the model's enqueued-token quota was
    /// full: nothing ran, so its requests can go in a later batch.
    pub fn failed_for_quota(&self) -> bool {
        self.status == "failed"
            && self.errors.as_ref().is_some_and(|e| {
                !e.data.is_empty()
                    && e.data
                        .iter()
                        .all(|d| d.code.as_deref() == Some("token_limit_exceeded"))
            })
    }
}

#[derive(Deserialize, Clone, Debug)]
pub struct BatchList {
    pub data: Vec<BatchObject>,
    #[serde(default)]
    pub has_more: bool,
    #[serde(default)]
    pub last_id: Option<String>,
}

#[derive(Deserialize, Clone, Debug)]
pub struct FileObject {
    pub id: String,
}

/// A client of one provider's Files and Batches API.
pub struct BatchApi {
    http: reqwest::Client,
    base_url: String,
    api_key: Option<ApiKey>,
    max_retries: u32,
    backoff: Backoff,
}

impl fmt::Debug for BatchApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchApi")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// What one HTTP attempt came to.
enum Attempt {
    Done(reqwest::Response),
    Retry {
        error: BatchApiError,
        retry_after: Option<Duration>,
    },
    Fail(BatchApiError),
}

impl BatchApi {
    /// Builds the client from `[model]`: base URL, key (from the named
    /// environment variable), timeouts and retries.
    pub fn from_spec(model: &ModelSpec, keys: &KeyPolicy) -> Result<Self, BackendError> {
        let base_url = resolve_base_url(model, keys)?;
        let api_key = match &model.api_key_env {
            None => None,
            Some(var) => Some(ApiKey(keys.read(var, &base_url)?)),
        };
        let http = http_client::build(http_client::client_builder(model)?)?;
        Ok(BatchApi {
            http,
            base_url,
            api_key,
            max_retries: model.max_retries,
            backoff: Backoff::full_jitter(Duration::from_millis(500), Duration::from_secs(30)),
        })
    }

    /// Replaces the backoff between retries (tests use short ones).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `POST /files` with `purpose = batch`.
    pub async fn upload(
        &self,
        filename: &str,
        content: Bytes,
    ) -> Result<FileObject, BatchApiError> {
        let boundary = format!("shardline-{:032x}", rand::random::<u128>());
        let mut body = Vec::with_capacity(content.len() + 512);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
                 Content-Type: application/jsonl\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&content);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let body = Bytes::from(body);
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let response = self
            .send(Method::POST, "/files", FILE_TIMEOUT, true, |req| {
                req.header(reqwest::header::CONTENT_TYPE, content_type.clone())
                    .body(body.clone())
            })
            .await?;
        self.json(response, "/files").await
    }

    /// `POST /batches`. Not retried once the request may have reached the
    /// server (a timeout, a 5xx): a second try could create a second batch.
    /// The caller looks for the batch by its metadata before trying again.
    pub async fn create(
        &self,
        input_file_id: &str,
        endpoint: &str,
        metadata: &Map<String, Value>,
    ) -> Result<BatchObject, BatchApiError> {
        let body = json!({
            "input_file_id": input_file_id,
            "endpoint": endpoint,
            "completion_window": jobs::spec::COMPLETION_WINDOW,
            "metadata": metadata,
        });
        let timeout = self.json_timeout();
        let response = self
            .send(Method::POST, "/batches", timeout, false, |req| {
                req.json(&body)
            })
            .await?;
        self.json(response, "/batches").await
    }

    /// `GET /batches/{id}`.
    pub async fn retrieve(&self, id: &str) -> Result<BatchObject, BatchApiError> {
        let path = format!("/batches/{id}");
        let response = self
            .send(Method::GET, &path, self.json_timeout(), true, |req| req)
            .await?;
        self.json(response, &path).await
    }

    /// `GET /batches?limit=100&after=…`: one page, newest first.
    pub async fn list(&self, after: Option<&str>) -> Result<BatchList, BatchApiError> {
        let path = match after {
            Some(cursor) => format!("/batches?limit=100&after={cursor}"),
            None => "/batches?limit=100".to_string(),
        };
        let response = self
            .send(Method::GET, &path, self.json_timeout(), true, |req| req)
            .await?;
        self.json(response, &path).await
    }

    /// `POST /batches/{id}/cancel` (cancelling twice is harmless).
    pub async fn cancel(&self, id: &str) -> Result<BatchObject, BatchApiError> {
        let path = format!("/batches/{id}/cancel");
        let response = self
            .send(Method::POST, &path, self.json_timeout(), true, |req| req)
            .await?;
        self.json(response, &path).await
    }

    /// `GET /files/{id}/content`.
    pub async fn content(&self, file_id: &str) -> Result<Bytes, BatchApiError> {
        let path = format!("/files/{file_id}/content");
        let response = self
            .send(Method::GET, &path, FILE_TIMEOUT, true, |req| req)
            .await?;
        let url = self.url(&path);
        response
            .bytes()
            .await
            .map_err(|e| transport("GET", &url, &e))
    }

    fn json_timeout(&self) -> Duration {
        // The client's own timeout (model.timeout_secs) applies.
        Duration::ZERO
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        response: reqwest::Response,
        path: &str,
    ) -> Result<T, BatchApiError> {
        let url = self.url(path);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport("GET", &url, &e))?;
        serde_json::from_slice(&bytes).map_err(|e| BatchApiError::BadResponse {
            url,
            message: format!("the body does not parse: {e}"),
        })
    }

    /// Sends with retries. `idempotent = false` retries only failures that
    /// cannot have reached the server (refused connections, 429).
    async fn send(
        &self,
        method: Method,
        path: &str,
        timeout: Duration,
        idempotent: bool,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, BatchApiError> {
        let url = self.url(path);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut request = self.http.request(method.clone(), &url);
            if !timeout.is_zero() {
                request = request.timeout(timeout);
            }
            if let Some(key) = &self.api_key {
                request = request.bearer_auth(&key.0);
            }
            let outcome = match build(request).send().await {
                Err(e) => {
                    let error = transport(method.as_str(), &url, &e);
                    if let Some(problem) = tls::certificate_problem(&e) {
                        Attempt::Fail(BatchApiError::Untrusted {
                            url: url.clone(),
                            message: tls::untrusted_message(&self.base_url, &problem),
                        })
                    } else if idempotent || e.is_connect() {
                        Attempt::Retry {
                            error,
                            retry_after: None,
                        }
                    } else {
                        Attempt::Fail(error)
                    }
                }
                Ok(response) if response.status().is_success() => Attempt::Done(response),
                Ok(response) => {
                    let status = response.status();
                    let retry_after = parse_retry_after(response.headers());
                    let text = response.text().await.unwrap_or_default();
                    let (message, code) = error_message(&text, status);
                    // An endpoint may echo the request's key into its error.
                    let known: Vec<&str> = self.api_key.iter().map(|k| k.0.as_str()).collect();
                    let message = scrub(&message, &known).into_owned();
                    let error = BatchApiError::Http {
                        method: method.to_string(),
                        url: url.clone(),
                        status: status.as_u16(),
                        message,
                        code,
                    };
                    let retryable = is_retryable_status(status.as_u16())
                        && (idempotent || status == StatusCode::TOO_MANY_REQUESTS);
                    if retryable {
                        Attempt::Retry { error, retry_after }
                    } else {
                        Attempt::Fail(error)
                    }
                }
            };
            match outcome {
                Attempt::Done(response) => return Ok(response),
                Attempt::Fail(error) => return Err(error),
                Attempt::Retry { error, retry_after } => {
                    if attempt > self.max_retries {
                        return Err(error);
                    }
                    let delay = retry_after
                        .map(|d| d.min(MAX_RETRY_AFTER))
                        .unwrap_or_else(|| self.backoff.delay(attempt - 1));
                    tracing::debug!(%url, attempt, delay_ms = delay.as_millis() as u64, %error,
                        "Batch API call failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

fn transport(method: &str, url: &str, e: &reqwest::Error) -> BatchApiError {
    let message = if e.is_timeout() {
        "request timed out".to_string()
    } else {
        client::text::error_chain(e)
    };
    BatchApiError::Transport {
        method: method.to_string(),
        url: url.to_string(),
        message,
        connect: e.is_connect(),
    }
}

/// `error.message` and `error.code` of an OpenAI error body, else the start
/// of the raw text.
fn error_message(text: &str, status: StatusCode) -> (String, Option<String>) {
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        if let Some(message) = value.pointer("/error/message").and_then(Value::as_str) {
            let code = value
                .pointer("/error/code")
                .and_then(Value::as_str)
                .map(str::to_string);
            return (message.to_string(), code);
        }
    }
    let trimmed = text.trim();
    if trimmed.is_empty() {
        (
            status
                .canonical_reason()
                .unwrap_or("no message")
                .to_string(),
            None,
        )
    } else {
        (client::text::truncate_chars(trimmed, 500), None)
    }
}
