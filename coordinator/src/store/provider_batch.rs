//! The provider-batch (`openai-batch`) lifecycle in the store (see
//! `jobs::protocol::provider_batch`): a shard moves from `running` to
//! `submitted` with its batch state recorded in one step, and is then held
//! only by short *poll leases*, fenced on a poll sequence number that every
//! poll claim increments.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobs::protocol::{FailedRequest, JobState, ShardState};
use std::time::Duration;
use uuid::Uuid;

use super::{Claimant, LeaseFence, Partial, StoreError};

/// Identifies one poll lease on a submitted shard. A poll claim increments
/// `poll_seq`, so a poller whose lease expired and was re-claimed matches
/// nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollFence {
    pub shard_id: Uuid,
    pub poll_seq: u64,
    pub worker_id: String,
}

/// Whoever holds a shard during a batch operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchFence {
    /// The claim's lease, before the shard is submitted.
    Lease(LeaseFence),
    /// A poll lease, after.
    Poll(PollFence),
}

impl BatchFence {
    pub fn shard_id(&self) -> Uuid {
        match self {
            BatchFence::Lease(f) => f.shard_id,
            BatchFence::Poll(f) => f.shard_id,
        }
    }

    /// `("lease", attempt, worker)` or `("poll", poll_seq, worker)`, as the
    /// SQL binds them.
    pub(crate) fn binds(&self) -> (&'static str, i64, &str) {
        match self {
            BatchFence::Lease(f) => ("lease", i64::from(f.attempt), f.worker_id.as_str()),
            BatchFence::Poll(f) => (
                "poll",
                i64::try_from(f.poll_seq).unwrap_or(i64::MAX),
                f.worker_id.as_str(),
            ),
        }
    }
}

/// What moves a shard from `running` to `submitted`.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchSubmission {
    /// `jobs::provider_batch::BatchShardState` as JSON.
    pub state_json: String,
    /// Groups shards sharing the provider's enqueued-token quota.
    pub model_key: String,
    pub enqueued_tokens: u64,
    pub next_poll_at: DateTime<Utc>,
}

/// A poll lease handed out by [`ProviderBatchStore::claim_polls`].
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedPoll {
    pub shard_id: Uuid,
    pub job_id: Uuid,
    pub poll_seq: u64,
    pub poll_expires_at: DateTime<Utc>,
    pub job_state: JobState,
    pub state_json: String,
}

/// The answer of a poll claim.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PollClaim {
    pub polls: Vec<ClaimedPoll>,
    /// When nothing was handed out: when the next submitted shard is due.
    pub next_due_at: Option<DateTime<Utc>>,
}

/// A poller's record of a pass over a submitted shard.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchUpdate {
    pub state_json: String,
    pub enqueued_tokens: u64,
    /// Keep (and renew) the poll lease; otherwise it ends and the shard is
    /// due again at `next_poll_at`.
    pub keep_lease: bool,
    pub next_poll_at: DateTime<Utc>,
    /// Outputs written to a segment by the pass, indexed in the same step.
    pub partial: Option<Partial>,
}

/// How a submitted shard ends.
#[derive(Clone, Debug, PartialEq)]
pub enum BatchEnd {
    /// Every request has an output or a final error.
    Completed { failed: Vec<FailedRequest> },
    /// A batch failed: the shard dies and its job fails with `error`.
    Failed { error: String },
    /// The job stopped; the outputs indexed so far are kept.
    Cancelled,
}

impl BatchEnd {
    pub(crate) fn state_str(&self) -> &'static str {
        match self {
            BatchEnd::Completed { .. } => "completed",
            BatchEnd::Failed { .. } => "dead",
            BatchEnd::Cancelled => "cancelled",
        }
    }
}

/// Of `wanted` (token estimates of batches to create, in order), how many
/// fit under `cap` next to `elsewhere` (other shards) and `base` (this
/// shard's enqueued batches). One batch is always granted when nothing is
/// enqueued for the model at all, so a batch larger than the cap still runs
/// (alone) instead of waiting forever.
pub fn grant(cap: u64, elsewhere: u64, base: u64, wanted: &[u64]) -> (u32, u64) {
    let mut used = elsewhere.saturating_add(base);
    let mut granted = 0u32;
    let mut added = 0u64;
    for &tokens in wanted {
        let fits = used.saturating_add(tokens) <= cap;
        let alone = used == 0 && granted == 0;
        if !(fits || alone) {
            break;
        }
        used = used.saturating_add(tokens);
        added = added.saturating_add(tokens);
        granted += 1;
    }
    (granted, added)
}

/// The provider-batch columns of shards: enqueued-token reservations, the
/// `running` → `submitted` step and poll leases. Every method is atomic.
#[async_trait]
pub trait ProviderBatchStore: Send + Sync {
    /// Room under the enqueued-token cap of `model_key`: grants a prefix of
    /// `wanted` (see [`grant`]) and records this shard's enqueued
    /// tokens as `base` plus what was granted. `None` when the holder's
    /// fence does not match; else the granted count and the tokens other
    /// shards of the model have enqueued.
    async fn reserve(
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
    async fn submit(
        &self,
        fence: &LeaseFence,
        submission: &BatchSubmission,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Poll leases (until now + `lease`) on up to `max` submitted shards of
    /// jobs with a backend in `backends` and a model matching `models`
    /// (empty: any) that are due, or whose job stopped; earliest due first.
    async fn claim_polls(
        &self,
        who: &Claimant<'_>,
        now: DateTime<Utc>,
    ) -> Result<PollClaim, StoreError>;
    /// Renews a poll lease; the job's state, or `None` when fenced.
    async fn renew_poll(
        &self,
        fence: &PollFence,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<JobState>, StoreError>;
    /// Fenced on the poll lease: records the state, indexes the partial
    /// outputs (adding their usage and counting them completed), and renews
    /// or ends the lease.
    async fn record_poll(
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
    async fn finish(
        &self,
        fence: &PollFence,
        end: &BatchEnd,
        partial: Option<&Partial>,
        now: DateTime<Utc>,
    ) -> Result<Option<ShardState>, StoreError>;
    /// Ends every poll lease (the embedded coordinator restarting: no poller
    /// of the previous process survives).
    async fn recover_polls(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::grant;

    #[test]
    fn grants_a_prefix_under_the_cap() {
        assert_eq!(grant(100, 0, 0, &[40, 40, 40]), (2, 80));
        assert_eq!(grant(100, 50, 0, &[40, 40]), (1, 40));
        assert_eq!(grant(100, 90, 0, &[40]), (0, 0));
        assert_eq!(grant(100, 0, 90, &[40]), (0, 0));
        // Alone, an oversized batch still goes.
        assert_eq!(grant(100, 0, 0, &[500, 10]), (1, 500));
        assert_eq!(grant(100, 0, 0, &[]), (0, 0));
    }
}
