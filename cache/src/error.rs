//! The cache's error type, and what an S3 failure most likely means.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum ObjectStoreError {
    #[error("object {path} not found in {store}")]
    NotFound { store: String, path: String },
    #[error("invalid object path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("{op} {path} in {store}: {source}")]
    Io {
        op: &'static str,
        store: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unsupported cache location {0:?}: {1}")]
    Unsupported(String, &'static str),
    #[error("{name}={value:?} is not valid: expected {expected}")]
    InvalidOption {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    /// An S3 request failed after the SDK's retries; `hint` says what to
    /// check (endpoint, credentials, bucket).
    #[error("S3 {op} {path:?} in {store} failed ({kind}): {detail}; {hint}")]
    S3 {
        op: &'static str,
        store: String,
        path: String,
        kind: S3ErrorKind,
        detail: String,
        hint: String,
    },
}

/// What most likely went wrong with an S3 request, so the message can say
/// what to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S3ErrorKind {
    /// No connection, or no answer in time.
    Unreachable,
    /// Credentials missing, unknown, or not allowed to do this.
    Credentials,
    /// The bucket does not exist.
    NoSuchBucket,
    /// The server kept failing (5xx, throttling) after every retry.
    Server,
    /// The server answered something that is not a valid S3 response.
    BadResponse,
    /// Anything else the server refused.
    Other,
}

impl fmt::Display for S3ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            S3ErrorKind::Unreachable => "endpoint unreachable",
            S3ErrorKind::Credentials => "credentials",
            S3ErrorKind::NoSuchBucket => "no such bucket",
            S3ErrorKind::Server => "server error",
            S3ErrorKind::BadResponse => "not an S3 response",
            S3ErrorKind::Other => "request refused",
        })
    }
}
