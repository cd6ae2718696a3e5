//! Bodies of the coordinator's provider-batch routes (the `openai-batch`
//! lifecycle; the shard state they carry is `crate::provider_batch`).
//!
//! Routes (worker token, all `POST`, 409 when the holder's fence no longer
//! matches; paths in [`super::routes`]):
//! - `/v1/batches/reserve` ([`BatchReserveRequest`] → [`BatchReserveResponse`]):
//!   room under the model's enqueued-token cap.
//! - `/v1/batches/submit` ([`BatchSubmitRequest`] → [`BatchAccepted`]):
//!   `running` → `submitted`, batch ids recorded.
//! - `/v1/batches/requests` ([`BatchRequestsRequest`] → `Vec<InferenceRequest>`):
//!   the shard's requests in planned order; `IndexRanges` index this list.
//! - `/v1/batches/claim` ([`BatchClaimRequest`] → [`BatchClaimResponse`]):
//!   poll leases on submitted shards that are due (or whose job stopped).
//! - `/v1/batches/heartbeat` ([`BatchHeartbeatRequest`] → [`BatchHeartbeatResponse`]).
//! - `/v1/batches/update` ([`BatchUpdateRequest`] → [`BatchAccepted`]):
//!   new state, outputs to index, next poll time.
//! - `/v1/batches/finish` ([`BatchFinishRequest`] → [`BatchFinishResponse`]).
//!
//! [`BatchRequestsRequest`]: BatchRequestsRequest

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::lease::{FailedRequest, PartialOutputs, WorkerCapabilities};
use super::state::{JobState, ShardState};
use crate::provider_batch::BatchShardState;
use crate::spec::ModelSpec;

/// Who holds a shard during a batch operation: the claim's lease (before
/// the shard is submitted) or a poll lease (after).
#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BatchHolder {
    Lease { attempt: u32 },
    Poll { poll_seq: u64 },
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct BatchReserveRequest {
    pub worker_id: String,
    pub shard_id: Uuid,
    pub holder: BatchHolder,
    /// Groups shards that share a provider quota (base URL and model).
    pub model_key: String,
    pub cap: u64,
    /// Tokens of this shard's batches already enqueued.
    pub base_tokens: u64,
    /// Tokens of the batches the caller wants to create, in order.
    pub wanted: Vec<u64>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct BatchReserveResponse {
    /// How many of `wanted` (a prefix) may be created now.
    pub granted: u32,
    /// Tokens enqueued by other shards of the model.
    pub enqueued_elsewhere: u64,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct BatchSubmitRequest {
    pub worker_id: String,
    pub shard_id: Uuid,
    pub attempt: u32,
    pub state: BatchShardState,
    pub model_key: String,
    /// First poll after this many milliseconds.
    pub next_poll_in_ms: u64,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct BatchAccepted {
    pub accepted: bool,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct BatchRequestsRequest {
    pub worker_id: String,
    pub shard_id: Uuid,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct BatchClaimRequest {
    pub worker_id: String,
    pub capabilities: WorkerCapabilities,
    pub max: u32,
}

/// A poll lease on a submitted shard.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct BatchPoll {
    pub shard_id: Uuid,
    pub job_id: Uuid,
    /// Fencing token of the poll lease.
    pub poll_seq: u64,
    pub lease_expires_at: String,
    pub heartbeat_interval_secs: u64,
    /// `running`, or the state that tells the poller to cancel.
    pub job_state: JobState,
    pub model: ModelSpec,
    pub state: BatchShardState,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct BatchClaimResponse {
    pub polls: Vec<BatchPoll>,
    /// When nothing was due: milliseconds until the next submitted shard is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_due_in_ms: Option<u64>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct BatchHeartbeatRequest {
    pub worker_id: String,
    pub shard_id: Uuid,
    pub poll_seq: u64,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct BatchHeartbeatResponse {
    pub keep_going: bool,
    pub job_state: Option<JobState>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct BatchUpdateRequest {
    pub worker_id: String,
    pub shard_id: Uuid,
    pub poll_seq: u64,
    pub state: BatchShardState,
    /// Keep the poll lease (more work follows, e.g. creating a batch right
    /// after recording the intent); otherwise it ends and the shard is due
    /// again in `next_poll_in_ms`.
    #[serde(default)]
    pub keep_lease: bool,
    pub next_poll_in_ms: u64,
    /// Outputs written to a segment by this pass, to index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<PartialOutputs>,
}

/// How a submitted shard ends.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum BatchOutcome {
    /// Every request has an output or a final error.
    Completed { failed: Vec<FailedRequest> },
    /// A batch failed (e.g. validation): the shard dies and its job fails.
    Failed { error: String },
    /// The job stopped; the batches were cancelled and their finished part
    /// kept.
    Cancelled,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct BatchFinishRequest {
    pub worker_id: String,
    pub shard_id: Uuid,
    pub poll_seq: u64,
    pub outcome: BatchOutcome,
    /// Outputs written by this last pass, to index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<PartialOutputs>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct BatchFinishResponse {
    pub accepted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ShardState>,
}
