//! Why a data file could not be read, each naming the file (or `s3://`
//! object), and the line where there is one.

use std::path::PathBuf;

use super::roots::OutsideRoots;

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
    #[error("{}: not a regular file; point dataset.path at a data file, a folder of them or a glob", .path.display())]
    NotAFile { path: PathBuf },
    /// A file whose name says no known format, and no `format` in the spec.
    #[error("{}: cannot tell the dataset format from the file name; known formats: {}; rename the file, or set `format` in [dataset] (\"jsonl\", \"json\", \"csv\", \"tsv\" or \"parquet\")", .path.display(), crate::spec::DatasetFormat::known())]
    UnknownFormat { path: PathBuf },
    /// A folder or glob that names no data file.
    #[error("{}: {what}; point dataset.path at a data file, a folder of them or a glob such as data/test-*.jsonl", .path.display())]
    NoFiles { path: PathBuf, what: String },
    /// A folder or glob naming more files than one dataset may have.
    #[error("{}: names more than {limit} files, the most one dataset may have; merge the files, or split the dataset into several jobs", .path.display())]
    TooManyFiles { path: PathBuf, limit: usize },
    /// A file whose whole shape is wrong (not a JSON array, a CSV without
    /// a usable header, a corrupt compressed stream): no row can be read
    /// past it.
    #[error("{}:{line}: {reason}", .path.display())]
    BadFile {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    /// Outside the folders the reader may read from.
    #[error(transparent)]
    Outside(#[from] OutsideRoots),
    /// A line (or a JSON array's element, or a CSV record) longer than the
    /// limit: not a document, and reading it whole would take unbounded
    /// memory.
    #[error("{}:{line}: {} longer than {limit} bytes; a document must fit in at most that size (`--max-line-bytes`)", .path.display(), .unit)]
    LineTooLong {
        path: PathBuf,
        line: u64,
        limit: u64,
        /// What was too long: "line", "array element", "record".
        unit: &'static str,
    },
    /// More bytes than one dataset may have read from it (decompressed
    /// bytes, for a compressed file: a small file that inflates without
    /// end is stopped here).
    #[error("{}:{line}: more than {limit} bytes read from this dataset{}, the most one job may read (`--max-dataset-bytes`); set dataset.limit, or split the dataset into several jobs", .path.display(), if *.decompressed { " (counted after decompression)" } else { "" })]
    TooLarge {
        path: PathBuf,
        line: u64,
        limit: u64,
        /// Whether the file is compressed.
        decompressed: bool,
    },
    /// More documents than one job may plan.
    #[error("{}:{line}: more than {limit} documents, the most one job may have (`--max-docs-per-job`); set dataset.limit, or split the dataset into several jobs", .path.display())]
    TooManyDocs {
        path: PathBuf,
        line: u64,
        limit: u64,
    },
    /// A document whose `id_field` value an earlier document already has:
    /// its samples and scores could not be told apart.
    #[error("{}:{line}: id {id:?} (field `{field}`, dataset.id_field) is already the id of line {first_line}; give every document its own id, or remove `id_field` from [dataset] to number the documents instead", .path.display())]
    DuplicateId {
        path: PathBuf,
        id: String,
        field: String,
        first_line: u64,
        line: u64,
    },
    /// A dataset without a single document: nothing to evaluate, and a
    /// metric over nothing is no score.
    #[error("{}: no documents to evaluate{}; point dataset.path at a file with at least one row", .path.display(), empty_detail(*.skipped, .first_skipped.as_deref()))]
    Empty {
        path: PathBuf,
        /// Rows skipped as bad (`on_bad_row = "skip"`).
        skipped: u64,
        /// The first of them, as `file:line: reason`.
        first_skipped: Option<String>,
    },
    /// An `s3://` location that names no object a store could have.
    #[error("{}: {reason}", .path.display())]
    BadLocation { path: PathBuf, reason: String },
    /// An `s3://` dataset in a process given no object store to read it.
    #[error("{}: this process has no S3 access to read datasets with; give it the S3 settings the cache uses (`--s3-endpoint`, `SHARDLINE_S3_ENDPOINT`, the AWS credentials), or copy the dataset to a local file", .path.display())]
    NoObjectStore { path: PathBuf },
    /// The object store refused or failed a request; `reason` says what to
    /// check.
    #[error("{}: {reason}", .path.display())]
    Store {
        path: PathBuf,
        reason: String,
        /// Unreachable or failing: worth a retry, not the job's fault.
        transient: bool,
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

impl DatasetError {
    /// Whether the job's own files are at fault (fix them and run again),
    /// rather than the reading itself (an I/O error partway through).
    pub fn is_bad_input(&self) -> bool {
        !matches!(
            self,
            DatasetError::Read { .. }
                | DatasetError::Store {
                    transient: true,
                    ..
                }
        )
    }
}

fn empty_detail(skipped: u64, first: Option<&str>) -> String {
    match (skipped, first) {
        (0, _) => {
            " (the file is empty or holds only blank lines, or a header and no row)".to_string()
        }
        (n, Some(first)) => format!(
            " (all {n} rows were bad and skipped under `on_bad_row = \"skip\"`; the first: {first})"
        ),
        (n, None) => format!(" (all {n} rows were bad and skipped)"),
    }
}
