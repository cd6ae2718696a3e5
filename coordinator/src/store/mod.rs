//! The coordinator's database behind one trait: jobs, shards and their leases,
//! the cache index and request failures.
//!
//! The trait speaks in domain values (job and shard states, lease fences,
//! request keys) and takes `now` as an argument, so that every implementation
//! (SQLite now, Postgres later) can run the same conformance suite with a
//! controlled clock. Policies (lease length, retry backoff, leader lease) are
//! decided by the caller and passed in; the store only records them.

pub mod batch;
mod error;
pub mod postgres;
mod rows;
pub mod sqlite;

#[cfg(test)]
pub(crate) mod batch_conformance;
#[cfg(test)]
pub(crate) mod conformance;

pub use batch::{
    BatchEnd, BatchFence, BatchSubmission, BatchUpdate, ClaimedPoll, PollClaim, PollFence,
};
pub use error::StoreError;
pub use postgres::{PostgresOptions, PostgresStore, ScratchDatabase};
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobs::protocol::{FailedRequest, JobCounts, JobState, JobStatus, ShardState};
use jobs::spec::BackendKind;
use jobs::{RequestKey, Usage};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Name of the leader row that guards the coordinator's background duties
/// (planning and reaping).
pub const LEADER_DUTIES: &str = "coordinator";

/// Opens the store named by `database_url`: `postgres://…` or
/// `postgresql://…` for Postgres, `sqlite://PATH`, `sqlite:PATH` or a plain
/// file path for SQLite. Migrations are applied either way.
pub async fn open(database_url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::connect(database_url).await?));
    }
    let path = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .unwrap_or(database_url);
    if path.is_empty() || path.contains("://") {
        return Err(StoreError::Unavailable(format!(
            "unsupported database URL {:?}: use postgres://USER@HOST:PORT/DB or a SQLite file path",
            postgres::redact_url(database_url)
        )));
    }
    Ok(Arc::new(SqliteStore::open(Path::new(path)).await?))
}

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

/// A worker's model glob: `*` matches any run of characters, `?` exactly
/// one, everything else itself (case sensitive). Each store turns it into
/// its own SQL pattern language, so both match the same names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelPattern(String);

