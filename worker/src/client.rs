//! HTTP client for the coordinator: the job API (admin token) and the lease
//! API (worker token), one method per route of `jobs::protocol`.
//!
//! Lease calls are retried on transient failures (connection refused,
//! timeouts, 5xx) for a bounded time, because a coordinator restart must not
//! make every worker drop its shards. A 409 on `complete`/`fail`/`release`
//! means the lease was fenced (a newer attempt owns the shard); that is an
//! expected outcome and is returned as [`LeaseOutcome::Fenced`].

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use jobs::protocol::{
    ClaimRequest, ClaimResponse, CompleteRequest, CompleteResponse, ErrorBody, FailRequest,
    FailResponse, HeartbeatRequest, HeartbeatResponse, JobStatus, ReleaseRequest, ReleaseResponse,
    SubmitJobRequest,
};
use jobs::{
    protocol::BatchAccepted, protocol::BatchClaimRequest, protocol::BatchClaimResponse,
    protocol::BatchFinishRequest, protocol::BatchFinishResponse, protocol::BatchHeartbeatRequest,
    protocol::BatchHeartbeatResponse, protocol::BatchRequestsRequest,
    protocol::BatchReserveRequest, protocol::BatchReserveResponse, protocol::BatchSubmitRequest,
    protocol::BatchUpdateRequest,
};
use jobs::{InferenceRequest, JobSpec};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::time::{Duration, Instant};
use uuid::Uuid;

use crate::retry::Backoff;

/// Which token a route needs; used to say what to check on a 401.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Admin,
    Worker,
}

