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
    #[error(
        "no document was scored in both runs ({a_docs} lines in {a}, {b_docs} in {b}, \
         {shared} doc_ids in both, of them {missing} missing an output in one run)"
    )]
    NoSharedDocs {
        a: PathBuf,
        b: PathBuf,
        a_docs: u64,
        b_docs: u64,
        shared: u64,
        missing: u64,
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
