//! The few-shot examples reader: a small JSONL file read strictly and only
//! as far as the examples a job uses.

use std::path::Path;

use serde_json::{Map, Value};

use super::error::DatasetError;
use super::file::BoundedLines;
use super::policy::ReadPolicy;
use super::row::json_kind;

/// Reads the first `max` examples of a JSONL file, strictly: every
/// non-blank line up to there must be a JSON object. Reading stops at
/// `max`, so a large file costs no more than the examples taken from it.
pub fn read_jsonl_examples(
    path: &Path,
    max: usize,
    policy: &ReadPolicy,
) -> Result<Vec<Map<String, Value>>, DatasetError> {
    let mut lines = BoundedLines::open(path, policy)?;
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while out.len() < max && lines.next_into(&mut buf)? {
        let bad = |reason: String| DatasetError::BadRow {
            path: path.to_path_buf(),
            line: lines.line(),
            reason,
            hint: String::new(),
        };
        let line = std::str::from_utf8(&buf).map_err(|e| bad(format!("not valid UTF-8: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line.trim()) {
            Ok(Value::Object(map)) => out.push(map),
            Ok(other) => {
                return Err(bad(format!(
                    "expected a JSON object, found {}",
                    json_kind(&other)
                )))
            }
            Err(e) => return Err(bad(format!("invalid JSON: {e}"))),
        }
    }
    Ok(out)
}
