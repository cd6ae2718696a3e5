//! The object-store trait every cache backend implements.

use async_trait::async_trait;
use bytes::Bytes;
use std::fmt::Debug;

use crate::error::ObjectStoreError;

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
