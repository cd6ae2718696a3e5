//! A parsed `s3://bucket/prefix` cache location.

use std::fmt;

use crate::error::ObjectStoreError;
use crate::object_store::check_path;

/// A parsed `s3://bucket/prefix` location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    bucket: String,
    /// Key prefix of every object: empty, or ending in `/`.
    prefix: String,
}

impl S3Location {
    /// Parses `s3://bucket` or `s3://bucket/some/prefix` (a trailing `/` is
    /// optional).
    pub fn parse(location: &str) -> Result<Self, ObjectStoreError> {
        let invalid = |reason| Err(ObjectStoreError::Unsupported(location.to_string(), reason));
        let Some(rest) = location.strip_prefix("s3://") else {
            return invalid("an S3 location starts with s3://");
        };
        let (bucket, prefix) = match rest.split_once('/') {
            Some((bucket, prefix)) => (bucket, prefix.trim_end_matches('/')),
            None => (rest, ""),
        };
        if bucket.is_empty() {
            return invalid("no bucket: write s3://BUCKET or s3://BUCKET/PREFIX");
        }
        // S3 bucket names: 3-63 characters of lowercase letters, digits, '.'
        // and '-'. Checking here turns a confusing signature or DNS error
        // later into a plain message now.
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !bucket_ok {
            return invalid(
                "bucket names are 3 to 63 characters of lowercase letters, digits, '.' and '-'",
            );
        }
        if !prefix.is_empty() {
            if let Err(ObjectStoreError::InvalidPath { .. }) = check_path(prefix) {
                return invalid(
                    "the prefix has an empty, '.' or '..' component, a backslash or NUL",
                );
            }
        }
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        Ok(S3Location {
            bucket: bucket.to_string(),
            prefix,
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Key prefix of every object: empty, or ending in `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(super) fn key(&self, path: &str) -> String {
        format!("{}{}", self.prefix, path)
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            return write!(f, "s3://{}", self.bucket);
        }
        write!(
            f,
            "s3://{}/{}",
            self.bucket,
            self.prefix.trim_end_matches('/')
        )
    }
}
