//! A data file's rows in any format, before they are documents: each a
//! JSON object with the line it starts on, or the reason it is not one.
//! Errors that stop the file (it cannot be read, it is past a limit, its
//! shape is wrong) are `DatasetError`s; a bad row is the caller's to fail
//! or skip.

use std::path::Path;

use super::delimited::DelimitedRows;
use super::error::DatasetError;
use super::file::{BoundedLines, DataFile, Opened};
use super::json_array::ArrayRows;
use super::parquet_rows::ParquetRows;
use super::policy::ReadPolicy;
use super::remote;
use super::row::{is_blank, parse_object, RawRow};
use crate::spec::DatasetFormat;

/// A data file's rows, read as its format says.
pub(super) enum Rows {
    Lines(LineRows),
    Array(ArrayRows),
    /// Boxed: the csv reader's state is large.
    Delimited(Box<DelimitedRows>),
    Parquet(Box<ParquetRows>),
}

impl Rows {
    /// Opens `path` under `policy` and reads it as `format`, or as its name
    /// says when `format` is `None`. `bytes_before` were read from the
    /// dataset's earlier files and count against the same limit.
    pub(super) fn open(
        path: &Path,
        format: Option<DatasetFormat>,
        policy: &ReadPolicy,
        bytes_before: u64,
    ) -> Result<Rows, DatasetError> {
        // Opened first: a file outside the roots or not a regular file is
        // refused as such, whatever its name.
        let file = Opened::open(path, policy)?;
        let format = format
            .or_else(|| DatasetFormat::from_path(path))
            .ok_or_else(|| DatasetError::UnknownFormat {
                path: path.to_path_buf(),
            })?;
        let limits = policy.limits;
        let text = |file| DataFile::from_opened(path, file);
        Ok(match format {
            DatasetFormat::Jsonl => Rows::Lines(LineRows {
                lines: BoundedLines::new(text(file)?, limits, bytes_before),
                buf: Vec::new(),
            }),
            DatasetFormat::Json => Rows::Array(ArrayRows::new(text(file)?, limits, bytes_before)),
            DatasetFormat::Csv => Rows::Delimited(Box::new(DelimitedRows::open(
                text(file)?,
                b',',
                limits,
                bytes_before,
            )?)),
            DatasetFormat::Tsv => Rows::Delimited(Box::new(DelimitedRows::open(
                text(file)?,
                b'\t',
                limits,
                bytes_before,
            )?)),
            DatasetFormat::Parquet => {
                let file = match file {
                    Opened::File(file) => file,
                    Opened::Object(object) => {
                        let room = limits.max_bytes.saturating_sub(bytes_before);
                        remote::download(path, object, room, limits.max_bytes)?
                    }
                };
                Rows::Parquet(Box::new(ParquetRows::open(
                    path,
                    file,
                    limits,
                    bytes_before,
                )?))
            }
        })
    }

    /// The next row; `None` at the end of the file.
    pub(super) fn next_row(&mut self) -> Option<Result<RawRow, DatasetError>> {
        match self {
            Rows::Lines(rows) => rows.next_row(),
            Rows::Array(rows) => rows.next_row(),
            Rows::Delimited(rows) => rows.next_row(),
            Rows::Parquet(rows) => rows.next_row(),
        }
    }

    /// Bytes read from the dataset so far, earlier files included.
    pub(super) fn bytes(&self) -> u64 {
        match self {
            Rows::Lines(rows) => rows.lines.bytes(),
            Rows::Array(rows) => rows.bytes(),
            Rows::Delimited(rows) => rows.bytes(),
            Rows::Parquet(rows) => rows.bytes(),
        }
    }
}

/// JSONL: one object per line, blank lines skipped.
pub(super) struct LineRows {
    lines: BoundedLines,
    buf: Vec<u8>,
}

impl LineRows {
    fn next_row(&mut self) -> Option<Result<RawRow, DatasetError>> {
        loop {
            match self.lines.next_into(&mut self.buf) {
                Ok(false) => return None,
                Ok(true) if is_blank(&self.buf) => {}
                Ok(true) => {
                    return Some(Ok(RawRow {
                        line: self.lines.line(),
                        fields: parse_object(&self.buf),
                    }))
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
