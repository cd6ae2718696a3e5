//! [`ShardContext`]: what a backend gets to run a claimed shard: the
//! coordinator client and the calls that end the attempt, the cache's
//! object store, the lease's heartbeat, the shard's load accounting and
//! when to flush its outputs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use client::{CoordinatorClient, LeaseOutcome};
use jobs::protocol::{FailKind, FailRequest, Lease, PartialOutputs, ReleaseRequest};
use tokio_util::sync::CancellationToken;

use super::flush::{FlushPolicy, FlushTarget};
use super::load::ShardLoad;
use crate::heartbeat::Heartbeat;
use crate::stats::WorkerStats;

/// A claimed shard's surroundings, handed to [`super::Backend::run_shard`].
pub struct ShardContext {
    pub(crate) client: CoordinatorClient,
    pub(crate) worker_id: String,
    pub(crate) objects: Arc<dyn cache::ObjectStore>,
    /// The shard's share of its model's pending requests, until it ends.
    pub(crate) load: Option<ShardLoad>,
    /// Beats for the lease; [`Heartbeat::is_lost`] once the lease is gone.
    pub(crate) heartbeat: Heartbeat,
    /// Requests done, reported with every beat.
    pub(crate) done: Arc<AtomicU64>,
    /// Cancelled on shutdown or when the lease is lost.
    pub(crate) stop: CancellationToken,
    /// When the shard's outputs are written while it runs.
    pub(crate) flush: FlushPolicy,
}

impl std::fmt::Debug for ShardContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardContext")
            .field("worker_id", &self.worker_id)
            .field("done", &self.done.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ShardContext {
    /// One request of the shard left the backend (with or without an
    /// output): room for the model's next requests.
    pub(crate) fn request_finished(&mut self) {
        if let Some(load) = &mut self.load {
            load.finish_one();
        }
    }

    /// One more request done, for the heartbeat's progress report.
    pub(crate) fn count_done(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    /// The shard no longer counts in its model's load (its requests are
    /// over; what is left is writing and lease calls).
    pub(crate) fn end_load(&mut self) {
        self.load = None;
    }

    /// Where the shard's partial segments go.
    pub(crate) fn flush_target(&self) -> FlushTarget {
        FlushTarget {
            client: self.client.clone(),
            objects: Arc::clone(&self.objects),
            worker_id: self.worker_id.clone(),
        }
    }

    /// Fails the attempt with `error`; `kind` says whether another attempt
    /// can do better.
    pub(crate) async fn fail_lease(
        &self,
        lease: &Lease,
        error: String,
        kind: FailKind,
        stats: &mut WorkerStats,
    ) {
        let fail = FailRequest {
            worker_id: self.worker_id.clone(),
            shard_id: lease.shard_id,
            attempt: lease.attempt,
            error,
            kind,
        };
        fail_lease(&self.client, fail, stats).await;
    }

    /// Hands the shard back (shutdown), with the outputs already indexed in
    /// `partial` if any.
    pub(crate) async fn release(
        &self,
        lease: &Lease,
        partial: Option<PartialOutputs>,
        done: usize,
        stats: &mut WorkerStats,
    ) {
        let release = ReleaseRequest {
            worker_id: self.worker_id.clone(),
            shard_id: lease.shard_id,
            attempt: lease.attempt,
            partial,
        };
        match self.client.release(&release).await {
            Ok(LeaseOutcome::Accepted(_)) => {
                tracing::info!(done, "shutting down: shard released");
            }
            Ok(LeaseOutcome::Fenced { message }) => {
                stats.fenced += 1;
                tracing::warn!(%message, "release fenced: a newer attempt owns the shard");
            }
            Err(e) => tracing::error!(error = %e, "cannot release the lease; it will expire"),
        }
    }
}

/// `POST /v1/leases/fail`; also used before a shard has a context (its
/// backend cannot be built).
pub(crate) async fn fail_lease(
    client: &CoordinatorClient,
    fail: FailRequest,
    stats: &mut WorkerStats,
) {
    match client.fail(&fail).await {
        Ok(LeaseOutcome::Accepted(answer)) => {
            tracing::info!(state = ?answer.state, "lease failed");
        }
        Ok(LeaseOutcome::Fenced { message }) => {
            stats.fenced += 1;
            tracing::warn!(%message, "fail fenced: a newer attempt owns the shard");
        }
        Err(e) => tracing::error!(error = %e, "cannot fail the lease; it will expire"),
    }
}
