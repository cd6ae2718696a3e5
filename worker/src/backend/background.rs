//! Background work a kind of backend needs besides running claimed shards
//! (the provider-batch backend polls its submitted shards). The worker
//! starts one task per backend kind it offers, through
//! [`super::factory::background_task`], without knowing what it does.

use std::sync::Arc;
use std::time::Duration;

use client::CoordinatorClient;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::cache::BackendCache;
use crate::stats::WorkerStats;

/// What a background task gets from the worker that starts it.
#[derive(Clone, Debug)]
pub struct BackgroundContext {
    pub client: CoordinatorClient,
    pub objects: Arc<dyn cache::ObjectStore>,
    /// The worker's backends (shared limits with its shards).
    pub backends: Arc<BackendCache>,
    pub worker_id: String,
    /// Model globs the worker serves; empty serves any model.
    pub models: Vec<String>,
    /// Longest wait between two looks for work while there is none.
    pub max_idle: Duration,
}

/// Starts a background task; it stops when the token is cancelled and
/// returns what it did.
pub type BackgroundTask = fn(BackgroundContext, CancellationToken) -> JoinHandle<WorkerStats>;