impl ModelPattern {
    /// Rejects empty patterns (they would match nothing, surely a mistake).
    pub fn new(glob: &str) -> Result<Self, String> {
        let glob = glob.trim();
        if glob.is_empty() {
            return Err("an empty model pattern matches no model; use `*` for any".into());
        }
        Ok(ModelPattern(glob.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Postgres `LIKE` pattern (backslash escapes).
    pub(crate) fn like(&self) -> String {
        let mut out = String::with_capacity(self.0.len() + 4);
        for c in self.0.chars() {
            match c {
                '*' => out.push('%'),
                '?' => out.push('_'),
                '%' | '_' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                c => out.push(c),
            }
        }
        out
    }

    /// SQLite `GLOB` pattern: only `[` has to be made literal.
    pub(crate) fn sqlite_glob(&self) -> String {
        self.0.replace('[', "[[]")
    }

    /// The same match in Rust, for checks outside the database.
    pub fn matches(&self, name: &str) -> bool {
        fn go(p: &[char], n: &[char]) -> bool {
            match (p.first(), n.first()) {
                (None, None) => true,
                (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
                (Some('?'), Some(_)) => go(&p[1..], &n[1..]),
                (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
                _ => false,
            }
        }
        let p: Vec<char> = self.0.chars().collect();
        let n: Vec<char> = name.chars().collect();
        go(&p, &n)
    }
}

/// A job and its progress counts.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRecord {
    pub id: Uuid,
    pub name: String,
    pub spec_hash: String,
    pub backend: String,
    pub priority: i32,
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

/// One lease the reaper took back, so the caller can index a segment its
/// worker wrote before dying (its outputs then need no second request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredLease {
    pub job_id: Uuid,
    pub shard_id: Uuid,
    pub attempt: u32,
}

/// What one reaper pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReapOutcome {
    /// Every lease taken back, whatever became of its shard.
    pub expired: Vec<ExpiredLease>,
    /// Expired leases made available again.
    pub returned: u64,
    /// Shards that ran out of attempts (their jobs failed).
    pub dead: u64,
    /// Expired leases of jobs that are no longer running.
    pub cancelled: u64,
    /// Running jobs found with every shard completed and marked completed
    /// (a completion whose follow-up was cut short by a crash).
    pub jobs_completed: u64,
}

/// Capped exponential backoff with jitter, for shards whose lease expired:
/// after its n-th spent attempt a shard waits `min(base * 2^(n-1), cap)`,
/// minus up to `jitter` of that, before it can be claimed again. The jitter
/// spreads shards that expired together (a worker host died) so they do not
/// all land on the next claim at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    /// Fraction of the delay taken off at random, in `0.0..=1.0`.
    pub jitter: f64,
}

impl Backoff {
    /// No delay: expired shards are claimable at once.
    pub const NONE: Backoff = Backoff {
        base: Duration::ZERO,
        cap: Duration::ZERO,
        jitter: 0.0,
    };

    /// The delay after `attempts_used` spent attempts, jitter left out
    /// (the stores add the jitter in SQL, per row).
    pub fn ceiling(&self, attempts_used: u32) -> Duration {
        let exp = attempts_used.saturating_sub(1).min(BACKOFF_MAX_DOUBLINGS);
        self.base.saturating_mul(1u32 << exp).min(self.cap)
    }

    pub(crate) fn base_ms(&self) -> i64 {
        i64::try_from(self.base.as_millis()).unwrap_or(i64::MAX)
    }

    pub(crate) fn cap_ms(&self) -> i64 {
        i64::try_from(self.cap.as_millis()).unwrap_or(i64::MAX)
    }

    pub(crate) fn jitter_fraction(&self) -> f64 {
        if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// Doublings before the backoff stops growing (the cap usually bites first).
pub(crate) const BACKOFF_MAX_DOUBLINGS: u32 = 20;

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
    /// A shard's job and its requests as written by the planner (JSON), or
    /// `None` when there is no such shard.
    async fn shard_requests(&self, shard_id: Uuid) -> Result<Option<(Uuid, String)>, StoreError>;

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
    ///
    /// Order: the highest job priority first; within a priority, shards go
    /// to the jobs with the fewest running shards, counting the shards this
    /// claim hands out (fair share: two jobs of equal priority each get half
    /// of the workers, whichever came first); then older jobs, then `seq`.
    async fn claim(
        &self,
        worker_id: &str,
        backends: &[BackendKind],
        max: u32,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedShard>, StoreError> {
        self.claim_matching(worker_id, backends, &[], max, lease, now)
            .await
    }
    /// [`Store::claim`] for a worker that serves only some models: shards
    /// of jobs whose model matches none of `models` are left for others.
    /// Empty `models` means any model.
    async fn claim_matching(
        &self,
        worker_id: &str,
        backends: &[BackendKind],
        models: &[ModelPattern],
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
    /// Returns expired leases to `available` (visible again after
    /// `backoff`), spending their attempt; a shard out of attempts becomes
    /// `dead` and fails its job. Also completes running jobs whose shards
    /// are all completed. A leader-only duty.
    async fn reap_expired(
        &self,
        now: DateTime<Utc>,
        backoff: &Backoff,
    ) -> Result<ReapOutcome, StoreError>;
    /// Returns every running lease to `available` without spending an
    /// attempt, and clears the leader rows: used when the only process that
    /// could hold leases restarts.
    async fn recover_orphaned(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Takes or renews the [`LEADER_DUTIES`] row for `holder` until
    /// `now + ttl`. True when `holder` leads: it already held the row, or the
    /// row was free or expired. Several coordinator replicas call this every
    /// tick; exactly one gets true while it keeps renewing.
    async fn try_acquire_leadership(
        &self,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Gives the leader row up if `holder` has it (graceful shutdown), so
    /// another replica takes over at its next tick instead of after the TTL.
    async fn release_leadership(&self, holder: &str) -> Result<(), StoreError>;

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

    // ---- the `openai-batch` lifecycle (see `batch`) ----

    /// Room under the enqueued-token cap of `model_key`: grants a prefix of
    /// `wanted` (see [`batch::grant`]) and records this shard's enqueued
    /// tokens as `base` plus what was granted. `None` when the holder's
    /// fence does not match; else the granted count and the tokens other
    /// shards of the model have enqueued.
    async fn batch_reserve(
        &self,
        holder: &BatchFence,
        model_key: &str,
        cap: u64,
        base: u64,
        wanted: &[u64],
        now: DateTime<Utc>,
    ) -> Result<Option<(u32, u64)>, StoreError>;
    /// Fenced on the lease: `running` → `submitted`, recording the batch
    /// state (batch ids included) in the same step, and ending the lease.
    async fn batch_submit(
        &self,
        fence: &LeaseFence,
        submission: &BatchSubmission,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Poll leases (until now + `lease`) on up to `max` submitted shards of
    /// jobs with a backend in `backends` and a model matching `models`
    /// (empty: any) that are due, or whose job stopped; earliest due first.
    async fn batch_claim_polls(
        &self,
        worker_id: &str,
        backends: &[BackendKind],
        models: &[ModelPattern],
        max: u32,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<PollClaim, StoreError>;
    /// Renews a poll lease; the job's state, or `None` when fenced.
    async fn batch_heartbeat(
        &self,
        fence: &PollFence,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<JobState>, StoreError>;
    /// Fenced on the poll lease: records the state, indexes the partial
    /// outputs (adding their usage and counting them completed), and renews
    /// or ends the lease.
    async fn batch_update(
        &self,
        fence: &PollFence,
        update: &BatchUpdate,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Fenced on the poll lease: indexes the partial outputs and ends the
    /// shard (completed with its failures, dead with its job failed, or
    /// cancelled), completing the job with its last shard. `None` when
    /// fenced.
    async fn batch_finish(
        &self,
        fence: &PollFence,
        end: &BatchEnd,
        partial: Option<&Partial>,
        now: DateTime<Utc>,
    ) -> Result<Option<ShardState>, StoreError>;
    /// Ends every poll lease (the embedded coordinator restarting: no poller
    /// of the previous process survives).
    async fn batch_recover_polls(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
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
        "submitted" => ShardState::Submitted,
        "completed" => ShardState::Completed,
        "failed" => ShardState::Failed,
        "dead" => ShardState::Dead,
        "cancelled" => ShardState::Cancelled,
        _ => return None,
    })
}

#[cfg(test)]
mod model_pattern_tests {
    use super::ModelPattern;

    #[test]
    fn globs_match_whole_names() {
        let p = |g: &str| ModelPattern::new(g).unwrap();
        assert!(p("llama-*").matches("llama-3-8b"));
        assert!(p("*").matches(""));
        assert!(p("gpt-4o-?ini").matches("gpt-4o-mini"));
        assert!(!p("llama").matches("llama-3"));
        assert!(!p("Llama-*").matches("llama-3"));
        assert!(p("a_b%c").matches("a_b%c"));
        assert!(!p("a_b%c").matches("axb%c"));
        assert!(ModelPattern::new("  ").is_err());
    }

    #[test]
    fn sql_patterns_escape_their_own_wildcards() {
        let p = ModelPattern::new(r"a_b%c\d*?[x]").unwrap();
        assert_eq!(p.like(), r"a\_b\%c\\d%_[x]");
        assert_eq!(p.sqlite_glob(), r"a_b%c\d*?[[]x]");
    }
}
