//! A `.json` dataset: one JSON array of objects, read one element at a
//! time. A small scanner finds where each top-level element ends (tracking
//! strings and nesting, nothing more) and serde_json parses the element on
//! its own, so memory is one element (at most `max_line_bytes`), never the
//! whole array. An element that is not an object, or not valid JSON, is a
//! bad row (the scan goes on past it); a file that is not an array, or
//! whose commas and brackets are wrong, stops with an error naming the
//! line.

use serde_json::{Map, Value};

use super::error::DatasetError;
use super::file::DataFile;
use super::limits::ReadLimits;
use super::row::{json_kind, RawRow};

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the opening `[`.
    Start,
    /// After `[` (`first`) or after a `,`.
    BeforeElement {
        first: bool,
    },
    /// After an element: a `,` or the closing `]` comes next.
    AfterElement,
    /// After the closing `]`: only whitespace may follow.
    AfterArray,
    Done,
}

/// The elements of a JSON array file.
pub(super) struct ArrayRows {
    file: DataFile,
    limits: ReadLimits,
    /// Bytes read from the dataset, files before this one included.
    bytes: u64,
    /// The line of the next byte (1-based).
    line: u64,
    /// Elements read so far.
    elements: u64,
    state: State,
    buf: Vec<u8>,
}

impl ArrayRows {
    pub(super) fn new(file: DataFile, limits: ReadLimits, bytes_before: u64) -> Self {
        ArrayRows {
            file,
            limits,
            bytes: bytes_before,
            line: 1,
            elements: 0,
            state: State::Start,
            buf: Vec::new(),
        }
    }

    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The next byte, not consumed; `None` at the end of the file.
    fn peek(&mut self) -> Result<Option<u8>, DatasetError> {
        let line = self.line;
        let next = self
            .file
            .reader()
            .fill_buf()
            .map(|buf| buf.first().copied());
        next.map_err(|source| self.file.read_error(line, source))
    }

    /// Consumes the byte `peek` returned, within the byte limit.
    fn advance(&mut self, byte: u8) -> Result<(), DatasetError> {
        self.file.reader().consume(1);
        self.bytes += 1;
        if byte == b'\n' {
            self.line += 1;
        }
        if self.bytes > self.limits.max_bytes {
            return Err(DatasetError::TooLarge {
                path: self.file.path().to_path_buf(),
                line: self.line,
                limit: self.limits.max_bytes,
                decompressed: self.file.compressed(),
            });
        }
        Ok(())
    }

    /// Skips whitespace (and a byte-order mark at the start); the next byte.
    fn skip_space(&mut self) -> Result<Option<u8>, DatasetError> {
        while let Some(byte) = self.peek()? {
            let bom = self.state == State::Start && matches!(byte, 0xef | 0xbb | 0xbf);
            if !(byte.is_ascii_whitespace() || bom) {
                return Ok(Some(byte));
            }
            self.advance(byte)?;
        }
        Ok(None)
    }

    fn bad_file(&self, line: u64, reason: impl Into<String>) -> DatasetError {
        DatasetError::BadFile {
            path: self.file.path().to_path_buf(),
            line,
            reason: reason.into(),
        }
    }

