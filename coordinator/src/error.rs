//! Errors of the coordinator's operations, each mapped to an HTTP status by
//! the API layer.

use jobs::protocol::FailureKind;
use uuid::Uuid;

use crate::docstream::PlanFailure;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The job spec is invalid (field path and accepted values in the text).
    #[error("invalid job spec: {0}")]
    Spec(#[from] jobs::SpecError),
    #[error("job {0} not found; `shardline status` lists the known jobs")]
    JobNotFound(Uuid),
    /// A request the API cannot act on (bad body, bad id).
    #[error("{0}")]
    BadRequest(String),
    /// A name (a schedule's) already in use.
    #[error("{0}")]
    NameTaken(String),
    /// A request the operator's rules do not allow (a dataset outside the
    /// dataset roots); the text names the rule.
    #[error("{0}")]
    Forbidden(String),
    /// A lease operation whose fence no longer matches: the lease expired and
    /// was re-claimed, or the shard was completed or cancelled.
    #[error("lease of shard {shard_id} attempt {attempt} is no longer held by {worker_id}")]
    Fenced {
        shard_id: Uuid,
        attempt: u32,
        worker_id: String,
    },
    #[error(transparent)]
    Store(StoreError),
    /// The job's dataset or templates are wrong; the text names the file,
    /// line and field.
    #[error("{0}")]
    Planning(String),
    /// Reading the job's data files failed partway (an I/O error), through
    /// no fault of theirs.
    #[error("{0}")]
    DataRead(String),
    #[error(transparent)]
    Dataset(#[from] jobs::DatasetError),
    #[error(transparent)]
    Render(#[from] jobs::RenderError),
    #[error(transparent)]
    Segment(#[from] cache::SegmentError),
    #[error(transparent)]
    ObjectStore(#[from] cache::ObjectStoreError),
    #[error("cannot write samples: {0}")]
    Io(#[from] std::io::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for CoordinatorError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::JobNotFound(id) => CoordinatorError::JobNotFound(id),
            other => CoordinatorError::Store(other),
        }
    }
}

impl From<PlanFailure> for CoordinatorError {
    fn from(failure: PlanFailure) -> Self {
        match failure.kind {
            FailureKind::Input | FailureKind::Configuration => {
                CoordinatorError::Planning(failure.message)
            }
            FailureKind::Runtime => CoordinatorError::DataRead(failure.message),
        }
    }
}

impl CoordinatorError {
    /// Whether what the caller sent is at fault (a spec, a data file, a job
    /// id), so that sending it again unchanged cannot help; the CLI exits 2
    /// for these, 1 for the rest.
    pub fn is_bad_input(&self) -> bool {
        match self {
            CoordinatorError::Spec(_)
            | CoordinatorError::JobNotFound(_)
            | CoordinatorError::BadRequest(_)
            | CoordinatorError::NameTaken(_)
            | CoordinatorError::Forbidden(_)
            | CoordinatorError::Planning(_)
            | CoordinatorError::Render(_) => true,
            CoordinatorError::Dataset(e) => e.is_bad_input(),
            _ => false,
        }
    }

    /// True when the same call may succeed shortly: the database was busy
    /// or unreachable (e.g. Postgres restarting).
    pub fn is_retryable(&self) -> bool {
        matches!(self, CoordinatorError::Store(e) if e.is_retryable())
    }
}
