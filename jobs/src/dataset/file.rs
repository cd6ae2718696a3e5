//! Opening a data file under the read policy and reading it within its
//! limits: regular files only (or `s3://` objects, streamed through the
//! policy's object store); gzip and zstd files (recognised by their
//! first bytes) decompressed as they are read; lines and total bytes
//! bounded, the decompressed bytes counted, so a small file that inflates
//! without end is stopped at the byte limit.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::error::DatasetError;
use super::limits::ReadLimits;
use super::policy::ReadPolicy;
use super::remote;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Opens `path` for reading without waiting: opening a FIFO would
/// otherwise block until something writes to it, and the check that it is
/// not a regular file comes after the open. (The flag changes nothing for
/// regular files, whose reads never wait.)
#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

/// Opens `path` if the policy allows it and it is a regular file.
fn open_checked(path: &Path, policy: &ReadPolicy) -> Result<File, DatasetError> {
    policy.roots.check(path)?;
    let open_error = |source| DatasetError::Open {
        path: path.to_path_buf(),
        source,
    };
    let file = open_nonblocking(path).map_err(open_error)?;
    let meta = file.metadata().map_err(open_error)?;
    if !meta.is_file() {
        return Err(DatasetError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    policy.roots.check_opened(path, &file)?;
    Ok(file)
}

/// A data file opened under the policy: a local file, or an object's
/// stream.
pub(super) enum Opened {
    File(File),
    Object(Box<dyn Read + Send>),
}

impl Opened {
    /// Opens `path` (a local path or an `s3://` location) if the policy
    /// allows it.
    pub(super) fn open(path: &Path, policy: &ReadPolicy) -> Result<Self, DatasetError> {
        if remote::is_remote(path) {
            return Ok(Opened::Object(remote::open_object(path, policy)?));
        }
        Ok(Opened::File(open_checked(path, policy)?))
    }

    fn into_read(self) -> Box<dyn Read + Send> {
        match self {
            Opened::File(file) => Box::new(file),
            Opened::Object(object) => object,
        }
    }
}

/// A file's reads, noting whether one failed: an error from a decompressor
/// whose file read well means the file is corrupt, not the disk (or the
/// network).
struct Watched {
    file: Box<dyn Read + Send>,
    failed: Arc<AtomicBool>,
}

impl Read for Watched {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.file.read(buf);
        if read.is_err() {
            self.failed.store(true, Ordering::Relaxed);
        }
        read
    }
}

/// A data file opened under the policy, its contents decompressed when it
/// is compressed.
pub(super) struct DataFile {
    path: PathBuf,
    reader: Box<dyn BufRead + Send>,
    compressed: bool,
    file_failed: Arc<AtomicBool>,
}

impl DataFile {
    /// Opens `path` if the policy allows it and it is a regular file (or
    /// an object).
    pub(super) fn open(path: &Path, policy: &ReadPolicy) -> Result<Self, DatasetError> {
        Self::from_opened(path, Opened::open(path, policy)?)
    }

    /// Reads `opened`, opened from `path` by [`Opened::open`].
    pub(super) fn from_opened(path: &Path, opened: Opened) -> Result<Self, DatasetError> {
        let file_failed = Arc::new(AtomicBool::new(false));
        let mut raw = BufReader::new(Watched {
            file: opened.into_read(),
            failed: file_failed.clone(),
        });
        let head = raw.fill_buf().map_err(|source| DatasetError::Read {
            path: path.to_path_buf(),
            line: 1,
            source,
        })?;
        let (gzip, zstd) = (head.starts_with(&GZIP_MAGIC), head.starts_with(&ZSTD_MAGIC));
        let (reader, compressed): (Box<dyn BufRead + Send>, bool) = if gzip {
            // Several gzip members one after another are one stream, as
            // `gzip -d` reads them.
            let decoder = flate2::bufread::MultiGzDecoder::new(raw);
            (Box::new(BufReader::new(decoder)), true)
        } else if zstd {
            let decoder = zstd::stream::read::Decoder::with_buffer(raw).map_err(|source| {
                DatasetError::Open {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
            (Box::new(BufReader::new(decoder)), true)
        } else {
            (Box::new(raw), false)
        };
        Ok(DataFile {
            path: path.to_path_buf(),
            reader,
            compressed,
            file_failed,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file is compressed (its limits count decompressed bytes).
    pub(super) fn compressed(&self) -> bool {
        self.compressed
    }

    /// The decompressed contents.
    pub(super) fn reader(&mut self) -> &mut (dyn BufRead + Send) {
        &mut *self.reader
    }

    /// Takes the decompressed contents, with what `read_error` needs.
    pub(super) fn into_parts(self) -> (Box<dyn BufRead + Send>, ReadErrors) {
        (
            self.reader,
            ReadErrors {
                path: self.path,
                compressed: self.compressed,
                file_failed: self.file_failed,
            },
        )
    }

    /// What an error reading around `line` means (see [`ReadErrors`]).
    pub(super) fn read_error(&self, line: u64, source: std::io::Error) -> DatasetError {
        read_error(&self.path, self.compressed, &self.file_failed, line, source)
    }
}

/// Tells, for a file whose reader was handed on, an unreadable disk (worth
/// a retry) from a corrupt compressed file (the input's fault).
pub(super) struct ReadErrors {
    pub path: PathBuf,
    pub compressed: bool,
    file_failed: Arc<AtomicBool>,
}

impl ReadErrors {
    pub(super) fn error(&self, line: u64, source: std::io::Error) -> DatasetError {
        read_error(&self.path, self.compressed, &self.file_failed, line, source)
    }
}

fn read_error(
    path: &Path,
    compressed: bool,
    file_failed: &AtomicBool,
    line: u64,
    source: std::io::Error,
) -> DatasetError {
    if compressed && !file_failed.load(Ordering::Relaxed) {
        return DatasetError::BadFile {
            path: path.to_path_buf(),
            line,
            reason: format!(
                "cannot decompress: {source}; the file is corrupt or cut short, \
                 compress it again (gzip or zstd)"
            ),
        };
    }
    DatasetError::Read {
        path: path.to_path_buf(),
        line,
        source,
    }
}

/// A data file's lines, read within the policy's limits.
pub(super) struct BoundedLines {
    file: DataFile,
    limits: ReadLimits,
    /// The number of the last line read (1-based; 0 before the first).
    line: u64,
    /// Bytes read from the dataset, files before this one included.
    bytes: u64,
}

impl BoundedLines {
    /// Opens `path` if the policy allows it and it is a regular file.
    pub(super) fn open(path: &Path, policy: &ReadPolicy) -> Result<Self, DatasetError> {
        Ok(Self::new(DataFile::open(path, policy)?, policy.limits, 0))
    }

    /// Reads `file`'s lines; `bytes_before` were read from the dataset's
    /// earlier files and count against the same limit.
    pub(super) fn new(file: DataFile, limits: ReadLimits, bytes_before: u64) -> Self {
        BoundedLines {
            file,
            limits,
            line: 0,
            bytes: bytes_before,
        }
    }

    pub(super) fn path(&self) -> &Path {
        self.file.path()
    }

    /// Bytes read from the dataset so far, earlier files included.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The number of the last line read.
    pub(super) fn line(&self) -> u64 {
        self.line
    }

    /// Reads the next line (with its `\n`) into `buf`, replacing what was
    /// there; false at the end of the file.
    pub(super) fn next_into(&mut self, buf: &mut Vec<u8>) -> Result<bool, DatasetError> {
        buf.clear();
        let number = self.line + 1;
        let max_line = self.limits.max_line_bytes;
        let read = self
            .file
            .reader()
            .take(max_line.saturating_add(1))
            .read_until(b'\n', buf);
        let read = read.map_err(|source| self.file.read_error(number, source))?;
        if read == 0 {
            return Ok(false);
        }
        self.line = number;
        if buf.len() as u64 > max_line {
            return Err(DatasetError::LineTooLong {
                path: self.path().to_path_buf(),
                line: number,
                limit: max_line,
                unit: "line",
            });
        }
        self.bytes += read as u64;
        if self.bytes > self.limits.max_bytes {
            return Err(DatasetError::TooLarge {
                path: self.path().to_path_buf(),
                line: number,
                limit: self.limits.max_bytes,
                decompressed: self.file.compressed(),
            });
        }
        Ok(true)
    }
}
