//! The coordinator's database behind one trait: jobs, shards and their leases,
//! the cache index and request failures.
//!
//! The trait speaks in domain values (job and shard states, lease fences,
//! request keys) and takes `now` as an argument, so that every implementation
//! (SQLite now, Postgres later) can run the same conformance suite with a
//! controlled clock. Policies (lease length, retry backoff) are decided by the
//! caller and passed in; the store only records them.

mod error;
pub mod sqlite;

#[cfg(test)]
pub(crate) mod conformance;

pub use error::StoreError;
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobs::protocol::{FailedRequest, JobCounts, JobState, JobStatus, ShardState};
use jobs::spec::BackendKind;
use jobs::{RequestKey, Usage};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use uuid::Uuid;

/// A job as first recorded, in state `planning`.
#[derive(Clone, Debug, PartialEq)]
pub struct NewJob {
    pub id: Uuid,
    pub name: String,
    pub spec_json: String,
    /// sha256 of the spec's canonical JSON; at most one live job per hash.
    pub spec_hash: String,
    pub backend: BackendKind,
    pub created_at: DateTime<Utc>,
}

/// A job and its progress counts.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRecord {
    pub id: Uuid,
    pub name: String,
    pub spec_hash: String,
    pub backend: String,
    pub state: JobState,
    pub error: Option<String>,
    pub counts: JobCounts,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl JobRecord {
    /// The API's view of the job.
    pub fn status(&self) -> JobStatus {
        JobStatus {
            id: self.id,
            name: self.name.clone(),
            state: self.state,
            counts: self.counts.clone(),
            error: self.error.clone(),
            created_at: self.created_at.to_rfc3339(),
            updated_at: self.updated_at.to_rfc3339(),
        }
    }
}

/// A shard as written by the planner.
#[derive(Clone, Debug, PartialEq)]
pub struct NewShard {
    pub id: Uuid,
    pub seq: u64,
    /// The shard's `Vec<InferenceRequest>` as JSON.
    pub requests_json: String,
    pub request_count: u64,
    pub max_attempts: u32,
}

/// What planning found, written when the job leaves `planning`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanTotals {
    pub docs: u64,
    pub bad_rows: u64,
    /// Distinct requests of the job, cached ones included.
    pub requests: u64,
    /// Requests already in the cache at planning time.
    pub cached: u64,
}

/// A shard's row, for inspection (status pages and tests).
#[derive(Clone, Debug, PartialEq)]
pub struct ShardRecord {
    pub id: Uuid,
    pub job_id: Uuid,
    pub seq: u64,
    pub state: ShardState,
    pub attempt: u32,
    pub attempts_used: u32,
    pub max_attempts: u32,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub next_visible_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub request_count: u64,
    pub completed_count: u64,
    pub failed_count: u64,
}

/// Identifies one attempt of one shard held by one worker. Every lease
/// operation must match all three, and the shard must still be running; a
/// worker whose lease expired and was re-claimed matches nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseFence {
    pub shard_id: Uuid,
    pub attempt: u32,
    pub worker_id: String,
}

/// A shard handed to a worker by [`Store::claim`].
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedShard {
    pub shard_id: Uuid,
    pub job_id: Uuid,
    pub attempt: u32,
    pub lease_expires_at: DateTime<Utc>,
    pub requests_json: String,
}

impl ClaimedShard {
    pub fn fence(&self, worker_id: &str) -> LeaseFence {
        LeaseFence {
            shard_id: self.shard_id,
            attempt: self.attempt,
            worker_id: worker_id.to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct HeartbeatOutcome {
    pub keep_going: bool,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub cancelled: bool,
}

/// A segment's successful keys, to add to the cache index.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentEntry {
    pub path: String,
    pub job_id: Option<Uuid>,
    pub shard_id: Option<Uuid>,
    pub attempt: Option<u32>,
    pub keys: Vec<RequestKey>,
}

/// The outcome of a finished shard attempt.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Completion {
    /// Segment holding the written outputs (none when every request was
    /// already cached at claim time).
    pub segment: Option<String>,
    pub written: Vec<RequestKey>,
    pub failed: Vec<FailedRequest>,
    pub usage: Usage,
}

/// What a worker wrote before handing an unfinished shard back.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Partial {
    pub segment: String,
    pub written: Vec<RequestKey>,
    pub usage: Usage,
}

/// What one reaper pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReapOutcome {
    /// Expired leases made available again.
    pub returned: u64,
    /// Shards that ran out of attempts (their jobs failed).
    pub dead: u64,
    /// Expired leases of jobs that are no longer running.
    pub cancelled: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RequestFailure {
    pub job_id: Uuid,
    pub key: RequestKey,
    pub shard_id: Uuid,
    pub error: String,
}

/// Aggregates for the Prometheus endpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoreMetrics {
    pub jobs_by_state: Vec<(String, u64)>,
    pub shards_by_state: Vec<(String, u64)>,
    pub requests_completed: u64,
    pub requests_failed: u64,
    pub requests_cached: u64,
    pub cache_index_keys: u64,
}

