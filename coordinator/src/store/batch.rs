//! Store values of the `openai-batch` lifecycle (see `jobs::protocol::provider_batch`): a shard moves from
//! `running` to `submitted` with its batch state recorded in one step, and is then held only by
//! short *poll leases*, fenced on a poll sequence number that every poll claim increments.

use chrono::{DateTime, Utc};
use jobs::protocol::{FailedRequest, JobState};
use uuid::Uuid;

use super::{LeaseFence, Partial};

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

/// A poll lease handed out by [`super::Store::batch_claim_polls`].
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
