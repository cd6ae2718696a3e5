//! What a coordinator call can end in: [`ClientError`], and the answer of a
//! fenced lease call, [`LeaseOutcome`].

/// Which token a route needs; used to say what to check on a 401.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Admin,
    Worker,
}

impl TokenKind {
    pub(crate) fn hint(self) -> &'static str {
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
    /// Whether the coordinator refused what was sent (a bad spec, a data
    /// file outside its roots, a body over its limits, a wrong token, a job
    /// id it does not know): sending it again cannot succeed; the sender has
    /// to change it.
    pub fn is_refusal(&self) -> bool {
        match self {
            ClientError::Unauthorized { .. } | ClientError::NotFound { .. } => true,
            ClientError::Http { status, .. } => {
                (400..500).contains(status) && *status != 408 && *status != 429
            }
            _ => false,
        }
    }

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