    /// Reads one element's bytes into `buf`: up to the end of its string,
    /// object or array, or for a bare value up to the `,`, `]` or space
    /// that ends it (not consumed).
    fn read_element(&mut self) -> Result<(), DatasetError> {
        self.buf.clear();
        let start = self.line;
        let mut depth = 0u32;
        let mut in_string = false;
        let mut escaped = false;
        loop {
            let next = self.peek()?;
            if !in_string && depth == 0 && !self.buf.is_empty() {
                let bare_end = match next {
                    Some(byte) => matches!(byte, b',' | b']') || byte.is_ascii_whitespace(),
                    None => true,
                };
                let closed = matches!(self.buf[0], b'"' | b'{' | b'[');
                if closed || bare_end {
                    return Ok(());
                }
            }
            let Some(byte) = next else {
                return Err(self.bad_file(
                    start,
                    format!(
                        "the file ends inside array element {} (no closing `]`); \
                         the file is cut short or not a JSON array",
                        self.elements + 1
                    ),
                ));
            };
            if in_string {
                if escaped {
                    escaped = false;
                } else if byte == b'\\' {
                    escaped = true;
                } else if byte == b'"' {
                    in_string = false;
                }
            } else {
                match byte {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => depth = depth.saturating_sub(1),
                    _ => {}
                }
            }
            self.advance(byte)?;
            self.buf.push(byte);
            if self.buf.len() as u64 > self.limits.max_line_bytes {
                return Err(DatasetError::LineTooLong {
                    path: self.file.path().to_path_buf(),
                    line: start,
                    limit: self.limits.max_line_bytes,
                    unit: "array element",
                });
            }
        }
    }

    pub(super) fn next_row(&mut self) -> Option<Result<RawRow, DatasetError>> {
        match self.step() {
            Ok(row) => row.map(Ok),
            Err(e) => {
                self.state = State::Done;
                Some(Err(e))
            }
        }
    }

    fn step(&mut self) -> Result<Option<RawRow>, DatasetError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Start => match self.skip_space()? {
                    // An empty file: no rows, as an empty JSONL file.
                    None => self.state = State::Done,
                    Some(b'[') => {
                        self.advance(b'[')?;
                        self.state = State::BeforeElement { first: true };
                    }
                    Some(other) => {
                        return Err(self.bad_file(
                            self.line,
                            format!(
                                "expected a JSON array of objects (`[{{...}}, {{...}}]`), found {:?}; \
                                 if the file holds one object per line, set `format = \"jsonl\"` in [dataset]",
                                char::from(other)
                            ),
                        ))
                    }
                },
                State::BeforeElement { first } => match self.skip_space()? {
                    Some(b']') if first => {
                        self.advance(b']')?;
                        self.state = State::AfterArray;
                    }
                    Some(b',' | b']') | None => {
                        return Err(self.bad_file(
                            self.line,
                            format!(
                                "expected array element {} after {}",
                                self.elements + 1,
                                if first { "`[`" } else { "`,`" }
                            ),
                        ))
                    }
                    Some(_) => {
                        let line = self.line;
                        self.read_element()?;
                        self.elements += 1;
                        self.state = State::AfterElement;
                        return Ok(Some(RawRow {
                            line,
                            fields: parse_element(&self.buf, self.elements),
                        }));
                    }
                },
                State::AfterElement => match self.skip_space()? {
                    Some(b',') => {
                        self.advance(b',')?;
                        self.state = State::BeforeElement { first: false };
                    }
                    Some(b']') => {
                        self.advance(b']')?;
                        self.state = State::AfterArray;
                    }
                    other => {
                        return Err(self.bad_file(
                            self.line,
                            format!(
                                "expected `,` or `]` after array element {}, found {}",
                                self.elements,
                                found(other)
                            ),
                        ))
                    }
                },
                State::AfterArray => match self.skip_space()? {
                    None => self.state = State::Done,
                    Some(other) => {
                        return Err(self.bad_file(
                            self.line,
                            format!(
                                "{} after the array's closing `]`; a .json dataset is one array",
                                found(Some(other))
                            ),
                        ))
                    }
                },
            }
        }
    }
}

fn found(byte: Option<u8>) -> String {
    match byte {
        None => "the end of the file".to_string(),
        Some(b) => format!("{:?}", char::from(b)),
    }
}

/// Parses element `number` (1-based) as an object.
fn parse_element(bytes: &[u8], number: u64) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(other) => Err(format!(
            "array element {number}: expected a JSON object, found {}",
            json_kind(&other)
        )),
        Err(e) => Err(format!("array element {number}: invalid JSON: {e}")),
    }
}
