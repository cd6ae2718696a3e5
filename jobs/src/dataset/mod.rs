//! A job's data files: the streaming dataset reader (JSONL, JSON arrays,
//! CSV and TSV, compressed or not, Parquet; one file or a folder or glob of
//! them, local or in an object store as `s3://BUCKET/KEY`),
//! the few-shot examples reader, and the policy that says where they may
//! read (`roots`) and how much (`limits`). A job is untrusted input on a shared
//! coordinator, so every file a job names is opened through that policy.

mod delimited;
mod error;
mod examples;
mod file;
#[cfg(test)]
mod format_tests;
mod glob;
mod ids;
mod json_array;
mod limits;
mod parquet_rows;
mod policy;
mod reader;
mod remote;
mod roots;
mod row;
mod rows;
mod source;
mod sources;
#[cfg(test)]
mod tests;

pub use error::DatasetError;
pub use examples::read_jsonl_examples;
pub use limits::{
    ReadLimits, DEFAULT_MAX_DATASET_BYTES, DEFAULT_MAX_DOCS_PER_JOB, DEFAULT_MAX_LINE_BYTES,
};
pub use policy::ReadPolicy;
pub use reader::{DatasetReader, Doc};
pub(crate) use remote::is_remote;
pub use remote::{ObjectSource, ObjectSourceError, RemoteObject};
pub use roots::{DatasetRoots, OutsideRoots, RootError};
