//! Streaming dataset reader: one document per row of each of the dataset's
//! files in turn (JSONL, a JSON array, CSV or TSV; compressed or not),
//! memory independent of the files' sizes (but for 8 bytes per document
//! id, see `ids`), malformed rows reported as `file:line: reason` or
//! skipped and counted (`on_bad_row = "skip"`), duplicate ids and a
//! dataset without documents refused. The files of a folder or glob are
//! read under one byte limit and one document cap, and their documents'
//! ids name the file (`test-00001.jsonl/17`), so that two files may use
//! the same ids.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::error::DatasetError;
use super::ids::{first_line_with_id, SeenIds};
use super::policy::ReadPolicy;
use super::row::{RawRow, RowFields};
use super::rows::Rows;
use super::source::Source;
use super::sources::list;
use crate::spec::{DatasetFormat, DatasetSpec, OnBadRow};

/// How many skipped rows are kept as examples for the report.
const MAX_BAD_ROW_EXAMPLES: usize = 5;

/// One dataset row.
#[derive(Clone, Debug, PartialEq)]
pub struct Doc {
    /// 0-based position among accepted documents.
    pub index: u64,
    /// The file the row is in.
    pub path: Arc<Path>,
    /// 1-based line in the file where the row starts.
    pub line: u64,
    /// The `id_field` value as text, or the document's number; prefixed
    /// with its file's name (`name/id`) when the dataset's path is a folder
    /// or a glob, however many files it holds.
    pub id: String,
    /// The `subset_field` value as text, when the spec names one.
    pub subset: Option<String>,
    pub fields: Map<String, Value>,
}

impl Doc {
    /// `file:line` for error messages.
    pub fn location(&self) -> String {
        format!("{}:{}", self.path.display(), self.line)
    }
}

/// The file being read.
struct Current {
    rows: Rows,
    path: Arc<Path>,
    label: Option<String>,
    /// Rows read from it, bad ones included.
    rows_read: u64,
    /// Documents accepted from it.
    accepted: u64,
}

/// Reads a dataset lazily; iterate to get documents.
pub struct DatasetReader {
    /// The path the spec names (a file, a folder or a glob).
    spec_path: PathBuf,
    format: Option<DatasetFormat>,
    /// The files still to read, in order, the current one excluded.
    pending: std::vec::IntoIter<Source>,
    current: Option<Current>,
    /// Bytes read from the files before the current one.
    bytes_before: u64,
    /// Kept to open the next file and to read one again when an id comes
    /// round twice.
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
    done: bool,
}

impl DatasetReader {
    /// Opens the spec's dataset if `policy` allows it: lists its files and
    /// opens the first.
    pub fn open(spec: &DatasetSpec, policy: &ReadPolicy) -> Result<DatasetReader, DatasetError> {
        let sources = list(&spec.path, spec.format, policy)?;
        let mut reader = DatasetReader {
            spec_path: spec.path.clone(),
            format: spec.format,
            pending: sources.into_iter(),
            current: None,
            bytes_before: 0,
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
            done: false,
        };
        reader.open_next()?;
        Ok(reader)
    }

    /// Opens the next file; false when none is left.
    fn open_next(&mut self) -> Result<bool, DatasetError> {
        if let Some(current) = self.current.take() {
            self.bytes_before = current.rows.bytes();
        }
        let Some(source) = self.pending.next() else {
            return Ok(false);
        };
        let rows = Rows::open(&source.path, self.format, &self.policy, self.bytes_before)?;
        self.current = Some(Current {
            rows,
            path: Arc::from(source.path.as_path()),
            label: source.label,
            rows_read: 0,
            accepted: 0,
        });
        Ok(true)
    }

    /// The file being read, or the path the spec names before the first
    /// and after the last.
    pub fn path(&self) -> &Path {
        match &self.current {
            Some(current) => current.path.as_ref(),
            None => self.spec_path.as_path(),
        }
    }

    /// Rows skipped so far under `on_bad_row = "skip"`.
    pub fn bad_rows(&self) -> u64 {
        self.bad_rows
    }

    /// The first few skipped rows as `file:line: reason`.
    pub fn bad_row_examples(&self) -> &[String] {
        &self.bad_row_examples
    }

