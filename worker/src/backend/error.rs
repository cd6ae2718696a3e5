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
    /// way (unreachable, key rejected) many times in a row, so every
    /// request would fail. The worker fails the whole shard with this
    /// message instead of recording one failure per request.
    #[error("{message}")]
    EndpointUnusable { url: String, message: String },
    /// The endpoint and the job's model settings cannot work together, for
    /// every request alike: the server's TLS certificate is not trusted, it
    /// has no route the job needs or no model of the job's name, or it
    /// ignores a parameter the job depends on (`echo`, `logprobs`). No retry
    /// or later attempt can succeed until the job or the server changes, so
    /// the worker fails the job at once.
    #[error("{message}")]
    Incompatible { url: String, message: String },
}

/// How much of the work one error condemns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorReach {
    /// This request only: it is recorded as failed, the others go on.
    Request,
    /// The shard's attempt: the endpoint is unusable for now (down, key
    /// rejected), and a later attempt may find it back.
    Shard,
    /// The whole job: no attempt can succeed as it is configured.
    Job,
}

impl BackendError {
    /// How much of the work this error condemns.
    pub fn reach(&self) -> ErrorReach {
        match self {
            BackendError::EndpointUnusable { .. } => ErrorReach::Shard,
            BackendError::Incompatible { .. } => ErrorReach::Job,
            _ => ErrorReach::Request,
        }
    }

    /// Whether this error condemns the whole shard's attempt (not just one
    /// request, nor the whole job).
    pub fn is_endpoint_unusable(&self) -> bool {
        self.reach() == ErrorReach::Shard
    }
}
