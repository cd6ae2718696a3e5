//! The lease protocol on shards: claims, heartbeats, the three fenced ends of
//! an attempt (complete, fail, release), and the reaper's recovery of the
//! leases of dead workers.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobs::protocol::{FailKind, FailedRequest, ShardState};
use jobs::spec::BackendKind;
use jobs::{RequestKey, Usage};
use std::time::Duration;
use uuid::Uuid;

use super::{Backoff, Claimant, StoreError};

/// Identifies one attempt of one shard held by one worker. Every lease
/// operation must match all three, and the shard must still be running; a
/// worker whose lease expired and was re-claimed matches nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseFence {
    pub shard_id: Uuid,
    pub attempt: u32,
    pub worker_id: String,
}

/// A shard handed to a worker by [`LeaseStore::claim`].
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

/// Shard leases. Every method is atomic; the fenced ones change nothing when
/// the fence does not match.
#[async_trait]
pub trait LeaseStore: Send + Sync {
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
        self.claim_matching(&Claimant::any_model(worker_id, backends, max, lease), now)
            .await
    }
    /// [`LeaseStore::claim`] for a worker that serves only some models: shards
    /// of jobs whose model matches none of `models` are left for others.
    /// Empty `models` means any model.
    async fn claim_matching(
        &self,
        who: &Claimant<'_>,
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
    /// `retry_at`, or dead (and its job failed, with `kind`) when out of
    /// attempts or when `kind` is [`FailKind::Configuration`], which no
    /// attempt can get past. `None` when the fence does not match.
    async fn fail(
        &self,
        fence: &LeaseFence,
        error: &str,
        kind: FailKind,
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
}
