//! Streaming JSONL dataset reader: one document per line, memory independent
//! of the file's size, malformed rows reported as `file:line: reason` or
//! skipped and counted (`on_bad_row = "skip"`).

use std::path::Path;

use serde_json::{Map, Value};

use super::error::DatasetError;
use super::file::BoundedLines;
use super::policy::ReadPolicy;
use crate::spec::{DatasetFormat, DatasetSpec, OnBadRow};

/// How many skipped rows are kept as examples for the report.
const MAX_BAD_ROW_EXAMPLES: usize = 5;

/// One dataset row.
#[derive(Clone, Debug, PartialEq)]
pub struct Doc {
    /// 0-based position among accepted documents.
    pub index: u64,
    /// 1-based line in the file.
    pub line: u64,
    /// The `id_field` value as text, or the document index.
    pub id: String,
    /// The `subset_field` value as text, when the spec names one.
    pub subset: Option<String>,
    pub fields: Map<String, Value>,
}

impl Doc {
    /// `file:line` for error messages.
    pub fn location(&self, path: &Path) -> String {
        format!("{}:{}", path.display(), self.line)
    }
}

/// Reads a dataset lazily; iterate to get documents.
pub struct DatasetReader {
    lines: BoundedLines,
    id_field: Option<String>,
    subset_field: Option<String>,
    on_bad_row: OnBadRow,
    limit: Option<u64>,
    accepted: u64,
    bad_rows: u64,
    bad_row_examples: Vec<String>,
    buf: Vec<u8>,
    done: bool,
}

impl DatasetReader {
    /// Opens the spec's dataset if `policy` allows it.
    pub fn open(spec: &DatasetSpec, policy: &ReadPolicy) -> Result<DatasetReader, DatasetError> {
        match spec.format {
            DatasetFormat::Jsonl => {}
        }
        Ok(DatasetReader {
            lines: BoundedLines::open(&spec.path, policy)?,
            id_field: spec.id_field.clone(),
            subset_field: spec.subset_field.clone(),
            on_bad_row: spec.on_bad_row,
            limit: spec.limit,
            accepted: 0,
            bad_rows: 0,
            bad_row_examples: Vec::new(),
            buf: Vec::new(),
            done: false,
        })
    }

    pub fn path(&self) -> &Path {
        self.lines.path()
    }

    /// Rows skipped so far under `on_bad_row = "skip"`.
    pub fn bad_rows(&self) -> u64 {
        self.bad_rows
    }

    /// The first few skipped rows as `file:line: reason`.
    pub fn bad_row_examples(&self) -> &[String] {
        &self.bad_row_examples
    }

    /// Reads the next non-blank line; `None` at end of file.
    fn next_line(&mut self) -> Option<Result<(), DatasetError>> {
        loop {
            match self.lines.next_into(&mut self.buf) {
                Ok(false) => return None,
                Ok(true) => {
                    if !self.buf.iter().all(u8::is_ascii_whitespace) {
                        return Some(Ok(()));
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }

    fn parse_line(&self) -> Result<Doc, String> {
        let text = std::str::from_utf8(&self.buf).map_err(|e| format!("not valid UTF-8: {e}"))?;
        let value: Value =
            serde_json::from_str(text.trim()).map_err(|e| format!("invalid JSON: {e}"))?;
        let Value::Object(fields) = value else {
            return Err(format!(
                "expected a JSON object, found {}",
                json_kind(&value)
            ));
        };
        let id = match &self.id_field {
            Some(field) => field_as_text(&fields, field, "id_field")?,
            None => self.accepted.to_string(),
        };
        let subset = match &self.subset_field {
            Some(field) => Some(field_as_text(&fields, field, "subset_field")?),
            None => None,
        };
        Ok(Doc {
            index: self.accepted,
            line: self.lines.line(),
            id,
            subset,
            fields,
        })
    }
}

impl Iterator for DatasetReader {
    type Item = Result<Doc, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done || self.limit.is_some_and(|l| self.accepted >= l) {
                return None;
            }
            match self.next_line()? {
                Ok(()) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
            match self.parse_line() {
                Ok(doc) => {
                    let max_docs = self.lines.limits().max_docs;
                    if self.accepted >= max_docs {
                        self.done = true;
                        return Some(Err(DatasetError::TooManyDocs {
                            path: self.lines.path().to_path_buf(),
                            line: self.lines.line(),
                            limit: max_docs,
                        }));
                    }
                    self.accepted += 1;
                    return Some(Ok(doc));
                }
                Err(reason) => match self.on_bad_row {
                    OnBadRow::Skip => {
                        self.bad_rows += 1;
                        if self.bad_row_examples.len() < MAX_BAD_ROW_EXAMPLES {
                            self.bad_row_examples.push(format!(
                                "{}:{}: {reason}",
                                self.lines.path().display(),
                                self.lines.line()
                            ));
                        }
                    }
                    OnBadRow::Fail => {
                        self.done = true;
                        return Some(Err(DatasetError::BadRow {
                            path: self.lines.path().to_path_buf(),
                            line: self.lines.line(),
                            reason,
                            hint: " (fix the row, or set `on_bad_row = \"skip\"` in [dataset] to \
                                   skip and count such rows)"
                                .to_string(),
                        }));
                    }
                },
            }
        }
    }
}

pub(super) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn field_as_text(
    fields: &Map<String, Value>,
    field: &str,
    setting: &str,
) -> Result<String, String> {
    match fields.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(other) => Err(format!(
            "field `{field}` (dataset.{setting}) must be a string or a number, found {}",
            json_kind(other)
        )),
        None => Err(format!("missing field `{field}` (dataset.{setting})")),
    }
}
