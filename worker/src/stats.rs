//! [`WorkerStats`]: what a worker (its shards and its background tasks) did,
//! summed up and returned when it stops.

/// What a worker did, returned when it stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Shards whose completion the coordinator accepted.
    pub shards_completed: u64,
    /// Requests with an output (in any segment this worker wrote).
    pub requests_ok: u64,
    /// Requests that failed after the backend's retries.
    pub requests_failed: u64,
    /// Lease calls refused because a newer attempt owns the shard.
    pub fenced: u64,
}

impl WorkerStats {
    /// Adds `other` to these stats.
    pub fn add(&mut self, other: WorkerStats) {
        self.shards_completed = self.shards_completed.saturating_add(other.shards_completed);
        self.requests_ok = self.requests_ok.saturating_add(other.requests_ok);
        self.requests_failed = self.requests_failed.saturating_add(other.requests_failed);
        self.fenced = self.fenced.saturating_add(other.fenced);
    }

    /// Adds the stats of a finished task. A task that panicked is a bug; its
    /// lease expires and the shard is retried, so the worker keeps serving.
    /// Aborted tasks (shutdown deadlines) add nothing.
    pub(crate) fn add_joined(
        &mut self,
        joined: Result<WorkerStats, tokio::task::JoinError>,
        task: &str,
    ) {
        match joined {
            Ok(stats) => self.add(stats),
            Err(e) if e.is_cancelled() => {}
            Err(e) => tracing::error!(error = %e, "{task} ended abnormally"),
        }
    }
}
