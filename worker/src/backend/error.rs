//! [`BackendError`]: how running a request (or building a backend) fails.

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendError {
    /// The model spec or the environment is wrong; retrying cannot help.
    #[error("backend configuration: {0}")]
    Config(String),
    /// The backend cannot serve this kind of request.
    #[error("unsupported request: {0}")]
    Unsupported(String),
    /// The endpoint answered with an error status (after retries when the
    /// status is retryable).
    #[error("HTTP {status} from {url} after {attempts} attempt(s): {message}")]
    Http {
        url: String,
        status: u16,
        message: String,
        attempts: u32,
    },
    /// Timeouts or connection failures, after retries.
    #[error("{url}: {message} (after {attempts} attempt(s))")]
    Transport {
        url: String,
        message: String,
        attempts: u32,
    },
    /// A 2xx answer that does not follow the API.
    #[error("unexpected answer from {url}: {message}")]
    BadResponse { url: String, message: String },
    /// The answer is well formed but cannot score this continuation exactly
    /// (a token straddles the context/continuation boundary).
    #[error("cannot score the continuation: {0}")]
    Unscorable(String),
    /// The in-process engine cannot run this request on its model (too
    /// long for the model, parameters it does not support, ...).
    #[error("{0}")]
    Invalid(String),
    /// The backend's circuit breaker is open: the endpoint failed the same
    /// way (unreachable, key rejected, model unknown) many times in a row,
    /// so every request would fail. The worker fails the whole shard with
    /// this message instead of recording one failure per request.
    #[error("{message}")]
    EndpointUnusable { url: String, message: String },
}

impl BackendError {
    /// Whether this error condemns the whole shard (not just one request).
    pub fn is_endpoint_unusable(&self) -> bool {
        matches!(self, BackendError::EndpointUnusable { .. })
    }
}
