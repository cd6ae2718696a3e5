//! Typed access to a GGUF file's metadata, with errors that name the key.

use std::path::PathBuf;

use super::error::GgufError;
use super::reader::{GgufFile, MetaValue};

/// Typed access to metadata with errors that name the key.
pub(super) struct Meta<'a> {
    pub(super) file: &'a GgufFile,
}

impl Meta<'_> {
    pub(super) fn path(&self) -> PathBuf {
        self.file.path().to_path_buf()
    }

    pub(super) fn bad(&self, key: &str, expected: &'static str, v: &MetaValue) -> GgufError {
        GgufError::BadMetadata {
            path: self.path(),
            key: key.to_string(),
            expected,
            found: match v {
                MetaValue::Array(a) => format!("an array of {} values", a.len()),
                MetaValue::String(s) => format!("string {s:?}"),
                other => format!("{} {other:?}", other.type_name()),
            },
        }
    }

    pub(super) fn missing(&self, key: &str) -> GgufError {
        GgufError::MissingMetadata {
            path: self.path(),
            key: key.to_string(),
        }
    }

    pub(super) fn u64_opt(&self, key: &str) -> Result<Option<u64>, GgufError> {
        match self.file.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.bad(key, "a non-negative integer", v)),
        }
    }

    pub(super) fn usize_req(&self, key: &str) -> Result<usize, GgufError> {
        self.u64_opt(key)?
            .map(|v| v as usize)
            .ok_or_else(|| self.missing(key))
    }

    pub(super) fn u32_opt(&self, key: &str) -> Result<Option<u32>, GgufError> {
        match self.u64_opt(key)? {
            None => Ok(None),
            Some(v) => u32::try_from(v)
                .map(Some)
                .map_err(|_| GgufError::BadMetadata {
                    path: self.path(),
                    key: key.to_string(),
                    expected: "a 32-bit token id",
                    found: v.to_string(),
                }),
        }
    }

    pub(super) fn f64_opt(&self, key: &str) -> Result<Option<f64>, GgufError> {
        match self.file.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.bad(key, "a number", v)),
        }
    }

    pub(super) fn bool_opt(&self, key: &str) -> Result<Option<bool>, GgufError> {
        match self.file.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.bad(key, "a bool", v)),
        }
    }

    pub(super) fn str_opt(&self, key: &str) -> Result<Option<&str>, GgufError> {
        match self.file.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.bad(key, "a string", v)),
        }
    }

    pub(super) fn str_req(&self, key: &str) -> Result<&str, GgufError> {
        self.str_opt(key)?.ok_or_else(|| self.missing(key))
    }

    pub(super) fn array_opt(&self, key: &str) -> Result<Option<&[MetaValue]>, GgufError> {
        match self.file.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_array()
                .map(Some)
                .ok_or_else(|| self.bad(key, "an array", v)),
        }
    }

    pub(super) fn strings(&self, key: &str) -> Result<Vec<String>, GgufError> {
        let Some(items) = self.array_opt(key)? else {
            return Ok(Vec::new());
        };
        items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| self.bad(key, "an array of strings", v))
            })
            .collect()
    }
}
