//! Streaming JSONL dataset reader: one document per line, memory independent
//! of the file's size, malformed rows reported as `file:line: reason` or
//! skipped and counted (`on_bad_row = "skip"`).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

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

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{}: cannot open dataset: {source}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: cannot read dataset: {source}", .path.display())]
    Read {
        path: PathBuf,
        line: u64,
        #[source]
        source: std::io::Error,
    },
    /// Not a regular file: a device (`/dev/zero`), a pipe or a directory
    /// could be read forever or not at all.
    #[error("{}: not a regular file; point it at a JSONL file", .path.display())]
    NotAFile { path: PathBuf },
    /// A line longer than [`MAX_LINE_BYTES`]: not a document, and reading
    /// it whole would take unbounded memory.
    #[error("{}:{line}: line longer than {limit} bytes; a document must fit in one line of at most that size", .path.display())]
    LineTooLong {
        path: PathBuf,
        line: u64,
        limit: u64,
    },
    /// A line that is not a usable document.
    #[error("{}:{line}: {reason}{hint}", .path.display())]
    BadRow {
        path: PathBuf,
        line: u64,
        reason: String,
        /// What to do about it (empty where skipping is not possible).
        hint: String,
    },
}

/// Longest line a dataset or few-shot file may have: 16 MiB, far past any
/// document, and a bound on the memory one line can take.
pub const MAX_LINE_BYTES: u64 = 16 * 1024 * 1024;

