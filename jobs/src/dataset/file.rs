//! Opening a data file under the read policy and reading it line by line
//! within its limits: regular files only, lines and total bytes bounded.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::error::DatasetError;
use super::limits::ReadLimits;
use super::policy::ReadPolicy;

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

/// A data file's lines, read within the policy's limits.
pub(super) struct BoundedLines {
    path: PathBuf,
    reader: BufReader<File>,
    limits: ReadLimits,
    /// The number of the last line read (1-based; 0 before the first).
    line: u64,
    bytes: u64,
}

impl BoundedLines {
    /// Opens `path` if the policy allows it and it is a regular file.
    pub(super) fn open(path: &Path, policy: &ReadPolicy) -> Result<Self, DatasetError> {
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
        Ok(BoundedLines {
            path: path.to_path_buf(),
            reader: BufReader::new(file),
            limits: policy.limits,
            line: 0,
            bytes: 0,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn limits(&self) -> &ReadLimits {
        &self.limits
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
            .reader
            .by_ref()
            .take(max_line.saturating_add(1))
            .read_until(b'\n', buf)
            .map_err(|source| DatasetError::Read {
                path: self.path.clone(),
                line: number,
                source,
            })?;
        if read == 0 {
            return Ok(false);
        }
        self.line = number;
        if buf.len() as u64 > max_line {
            return Err(DatasetError::LineTooLong {
                path: self.path.clone(),
                line: number,
                limit: max_line,
            });
        }
        self.bytes += read as u64;
        if self.bytes > self.limits.max_bytes {
            return Err(DatasetError::TooLarge {
                path: self.path.clone(),
                line: number,
                limit: self.limits.max_bytes,
            });
        }
        Ok(true)
    }
}
