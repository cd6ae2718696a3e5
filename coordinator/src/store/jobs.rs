//! Jobs and their shards as the planner writes them: creation (one live job
//! per spec), planning, cancellation and inspection.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobs::protocol::{FailureKind, JobCounts, JobState, JobStatus, ShardState};
use jobs::spec::BackendKind;
use uuid::Uuid;

use super::StoreError;

/// A job as first recorded, in state `planning`.
#[derive(Clone, Debug, PartialEq)]
pub struct NewJob {
    pub id: Uuid,
    pub name: String,
    pub spec_json: String,
    /// sha256 of the spec's canonical JSON; at most one live job per hash.
    pub spec_hash: String,
    pub backend: BackendKind,
    /// The spec's `model.model`, matched against workers' model patterns.
    pub model: String,
    /// Higher is claimed first; within a priority, jobs share workers fairly.
    pub priority: i32,
    pub created_at: DateTime<Utc>,
}

/// A job and its progress counts.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRecord {
    pub id: Uuid,
    /// The judged job, for a judge metric's child job.
    pub parent_id: Option<Uuid>,
    pub name: String,
    pub spec_hash: String,
    pub backend: String,
    pub priority: i32,
    pub state: JobState,
    pub error: Option<String>,
    /// Whose fault `error` is; `None` (a failure recorded without one)
    /// reads as [`FailureKind::Runtime`].
    pub error_kind: Option<FailureKind>,
    pub counts: JobCounts,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl JobRecord {
    /// The API's view of the job.
    pub fn status(&self) -> JobStatus {
        JobStatus {
            id: self.id,
            parent_id: self.parent_id,
            name: self.name.clone(),
            state: self.state,
            counts: self.counts.clone(),
            error: self.error.clone(),
            error_kind: (self.state == JobState::Failed)
                .then(|| self.error_kind.unwrap_or(FailureKind::Runtime)),
            created_at: self.created_at.to_rfc3339(),
            updated_at: self.updated_at.to_rfc3339(),
            cost: None,
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

/// The jobs and shards tables. Every method is atomic.
#[async_trait]
pub trait JobStore: Send + Sync {
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
    /// Counts a planning pass starting on a job in `planning` and returns
    /// how many have started without being seen to end (0 when the job is
    /// not in `planning`). Counted before the pass, so a pass that takes
    /// the process down is counted too.
    async fn count_planning_attempt(&self, job_id: Uuid) -> Result<u32, StoreError>;
    /// Takes back the count of a pass that ended without fault of the job
    /// (the store went away, the coordinator was stopped).
    async fn uncount_planning_attempt(&self, job_id: Uuid) -> Result<(), StoreError>;
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
    /// Moves a non-terminal job to `failed` with its error and whose fault
    /// it is; false if it was already terminal.
    async fn fail_job(
        &self,
        job_id: Uuid,
        error: &str,
        kind: FailureKind,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Moves a non-terminal job to `cancelled` and its available shards with
    /// it; running shards learn at their next heartbeat.
    async fn cancel_job(&self, job_id: Uuid, now: DateTime<Utc>) -> Result<JobRecord, StoreError>;
    /// Adds tokens the job spent outside an accepted completion (a late,
    /// fenced one whose outputs were indexed all the same), so usage and
    /// cost count every output paid for.
    async fn add_usage(
        &self,
        job_id: Uuid,
        shard_id: Uuid,
        usage: jobs::Usage,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    async fn list_shards(&self, job_id: Uuid) -> Result<Vec<ShardRecord>, StoreError>;
    /// A shard's job and its requests as written by the planner (JSON), or
    /// `None` when there is no such shard.
    async fn shard_requests(&self, shard_id: Uuid) -> Result<Option<(Uuid, String)>, StoreError>;
}
