//! The [`Backend`] trait: what the worker loop asks of every backend. The
//! loop knows backends only through it; a new backend plugs in by
//! implementing it and being named in [`super::factory`].

use async_trait::async_trait;
use jobs::protocol::Lease;
use jobs::{InferenceOutput, InferenceRequest};
use std::any::Any;

use super::context::ShardContext;
use super::error::BackendError;
use super::sequential;
use crate::stats::WorkerStats;

/// Something that turns inference requests into outputs.
///
/// `Any` lets a backend's own background task (see
/// [`super::factory::background_task`]) find its concrete type again in the
/// shared backend cache.
#[async_trait]
pub trait Backend: Any + Send + Sync {
    /// Requests this backend wants in flight at once. The backend enforces
    /// it across every shard sharing it; the worker keeps claiming shards
    /// until about `CLAIM_AHEAD` times this many requests are pending.
    fn concurrency(&self) -> usize;

    /// Runs one request, retrying transient failures internally.
    async fn run(&self, req: &InferenceRequest) -> Result<InferenceOutput, BackendError>;

    /// Runs a claimed shard to its end: by default its requests one by one
    /// (up to [`Backend::concurrency`] at once), then one segment and the
    /// lease call that ends the attempt. A backend that runs whole shards
    /// some other way (the provider-batch backend submits them) overrides
    /// it. `ctx` holds the lease's heartbeat, the shard's load accounting
    /// and the coordinator client.
    async fn run_shard(&self, lease: Lease, ctx: ShardContext) -> WorkerStats {
        let concurrency = self.concurrency();
        let run = |req: InferenceRequest| async move {
            let result = self.run(&req).await;
            (req, result)
        };
        sequential::run_shard(lease, ctx, concurrency, run).await
    }
}
