//! CSV and TSV datasets: the header row names the fields, each later
//! record is a document. A cell becomes a JSON number or boolean only when
//! that value written back gives the cell's exact text (`7`, `-2`, `0.5`,
//! `true`); anything else, `007`, `1.50`, `1e3`, `True` and the empty cell
//! included, stays a string, so a template renders a cell as it was
//! written. A record with more or fewer fields than the header is a bad
//! row. TSV is read without quoting (a `"` is text); CSV with the usual
//! double-quote rules.
//!
//! Memory: the csv reader holds one record; a record that grows past
//! `max_line_bytes` (what `Metered` counts since the last record) stops
//! the file.

use std::io::{BufRead, Read};

use serde_json::{Map, Number, Value};

use super::error::DatasetError;
use super::file::{DataFile, ReadErrors};
use super::limits::ReadLimits;
use super::row::RawRow;

/// The csv reader's buffer: bytes it may have read past a record's end.
const CSV_BUFFER: usize = 64 * 1024;

/// Columns a header may name: every record repeats the names in its
/// document, so a header of millions of columns would make each row a
/// document of hundreds of MB. Real eval tables have tens.
const MAX_COLUMNS: usize = 10_000;

/// Which limit a read went past.
#[derive(Clone, Copy)]
enum Exceeded {
    Record,
    Total,
}

/// The file's bytes as the csv reader takes them, counted against the
/// limits: the dataset's total, and the bytes since the last record ended.
struct Metered {
    inner: Box<dyn BufRead + Send>,
    limits: ReadLimits,
    total: u64,
    since_record: u64,
    exceeded: Option<Exceeded>,
}

impl Read for Metered {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.total += read as u64;
        self.since_record += read as u64;
        let record_limit = self.limits.max_line_bytes.saturating_add(CSV_BUFFER as u64);
        if self.total > self.limits.max_bytes {
            self.exceeded = Some(Exceeded::Total);
        } else if self.since_record > record_limit {
            self.exceeded = Some(Exceeded::Record);
        }
        if self.exceeded.is_some() {
            return Err(std::io::Error::other("read limit reached"));
        }
        Ok(read)
    }
}

/// The records of a CSV or TSV file.
pub(super) struct DelimitedRows {
    reader: csv::Reader<Metered>,
    errors: ReadErrors,
    headers: Vec<String>,
    record: csv::ByteRecord,
    limits: ReadLimits,
    done: bool,
}

impl DelimitedRows {
    /// Reads the header row of `file`, fields separated by `delimiter`.
    pub(super) fn open(
        file: DataFile,
        delimiter: u8,
        limits: ReadLimits,
        bytes_before: u64,
    ) -> Result<Self, DatasetError> {
        let (inner, errors) = file.into_parts();
        let metered = Metered {
            inner,
            limits,
            total: bytes_before,
            since_record: 0,
            exceeded: None,
        };
        let reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .quoting(delimiter != b'\t')
            .has_headers(true)
            .flexible(true)
            .buffer_capacity(CSV_BUFFER)
            .from_reader(metered);
        let mut rows = DelimitedRows {
            reader,
            errors,
            headers: Vec::new(),
            record: csv::ByteRecord::new(),
            limits,
            done: false,
        };
        rows.headers = rows.read_headers()?;
        Ok(rows)
    }

    pub(super) fn bytes(&self) -> u64 {
        self.reader.get_ref().total
    }

    fn bad_file(&self, line: u64, reason: String) -> DatasetError {
        DatasetError::BadFile {
            path: self.errors.path.clone(),
            line,
            reason,
        }
    }

