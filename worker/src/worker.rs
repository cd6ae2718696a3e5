//! The worker loop: claims shards from the coordinator, runs their requests
//! on a backend while heartbeating, writes one segment per shard attempt and
//! completes (or, on shutdown, releases) the lease.
//!
//! Claiming is adaptive: a worker keeps claiming while some model it runs has
//! fewer than [`CLAIM_AHEAD`] × its backend's concurrency requests pending,
//! so throughput follows `model.concurrency`, not shard size × shard count.
//! The backend's semaphore bounds what is actually in flight; the backlog
//! only keeps the semaphore busy while shards start and drain.

use futures::stream::{self, StreamExt};
use jobs::protocol::{
    ClaimRequest, CompleteRequest, FailRequest, FailedRequest, HeartbeatRequest, Lease,
    PartialOutputs, ReleaseRequest, WorkerCapabilities,
};
use jobs::spec::{BackendKind, ModelSpec};
use jobs::{InferenceRequest, RequestKey, SegmentRecord, Usage};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backend::{build_backend, Backend, BackendError};
use client::{ClientError, CoordinatorClient, LeaseOutcome};

/// Shortest wait between two claims when there is no work.
const MIN_POLL: Duration = Duration::from_millis(100);

/// A worker claims more shards of a model while fewer than this many times
/// its backend's concurrency requests are pending.
pub const CLAIM_AHEAD: usize = 2;

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
    /// adaptively (while a model has fewer than [`CLAIM_AHEAD`] × its
    /// concurrency requests pending), so this is a safety cap, not a target:
    /// a small value (say 2 with 100-request shards) caps in-flight requests
    /// below `model.concurrency`.
    pub max_concurrent_shards: usize,
    /// Longest wait between claims while idle (polling starts at 100 ms and
    /// doubles up to this).
    pub poll_interval: Duration,
}

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
    fn add(&mut self, other: WorkerStats) {
        self.shards_completed = self.shards_completed.saturating_add(other.shards_completed);
        self.requests_ok = self.requests_ok.saturating_add(other.requests_ok);
        self.requests_failed = self.requests_failed.saturating_add(other.requests_failed);
        self.fenced = self.fenced.saturating_add(other.fenced);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("worker config: {0}")]
    Config(String),
    #[error("claiming work failed: {0}")]
    Claim(#[source] ClientError),
}

/// Builds a backend for a model; replaceable for tests and new backends.
pub type BackendFactory =
    Arc<dyn Fn(&ModelSpec) -> Result<Arc<dyn Backend>, BackendError> + Send + Sync>;

/// Backends by model spec, with the load each model has in the shards that
/// use them. Every shard of one model (identical `[model]` spec, compared as
/// JSON) shares one backend: one connection pool, one concurrency semaphore,
/// one set of rate limits and one circuit breaker. Share one cache between
/// several [`Worker`]s of a process with [`Worker::with_shared_backends`] so
/// that the limits hold for the process, not per Worker.
pub struct BackendCache {
    factory: BackendFactory,
    models: Mutex<HashMap<String, Arc<ModelSlot>>>,
    /// Signalled when requests finish, to wake claim loops waiting for room.
    progress: Notify,
}

/// One model's backend and its current load.
struct ModelSlot {
    backend: Arc<dyn Backend>,
    /// Requests of running shards (of every Worker using the cache) not yet
    /// finished.
    pending: AtomicUsize,
    /// Running shards of this model.
    shards: AtomicUsize,
}

impl ModelSlot {
    /// Pending requests below which more shards should be claimed.
    fn target(&self) -> usize {
        self.backend
            .concurrency()
            .max(1)
            .saturating_mul(CLAIM_AHEAD)
    }
}

