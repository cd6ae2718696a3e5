//! An `s3://BUCKET/KEY` dataset location, as a spec's `dataset.path` (or
//! `task.fewshot.path`) names it: the bucket, and the key, a folder-like
//! prefix (ending in `/`) or a glob over keys.

use std::path::{Path, PathBuf};

use super::super::error::DatasetError;

const SCHEME: &str = "s3://";

/// Whether `path` names an object store location rather than a local file.
pub(crate) fn is_remote(path: &Path) -> bool {
    path.to_str().is_some_and(|text| text.starts_with(SCHEME))
}

/// A parsed `s3://` location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::dataset) struct S3Url {
    pub bucket: String,
    /// Empty for the whole bucket; may end in `/` (a folder) or hold glob
    /// characters.
    pub key: String,
}

impl S3Url {
    /// Parses `path`, which [`is_remote`]. A key with an empty, `.` or
    /// `..` part is refused: S3 would take such a key literally, while the
    /// dataset roots and the ids read it as a path.
    pub(in crate::dataset) fn parse(path: &Path) -> Result<S3Url, DatasetError> {
        let bad = |reason: &str| DatasetError::BadLocation {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let text = path
            .to_str()
            .and_then(|t| t.strip_prefix(SCHEME))
            .ok_or_else(|| bad("not an s3:// location"))?;
        let (bucket, key) = text.split_once('/').unwrap_or((text, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket; write s3://BUCKET/KEY"));
        }
        // S3's bucket names: a wrong one fails here in plain words, not
        // later as a signature or DNS error.
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !bucket_ok {
            return Err(bad(
                "bucket names are 3 to 63 lowercase letters, digits, '.' and '-'",
            ));
        }
        let parts = key.strip_suffix('/').unwrap_or(key);
        if !parts.is_empty()
            && parts
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(bad(
                "a key with an empty, '.' or '..' part; name the object by its plain key",
            ));
        }
        if key.contains(['\\', '\0']) {
            return Err(bad("a key with a backslash or NUL"));
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// The location of `key` in the same bucket, as a path for messages
    /// and document locations.
    pub(in crate::dataset) fn object_path(&self, key: &str) -> PathBuf {
        PathBuf::from(format!("{SCHEME}{}/{key}", self.bucket))
    }

    /// Whether the key names a folder-like prefix (the whole bucket, or a
    /// key ending in `/`).
    pub(in crate::dataset) fn is_folder(&self) -> bool {
        self.key.is_empty() || self.key.ends_with('/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<S3Url, DatasetError> {
        S3Url::parse(Path::new(text))
    }

    #[test]
    fn buckets_and_keys() {
        let url = parse("s3://evals/data/test.jsonl").unwrap();
        assert_eq!(
            (url.bucket.as_str(), url.key.as_str()),
            ("evals", "data/test.jsonl")
        );
        assert!(!url.is_folder());
        assert!(parse("s3://evals/data/").unwrap().is_folder());
        assert!(parse("s3://evals").unwrap().is_folder());
        assert_eq!(
            url.object_path("x/y.csv"),
            PathBuf::from("s3://evals/x/y.csv")
        );
        assert!(is_remote(Path::new("s3://evals/x")));
        assert!(!is_remote(Path::new("/data/s3://x")));
        for bad in [
            "s3:///key",
            "s3://EVALS/x",
            "s3://ab/x",
            "s3://evals/a//b",
            "s3://evals/a/../b",
            "s3://evals/./b",
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.starts_with(bad), "{err}");
        }
    }
}
