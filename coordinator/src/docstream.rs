//! Reads and plans a job's dataset on a blocking thread and hands the
//! documents over in bounded chunks, so that memory does not grow with the
//! dataset and the async runtime never blocks on file reads or templating.

use jobs::protocol::FailureKind;
use jobs::{DatasetError, DatasetReader, Doc, DocPlan, JobSpec, Planner, ReadPolicy};
use tokio::sync::mpsc;

/// Documents per chunk.
pub(crate) const CHUNK_DOCS: usize = 1000;

pub(crate) enum DocMsg {
    Chunk(Vec<(Doc, DocPlan)>),
    /// End of the dataset.
    Done {
        docs: u64,
        bad_rows: u64,
    },
    /// Planning stopped: bad spec, unreadable dataset, bad row, template
    /// error.
    Failed(PlanFailure),
}

/// Why the documents stopped coming: the text names the file, line and
/// field; the kind says whether the job's files are at fault.
#[derive(Debug)]
pub(crate) struct PlanFailure {
    pub message: String,
    pub kind: FailureKind,
}

impl PlanFailure {
    pub(crate) fn input(error: impl ToString) -> Self {
        PlanFailure {
            message: error.to_string(),
            kind: FailureKind::Input,
        }
    }

    fn dataset(error: DatasetError) -> Self {
        PlanFailure {
            message: error.to_string(),
            kind: if error.is_bad_input() {
                FailureKind::Input
            } else {
                FailureKind::Runtime
            },
        }
    }

    /// The reader thread ended without saying why (it panicked).
    pub(crate) fn reader_gone() -> Self {
        PlanFailure {
            message: "the dataset reader stopped unexpectedly".to_string(),
            kind: FailureKind::Runtime,
        }
    }
}

/// Starts the reader, which opens the job's files under `policy`.
/// Dropping the receiver stops it at the next chunk.
pub(crate) fn spawn_doc_stream(spec: JobSpec, policy: ReadPolicy) -> mpsc::Receiver<DocMsg> {
    // Two chunks in flight: the reader stays ahead without running away.
    let (tx, rx) = mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        if let Err(failure) = produce(&spec, &policy, &tx) {
            let _ = tx.blocking_send(DocMsg::Failed(failure));
        }
    });
    rx
}

fn produce(
    spec: &JobSpec,
    policy: &ReadPolicy,
    tx: &mpsc::Sender<DocMsg>,
) -> Result<(), PlanFailure> {
    let planner = Planner::new(spec, policy).map_err(PlanFailure::input)?;
    let mut reader = DatasetReader::open(&spec.dataset, policy).map_err(PlanFailure::dataset)?;
    let mut chunk = Vec::with_capacity(CHUNK_DOCS);
    let mut docs = 0u64;
    for doc in &mut reader {
        let doc = doc.map_err(PlanFailure::dataset)?;
        let plan = planner.plan_doc(&doc).map_err(PlanFailure::input)?;
        docs += 1;
        chunk.push((doc, plan));
        if chunk.len() >= CHUNK_DOCS {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_DOCS));
            if tx.blocking_send(DocMsg::Chunk(full)).is_err() {
                // The consumer is gone (shutdown or client disconnected).
                return Ok(());
            }
        }
    }
    if !chunk.is_empty() && tx.blocking_send(DocMsg::Chunk(chunk)).is_err() {
        return Ok(());
    }
    let _ = tx.blocking_send(DocMsg::Done {
        docs,
        bad_rows: reader.bad_rows(),
    });
    Ok(())
}

/// A compact identity for a request key, for de-duplication sets: the first
/// 128 bits of the sha256 (collisions are out of reach at any dataset size).
pub(crate) fn key_id(key: &jobs::RequestKey) -> u128 {
    let s = key.as_str();
    match s.get(..32).map(|h| u128::from_str_radix(h, 16)) {
        Some(Ok(v)) => v,
        // Not a hex key (never produced by `jobs`): hash it instead.
        _ => {
            use sha2::{Digest, Sha256};
            let digest = Sha256::digest(s.as_bytes());
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            u128::from_be_bytes(bytes)
        }
    }
}