    fn read_headers(&mut self) -> Result<Vec<String>, DatasetError> {
        let raw = self.reader.byte_headers().cloned();
        let raw = raw.map_err(|e| self.csv_error(e))?;
        self.reader.get_mut().since_record = 0;
        if raw.len() > MAX_COLUMNS {
            return Err(self.bad_file(
                1,
                format!(
                    "the header row has {} columns, more than {MAX_COLUMNS}; is the delimiter \
                     right (`format = \"csv\"` or `\"tsv\"`)?",
                    raw.len()
                ),
            ));
        }
        let mut names: Vec<String> = Vec::with_capacity(raw.len());
        let mut seen = std::collections::HashSet::with_capacity(raw.len());
        for (i, name) in raw.iter().enumerate() {
            let name = std::str::from_utf8(name).map_err(|_| {
                self.bad_file(1, format!("header field {} is not valid UTF-8", i + 1))
            })?;
            let name = if i == 0 {
                name.trim_start_matches('\u{feff}')
            } else {
                name
            };
            if !seen.insert(name) {
                return Err(self.bad_file(
                    1,
                    format!("the header row names `{name}` twice; every column needs its own name"),
                ));
            }
            names.push(name.to_string());
        }
        // A file with nothing in it has no header and no rows.
        if names.len() == 1 && names[0].is_empty() {
            names.clear();
        }
        Ok(names)
    }

    /// What a csv error means: a limit, the disk, or a malformed file.
    fn csv_error(&self, error: csv::Error) -> DatasetError {
        let line = error
            .position()
            .map(|p| p.line())
            .unwrap_or_else(|| self.reader.position().line().max(1));
        let path = self.errors.path.clone();
        match self.reader.get_ref().exceeded {
            Some(Exceeded::Total) => {
                return DatasetError::TooLarge {
                    path,
                    line,
                    limit: self.limits.max_bytes,
                    decompressed: self.errors.compressed,
                }
            }
            Some(Exceeded::Record) => {
                return DatasetError::LineTooLong {
                    path,
                    line,
                    limit: self.limits.max_line_bytes,
                    unit: "record",
                }
            }
            None => {}
        }
        match error.into_kind() {
            csv::ErrorKind::Io(source) => self.errors.error(line, source),
            other => self.bad_file(line, format!("cannot read the file as CSV: {other:?}")),
        }
    }

    pub(super) fn next_row(&mut self) -> Option<Result<RawRow, DatasetError>> {
        if self.done || self.headers.is_empty() {
            return None;
        }
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => {
                self.done = true;
                None
            }
            Ok(true) => {
                self.reader.get_mut().since_record = 0;
                let line = self.record.position().map_or(0, |p| p.line());
                if self.record.as_slice().len() as u64 > self.limits.max_line_bytes {
                    self.done = true;
                    return Some(Err(DatasetError::LineTooLong {
                        path: self.errors.path.clone(),
                        line,
                        limit: self.limits.max_line_bytes,
                        unit: "record",
                    }));
                }
                Some(Ok(RawRow {
                    line,
                    fields: self.fields(),
                }))
            }
            Err(e) => {
                self.done = true;
                Some(Err(self.csv_error(e)))
            }
        }
    }

    /// The current record as an object keyed by the header's names.
    fn fields(&self) -> Result<Map<String, Value>, String> {
        if self.record.len() != self.headers.len() {
            return Err(format!(
                "expected {} fields, as the header row has, found {}",
                self.headers.len(),
                self.record.len()
            ));
        }
        let mut fields = Map::with_capacity(self.headers.len());
        for (name, cell) in self.headers.iter().zip(self.record.iter()) {
            let text = std::str::from_utf8(cell)
                .map_err(|e| format!("field `{name}`: not valid UTF-8: {e}"))?;
            fields.insert(name.clone(), typed(text));
        }
        Ok(fields)
    }
}

/// A cell as a number or boolean when that value writes back as the same
/// text, as a string otherwise.
pub(super) fn typed(cell: &str) -> Value {
    match cell {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    let starts_like_a_number = cell
        .bytes()
        .next()
        .is_some_and(|b| b == b'-' || b.is_ascii_digit());
    if starts_like_a_number {
        let number = if let Ok(i) = cell.parse::<i64>() {
            Some(Number::from(i))
        } else if let Ok(u) = cell.parse::<u64>() {
            Some(Number::from(u))
        } else {
            cell.parse::<f64>().ok().and_then(Number::from_f64)
        };
        if let Some(number) = number.filter(|n| n.to_string() == cell) {
            return Value::Number(number);
        }
    }
    Value::String(cell.to_string())
}