/// Opens `path` for reading if it is a regular file (after symlinks).
fn open_regular(path: &Path) -> Result<File, DatasetError> {
    let file = File::open(path).map_err(|source| DatasetError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let meta = file.metadata().map_err(|source| DatasetError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(DatasetError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    Ok(file)
}

/// Reads one line (with its `\n`) into `buf`, at most [`MAX_LINE_BYTES`];
/// the number of bytes read, 0 at the end of the file. `line` is the
/// line's number, for the error.
fn read_bounded_line(
    reader: &mut BufReader<File>,
    buf: &mut Vec<u8>,
    path: &Path,
    line: u64,
) -> Result<usize, DatasetError> {
    let read = reader
        .by_ref()
        .take(MAX_LINE_BYTES + 1)
        .read_until(b'\n', buf)
        .map_err(|source| DatasetError::Read {
            path: path.to_path_buf(),
            line,
            source,
        })?;
    if buf.len() as u64 > MAX_LINE_BYTES {
        return Err(DatasetError::LineTooLong {
            path: path.to_path_buf(),
            line,
            limit: MAX_LINE_BYTES,
        });
    }
    Ok(read)
}

/// Reads a dataset lazily; iterate to get documents.
pub struct DatasetReader {
    path: PathBuf,
    reader: BufReader<File>,
    id_field: Option<String>,
    subset_field: Option<String>,
    on_bad_row: OnBadRow,
    limit: Option<u64>,
    line: u64,
    accepted: u64,
    bad_rows: u64,
    bad_row_examples: Vec<String>,
    buf: Vec<u8>,
    done: bool,
}

impl DatasetReader {
    pub fn open(spec: &DatasetSpec) -> Result<DatasetReader, DatasetError> {
        match spec.format {
            DatasetFormat::Jsonl => {}
        }
        let file = open_regular(&spec.path)?;
        Ok(DatasetReader {
            path: spec.path.clone(),
            reader: BufReader::new(file),
            id_field: spec.id_field.clone(),
            subset_field: spec.subset_field.clone(),
            on_bad_row: spec.on_bad_row,
            limit: spec.limit,
            line: 0,
            accepted: 0,
            bad_rows: 0,
            bad_row_examples: Vec::new(),
            buf: Vec::new(),
            done: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
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
            self.buf.clear();
            match read_bounded_line(&mut self.reader, &mut self.buf, &self.path, self.line + 1) {
                Ok(0) => return None,
                Ok(_) => {
                    self.line += 1;
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
            line: self.line,
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
                    self.accepted += 1;
                    return Some(Ok(doc));
                }
                Err(reason) => match self.on_bad_row {
                    OnBadRow::Skip => {
                        self.bad_rows += 1;
                        if self.bad_row_examples.len() < MAX_BAD_ROW_EXAMPLES {
                            self.bad_row_examples.push(format!(
                                "{}:{}: {reason}",
                                self.path.display(),
                                self.line
                            ));
                        }
                    }
                    OnBadRow::Fail => {
                        self.done = true;
                        return Some(Err(DatasetError::BadRow {
                            path: self.path.clone(),
                            line: self.line,
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

fn json_kind(value: &Value) -> &'static str {
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

/// Reads a small JSONL file of few-shot examples, strictly: every non-blank
/// line must be a JSON object.
pub fn read_jsonl_examples(path: &Path) -> Result<Vec<Map<String, Value>>, DatasetError> {
    let mut reader = BufReader::new(open_regular(path)?);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        if read_bounded_line(&mut reader, &mut buf, path, line_no + 1)? == 0 {
            break;
        }
        line_no += 1;
        let bad = |reason: String| DatasetError::BadRow {
            path: path.to_path_buf(),
            line: line_no,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_endless_lines_are_refused_not_read() {
        let zero = spec(Path::new("/dev/zero"));
        assert!(matches!(
            DatasetReader::open(&zero),
            Err(DatasetError::NotAFile { .. })
        ));
        assert!(matches!(
            read_jsonl_examples(Path::new("/dev/zero")),
            Err(DatasetError::NotAFile { .. })
        ));

        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join("long.jsonl");
        let mut text = "{\"id\": \"1\"}\n".to_string();
        text.push_str(&"x".repeat(MAX_LINE_BYTES as usize + 10));
        std::fs::write(&long, text).unwrap();
        let mut reader = DatasetReader::open(&spec(&long)).unwrap();
        assert!(reader.next().unwrap().is_ok());
        match reader.next() {
            Some(Err(DatasetError::LineTooLong { line: 2, .. })) => {}
            other => panic!(
                "expected a too-long line 2, got {:?}",
                other.map(|r| r.map(|_| ()))
            ),
        }
        assert!(matches!(
            read_jsonl_examples(&long),
            Err(DatasetError::LineTooLong { line: 2, .. })
        ));
    }
    use std::io::Write;

    fn spec(path: &Path) -> DatasetSpec {
        DatasetSpec {
            path: path.to_path_buf(),
            format: DatasetFormat::Jsonl,
            limit: None,
            id_field: Some("id".into()),
            subset_field: None,
            on_bad_row: OnBadRow::Fail,
        }
    }

    fn write(content: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content.as_bytes()).unwrap();
        f
    }

    #[test]
    fn reads_docs_with_ids_lines_and_subsets() {
        let f =
            write("{\"id\": \"a\", \"q\": 1, \"s\": \"x\"}\n\n{\"id\": 7, \"q\": 2, \"s\": 3}\n");
        let mut s = spec(f.path());
        s.subset_field = Some("s".into());
        let docs: Vec<Doc> = DatasetReader::open(&s)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(docs.len(), 2);
        assert_eq!(
            (docs[0].index, docs[0].line, docs[0].id.as_str()),
            (0, 1, "a")
        );
        assert_eq!(
            (docs[1].index, docs[1].line, docs[1].id.as_str()),
            (1, 3, "7")
        );
        assert_eq!(docs[0].subset.as_deref(), Some("x"));
        assert_eq!(docs[1].subset.as_deref(), Some("3"));
        assert_eq!(docs[1].fields["q"], Value::from(2));
    }

    #[test]
    fn id_defaults_to_index_and_duplicates_are_fine() {
        let f = write("{\"id\": 1}\n{\"id\": 1}\n");
        let docs: Vec<Doc> = DatasetReader::open(&spec(f.path()))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(docs.len(), 2);
        let mut s = spec(f.path());
        s.id_field = None;
        let ids: Vec<String> = DatasetReader::open(&s)
            .unwrap()
            .map(|d| d.unwrap().id)
            .collect();
        assert_eq!(ids, vec!["0", "1"]);
    }

    #[test]
    fn malformed_line_fails_with_file_and_line() {
        let f = write("{\"id\": 1}\n{not json\n{\"id\": 3}\n");
        let mut reader = DatasetReader::open(&spec(f.path())).unwrap();
        assert!(reader.next().unwrap().is_ok());
        let err = reader.next().unwrap().unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}:2: invalid JSON", f.path().display())),
            "{err}"
        );
        assert!(err.contains("on_bad_row = \"skip\""), "{err}");
        assert!(reader.next().is_none());
    }

    #[test]
    fn non_object_and_missing_id_are_bad_rows() {
        let f = write("[1,2]\n");
        let err = DatasetReader::open(&spec(f.path()))
            .unwrap()
            .next()
            .unwrap()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains(":1: expected a JSON object, found an array"),
            "{err}"
        );
        let f = write("{\"x\": 1}\n");
        let err = DatasetReader::open(&spec(f.path()))
            .unwrap()
            .next()
            .unwrap()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains(":1: missing field `id` (dataset.id_field)"),
            "{err}"
        );
    }

    #[test]
    fn skip_counts_bad_rows_and_keeps_examples() {
        let f = write("{\"id\": 1}\nnope\n[]\n{\"id\": 2}\n{}\n");
        let mut s = spec(f.path());
        s.on_bad_row = OnBadRow::Skip;
        let mut reader = DatasetReader::open(&s).unwrap();
        let docs: Vec<Doc> = reader.by_ref().map(Result::unwrap).collect();
        assert_eq!(
            docs.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            vec!["1", "2"]
        );
        assert_eq!(docs[1].index, 1);
        assert_eq!(docs[1].line, 4);
        assert_eq!(reader.bad_rows(), 3);
        assert_eq!(reader.bad_row_examples().len(), 3);
        let first = &reader.bad_row_examples()[0];
        assert!(
            first.starts_with(&format!("{}:2: invalid JSON", f.path().display())),
            "{first}"
        );
        assert!(reader.bad_row_examples()[2].ends_with(":5: missing field `id` (dataset.id_field)"));
    }

    #[test]
    fn limit_stops_after_accepted_docs() {
        let f = write("{\"id\": 1}\nbad\n{\"id\": 2}\n{\"id\": 3}\n");
        let mut s = spec(f.path());
        s.on_bad_row = OnBadRow::Skip;
        s.limit = Some(2);
        let ids: Vec<String> = DatasetReader::open(&s)
            .unwrap()
            .map(|d| d.unwrap().id)
            .collect();
        assert_eq!(ids, vec!["1", "2"]);
    }

    #[test]
    fn missing_file_names_the_path() {
        let s = spec(Path::new("/nonexistent/shardline/data.jsonl"));
        let err = DatasetReader::open(&s).err().unwrap().to_string();
        assert!(
            err.starts_with("/nonexistent/shardline/data.jsonl: cannot open dataset"),
            "{err}"
        );
    }

    #[test]
    fn examples_reader_is_strict() {
        let f = write("{\"a\": 1}\n\n{\"a\": 2}\n");
        assert_eq!(read_jsonl_examples(f.path()).unwrap().len(), 2);
        let f = write("{\"a\": 1}\n3\n");
        let err = read_jsonl_examples(f.path()).unwrap_err().to_string();
        assert!(err.contains(":2: expected a JSON object"), "{err}");
    }
}
