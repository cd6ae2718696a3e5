//! How much of a data file a job may make a reader read: bytes per line,
//! bytes per file and documents per job, with defaults far past any real
//! eval and far below what would exhaust a coordinator.

/// Longest line by default: 16 MiB, far past any document, and a bound on
/// the memory one line can take.
pub const DEFAULT_MAX_LINE_BYTES: u64 = 16 * 1024 * 1024;
/// Bytes read from one dataset by default: 16 GiB, several million long
/// documents; planning streams, so this bounds time, not memory.
pub const DEFAULT_MAX_DATASET_BYTES: u64 = 16 * 1024 * 1024 * 1024;
/// Documents one job may plan by default.
pub const DEFAULT_MAX_DOCS_PER_JOB: u64 = 10_000_000;

/// The read limits; a file past one is refused with an error naming the
/// limit, never read on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    /// Longest line (a document, or a few-shot example).
    pub max_line_bytes: u64,
    /// Bytes read from one file.
    pub max_bytes: u64,
    /// Documents accepted from one dataset.
    pub max_docs: u64,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_bytes: DEFAULT_MAX_DATASET_BYTES,
            max_docs: DEFAULT_MAX_DOCS_PER_JOB,
        }
    }
}
