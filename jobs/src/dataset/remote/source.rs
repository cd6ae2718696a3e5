//! What a dataset reader needs from an object store: list a bucket's keys
//! under a prefix, and stream one object's bytes. `jobs` reaches no network
//! itself; a process that holds S3 credentials (the coordinator, through
//! the cache crate's S3 client) puts an [`ObjectSource`] in the
//! [`ReadPolicy`](crate::dataset::ReadPolicy), and without one an `s3://`
//! dataset is refused.

use std::io::Read;

/// An object found by [`ObjectSource::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteObject {
    /// Its whole key in the bucket.
    pub key: String,
    pub size: u64,
}

/// Why the store could not list or open what was asked. The texts come
/// from the store and already say what to check (endpoint, credentials,
/// bucket); they never hold a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectSourceError {
    /// No object has this key.
    #[error("no such object")]
    NotFound,
    /// The store refused: no such bucket, credentials not allowed, a name
    /// it does not accept. Trying again changes nothing.
    #[error("{0}")]
    Refused(String),
    /// The store could not be reached or kept failing: worth a retry.
    #[error("{0}")]
    Unavailable(String),
}

/// Read access to the objects of an S3-compatible store. Calls block; a
/// reader runs on a thread that may block (the planner's), never on an
/// async runtime's own threads.
pub trait ObjectSource: Send + Sync {
    /// Calls `visit` with each object of `bucket` whose key starts with
    /// `prefix`, in key order, until it returns false. With `delimited`,
    /// only the objects directly under the prefix (no further `/` in the
    /// rest of their key), as a folder's files.
    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimited: bool,
        visit: &mut dyn FnMut(RemoteObject) -> bool,
    ) -> Result<(), ObjectSourceError>;

    /// The bytes of one object, streamed from its start: memory stays a
    /// few buffers whatever its size. A read that fails partway is an
    /// `std::io::Error`.
    fn open(&self, bucket: &str, key: &str) -> Result<Box<dyn Read + Send>, ObjectSourceError>;
}
