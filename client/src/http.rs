//! The HTTP transport to one coordinator: [`CoordinatorClient`], its
//! construction, and the plumbing every route goes through (bearer token,
//! timeouts, status → [`ClientError`] mapping, retries of lease calls).
//!
//! The routes themselves are in the `job_api`, `lease_api` and
//! `provider_batch_api` modules.

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use jobs::protocol::routes;
use jobs::protocol::ErrorBody;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::time::{Duration, Instant};

use crate::error::{ClientError, LeaseOutcome, TokenKind};
use crate::retry::RetryPolicy;
use crate::text::{error_chain, truncate_chars};

/// Client for one coordinator. Cheap to clone (the HTTP pool is shared).
#[derive(Clone)]
pub struct CoordinatorClient {
    http: reqwest::Client,
    pub(crate) base_url: String,
    token: String,
    retry: RetryPolicy,
    pub(crate) request_timeout: Duration,
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

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    // ---- unauthenticated ----

    /// `GET /healthz`: Ok when the coordinator answers 2xx.
    pub async fn healthz(&self) -> Result<(), ClientError> {
        self.send_raw::<()>(
            Method::GET,
            routes::HEALTHZ,
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
                routes::METRICS,
                None,
                TokenKind::Admin,
                Some(self.request_timeout),
            )
            .await?;
        response
            .text()
            .await
            .map_err(|e| transport_error(routes::METRICS, &self.base_url, &e))
    }

    // ---- plumbing ----

    pub(crate) async fn call_retrying<B: Serialize, T: DeserializeOwned>(
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

    pub(crate) async fn call<B: Serialize, T: DeserializeOwned>(
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
    pub(crate) async fn send_raw<B: Serialize>(
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
            // On a lease or batch route a 409 is the fence; elsewhere (a
            // schedule name taken) it is a refusal like any other 4xx.
            StatusCode::CONFLICT
                if route.starts_with("/v1/leases") || route.starts_with("/v1/batches") =>
            {
                ClientError::Fenced { route, message }
            }
            _ => ClientError::Http {
                route,
                status: status.as_u16(),
                message,
            },
        })
    }

    /// The body of a 2xx answer as a byte stream (for large bodies).
    pub(crate) async fn stream<B: Serialize>(
        &self,
        method: Method,
        route: String,
        body: Option<&B>,
        token: TokenKind,
    ) -> Result<BoxStream<'static, Result<Bytes, ClientError>>, ClientError> {
        let response = self.send_raw(method, &route, body, token, None).await?;
        let base_url = self.base_url.clone();
        Ok(response
            .bytes_stream()
            .map_err(move |e| transport_error(&route, &base_url, &e))
            .boxed())
    }
}

pub(crate) fn fenced_to_outcome<T>(
    result: Result<T, ClientError>,
) -> Result<LeaseOutcome<T>, ClientError> {
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
    truncate_chars(trimmed, 500)
}

pub(crate) fn transport_error(route: &str, base_url: &str, e: &reqwest::Error) -> ClientError {
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
            message: error_chain(e),
        }
    }
}
