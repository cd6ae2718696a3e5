//! The coordinator ↔ worker HTTP/JSON protocol and the job API's bodies.
//!
//! These are plain data; the coordinator serves them with axum and the worker
//! sends them with reqwest. Both sides depend on this module only, so the
//! protocol has one definition.
//!
//! Routes (all under the coordinator's base URL, bearer-token auth):
//! - admin token: `POST /v1/jobs` (SubmitJobRequest → JobStatus),
//!   `GET /v1/jobs` (Vec<JobStatus>), `GET /v1/jobs/{id}` (JobStatus),
//!   `POST /v1/jobs/{id}/cancel` (JobStatus),
//!   `GET /v1/jobs/{id}/results` (ResultsResponse),
//!   `GET /v1/jobs/{id}/samples` (samples.jsonl, streamed),
//!   `POST /v1/rescore` (`{"spec": …}` → ResultsResponse, scored from the
//!   cache alone), `POST /v1/rescore/samples` (same body; samples.jsonl)
//! - worker token: `POST /v1/leases/claim` (ClaimRequest → ClaimResponse),
//!   `POST /v1/leases/heartbeat` (HeartbeatRequest → HeartbeatResponse),
//!   `POST /v1/leases/complete` (CompleteRequest → CompleteResponse; 409 when
//!   fenced), `POST /v1/leases/fail` (FailRequest → FailResponse; 409 when fenced),
//!   `POST /v1/leases/release` (ReleaseRequest → ReleaseResponse; 409 when fenced)
//! - none: `GET /healthz`, `GET /metrics`

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::output::Usage;
use crate::request::{InferenceRequest, RequestKey};
use crate::spec::{BackendKind, JobSpec, ModelSpec};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SubmitJobRequest {
    pub spec: JobSpec,
    /// Higher is served first; jobs of equal priority share the workers
    /// fairly. Absent means 0.
    #[serde(default)]
    pub priority: i32,
}

/// Progress counts of a job, in requests unless named otherwise.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct JobCounts {
    pub docs: u64,
    /// Rows skipped by `on_bad_row = "skip"`.
    pub bad_rows: u64,
    pub requests: u64,
    /// Requests whose output was already in the cache at planning time.
    pub cached: u64,
    /// Requests completed by this job's shards.
    pub completed: u64,
    /// Requests that failed after retries (retried by a later run).
    pub failed: u64,
    pub shards_total: u64,
    pub shards_completed: u64,
    pub shards_running: u64,
    pub shards_dead: u64,
    #[serde(default)]
    pub usage: Usage,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JobStatus {
    pub id: Uuid,
    pub name: String,
    pub state: JobState,
    pub counts: JobCounts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Cost of `counts.usage` under the spec's `[model.price]` (absent
    /// without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<crate::cost::CostSummary>,
}

/// What a worker can run. The coordinator hands it only shards of jobs whose
/// backend is in `backends` and whose `model.model` matches one of `models`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct WorkerCapabilities {
    pub backends: Vec<BackendKind>,
    /// Glob patterns over the job's `model.model` (`*` any run of
    /// characters, `?` one character, everything else literal, case
    /// sensitive). Empty: any model. Absent in older workers' claims, which
    /// therefore serve any model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ClaimRequest {
    pub worker_id: String,
    pub capabilities: WorkerCapabilities,
    /// Most shards to hand out in one answer.
    pub max_shards: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Lease {
    pub shard_id: Uuid,
    pub job_id: Uuid,
    /// Fencing token: completions must quote it.
    pub attempt: u32,
    pub lease_expires_at: String,
    /// Seconds between heartbeats the coordinator expects.
    pub heartbeat_interval_secs: u64,
    pub model: ModelSpec,
    pub requests: Vec<InferenceRequest>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ClaimResponse {
    pub leases: Vec<Lease>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct HeartbeatRequest {
    pub worker_id: String,
    pub shard_id: Uuid,
    pub attempt: u32,
    /// Requests finished so far in this attempt (for progress).
    pub done: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct HeartbeatResponse {
    /// False when the lease is no longer this worker's (expired and
    /// re-claimed, or the shard was cancelled): stop working on it.
    pub keep_going: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<String>,
    /// The job was cancelled.
    pub cancelled: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FailedRequest {
    pub key: RequestKey,
    pub error: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CompleteRequest {
    pub worker_id: String,
    pub shard_id: Uuid,
    pub attempt: u32,
    /// Object-store path of the segment written for this attempt.
    pub segment: String,
    /// Keys with a successful output in the segment.
    pub written: Vec<RequestKey>,
    /// Keys that failed after retries, with their errors.
    pub failed: Vec<FailedRequest>,
    pub usage: Usage,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CompleteResponse {
    pub accepted: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FailRequest {
    pub worker_id: String,
    pub shard_id: Uuid,
    pub attempt: u32,
    pub error: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FailResponse {
    /// The shard's state after the failure (available again, or dead).
    pub state: ShardState,
}

/// Error body of every non-2xx answer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ErrorBody {
    pub error: String,
}

/// Outputs a worker wrote before giving a shard back unfinished.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PartialOutputs {
    pub segment: String,
    pub written: Vec<RequestKey>,
    pub usage: Usage,
}

/// A worker that is shutting down (Ctrl-C, SIGTERM) hands its shard back.
/// The shard becomes available again without spending an attempt, and the
/// outputs already written are indexed so that they are never requested
/// again.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ReleaseRequest {
    pub worker_id: String,
    pub shard_id: Uuid,
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<PartialOutputs>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ReleaseResponse {
    pub accepted: bool,
}

/// Body of `GET /v1/jobs/{id}/results`: the job's `metrics.json`.
pub type ResultsResponse = crate::results::MetricsReport;
