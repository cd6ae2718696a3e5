//! Bodies of the lease routes (worker token): claiming shards, heartbeats,
//! completing, failing and releasing them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::state::ShardState;
use crate::output::Usage;
use crate::request::{InferenceRequest, RequestKey};
use crate::spec::{BackendKind, ModelSpec};

/// What a worker can run. The coordinator hands it only shards of jobs whose
/// backend is in `backends` and whose `model.model` matches one of `models`.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct WorkerCapabilities {
    pub backends: Vec<BackendKind>,
    /// Glob patterns over the job's `model.model` (`*` any run of
    /// characters, `?` one character, everything else literal, case
    /// sensitive). Empty: any model. Absent in older workers' claims, which
    /// therefore serve any model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct ClaimRequest {
    pub worker_id: String,
    pub capabilities: WorkerCapabilities,
    /// Most shards to hand out in one answer.
    pub max_shards: u32,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
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

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct ClaimResponse {
    pub leases: Vec<Lease>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct HeartbeatRequest {
    pub worker_id: String,
    pub shard_id: Uuid,
    pub attempt: u32,
    /// Requests finished so far in this attempt (for progress).
    pub done: u64,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct HeartbeatResponse {
    /// False when the lease is no longer this worker's (expired and
    /// re-claimed, or the shard was cancelled): stop working on it.
    pub keep_going: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<String>,
    /// The job was cancelled.
    pub cancelled: bool,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct FailedRequest {
    pub key: RequestKey,
    pub error: String,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
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

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct CompleteResponse {
    pub accepted: bool,
}

/// Why a shard attempt failed, as the worker judged it: whether another
/// attempt can do better.
#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailKind {
    /// Another attempt may succeed (the endpoint was down, a segment could
    /// not be written): the failure spends one of the shard's attempts.
    #[default]
    Transient,
    /// The job and its endpoint cannot work together, for every request
    /// alike (the server's certificate is not trusted, a route the job needs
    /// is missing, the server ignores a parameter the job depends on): no
    /// attempt can succeed until the job or the server is changed, so the
    /// shard dies and its job fails at once.
    Configuration,
}

impl FailKind {
    pub fn is_transient(&self) -> bool {
        *self == FailKind::Transient
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailKind::Transient => "transient",
            FailKind::Configuration => "configuration",
        }
    }

    /// The kind [`FailKind::as_str`] names; `None` for anything else.
    pub fn parse(name: &str) -> Option<FailKind> {
        match name {
            "transient" => Some(FailKind::Transient),
            "configuration" => Some(FailKind::Configuration),
            _ => None,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct FailRequest {
    pub worker_id: String,
    pub shard_id: Uuid,
    pub attempt: u32,
    pub error: String,
    /// Absent (older workers, and every transient failure): `transient`.
    /// Left out when transient, so that an older coordinator reads the
    /// body it always did.
    #[serde(default, skip_serializing_if = "FailKind::is_transient")]
    pub kind: FailKind,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct FailResponse {
    /// The shard's state after the failure (available again, or dead).
    pub state: ShardState,
}

/// Outputs a worker wrote before giving a shard back unfinished.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct PartialOutputs {
    pub segment: String,
    pub written: Vec<RequestKey>,
    pub usage: Usage,
}

/// Outputs a running shard has written so far, handed in while it runs so
/// that a worker killed mid-shard loses only what came after its last
/// flush. The outputs are indexed whatever became of the lease: they were
/// paid for, and their keys say what was asked.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct FlushRequest {
    pub worker_id: String,
    pub shard_id: Uuid,
    pub attempt: u32,
    /// One partial segment: only outputs no earlier flush of the attempt
    /// held.
    pub partial: PartialOutputs,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct FlushResponse {
    /// Keys the flush added to the cache index (0 for a repeated flush).
    pub indexed: u64,
}

/// A worker that is shutting down (Ctrl-C, SIGTERM) hands its shard back.
/// The shard becomes available again without spending an attempt, and the
/// outputs already written are indexed so that they are never requested
/// again.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct ReleaseRequest {
    pub worker_id: String,
    pub shard_id: Uuid,
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<PartialOutputs>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct ReleaseResponse {
    pub accepted: bool,
}