/// The coordinator's persistent state. Implementations must make every
/// method atomic: a crash between two calls never leaves a half-applied one.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Records a new job in state `planning`, unless a live (planning or
    /// running) job with the same `spec_hash` exists: then that job is
    /// returned and the flag is false.
    async fn create_job(&self, job: NewJob) -> Result<(JobRecord, bool), StoreError>;
    async fn get_job(&self, id: Uuid) -> Result<JobRecord, StoreError>;
    /// The job's spec as submitted (JSON).
    async fn job_spec_json(&self, id: Uuid) -> Result<String, StoreError>;
    /// Every job, newest first.
    async fn list_jobs(&self) -> Result<Vec<JobRecord>, StoreError>;
    /// Ids of the jobs in `state`, oldest first.
    async fn jobs_in_state(&self, state: JobState) -> Result<Vec<Uuid>, StoreError>;

    /// Deletes the shards of a job still in `planning`, so planning can start
    /// over after a crash.
    async fn reset_planning(&self, job_id: Uuid) -> Result<(), StoreError>;
    async fn insert_shards(
        &self,
        job_id: Uuid,
        shards: &[NewShard],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Writes the totals and moves the job from `planning` to `running`, or to
    /// `completed` when it has no shard. Returns the new state (or the current
    /// one if the job had left `planning`, e.g. was cancelled meanwhile).
    async fn finish_planning(
        &self,
        job_id: Uuid,
        totals: PlanTotals,
        now: DateTime<Utc>,
    ) -> Result<JobState, StoreError>;
    /// Moves a non-terminal job to `failed`; false if it was already terminal.
    async fn fail_job(
        &self,
        job_id: Uuid,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Moves a non-terminal job to `cancelled` and its available shards with
    /// it; running shards learn at their next heartbeat.
    async fn cancel_job(&self, job_id: Uuid, now: DateTime<Utc>) -> Result<JobRecord, StoreError>;
    async fn list_shards(&self, job_id: Uuid) -> Result<Vec<ShardRecord>, StoreError>;

    /// The segment of every key that is in the cache index.
    async fn lookup_keys(
        &self,
        keys: &[RequestKey],
    ) -> Result<HashMap<RequestKey, String>, StoreError>;
    /// Adds a segment's keys to the index (first writer of a key wins) and
    /// records the segment as indexed. Returns how many keys were new.
    async fn index_segment(
        &self,
        entry: &SegmentEntry,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    async fn indexed_segments(&self) -> Result<HashSet<String>, StoreError>;
    /// Empties the cache index and the list of indexed segments.
    async fn clear_cache_index(&self) -> Result<(), StoreError>;

    /// Leases up to `max` available shards of running jobs whose backend is in
    /// `backends`, in one transaction: attempt + 1, lease until now + `lease`.
    async fn claim(
        &self,
        worker_id: &str,
        backends: &[BackendKind],
        max: u32,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedShard>, StoreError>;
    /// Renews a lease that is still the caller's and whose job still runs.
    /// A running shard of a job that was cancelled (or failed) is cancelled.
    async fn heartbeat(
        &self,
        fence: &LeaseFence,
        progress: u64,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<HeartbeatOutcome, StoreError>;
    /// Fenced: indexes the outputs, records failures and usage, completes the
    /// shard and, with its last shard, the job. False (and no change) when
    /// the fence does not match.
    async fn complete(
        &self,
        fence: &LeaseFence,
        completion: &Completion,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Fenced: spends an attempt. The shard becomes available again at
    /// `retry_at`, or dead (and its job failed) when out of attempts.
    /// `None` when the fence does not match.
    async fn fail(
        &self,
        fence: &LeaseFence,
        error: &str,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<ShardState>, StoreError>;
    /// Fenced: hands the shard back without spending an attempt, indexing the
    /// partial outputs first.
    async fn release(
        &self,
        fence: &LeaseFence,
        partial: Option<&Partial>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Returns expired leases to `available`, spending their attempt.
    async fn reap_expired(&self, now: DateTime<Utc>) -> Result<ReapOutcome, StoreError>;
    /// Returns every running lease to `available` without spending an
    /// attempt: used when the only process that could hold leases restarts.
    async fn recover_orphaned(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Failed requests of a job, at most `limit`.
    async fn job_failures(
        &self,
        job_id: Uuid,
        limit: u64,
    ) -> Result<Vec<RequestFailure>, StoreError>;
    /// The recorded error of each key that failed in any job.
    async fn failures_for_keys(
        &self,
        keys: &[RequestKey],
    ) -> Result<HashMap<RequestKey, String>, StoreError>;
    async fn metrics(&self) -> Result<StoreMetrics, StoreError>;
}

pub(crate) fn job_state_str(state: JobState) -> &'static str {
    match state {
        JobState::Planning => "planning",
        JobState::Running => "running",
        JobState::Completed => "completed",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

pub(crate) fn parse_job_state(s: &str) -> Option<JobState> {
    Some(match s {
        "planning" => JobState::Planning,
        "running" => JobState::Running,
        "completed" => JobState::Completed,
        "failed" => JobState::Failed,
        "cancelled" => JobState::Cancelled,
        _ => return None,
    })
}

pub(crate) fn parse_shard_state(s: &str) -> Option<ShardState> {
    Some(match s {
        "available" => ShardState::Available,
        "running" => ShardState::Running,
        "completed" => ShardState::Completed,
        "failed" => ShardState::Failed,
        "dead" => ShardState::Dead,
        "cancelled" => ShardState::Cancelled,
        _ => return None,
    })
}
