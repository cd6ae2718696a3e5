//! The object-store trait every cache backend implements.

use async_trait::async_trait;
use bytes::Bytes;
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;

use crate::local::LocalDirStore;
use crate::s3::{S3ErrorKind, S3Options, S3Store};

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

/// An object listed by [`ObjectStore::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Path relative to the store root, `/`-separated.
    pub path: String,
    pub size: u64,
}

/// A flat namespace of immutable objects addressed by `/`-separated paths.
///
/// `put` must be atomic: a reader sees the whole object or none of it, even
/// if the writer is killed midway. That is what makes a segment written
/// before a crash safe to index afterwards.
#[async_trait]
pub trait ObjectStore: Send + Sync + Debug {
    async fn put(&self, path: &str, data: Bytes) -> Result<(), ObjectStoreError>;
    async fn get(&self, path: &str) -> Result<Bytes, ObjectStoreError>;
    /// Every object whose path starts with `prefix`, sorted by path.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, ObjectStoreError>;
    async fn delete(&self, path: &str) -> Result<(), ObjectStoreError>;
    /// Proves the store is usable (reachable, authorised, existing), so a
    /// command can fail at startup instead of at its first write. Stores
    /// that cannot fail that way keep the default.
    async fn check_access(&self) -> Result<(), ObjectStoreError> {
        Ok(())
    }
    /// Where the store lives, for messages (never includes credentials).
    fn describe(&self) -> String;
}

/// Opens a cache location: a directory path, a `file://` URL, or
/// `s3://bucket/prefix` with [`S3Options::from_env`]. Nothing is contacted:
/// call [`ObjectStore::check_access`] to fail early.
pub fn open_store(location: &str) -> Result<Arc<dyn ObjectStore>, ObjectStoreError> {
    if location.starts_with("s3://") {
        return open_store_with(location, S3Options::from_env()?);
    }
    open_store_with(location, S3Options::default())
}

/// [`open_store`] with explicit S3 options (from flags or a config file);
/// the options are ignored for local directories.
pub fn open_store_with(
    location: &str,
    s3: S3Options,
) -> Result<Arc<dyn ObjectStore>, ObjectStoreError> {
    if location.starts_with("s3://") {
        return Ok(Arc::new(S3Store::new(location, s3)?));
    }
    if location.contains("://") && !location.starts_with("file://") {
        return Err(ObjectStoreError::Unsupported(
            location.to_string(),
            "use a directory, file://DIR or s3://BUCKET/PREFIX",
        ));
    }
    let path = location.strip_prefix("file://").unwrap_or(location);
    if path.is_empty() {
        return Err(ObjectStoreError::Unsupported(
            location.to_string(),
            "empty cache location",
        ));
    }
    Ok(Arc::new(LocalDirStore::new(PathBuf::from(path))))
}

/// Rejects paths that could escape the store root or are not portable to S3.
pub(crate) fn check_path(path: &str) -> Result<(), ObjectStoreError> {
    let bad = |reason| {
        Err(ObjectStoreError::InvalidPath {
            path: path.to_string(),
            reason,
        })
    };
    if path.is_empty() {
        return bad("empty");
    }
    if path.starts_with('/') {
        return bad("must be relative");
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return bad("empty, '.' or '..' component");
    }
    if path.contains('\\') || path.contains('\0') {
        return bad("backslash or NUL");
    }
    Ok(())
}
