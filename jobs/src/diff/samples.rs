//! `samples.jsonl` read line by line for a diff: each line parsed into only
//! the fields a pass needs, so a million-line file is never held whole.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::DiffError;

/// What pairing needs of a line: its document, subset and scores.
/// `scores` is required, so that a file of another kind (`missing.jsonl`,
/// a dataset) is refused rather than read as a run with no scores.
#[derive(Deserialize)]
pub(super) struct ScoreLine {
    pub doc_id: String,
    #[serde(default)]
    pub subset: Option<String>,
    pub scores: BTreeMap<String, f64>,
    #[serde(default)]
    pub missing: bool,
}

/// What a flip shows of a document, kept as written.
#[derive(Deserialize)]
pub(super) struct TextLine {
    pub prompt: serde_json::Value,
    pub outputs: serde_json::Value,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub choices: Option<Vec<String>>,
}

/// Calls `each` with every non-blank line of `path` and its 1-based line
/// number; `each` parses what it needs with [`parse`].
pub(super) fn for_each_line(
    path: &Path,
    each: impl FnMut(u64, &str) -> Result<(), DiffError>,
) -> Result<(), DiffError> {
    for_lines_until(path, u64::MAX, each)
}

/// [`for_each_line`] up to line `last`: the rest is not read.
pub(super) fn for_lines_until(
    path: &Path,
    last: u64,
    mut each: impl FnMut(u64, &str) -> Result<(), DiffError>,
) -> Result<(), DiffError> {
    let read_error = |source| DiffError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut text = String::new();
    let mut line = 0u64;
    while line < last {
        text.clear();
        line += 1;
        match reader.read_line(&mut text) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(DiffError::Parse {
                    path: path.to_path_buf(),
                    line,
                    message: "not UTF-8 text".to_string(),
                })
            }
            Err(e) => return Err(read_error(e)),
        }
        if text.trim().is_empty() {
            continue;
        }
        each(line, &text)?;
    }
    Ok(())
}

/// Line `line` of `path` as a `T`, or the error naming both.
pub(super) fn parse<T: DeserializeOwned>(
    path: &Path,
    line: u64,
    text: &str,
) -> Result<T, DiffError> {
    serde_json::from_str(text.trim_end()).map_err(|e| DiffError::Parse {
        path: path.to_path_buf(),
        line,
        // serde counts lines within the text it was given: one line here.
        message: e.to_string().replace(" at line 1 column ", " at column "),
    })
}

/// The job, model and metric order a `metrics.json` gives, when present.
#[derive(Deserialize, Default)]
pub(super) struct MetricsLabels {
    #[serde(default)]
    pub job: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub metrics: Vec<MetricName>,
}

#[derive(Deserialize)]
pub(super) struct MetricName {
    pub name: String,
}

impl MetricsLabels {
    /// `path` read, or nothing when it does not exist (a bare
    /// `samples.jsonl` is enough to compare).
    pub fn read(path: Option<&Path>) -> Result<MetricsLabels, DiffError> {
        let Some(path) = path else {
            return Ok(MetricsLabels::default());
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(MetricsLabels::default())
            }
            Err(source) => {
                return Err(DiffError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        serde_json::from_str(&text).map_err(|e| DiffError::Metrics {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}
