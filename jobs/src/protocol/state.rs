//! The states a job and a shard go through, as the API reports them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Being expanded into requests and shards.
    Planning,
    Running,
    /// Every shard completed; some requests may have failed (see counts).
    Completed,
    /// Planning failed, or a shard went dead.
    Failed,
    Cancelled,
}

impl JobState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }
}

/// Why a job failed, for whoever must act: the job's author or the
/// operator. Commands exit 2 for input and configuration failures, 1 for
/// runtime ones.
#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The job's own spec or data files (a malformed or duplicate row, a
    /// template error, a file outside the dataset roots): fix the job and
    /// submit it again.
    Input,
    /// Something while it ran: an endpoint, a worker, the store.
    Runtime,
    /// The job and its endpoint cannot work together, for every request
    /// alike (an untrusted certificate, a missing route, a server that
    /// ignores `echo` or `logprobs`): change the job or the server. Failed
    /// at the first such error, without spending further attempts.
    Configuration,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Input => "input",
            FailureKind::Runtime => "runtime",
            FailureKind::Configuration => "configuration",
        }
    }

    /// The kind spelled by [`FailureKind::as_str`].
    pub fn parse(text: &str) -> Option<FailureKind> {
        match text {
            "input" => Some(FailureKind::Input),
            "runtime" => Some(FailureKind::Runtime),
            "configuration" => Some(FailureKind::Configuration),
            _ => None,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ShardState {
    Available,
    Running,
    /// Its requests are in provider batches (`openai-batch`): no lease, any
    /// worker may poll them.
    Submitted,
    Completed,
    Failed,
    Dead,
    Cancelled,
}