impl TokenKind {
    fn hint(self) -> &'static str {
        match self {
            TokenKind::Admin => {
                "check the admin token: the environment variable named by --token-env \
                 (default SHARDLINE_ADMIN_TOKEN) must hold the coordinator's admin token"
            }
            TokenKind::Worker => {
                "check the worker token: the environment variable named by --token-env \
                 (default SHARDLINE_WORKER_TOKEN) must hold the coordinator's worker token"
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("coordinator rejected the token for {route} (HTTP 401); {hint}")]
    Unauthorized { route: String, hint: &'static str },
    #[error("{route}: not found: {message}")]
    NotFound { route: String, message: String },
    #[error("{route}: lease fenced (a newer attempt owns the shard): {message}")]
    Fenced { route: String, message: String },
    #[error("{route}: coordinator answered HTTP {status}: {message}")]
    Http {
        route: String,
        status: u16,
        message: String,
    },
    #[error("{route}: cannot reach the coordinator at {base_url}: {message}; is `shardline serve` running there?")]
    Connect {
        route: String,
        base_url: String,
        message: String,
    },
    #[error("{route}: the coordinator at {base_url} did not answer in time")]
    Timeout { route: String, base_url: String },
    #[error("{route}: unreadable answer from the coordinator: {message}")]
    Decode { route: String, message: String },
    #[error("invalid coordinator URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

impl ClientError {
    /// Whether trying again later can succeed (the coordinator may be
    /// restarting or overloaded).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Connect { .. } | ClientError::Timeout { .. } => true,
            ClientError::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// Answer of a fenced lease call: accepted, or refused because the lease no
/// longer belongs to this attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum LeaseOutcome<T> {
    Accepted(T),
    Fenced { message: String },
}

/// How long lease calls keep retrying transient failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub backoff: Backoff,
    /// Give up once this much time has passed since the first attempt.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(10)),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

/// Client for one coordinator. Cheap to clone (the HTTP pool is shared).
#[derive(Clone)]
pub struct CoordinatorClient {
    http: reqwest::Client,
    base_url: String,
    token: String,
    retry: RetryPolicy,
    request_timeout: Duration,
}

impl fmt::Debug for CoordinatorClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoordinatorClient")
            .field("base_url", &self.base_url)
            .field("token", &"<redacted>")
            .field("retry", &self.retry)
            .finish()
    }
}

impl CoordinatorClient {
    /// `base_url` is the coordinator's root, e.g. `http://127.0.0.1:8700`
    /// (routes add `/v1/...`). `token` is sent as a bearer token and never
    /// logged.
    pub fn new(base_url: &str, token: String) -> Result<Self, ClientError> {
        let trimmed = base_url.trim().trim_end_matches('/');
        let parsed = reqwest::Url::parse(trimmed).map_err(|e| ClientError::InvalidUrl {
            url: base_url.to_string(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ClientError::InvalidUrl {
                url: base_url.to_string(),
                reason: "the scheme must be http or https".into(),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(CoordinatorClient {
            http,
            base_url: trimmed.to_string(),
            token,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(60),
        })
    }

    /// Replaces the retry policy of lease calls.
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Replaces the per-call timeout of JSON calls (default 60 s).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    // ---- job API (admin token) ----

    pub async fn submit(&self, spec: &JobSpec) -> Result<JobStatus, ClientError> {
        self.submit_with_priority(spec, 0).await
    }

    /// Submits at a priority: higher runs first, equal priorities share the
    /// workers.
    pub async fn submit_with_priority(
        &self,
        spec: &JobSpec,
        priority: i32,
    ) -> Result<JobStatus, ClientError> {
        let body = SubmitJobRequest {
            spec: spec.clone(),
            priority,
        };
        self.call(Method::POST, "/v1/jobs", Some(&body), TokenKind::Admin)
            .await
    }

    /// Scores `spec` on the coordinator from its cache alone (the spec need
    /// not have been submitted): the same body as [`CoordinatorClient::results`].
    pub async fn rescore_spec(&self, spec: &JobSpec) -> Result<serde_json::Value, ClientError> {
        let body = serde_json::json!({ "spec": spec });
        self.call(Method::POST, "/v1/rescore", Some(&body), TokenKind::Admin)
            .await
    }

    /// `samples.jsonl` of [`CoordinatorClient::rescore_spec`], as a stream.
    pub async fn rescore_samples_stream(
        &self,
        spec: &JobSpec,
    ) -> Result<BoxStream<'static, Result<Bytes, ClientError>>, ClientError> {
        let route = "/v1/rescore/samples";
        let body = serde_json::json!({ "spec": spec });
        let response = self
            .send_raw(Method::POST, route, Some(&body), TokenKind::Admin, None)
            .await?;
        let base_url = self.base_url.clone();
        Ok(response
            .bytes_stream()
            .map_err(move |e| transport_error(route, &base_url, &e))
            .boxed())
    }

    pub async fn list_jobs(&self) -> Result<Vec<JobStatus>, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/jobs", None, TokenKind::Admin)
            .await
    }

    pub async fn job(&self, id: Uuid) -> Result<JobStatus, ClientError> {
        self.call::<(), _>(
            Method::GET,
            &format!("/v1/jobs/{id}"),
            None,
            TokenKind::Admin,
        )
        .await
    }

    pub async fn cancel(&self, id: Uuid) -> Result<JobStatus, ClientError> {
        self.call::<(), _>(
            Method::POST,
            &format!("/v1/jobs/{id}/cancel"),
            None,
            TokenKind::Admin,
        )
        .await
    }

    /// The job's results (metrics report) as JSON.
    pub async fn results(&self, id: Uuid) -> Result<serde_json::Value, ClientError> {
        self.call::<(), _>(
            Method::GET,
            &format!("/v1/jobs/{id}/results"),
            None,
            TokenKind::Admin,
        )
        .await
    }

    /// `samples.jsonl` of a job as a byte stream (it can be large).
    pub async fn samples_stream(
        &self,
        id: Uuid,
    ) -> Result<BoxStream<'static, Result<Bytes, ClientError>>, ClientError> {
        let route = format!("/v1/jobs/{id}/samples");
        let response = self
            .send_raw::<()>(Method::GET, &route, None, TokenKind::Admin, None)
            .await?;
        let base_url = self.base_url.clone();
        Ok(response
            .bytes_stream()
            .map_err(move |e| transport_error(&route, &base_url, &e))
            .boxed())
    }

    /// `samples.jsonl` of a job, whole.
    pub async fn samples(&self, id: Uuid) -> Result<String, ClientError> {
        let route = format!("/v1/jobs/{id}/samples");
        let response = self
            .send_raw::<()>(Method::GET, &route, None, TokenKind::Admin, None)
            .await?;
        response
            .text()
            .await
            .map_err(|e| transport_error(&route, &self.base_url, &e))
    }

    // ---- unauthenticated ----

    /// `GET /healthz`: Ok when the coordinator answers 2xx.
    pub async fn healthz(&self) -> Result<(), ClientError> {
        self.send_raw::<()>(
            Method::GET,
            "/healthz",
            None,
            TokenKind::Admin,
            Some(self.request_timeout),
        )
        .await
        .map(|_| ())
    }

    /// `GET /metrics`: the Prometheus text exposition.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let response = self
            .send_raw::<()>(
                Method::GET,
                "/metrics",
                None,
                TokenKind::Admin,
                Some(self.request_timeout),
            )
            .await?;
        response
            .text()
            .await
            .map_err(|e| transport_error("/metrics", &self.base_url, &e))
    }