impl std::fmt::Debug for BackendCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendCache")
            .field("models", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl Default for BackendCache {
    /// Builds backends with [`build_backend`].
    fn default() -> Self {
        BackendCache::new(Arc::new(build_backend))
    }
}

impl BackendCache {
    /// A cache building backends with `factory`.
    pub fn new(factory: BackendFactory) -> Self {
        BackendCache {
            factory,
            models: Mutex::new(HashMap::new()),
            progress: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ModelSlot>>> {
        match self.models.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The backend for `model`, built on first use. Build errors are not
    /// cached (the environment may be fixed meanwhile).
    pub fn backend(&self, model: &ModelSpec) -> Result<Arc<dyn Backend>, BackendError> {
        self.slot(model).map(|slot| Arc::clone(&slot.backend))
    }

    fn slot(&self, model: &ModelSpec) -> Result<Arc<ModelSlot>, BackendError> {
        let key = serde_json::to_string(model)
            .map_err(|e| BackendError::Config(format!("cannot serialise the model spec: {e}")))?;
        let mut models = self.lock();
        if let Some(slot) = models.get(&key) {
            return Ok(Arc::clone(slot));
        }
        let slot = Arc::new(ModelSlot {
            backend: (self.factory)(model)?,
            pending: AtomicUsize::new(0),
            shards: AtomicUsize::new(0),
        });
        models.insert(key, Arc::clone(&slot));
        Ok(slot)
    }

    /// Requests missing to reach the claim-ahead target, summed over the
    /// models with running shards; 0 when every such model has enough.
    fn deficit(&self) -> usize {
        self.lock()
            .values()
            .filter(|slot| slot.shards.load(Ordering::Acquire) > 0)
            .map(|slot| {
                slot.target()
                    .saturating_sub(slot.pending.load(Ordering::Acquire))
            })
            .fold(0usize, usize::saturating_add)
    }
}

/// A running shard's share of its model's load; gives back what is left
/// when the shard ends, however it ends.
struct ShardLoad {
    cache: Arc<BackendCache>,
    slot: Arc<ModelSlot>,
    remaining: usize,
}

impl ShardLoad {
    fn start(cache: Arc<BackendCache>, slot: Arc<ModelSlot>, requests: usize) -> Self {
        slot.pending.fetch_add(requests, Ordering::AcqRel);
        slot.shards.fetch_add(1, Ordering::AcqRel);
        ShardLoad {
            cache,
            slot,
            remaining: requests,
        }
    }

    fn finish_one(&mut self) {
        if self.remaining == 0 {
            return;
        }
        self.remaining -= 1;
        let before = self.slot.pending.fetch_sub(1, Ordering::AcqRel);
        if before <= self.slot.target() {
            self.cache.progress.notify_waiters();
        }
    }
}

impl Drop for ShardLoad {
    fn drop(&mut self) {
        self.slot
            .pending
            .fetch_sub(self.remaining, Ordering::AcqRel);
        self.slot.shards.fetch_sub(1, Ordering::AcqRel);
        self.cache.progress.notify_waiters();
    }
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

    /// Replaces how backends are built from model specs (with a new cache of
    /// this Worker's own; call before [`Worker::with_shared_backends`] if
    /// both are wanted, or build the shared cache with the factory).
    pub fn with_backend_factory(mut self, factory: BackendFactory) -> Self {
        self.backends = Arc::new(BackendCache::new(factory));
        self
    }

    /// Uses `cache` for backends, so that Workers sharing it share each
    /// model's concurrency, rate limits, circuit breaker and claim-ahead
    /// accounting.
    pub fn with_shared_backends(mut self, cache: Arc<BackendCache>) -> Self {
        self.backends = cache;
        self
    }

    /// The backend cache this Worker uses.
    pub fn backends(&self) -> &Arc<BackendCache> {
        &self.backends
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
        // Submitted Batch API shards hold no lease: every worker that runs
        // the backend polls them.
        let poller_stop = shutdown.child_token();
        let poller = worker
            .config
            .backends
            .contains(&BackendKind::OpenaiBatch)
            .then(|| worker.spawn_batch_poller(poller_stop.clone()));

        while !shutdown.is_cancelled() {
            // Registered before looking at the load so that no progress
            // between the look and the wait is missed.
            let progress = worker.backends.progress.notified();
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
                        add_joined(&mut stats, done);
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
                        add_joined(&mut stats, done);
                    }
                    _ = &mut progress => {}
                    _ = tokio::time::sleep(max_poll) => {}
                }
            }
        }

        // Shards see the cancelled token themselves; wait for their segments
        // and release calls (or, after a claim error, their completion).
        while let Some(done) = running.join_next().await {
            add_joined(&mut stats, done);
        }
        if let Some(poller) = poller {
            poller_stop.cancel();
            add_joined(&mut stats, poller.await);
        }
        tracing::info!(worker_id = %worker.config.worker_id, ?stats, "worker stopped");
        match claim_error {
            Some(e) => Err(WorkerError::Claim(e)),
            None => Ok(stats),
        }
    }

    /// Starts the poller of submitted Batch API shards.
    fn spawn_batch_poller(&self, stop: CancellationToken) -> tokio::task::JoinHandle<WorkerStats> {
        crate::backend::openai_batch::spawn_poller(
            self.client.clone(),
            Arc::clone(&self.objects),
            Arc::clone(&self.backends),
            crate::backend::openai_batch::PollerConfig {
                worker_id: self.config.worker_id.clone(),
                capabilities: WorkerCapabilities {
                    backends: vec![BackendKind::OpenaiBatch],
                    models: self.models.clone(),
                },
                max_concurrent: crate::backend::openai_batch::poll::MAX_PASSES,
                max_idle: self.config.poll_interval.max(MIN_POLL),
            },
            stop,
        )
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
        let load = self
            .backends
            .slot(&lease.model)
            .map(|slot| ShardLoad::start(Arc::clone(&self.backends), slot, lease.requests.len()));
        let worker = Arc::clone(self);
        let token = shutdown.child_token();
        running.spawn(async move { worker.run_shard(lease, load, token).await }.instrument(span));
    }

    async fn run_shard(
        self: Arc<Self>,
        mut lease: Lease,
        load: Result<ShardLoad, BackendError>,
        shutdown: CancellationToken,
    ) -> WorkerStats {
        let mut stats = WorkerStats::default();
        // Owned, so the request futures borrow nothing from this frame.
        let requests = std::mem::take(&mut lease.requests);
        let total = requests.len();
        tracing::info!(requests = total, "shard claimed");
        let mut load = match load {
            Ok(load) => load,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the backend; failing the lease");
                self.fail_lease(&lease, e.to_string(), &mut stats).await;
                return stats;
            }
        };
        let backend = Arc::clone(&load.slot.backend);

        // Stops the requests: on shutdown (child of it) or when the lease is
        // lost.
        let stop = shutdown.child_token();
        let lost = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let heartbeat = tokio::spawn(
            heartbeat_loop(
                self.client.clone(),
                self.config.worker_id.clone(),
                lease.shard_id,
                lease.attempt,
                Duration::from_secs(lease.heartbeat_interval_secs.max(1)),
                Arc::clone(&done),
                Arc::clone(&lost),
                stop.clone(),
            )
            .in_current_span(),
        );

        if let Some(batch) = backend.batch().cloned() {
            // Batch API shards are submitted as provider batches, not run
            // request by request; pollers finish them.
            let stats = crate::backend::openai_batch::submit::submit_shard(
                &self.client,
                &self.config.worker_id,
                &batch,
                &lease,
                requests,
                &lost,
                &stop,
            )
            .await;
            heartbeat.abort();
            return stats;
        }

        let fingerprint = lease.model.fingerprint();
        let concurrency = backend.concurrency().max(1);
        let outcomes = stream::iter(requests)
            .map(|req| {
                let backend = Arc::clone(&backend);
                async move {
                    let result = backend.run(&req).await;
                    (req, result)
                }
            })
            .buffer_unordered(concurrency)
            .take_until(stop.cancelled());
        // Boxed so it can be dropped early: unpolled request futures may hold
        // permits of the backend's semaphore that other shards need.
        let mut outcomes = Box::pin(outcomes);
        let mut records = Vec::with_capacity(total);
        let mut unusable = None;
        while let Some((req, result)) = outcomes.next().await {
            load.finish_one();
            if let Err(e) = &result {
                if e.is_endpoint_unusable() {
                    // Every other request would fail the same way: stop and
                    // fail the shard once instead of recording each failure.
                    unusable = Some(e.to_string());
                    stop.cancel();
                    break;
                }
            }
            records.push(to_record(&req, &fingerprint, result));
            done.fetch_add(1, Ordering::Relaxed);
        }
        drop(outcomes);
        drop(load);
        heartbeat.abort();

        let summary = Summary::of(&records);
        stats.requests_ok = summary.written.len() as u64;
        stats.requests_failed = summary.failed.len() as u64;
        let path = cache::segment_path(lease.job_id, lease.shard_id, lease.attempt);
        let finished = records.len() == total;

        if lost.load(Ordering::Relaxed) {
            // The lease expired and went to another attempt, or the job was
            // cancelled: never complete. What was paid for is kept: written
            // to the cache and handed back, so the coordinator indexes it
            // (the hand-back itself is refused, as the lease is gone).
            tracing::warn!(
                done = records.len(),
                "lease lost or job cancelled; stopped the shard without completing it"
            );
            if !summary.written.is_empty() {
                self.release_partial(&lease, &path, &records, summary, &mut stats)
                    .await;
            }
            return stats;
        }

        if let Some(error) = unusable {
            // Keep what succeeded before the endpoint went bad in the cache
            // (a reindex finds it); the failures are the endpoint's, not the
            // requests'.
            let ok: Vec<SegmentRecord> = records.into_iter().filter(|r| r.is_success()).collect();
            if !ok.is_empty() {
                if let Err(e) = cache::write_segment(self.objects.as_ref(), &path, &ok).await {
                    tracing::warn!(error = %e, segment = %path, "cannot write the partial segment");
                }
            }
            tracing::error!(%error, "endpoint unusable; failing the shard");
            self.fail_lease(&lease, error, &mut stats).await;
            return stats;
        }

        if !finished {
            self.release_partial(&lease, &path, &records, summary, &mut stats)
                .await;
            return stats;
        }

        if let Err(e) = cache::write_segment(self.objects.as_ref(), &path, &records).await {
            tracing::error!(error = %e, segment = %path, "cannot write the segment; failing the lease");
            self.fail_lease(
                &lease,
                format!("writing segment {path} failed: {e}"),
                &mut stats,
            )
            .await;
            return stats;
        }
        let complete = CompleteRequest {
            worker_id: self.config.worker_id.clone(),
            shard_id: lease.shard_id,
            attempt: lease.attempt,
            segment: path.clone(),
            written: summary.written,
            failed: summary.failed,
            usage: summary.usage,
        };
        match self.client.complete(&complete).await {
            Ok(LeaseOutcome::Accepted(_)) => {
                stats.shards_completed = 1;
                tracing::info!(segment = %path, ok = stats.requests_ok,
                    failed = stats.requests_failed, "shard completed");
            }
            Ok(LeaseOutcome::Fenced { message }) => {
                stats.fenced = 1;
                tracing::warn!(%message, "completion fenced: a newer attempt owns the shard");
            }
            Err(e) => {
                tracing::error!(error = %e, segment = %path,
                    "cannot complete the lease; the segment stays in the cache for a reindex");
            }
        }
        stats
    }

    /// Shutdown: index what was done (if anything) and hand the shard back.
    async fn release_partial(
        &self,
        lease: &Lease,
        path: &str,
        records: &[SegmentRecord],
        summary: Summary,
        stats: &mut WorkerStats,
    ) {
        let partial = if records.is_empty() {
            None
        } else {
            match cache::write_segment(self.objects.as_ref(), path, records).await {
                Ok(()) => Some(PartialOutputs {
                    segment: path.to_string(),
                    written: summary.written,
                    usage: summary.usage,
                }),
                Err(e) => {
                    tracing::warn!(error = %e, segment = %path,
                        "cannot write the partial segment; releasing without it");
                    None
                }
            }
        };
        let release = ReleaseRequest {
            worker_id: self.config.worker_id.clone(),
            shard_id: lease.shard_id,
            attempt: lease.attempt,
            partial,
        };
        match self.client.release(&release).await {
            Ok(LeaseOutcome::Accepted(_)) => {
                tracing::info!(done = records.len(), "shutting down: shard released");
            }
            Ok(LeaseOutcome::Fenced { message }) => {
                stats.fenced += 1;
                tracing::warn!(%message, "release fenced: a newer attempt owns the shard");
            }
            Err(e) => tracing::error!(error = %e, "cannot release the lease; it will expire"),
        }
    }

    async fn fail_lease(&self, lease: &Lease, error: String, stats: &mut WorkerStats) {
        let fail = FailRequest {
            worker_id: self.config.worker_id.clone(),
            shard_id: lease.shard_id,
            attempt: lease.attempt,
            error,
        };
        match self.client.fail(&fail).await {
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
}

fn add_joined(stats: &mut WorkerStats, joined: Result<WorkerStats, tokio::task::JoinError>) {
    match joined {
        Ok(shard) => stats.add(shard),
        // A panicking shard task is a bug; its lease expires and the shard is
        // retried, so the worker keeps serving.
        Err(e) => tracing::error!(error = %e, "shard task ended abnormally"),
    }
}

/// Heartbeats until aborted; marks the lease lost and cancels `stop` when
/// the coordinator says to stop.
#[allow(clippy::too_many_arguments)]
async fn heartbeat_loop(
    client: CoordinatorClient,
    worker_id: String,
    shard_id: uuid::Uuid,
    attempt: u32,
    every: Duration,
    done: Arc<AtomicU64>,
    lost: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let beat = HeartbeatRequest {
            worker_id: worker_id.clone(),
            shard_id,
            attempt,
            done: done.load(Ordering::Relaxed),
        };
        let keep_going = match client.heartbeat(&beat).await {
            Ok(answer) => {
                if answer.cancelled {
                    tracing::info!("job cancelled");
                }
                answer.keep_going
            }
            Err(ClientError::Fenced { .. }) | Err(ClientError::NotFound { .. }) => false,
            Err(e) => {
                // The lease may still be ours; the next beat (or the
                // completion's fencing) decides.
                tracing::warn!(error = %e, "heartbeat failed");
                true
            }
        };
        if !keep_going {
            lost.store(true, Ordering::Relaxed);
            stop.cancel();
            return;
        }
    }
}

fn to_record(
    req: &InferenceRequest,
    fingerprint: &jobs::ModelFingerprint,
    result: Result<jobs::InferenceOutput, BackendError>,
) -> SegmentRecord {
    let (output, error) = match result {
        Ok(output) => (Some(output), None),
        Err(e) => {
            tracing::debug!(key = %req.key, error = %e, "request failed");
            (None, Some(e.to_string()))
        }
    };
    SegmentRecord {
        key: req.key.clone(),
        model: fingerprint.clone(),
        request_type: req.request_type,
        sample_index: req.sample_index,
        output,
        error,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }
}

/// What a shard's records add up to, for the lease calls.
struct Summary {
    written: Vec<RequestKey>,
    failed: Vec<FailedRequest>,
    usage: Usage,
}

impl Summary {
    fn of(records: &[SegmentRecord]) -> Self {
        let mut summary = Summary {
            written: Vec::new(),
            failed: Vec::new(),
            usage: Usage::default(),
        };
        for record in records {
            match (&record.output, &record.error) {
                (Some(output), None) => {
                    summary.written.push(record.key.clone());
                    summary.usage.add(output.usage);
                }
                (_, error) => summary.failed.push(FailedRequest {
                    key: record.key.clone(),
                    error: error.clone().unwrap_or_else(|| "no output".into()),
                }),
            }
        }
        summary
    }
}
