//! Parquet datasets, read a row at a time through the parquet crate's
//! record API: each row a JSON object keyed by column; lists (a
//! multiple-choice task's `choices`) arrive as JSON arrays, groups and maps
//! as objects, dates, times and decimals as text. A row's "line" is its
//! 1-based row number.
//!
//! The parquet crate is not known never to panic on a malformed file, so
//! its calls run under `catch_unwind`: a panic there is this file's
//! error, not the planner's crash.
//!
//! Memory: the reader holds a page of each column at a time, not the file,
//! but page sizes are what the file declares: a crafted file can make the
//! crate allocate large buffers (docs/security.md). The byte limit is
//! judged before any row is read on the uncompressed size the footer
//! declares, then on every row as its JSON form; a row longer than
//! `max_line_bytes` (as JSON) stops the file.

use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::errors::ParquetError;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::RowIter;
use parquet::record::{Field, Row};
use serde_json::{Map, Number, Value};

use super::error::DatasetError;
use super::limits::ReadLimits;
use super::row::RawRow;

/// The rows of a Parquet file.
pub(super) struct ParquetRows {
    path: PathBuf,
    rows: RowIter<'static>,
    limits: ReadLimits,
    /// Bytes of the dataset, this file's uncompressed size included.
    bytes: u64,
    read: u64,
    done: bool,
}

impl ParquetRows {
    /// Reads `file`'s footer and checks its size against the byte limit.
    pub(super) fn open(
        path: &Path,
        file: File,
        limits: ReadLimits,
        bytes_before: u64,
    ) -> Result<Self, DatasetError> {
        let bad_file = |reason: String| DatasetError::BadFile {
            path: path.to_path_buf(),
            line: 1,
            reason,
        };
        let reader = guarded(|| SerializedFileReader::new(file))
            .and_then(|read| read.map_err(|e| e.to_string()))
            .map_err(|e| bad_file(format!("cannot read the file as Parquet: {e}")))?;
        let size: u64 = reader
            .metadata()
            .row_groups()
            .iter()
            .map(|group| u64::try_from(group.total_byte_size()).unwrap_or(u64::MAX))
            .fold(0, u64::saturating_add);
        let bytes = bytes_before.saturating_add(size);
        if bytes > limits.max_bytes {
            return Err(DatasetError::TooLarge {
                path: path.to_path_buf(),
                line: 1,
                limit: limits.max_bytes,
                decompressed: true,
            });
        }
        Ok(ParquetRows {
            path: path.to_path_buf(),
            rows: reader.into_iter(),
            limits,
            bytes,
            read: 0,
            done: false,
        })
    }

    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(super) fn next_row(&mut self) -> Option<Result<RawRow, DatasetError>> {
        if self.done {
            return None;
        }
        let rows = &mut self.rows;
        let Some(row) =
            guarded(|| rows.next()).unwrap_or_else(|e| Some(Err(ParquetError::General(e))))
        else {
            self.done = true;
            return None;
        };
        self.read += 1;
        let line = self.read;
        let row = match row.map_err(|e| e.to_string()) {
            Ok(row) => row,
            Err(e) => {
                self.done = true;
                return Some(Err(DatasetError::BadFile {
                    path: self.path.clone(),
                    line,
                    reason: format!("cannot read row {line}: {e}"),
                }));
            }
        };
        // The crate's text for some values panics (dates and timestamps out
        // of chrono's range, a decimal whose scale equals its precision):
        // such a row is a bad row, not the planner's crash.
        let fields = guarded(|| row_fields(&row)).unwrap_or_else(Err);
        // Each row counts in the byte limit as its JSON form, so rows that
        // decode from a few bytes on disk (run-length pages) still meet the
        // limit, as lines of a text file do; a bad row counts one byte.
        let size = match &fields {
            Ok(fields) => serde_json::to_vec(fields).map_or(0, |json| json.len()) as u64,
            Err(_) => 1,
        };
        if size > self.limits.max_line_bytes {
            self.done = true;
            return Some(Err(DatasetError::LineTooLong {
                path: self.path.clone(),
                line,
                limit: self.limits.max_line_bytes,
                unit: "row",
            }));
        }
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > self.limits.max_bytes {
            self.done = true;
            return Some(Err(DatasetError::TooLarge {
                path: self.path.clone(),
                line,
                limit: self.limits.max_bytes,
                decompressed: true,
            }));
        }
        Some(Ok(RawRow { line, fields }))
    }
}

/// Runs a call into the parquet crate; a panic becomes an error.
fn guarded<T>(call: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).map_err(|panic| {
        let text = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        format!("the Parquet reader failed on this file ({text}); is it a valid Parquet file?")
    })
}

/// A row as a JSON object keyed by its columns.
fn row_fields(row: &Row) -> Result<Map<String, Value>, String> {
    let mut fields = Map::with_capacity(row.len());
    for (name, field) in row.get_column_iter() {
        let value = field_value(field).map_err(|reason| format!("column `{name}`: {reason}"))?;
        fields.insert(name.clone(), value);
    }
    Ok(fields)
}

fn float(value: f64) -> Value {
    Number::from_f64(value).map_or(Value::Null, Value::Number)
}

fn field_value(field: &Field) -> Result<Value, String> {
    Ok(match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(n) => Value::from(*n),
        Field::Short(n) => Value::from(*n),
        Field::Int(n) => Value::from(*n),
        Field::Long(n) => Value::from(*n),
        Field::UByte(n) => Value::from(*n),
        Field::UShort(n) => Value::from(*n),
        Field::UInt(n) => Value::from(*n),
        Field::ULong(n) => Value::from(*n),
        Field::Float16(n) => float(f64::from(*n)),
        Field::Float(n) => float(f64::from(*n)),
        Field::Double(n) => float(*n),
        Field::Str(s) => Value::String(s.clone()),
        Field::Bytes(b) => match std::str::from_utf8(b.data()) {
            Ok(text) => Value::String(text.to_string()),
            Err(_) => return Err("a binary value that is not UTF-8 text".to_string()),
        },
        Field::Group(row) => Value::Object(row_fields(row)?),
        Field::ListInternal(list) => Value::Array(
            list.elements()
                .iter()
                .map(field_value)
                .collect::<Result<_, _>>()?,
        ),
        Field::MapInternal(map) => {
            let mut object = Map::with_capacity(map.entries().len());
            for (key, value) in map.entries() {
                let key = match field_value(key)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                object.insert(key, field_value(value)?);
            }
            Value::Object(object)
        }
        // Dates, times, timestamps and decimals: as the crate writes them.
        other => Value::String(other.to_string()),
    })
}
