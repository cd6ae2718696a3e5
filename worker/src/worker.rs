//! The worker loop: claims shards from the coordinator and hands each to its
//! model's backend ([`Backend::run_shard`]) with a heartbeating lease; the
//! backend runs it and ends the attempt (complete, fail, or on shutdown
//! release). It starts the background tasks the offered backends need. It
//! names no backend.
//!
//! Claiming is adaptive: a worker keeps claiming while some model it runs has
//! fewer than [`CLAIM_AHEAD`](crate::backend::CLAIM_AHEAD) × its backend's
//! concurrency requests pending,
//! so throughput follows `model.concurrency`, not shard size × shard count.
//! The backend's semaphore bounds what is actually in flight; the backlog
//! only keeps the semaphore busy while shards start and drain.

use client::{ClientError, CoordinatorClient};
use jobs::protocol::{
    ClaimRequest, FailKind, FailRequest, HeartbeatRequest, Lease, WorkerCapabilities,
};
use jobs::spec::BackendKind;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backend::context::fail_lease;
use crate::backend::{
    background_task, Backend, BackendCache, BackendError, BackgroundContext, FlushPolicy,
    KeyPolicy, ShardContext, ShardLoad,
};
use crate::heartbeat::Heartbeat;
use crate::stats::WorkerStats;

/// Shortest wait between two claims when there is no work.
const MIN_POLL: Duration = Duration::from_millis(100);

/// Upper bound on running shards when [`WorkerConfig::max_concurrent_shards`]
/// is 0.
pub const DEFAULT_MAX_CONCURRENT_SHARDS: usize = 256;

/// How a [`Worker`] claims and runs shards.
///
/// Rate limits and concurrency (`model.concurrency`, `requests_per_minute`,
/// `tokens_per_minute`) are enforced by the backend, which is shared by all
/// shards of one model **within one [`BackendCache`]**: by default each
/// `Worker` has its own, so N workers in one process (`shardline run
/// --workers N`) or N worker processes each apply the full limits, i.e. up
/// to N times the configured rate in total. Give Workers of one process one
/// cache with [`Worker::with_shared_backends`] to enforce the limits once
/// for the process.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Unique per worker process; quoted in every lease call.
    pub worker_id: String,
    /// Backends this worker can run; the coordinator only hands out shards
    /// of these kinds.
    pub backends: Vec<BackendKind>,
    /// Upper bound on shards running at once; 0 means
    /// [`DEFAULT_MAX_CONCURRENT_SHARDS`]. Below the bound the worker claims
    /// adaptively (while a model has fewer than `CLAIM_AHEAD` × its
    /// concurrency requests pending), so this is a safety cap, not a target:
    /// a small value (say 2 with 100-request shards) caps in-flight requests
    /// below `model.concurrency`.
    pub max_concurrent_shards: usize,
    /// Longest wait between claims while idle (polling starts at 100 ms and
    /// doubles up to this).
    pub poll_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("worker config: {0}")]
    Config(String),
    #[error("claiming work failed: {0}")]
    Claim(#[source] ClientError),
}

/// Claims shards and runs them; see [`WorkerConfig`] for how rate limits
/// apply when several Workers run in one process.
pub struct Worker {
    config: WorkerConfig,
    client: CoordinatorClient,
    objects: Arc<dyn cache::ObjectStore>,
    backends: Arc<BackendCache>,
    /// Model globs sent with every claim; empty serves any model.
    models: Vec<String>,
    /// When running shards write their outputs so far.
    flush: FlushPolicy,
}

impl Worker {
    pub fn new(
        config: WorkerConfig,
        client: CoordinatorClient,
        objects: Arc<dyn cache::ObjectStore>,
    ) -> Self {
        Worker {
            config,
            client,
            objects,
            backends: Arc::new(BackendCache::default()),
            models: Vec::new(),
            flush: FlushPolicy::default(),
        }
    }

    /// Serves only jobs whose `model.model` matches one of `globs` (`*` any
    /// run of characters, `?` one character; case sensitive). The
    /// coordinator does the matching when it hands out shards. Without
    /// this, a worker serves any model.
    pub fn with_models(mut self, globs: Vec<String>) -> Self {
        self.models = globs;
        self
    }

