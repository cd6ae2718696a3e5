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