    // ---- lease API (worker token), retried on transient errors ----

    pub async fn claim(&self, req: &ClaimRequest) -> Result<ClaimResponse, ClientError> {
        self.call_retrying(Method::POST, "/v1/leases/claim", req)
            .await
    }

    /// A 409 answer comes back as [`ClientError::Fenced`].
    pub async fn heartbeat(
        &self,
        req: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ClientError> {
        self.call_retrying(Method::POST, "/v1/leases/heartbeat", req)
            .await
    }

    pub async fn complete(
        &self,
        req: &CompleteRequest,
    ) -> Result<LeaseOutcome<CompleteResponse>, ClientError> {
        fenced_to_outcome(
            self.call_retrying(Method::POST, "/v1/leases/complete", req)
                .await,
        )
    }

    pub async fn fail(&self, req: &FailRequest) -> Result<LeaseOutcome<FailResponse>, ClientError> {
        fenced_to_outcome(
            self.call_retrying(Method::POST, "/v1/leases/fail", req)
                .await,
        )
    }

    pub async fn release(
        &self,
        req: &ReleaseRequest,
    ) -> Result<LeaseOutcome<ReleaseResponse>, ClientError> {
        fenced_to_outcome(
            self.call_retrying(Method::POST, "/v1/leases/release", req)
                .await,
        )
    }

    // ---- batch routes (worker token), see `jobs::protocol::provider_batch` ----

    /// Room under the model's enqueued-token cap. 409 → fenced.
    pub async fn batch_reserve(
        &self,
        req: &BatchReserveRequest,
    ) -> Result<LeaseOutcome<BatchReserveResponse>, ClientError> {
        fenced_to_outcome(
            self.call_retrying(Method::POST, "/v1/batches/reserve", req)
                .await,
        )
    }

    /// `running` → `submitted` with the batch ids. 409 → fenced.
    pub async fn batch_submit(
        &self,
        req: &BatchSubmitRequest,
    ) -> Result<LeaseOutcome<BatchAccepted>, ClientError> {
        fenced_to_outcome(
            self.call_retrying(Method::POST, "/v1/batches/submit", req)
                .await,
        )
    }

    /// The shard's requests in planned order (what batch state indices point
    /// into).
    pub async fn batch_requests(
        &self,
        req: &BatchRequestsRequest,
    ) -> Result<Vec<InferenceRequest>, ClientError> {
        self.call_retrying(Method::POST, "/v1/batches/requests", req)
            .await
    }

    /// Poll leases on submitted shards that are due.
    pub async fn batch_claim(
        &self,
        req: &BatchClaimRequest,
    ) -> Result<BatchClaimResponse, ClientError> {
        self.call_retrying(Method::POST, "/v1/batches/claim", req)
            .await
    }

    /// Renews a poll lease; a 409 comes back as [`ClientError::Fenced`].
    pub async fn batch_heartbeat(
        &self,
        req: &BatchHeartbeatRequest,
    ) -> Result<BatchHeartbeatResponse, ClientError> {
        self.call_retrying(Method::POST, "/v1/batches/heartbeat", req)
            .await
    }

    /// Records a submitted shard's new state. 409 → fenced.
    pub async fn batch_update(
        &self,
        req: &BatchUpdateRequest,
    ) -> Result<LeaseOutcome<BatchAccepted>, ClientError> {
        fenced_to_outcome(
            self.call_retrying(Method::POST, "/v1/batches/update", req)
                .await,
        )
    }

    /// Completes, fails or cancels a submitted shard. 409 → fenced.
    pub async fn batch_finish(
        &self,
        req: &BatchFinishRequest,
    ) -> Result<LeaseOutcome<BatchFinishResponse>, ClientError> {
        fenced_to_outcome(
            self.call_retrying(Method::POST, "/v1/batches/finish", req)
                .await,
        )
    }

    // ---- plumbing ----

    async fn call_retrying<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        route: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let started = Instant::now();
        let mut retry = 0u32;
        loop {
            match self
                .call(method.clone(), route, Some(body), TokenKind::Worker)
                .await
            {
                Ok(value) => return Ok(value),
                Err(e) if e.is_retryable() => {
                    let delay = self.retry.backoff.delay(retry);
                    if started.elapsed() + delay > self.retry.max_elapsed {
                        return Err(e);
                    }
                    tracing::warn!(route, retry, delay_ms = delay.as_millis() as u64, error = %e,
                        "coordinator call failed; retrying");
                    tokio::time::sleep(delay).await;
                    retry = retry.saturating_add(1);
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        route: &str,
        body: Option<&B>,
        token: TokenKind,
    ) -> Result<T, ClientError> {
        let response = self
            .send_raw(method, route, body, token, Some(self.request_timeout))
            .await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(route, &self.base_url, &e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            route: route.to_string(),
            message: e.to_string(),
        })
    }

    /// Sends a request and maps every non-2xx status to a [`ClientError`].
    async fn send_raw<B: Serialize>(
        &self,
        method: Method,
        route: &str,
        body: Option<&B>,
        token: TokenKind,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{}", self.base_url, route);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(route, &self.base_url, &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let message = error_message(&text, status);
        let route = route.to_string();
        Err(match status {
            StatusCode::UNAUTHORIZED => ClientError::Unauthorized {
                route,
                hint: token.hint(),
            },
            StatusCode::NOT_FOUND => ClientError::NotFound { route, message },
            StatusCode::CONFLICT => ClientError::Fenced { route, message },
            _ => ClientError::Http {
                route,
                status: status.as_u16(),
                message,
            },
        })
    }
}

fn fenced_to_outcome<T>(result: Result<T, ClientError>) -> Result<LeaseOutcome<T>, ClientError> {
    match result {
        Ok(value) => Ok(LeaseOutcome::Accepted(value)),
        Err(ClientError::Fenced { message, .. }) => Ok(LeaseOutcome::Fenced { message }),
        Err(e) => Err(e),
    }
}

/// The `error` of an [`ErrorBody`], else the (shortened) raw body.
fn error_message(text: &str, status: StatusCode) -> String {
    if let Ok(body) = serde_json::from_str::<ErrorBody>(text) {
        return body.error;
    }
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return status
            .canonical_reason()
            .unwrap_or("no error message")
            .to_string();
    }
    crate::truncate_chars(trimmed, 500)
}

fn transport_error(route: &str, base_url: &str, e: &reqwest::Error) -> ClientError {
    if e.is_timeout() {
        ClientError::Timeout {
            route: route.to_string(),
            base_url: base_url.to_string(),
        }
    } else if e.is_decode() {
        ClientError::Decode {
            route: route.to_string(),
            message: e.to_string(),
        }
    } else {
        // Connection refused/reset and body read failures: all transient.
        ClientError::Connect {
            route: route.to_string(),
            base_url: base_url.to_string(),
            message: crate::error_chain(e),
        }
    }
}
