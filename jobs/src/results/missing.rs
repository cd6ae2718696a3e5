//! One line of `missing.jsonl`: a request whose output a job's results do
//! not have (it failed, or was never run), with the document it belongs to.

use serde::{Deserialize, Serialize};

use crate::request::RequestKey;

/// A request without an output, and where its document is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MissingRecord {
    pub doc_id: String,
    pub doc_index: u64,
    /// The document's 1-based line in the dataset.
    pub line: u64,
    pub key: RequestKey,
    /// Which sample of the document (`task.generation.n`) or which choice
    /// (multiple choice) the request is, counted from 0.
    pub request_index: usize,
    /// The error a worker recorded for it; absent when it was never run
    /// (`backend = "none"`, or the job stopped before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
