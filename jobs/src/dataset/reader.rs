//! Streaming JSONL dataset reader: one document per line, memory independent
//! of the file's size (but for 8 bytes per document id, see `ids`),
//! malformed rows reported as `file:line: reason` or skipped and counted
//! (`on_bad_row = "skip"`), duplicate ids and a dataset without documents
//! refused.

use std::path::Path;

use serde_json::{Map, Value};

use super::error::DatasetError;
use super::file::BoundedLines;
use super::ids::{first_line_with_id, SeenIds};
use super::policy::ReadPolicy;
use super::row::{is_blank, RowFields};
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
    /// Kept to read the file again when an id comes round twice.
    policy: ReadPolicy,
    fields: RowFields,
    on_bad_row: OnBadRow,
    limit: Option<u64>,
    accepted: u64,
    bad_rows: u64,
    bad_row_examples: Vec<String>,
    /// The ids seen, when the spec names an `id_field` (numbered ids
    /// cannot repeat).
    ids: Option<SeenIds>,
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
            policy: policy.clone(),
            fields: RowFields {
                id_field: spec.id_field.clone(),
                subset_field: spec.subset_field.clone(),
            },
            on_bad_row: spec.on_bad_row,
            limit: spec.limit,
            accepted: 0,
            bad_rows: 0,
            bad_row_examples: Vec::new(),
            ids: spec.id_field.as_ref().map(|_| SeenIds::new()),
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
                    if !is_blank(&self.buf) {
                        return Some(Ok(()));
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }

    fn parse_line(&self) -> Result<Doc, String> {
        let row = self.fields.parse(&self.buf)?;
        Ok(Doc {
            index: self.accepted,
            line: self.lines.line(),
            id: row.id.unwrap_or_else(|| self.accepted.to_string()),
            subset: row.subset,
            fields: row.fields,
        })
    }

    /// Takes `doc` as the next document: within the cap on documents and
    /// with an id no earlier document has.
    fn accept(&mut self, doc: Doc) -> Result<Doc, DatasetError> {
        let max_docs = self.lines.limits().max_docs;
        if self.accepted >= max_docs {
            return Err(DatasetError::TooManyDocs {
                path: self.path().to_path_buf(),
                line: doc.line,
                limit: max_docs,
            });
        }
        if let Some(ids) = &mut self.ids {
            if !ids.insert(&doc.id) {
                let first = first_line_with_id(
                    self.lines.path(),
                    &self.policy,
                    &self.fields,
                    &doc.id,
                    doc.line,
                )?;
                if let Some(first_line) = first {
                    return Err(DatasetError::DuplicateId {
                        path: self.path().to_path_buf(),
                        id: doc.id,
                        field: self.fields.id_field.clone().unwrap_or_default(),
                        first_line,
                        line: doc.line,
                    });
                }
            }
        }
        self.accepted += 1;
        Ok(doc)
    }

    /// The end of the file: an error when it held no document at all.
    fn end(&mut self) -> Option<Result<Doc, DatasetError>> {
        self.done = true;
        if self.accepted > 0 {
            return None;
        }
        Some(Err(DatasetError::Empty {
            path: self.path().to_path_buf(),
            skipped: self.bad_rows,
            first_skipped: self.bad_row_examples.first().cloned(),
        }))
    }
}

impl Iterator for DatasetReader {
    type Item = Result<Doc, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done || self.limit.is_some_and(|l| self.accepted >= l) {
                return None;
            }
            match self.next_line() {
                None => return self.end(),
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
            match self.parse_line() {
                Ok(doc) => {
                    let accepted = self.accept(doc);
                    self.done = accepted.is_err();
                    return Some(accepted);
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
