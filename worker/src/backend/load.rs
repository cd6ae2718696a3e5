//! Load accounting: how many requests of running shards each model has
//! pending, so the worker loop claims more shards only while a model is
//! short of work (see `CLAIM_AHEAD`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// A worker claims more shards of a model while fewer than this many times
/// its backend's concurrency requests are pending.
pub const CLAIM_AHEAD: usize = 2;

/// One model's load, shared by every Worker using the same backend cache.
#[derive(Debug)]
pub(crate) struct ModelLoad {
    /// Requests of running shards not yet finished.
    pending: AtomicUsize,
    /// Running shards of this model.
    shards: AtomicUsize,
    /// Pending requests below which more shards should be claimed.
    target: usize,
    /// Signalled when requests finish, to wake claim loops waiting for room.
    progress: Arc<Notify>,
}

impl ModelLoad {
    /// The load of a model whose backend runs `concurrency` requests at once.
    pub(crate) fn new(concurrency: usize, progress: Arc<Notify>) -> Self {
        ModelLoad {
            pending: AtomicUsize::new(0),
            shards: AtomicUsize::new(0),
            target: concurrency.max(1).saturating_mul(CLAIM_AHEAD),
            progress,
        }
    }

    /// Requests missing to reach the claim-ahead target while this model
    /// has running shards; 0 otherwise.
    pub(crate) fn deficit(&self) -> usize {
        if self.shards.load(Ordering::Acquire) == 0 {
            return 0;
        }
        self.target
            .saturating_sub(self.pending.load(Ordering::Acquire))
    }
}

/// A running shard's share of its model's load; gives back what is left
/// when the shard ends, however it ends.
#[derive(Debug)]
pub struct ShardLoad {
    model: Arc<ModelLoad>,
    remaining: usize,
}

impl ShardLoad {
    pub(crate) fn start(model: Arc<ModelLoad>, requests: usize) -> Self {
        model.pending.fetch_add(requests, Ordering::AcqRel);
        model.shards.fetch_add(1, Ordering::AcqRel);
        ShardLoad {
            model,
            remaining: requests,
        }
    }

    /// One request of the shard finished.
    pub fn finish_one(&mut self) {
        if self.remaining == 0 {
            return;
        }
        self.remaining -= 1;
        let before = self.model.pending.fetch_sub(1, Ordering::AcqRel);
        if before <= self.model.target {
            self.model.progress.notify_waiters();
        }
    }
}

impl Drop for ShardLoad {
    fn drop(&mut self) {
        self.model
            .pending
            .fetch_sub(self.remaining, Ordering::AcqRel);
        self.model.shards.fetch_sub(1, Ordering::AcqRel);
        self.model.progress.notify_waiters();
    }
}
