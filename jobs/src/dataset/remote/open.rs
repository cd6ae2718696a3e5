//! Opening one `s3://` object of a dataset under the read policy: the
//! roots are checked on its location, then the policy's object source
//! streams it. Parquet needs random access (the footer first, then each
//! column chunk of a row group from its own offset), so a Parquet object
//! is first copied to an unnamed temporary file: one streamed request and
//! disk the size of the object, instead of a request per column chunk per
//! row group that range reads would cost, and memory stays a page of each
//! column either way.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::super::error::DatasetError;
use super::super::policy::ReadPolicy;
use super::source::{ObjectSource, ObjectSourceError};
use super::url::S3Url;

/// The policy's object source, or why an `s3://` path cannot be read here.
pub(in crate::dataset) fn source_of<'a>(
    path: &Path,
    policy: &'a ReadPolicy,
) -> Result<&'a dyn ObjectSource, DatasetError> {
    policy
        .objects
        .as_deref()
        .ok_or_else(|| DatasetError::NoObjectStore {
            path: path.to_path_buf(),
        })
}

/// A store's error as the dataset's, naming the location.
pub(in crate::dataset) fn store_error(path: &Path, error: ObjectSourceError) -> DatasetError {
    match error {
        ObjectSourceError::NotFound => DatasetError::Open {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such object in the bucket; check the key (a folder-like prefix ends in /)",
            ),
        },
        ObjectSourceError::Refused(reason) => DatasetError::Store {
            path: path.to_path_buf(),
            reason,
            transient: false,
        },
        ObjectSourceError::Unavailable(reason) => DatasetError::Store {
            path: path.to_path_buf(),
            reason,
            transient: true,
        },
    }
}

/// Streams the object at `path` if the policy allows it.
pub(in crate::dataset) fn open_object(
    path: &Path,
    policy: &ReadPolicy,
) -> Result<Box<dyn Read + Send>, DatasetError> {
    let url = S3Url::parse(path)?;
    // Every object is judged again by its own location: a listed key may
    // hold parts (`..`) that its prefix did not.
    policy.roots.check(path)?;
    if url.is_folder() {
        return Err(DatasetError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    source_of(path, policy)?
        .open(&url.bucket, &url.key)
        .map_err(|e| store_error(path, e))
}

/// Copies `object` (read from `path`) into an unnamed temporary file
/// (removed when it is closed) and returns it rewound. `room` is what the
/// dataset's byte limit leaves: an object past it is refused before it is
/// downloaded in full.
pub(in crate::dataset) fn download(
    path: &Path,
    object: Box<dyn Read + Send>,
    room: u64,
    limit: u64,
) -> Result<File, DatasetError> {
    let read_error = |source| DatasetError::Read {
        path: path.to_path_buf(),
        line: 1,
        source,
    };
    let mut file = tempfile::tempfile().map_err(|source| DatasetError::Open {
        path: path.to_path_buf(),
        source: std::io::Error::new(
            source.kind(),
            format!("cannot make a temporary file to read it from (TMPDIR): {source}"),
        ),
    })?;
    let copied =
        std::io::copy(&mut object.take(room.saturating_add(1)), &mut file).map_err(read_error)?;
    if copied > room {
        return Err(DatasetError::TooLarge {
            path: path.to_path_buf(),
            line: 1,
            limit,
            decompressed: false,
        });
    }
    file.seek(SeekFrom::Start(0)).map_err(read_error)?;
    Ok(file)
}
