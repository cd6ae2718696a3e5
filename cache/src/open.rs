//! Opening a cache location: a local directory or an S3 prefix.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::ObjectStoreError;
use crate::local::LocalDirStore;
use crate::object_store::ObjectStore;
use crate::s3::{S3Options, S3Store};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_store_picks_the_backend() {
        let s3 = open_store_with("s3://bucket/x", S3Options::default()).unwrap();
        assert_eq!(s3.describe(), "s3://bucket/x");
        let local = open_store("file:///tmp/cache-dir").unwrap();
        assert_eq!(local.describe(), "/tmp/cache-dir");
        for bad in ["", "file://", "gs://bucket/x", "s3://"] {
            assert!(
                matches!(open_store(bad), Err(ObjectStoreError::Unsupported(..))),
                "{bad}"
            );
        }
    }
}
