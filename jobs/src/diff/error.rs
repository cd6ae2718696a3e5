//! Why two runs could not be compared; each error names the file (and
//! line) at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a line of samples.jsonl ({message})")]
    Parse {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{path}:{line}: document {doc_id:?} appears a second time")]
    DuplicateDoc {
        path: PathBuf,
        line: u64,
        doc_id: String,
    },
    #[error("{path}: not a metrics.json ({message})")]
    Metrics { path: PathBuf, message: String },
    /// No document has scores in both runs: nothing to pair.
    #[error("no document was scored in both runs: {}", no_pairs(*a_docs, a, *b_docs, b, *shared))]
    NoSharedDocs {
        a: PathBuf,
        b: PathBuf,
        a_docs: u64,
        b_docs: u64,
        shared: u64,
    },
    /// A metric asked for is scored in neither run.
    #[error("no metric {name:?} in either run (they have: {})", known.join(", "))]
    UnknownMetric { name: String, known: Vec<String> },
    /// The runs share no metric name.
    #[error(
        "the runs have no metric in common ({a} has {}; {b} has {})",
        list(a_metrics),
        list(b_metrics)
    )]
    NoSharedMetrics {
        a: PathBuf,
        b: PathBuf,
        a_metrics: Vec<String>,
        b_metrics: Vec<String>,
    },
    /// More documents or scores than the compact index can number.
    #[error("{path}: too many documents or scores to compare ({message})")]
    TooLarge { path: PathBuf, message: String },
}

/// Why no document pairs: no shared id, or every shared one is missing
/// an output in one run or the other.
fn no_pairs(
    a_docs: u64,
    a: &std::path::Path,
    b_docs: u64,
    b: &std::path::Path,
    shared: u64,
) -> String {
    let files = format!(
        "{a_docs} lines in {}, {b_docs} in {}",
        a.display(),
        b.display()
    );
    if shared == 0 {
        format!("no doc_id is in both ({files})")
    } else {
        format!(
            "the {shared} doc_ids in both are missing an output in one run or the other ({files})"
        )
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

impl DiffError {
    /// Whether the input files are at fault (rather than the disk): a
    /// caller reports these as bad input.
    pub fn is_bad_input(&self) -> bool {
        match self {
            DiffError::Read { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            _ => true,
        }
    }
}