    /// Flushes running shards' outputs as `policy` says (the default:
    /// every [`DEFAULT_FLUSH_SECS`](crate::backend::DEFAULT_FLUSH_SECS) s or
    /// [`DEFAULT_FLUSH_OUTPUTS`](crate::backend::DEFAULT_FLUSH_OUTPUTS)
    /// outputs, whichever comes first).
    pub fn with_flush(mut self, policy: FlushPolicy) -> Self {
        self.flush = policy;
        self
    }

    /// Reads API keys only from the variables `keys` allows (the default
    /// allows [`crate::backend::DEFAULT_ALLOWED_KEY_ENVS`]). Replaces the
    /// backend cache, so call it before [`Worker::with_shared_backends`].
    pub fn with_key_policy(mut self, keys: KeyPolicy) -> Self {
        self.backends = Arc::new(BackendCache::with_key_policy(keys));
        self
    }

    /// Uses `cache` for backends, so that Workers sharing it share each
    /// model's concurrency, rate limits, circuit breaker and claim-ahead
    /// accounting.
    pub fn with_shared_backends(mut self, cache: Arc<BackendCache>) -> Self {
        self.backends = cache;
        self
    }

    /// Runs until `shutdown` is cancelled (then releases running shards with
    /// their partial outputs) or claiming fails for good.
    pub async fn run(self, shutdown: CancellationToken) -> Result<WorkerStats, WorkerError> {
        if self.config.backends.is_empty() {
            return Err(WorkerError::Config(
                "the worker offers no backend; name at least one".into(),
            ));
        }
        let cap = match self.config.max_concurrent_shards {
            0 => DEFAULT_MAX_CONCURRENT_SHARDS,
            n => n,
        };
        let worker = Arc::new(self);
        let mut stats = WorkerStats::default();
        let mut running: JoinSet<WorkerStats> = JoinSet::new();
        let max_poll = worker.config.poll_interval.max(MIN_POLL);
        let mut idle_delay = MIN_POLL;
        // Requests in the last shard claimed: turns a deficit of requests
        // into a number of shards to ask for.
        let mut shard_size_hint = 0usize;
        let mut claim_error = None;
        tracing::info!(worker_id = %worker.config.worker_id, max_shards = cap, "worker started");
        // Work the offered backends need besides claimed shards (e.g.
        // polling submitted provider batches).
        let background_stop = shutdown.child_token();
        let background = worker.spawn_background(&background_stop);

        while !shutdown.is_cancelled() {
            // Registered before looking at the load so that no progress
            // between the look and the wait is missed.
            let progress = worker.backends.progress().notified();
            let mut progress = std::pin::pin!(progress);
            progress.as_mut().enable();

            let free = cap.saturating_sub(running.len());
            let deficit = worker.backends.deficit();
            let hungry = running.is_empty() || deficit > 0;
            if free > 0 && hungry {
                let wanted = if shard_size_hint == 0 {
                    1
                } else {
                    deficit.div_ceil(shard_size_hint).max(1)
                };
                let claim = ClaimRequest {
                    worker_id: worker.config.worker_id.clone(),
                    capabilities: WorkerCapabilities {
                        backends: worker.config.backends.clone(),
                        models: worker.models.clone(),
                    },
                    max_shards: u32::try_from(wanted.min(free)).unwrap_or(u32::MAX),
                };
                let answer = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    answer = worker.client.claim(&claim) => answer,
                };
                match answer {
                    Ok(answer) if !answer.leases.is_empty() => {
                        for lease in answer.leases {
                            shard_size_hint = lease.requests.len();
                            worker.spawn_shard(&mut running, lease, &shutdown);
                        }
                        idle_delay = MIN_POLL;
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // The client already retried transient errors for a
                        // while; what is left needs a person.
                        tracing::error!(error = %e, "claim failed; stopping the worker");
                        claim_error = Some(e);
                        break;
                    }
                }
                // Nothing to claim: poll with backoff (a finished shard
                // resets it).
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    Some(done) = running.join_next(), if !running.is_empty() => {
                        stats.add_joined(done, "shard task");
                        idle_delay = MIN_POLL;
                    }
                    _ = tokio::time::sleep(idle_delay) => {
                        idle_delay = (idle_delay * 2).min(max_poll);
                    }
                }
            } else {
                // Enough work in hand: wait until requests finish (the
                // notification) or a shard ends. The sleep is a safety net.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    Some(done) = running.join_next(), if !running.is_empty() => {
                        stats.add_joined(done, "shard task");
                    }
                    _ = &mut progress => {}
                    _ = tokio::time::sleep(max_poll) => {}
                }
            }
        }

        // Shards see the cancelled token themselves; wait for their segments
        // and release calls (or, after a claim error, their completion).
        while let Some(done) = running.join_next().await {
            stats.add_joined(done, "shard task");
        }
        background_stop.cancel();
        for task in background {
            stats.add_joined(task.await, "background task");
        }
        tracing::info!(worker_id = %worker.config.worker_id, ?stats, "worker stopped");
        match claim_error {
            Some(e) => Err(WorkerError::Claim(e)),
            None => Ok(stats),
        }
    }

    /// Starts the background task of each offered backend kind that has
    /// one.
    fn spawn_background(
        &self,
        stop: &CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<WorkerStats>> {
        let mut kinds: Vec<BackendKind> = self.config.backends.clone();
        kinds.dedup();
        kinds
            .into_iter()
            .filter_map(background_task)
            .map(|start| {
                let ctx = BackgroundContext {
                    client: self.client.clone(),
                    objects: Arc::clone(&self.objects),
                    backends: Arc::clone(&self.backends),
                    worker_id: self.config.worker_id.clone(),
                    models: self.models.clone(),
                    max_idle: self.config.poll_interval.max(MIN_POLL),
                };
                start(ctx, stop.clone())
            })
            .collect()
    }

    /// Starts a claimed shard, counting its requests in its model's load
    /// right away so the next claim decision sees them.
    fn spawn_shard(
        self: &Arc<Self>,
        running: &mut JoinSet<WorkerStats>,
        lease: Lease,
        shutdown: &CancellationToken,
    ) {
        let span = tracing::info_span!("shard",
            shard_id = %lease.shard_id, job_id = %lease.job_id, attempt = lease.attempt);
        let started = self
            .backends
            .start_shard(&lease.model, lease.requests.len());
        let worker = Arc::clone(self);
        let token = shutdown.child_token();
        running
            .spawn(async move { worker.run_shard(lease, started, token).await }.instrument(span));
    }

    /// Runs a claimed shard on its backend, heartbeating its lease.
    async fn run_shard(
        self: Arc<Self>,
        lease: Lease,
        started: Result<(Arc<dyn Backend>, ShardLoad), BackendError>,
        shutdown: CancellationToken,
    ) -> WorkerStats {
        tracing::info!(requests = lease.requests.len(), "shard claimed");
        let (backend, load) = match started {
            Ok(started) => started,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the backend; failing the lease");
                let mut stats = WorkerStats::default();
                // Named: in a cluster the fault is often one worker's
                // environment (a variable unset on that host alone).
                let error = format!(
                    "worker {} cannot build the backend: {e}",
                    self.config.worker_id
                );
                let fail = FailRequest {
                    worker_id: self.config.worker_id.clone(),
                    shard_id: lease.shard_id,
                    attempt: lease.attempt,
                    error,
                    // Another worker's environment may build it.
                    kind: FailKind::Transient,
                };
                fail_lease(&self.client, fail, &mut stats).await;
                return stats;
            }
        };

        // Stops the shard's work: on shutdown (child of it) or when the
        // lease is lost.
        let stop = shutdown.child_token();
        let done = Arc::new(AtomicU64::new(0));
        let heartbeat = {
            let client = self.client.clone();
            let worker_id = self.config.worker_id.clone();
            let (shard_id, attempt) = (lease.shard_id, lease.attempt);
            let done = Arc::clone(&done);
            Heartbeat::start(
                Duration::from_secs(lease.heartbeat_interval_secs.max(1)),
                stop.clone(),
                "shard",
                move || {
                    let client = client.clone();
                    let beat = HeartbeatRequest {
                        worker_id: worker_id.clone(),
                        shard_id,
                        attempt,
                        done: done.load(std::sync::atomic::Ordering::Relaxed),
                    };
                    async move {
                        let answer = client.heartbeat(&beat).await?;
                        if answer.cancelled {
                            tracing::info!("job cancelled");
                        }
                        Ok(answer.keep_going)
                    }
                },
            )
        };
        let ctx = ShardContext {
            client: self.client.clone(),
            worker_id: self.config.worker_id.clone(),
            objects: Arc::clone(&self.objects),
            load: Some(load),
            heartbeat,
            done,
            stop,
            flush: self.flush,
        };
        backend.run_shard(lease, ctx).await
    }
}