    /// The next row of any file; `None` after the last file.
    fn next_row(&mut self) -> Option<Result<RawRow, DatasetError>> {
        loop {
            let Some(current) = &mut self.current else {
                return None;
            };
            match current.rows.next_row() {
                Some(row) => {
                    current.rows_read += 1;
                    return Some(row);
                }
                None => match self.open_next() {
                    Ok(_) => {}
                    Err(e) => return Some(Err(e)),
                },
            }
        }
    }

    /// Makes a row a document, or says why it is a bad row.
    fn to_doc(&self, row: RawRow) -> Result<Doc, String> {
        let current = self.current.as_ref().expect("a row comes from a file");
        let parsed = self.fields.take(row.fields?)?;
        let own_id = parsed.id.unwrap_or_else(|| current.accepted.to_string());
        let id = match &current.label {
            Some(label) => format!("{label}/{own_id}"),
            None => own_id,
        };
        Ok(Doc {
            index: self.accepted,
            path: current.path.clone(),
            line: row.line,
            id,
            subset: parsed.subset,
            fields: parsed.fields,
        })
    }

    /// Takes `doc` as the next document: within the cap on documents and
    /// with an id no earlier document has.
    fn accept(&mut self, doc: Doc) -> Result<Doc, DatasetError> {
        let max_docs = self.policy.limits.max_docs;
        if self.accepted >= max_docs {
            return Err(DatasetError::TooManyDocs {
                path: doc.path.to_path_buf(),
                line: doc.line,
                limit: max_docs,
            });
        }
        if let Some(ids) = &mut self.ids {
            if !ids.insert(&doc.id) {
                self.check_duplicate(&doc)?;
            }
        }
        self.accepted += 1;
        if let Some(current) = &mut self.current {
            current.accepted += 1;
        }
        Ok(doc)
    }

    /// Reads the current file again for an earlier document with `doc`'s
    /// id: an error naming both lines if there is one.
    fn check_duplicate(&self, doc: &Doc) -> Result<(), DatasetError> {
        let Some(current) = &self.current else {
            return Ok(());
        };
        // The id as the file has it, without the file's name.
        let own_id = match &current.label {
            Some(label) => doc
                .id
                .strip_prefix(label.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .unwrap_or(&doc.id),
            None => &doc.id,
        };
        let first = first_line_with_id(
            &current.path,
            self.format,
            &self.policy,
            &self.fields,
            own_id,
            current.rows_read.saturating_sub(1),
        )?;
        match first {
            Some(first_line) => Err(DatasetError::DuplicateId {
                path: current.path.to_path_buf(),
                id: own_id.to_string(),
                field: self.fields.id_field.clone().unwrap_or_default(),
                first_line,
                line: doc.line,
            }),
            None => Ok(()),
        }
    }

    /// The end of the dataset: an error when it held no document at all.
    fn end(&mut self) -> Option<Result<Doc, DatasetError>> {
        self.done = true;
        if self.accepted > 0 {
            return None;
        }
        Some(Err(DatasetError::Empty {
            path: self.spec_path.clone(),
            skipped: self.bad_rows,
            first_skipped: self.bad_row_examples.first().cloned(),
        }))
    }

    /// A bad row: skipped and counted, or the error that ends the read.
    fn bad_row(&mut self, line: u64, reason: String) -> Option<Result<Doc, DatasetError>> {
        let path = self.path().to_path_buf();
        match self.on_bad_row {
            OnBadRow::Skip => {
                self.bad_rows += 1;
                if self.bad_row_examples.len() < MAX_BAD_ROW_EXAMPLES {
                    self.bad_row_examples
                        .push(format!("{}:{line}: {reason}", path.display()));
                }
                None
            }
            OnBadRow::Fail => {
                self.done = true;
                Some(Err(DatasetError::BadRow {
                    path,
                    line,
                    reason,
                    hint: " (fix the row, or set `on_bad_row = \"skip\"` in [dataset] to \
                           skip and count such rows)"
                        .to_string(),
                }))
            }
        }
    }
}

impl Iterator for DatasetReader {
    type Item = Result<Doc, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done || self.limit.is_some_and(|l| self.accepted >= l) {
                return None;
            }
            let row = match self.next_row() {
                None => return self.end(),
                Some(Ok(row)) => row,
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            let line = row.line;
            match self.to_doc(row) {
                Ok(doc) => {
                    let accepted = self.accept(doc);
                    self.done = accepted.is_err();
                    return Some(accepted);
                }
                Err(reason) => {
                    if let Some(failed) = self.bad_row(line, reason) {
                        return Some(failed);
                    }
                }
            }
        }
    }
}
