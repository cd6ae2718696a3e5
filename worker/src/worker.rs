//! The worker loop: claims shards from the coordinator, runs their requests
//! on a backend while heartbeating, writes one segment per shard attempt and
//! completes (or, on shutdown, releases) the lease.

use futures::stream::{self, StreamExt};
use jobs::protocol::{
    ClaimRequest, CompleteRequest, FailRequest, FailedRequest, HeartbeatRequest, Lease,
    PartialOutputs, ReleaseRequest, WorkerCapabilities,
};
use jobs::spec::{BackendKind, ModelSpec};
use jobs::{InferenceRequest, RequestKey, SegmentRecord, Usage};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backend::{build_backend, Backend, BackendError};
use crate::client::{ClientError, CoordinatorClient, LeaseOutcome};

/// Shortest wait between two claims when there is no work.
const MIN_POLL: Duration = Duration::from_millis(100);

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Unique per worker process; quoted in every lease call.
    pub worker_id: String,
    /// Backends this worker can run; the coordinator only hands out shards
    /// of these kinds.
    pub backends: Vec<BackendKind>,
    /// Shards run at the same time.
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
        self.shards_completed += other.shards_completed;
        self.requests_ok += other.requests_ok;
        self.requests_failed += other.requests_failed;
        self.fenced += other.fenced;
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

pub struct Worker {
    config: WorkerConfig,
    client: CoordinatorClient,
    objects: Arc<dyn cache::ObjectStore>,
    factory: BackendFactory,
    /// Backends by the JSON of their model spec, so that shards of one model
    /// share one connection pool and one set of rate limits.
    backends: Mutex<HashMap<String, Arc<dyn Backend>>>,
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
            factory: Arc::new(build_backend),
            backends: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces how backends are built from model specs.
    pub fn with_backend_factory(mut self, factory: BackendFactory) -> Self {
        self.factory = factory;
        self
    }

    /// Runs until `shutdown` is cancelled (then releases running shards with
    /// their partial outputs) or claiming fails for good.
    pub async fn run(self, shutdown: CancellationToken) -> Result<WorkerStats, WorkerError> {
        if self.config.max_concurrent_shards == 0 {
            return Err(WorkerError::Config(
                "max_concurrent_shards must be at least 1".into(),
            ));
        }
        if self.config.backends.is_empty() {
            return Err(WorkerError::Config(
                "the worker offers no backend; name at least one".into(),
            ));
        }
        let worker = Arc::new(self);
        let mut stats = WorkerStats::default();
        let mut running: JoinSet<WorkerStats> = JoinSet::new();
        let max_poll = worker.config.poll_interval.max(MIN_POLL);
        let mut idle_delay = MIN_POLL;
        let mut claim_error = None;
        tracing::info!(worker_id = %worker.config.worker_id, "worker started");

        while !shutdown.is_cancelled() {
            let free = worker
                .config
                .max_concurrent_shards
                .saturating_sub(running.len());
            let mut got_work = false;
            if free > 0 {
                let claim = ClaimRequest {
                    worker_id: worker.config.worker_id.clone(),
                    capabilities: WorkerCapabilities {
                        backends: worker.config.backends.clone(),
                    },
                    max_shards: u32::try_from(free).unwrap_or(u32::MAX),
                };
                let answer = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    answer = worker.client.claim(&claim) => answer,
                };
                match answer {
                    Ok(answer) => {
                        got_work = !answer.leases.is_empty();
                        for lease in answer.leases {
                            let span = tracing::info_span!("shard",
                                shard_id = %lease.shard_id, job_id = %lease.job_id,
                                attempt = lease.attempt);
                            let worker = Arc::clone(&worker);
                            let token = shutdown.child_token();
                            running.spawn(
                                async move { worker.run_shard(lease, token).await }
                                    .instrument(span),
                            );
                        }
                    }
                    Err(e) => {
                        // The client already retried transient errors for a
                        // while; what is left needs a person.
                        tracing::error!(error = %e, "claim failed; stopping the worker");
                        claim_error = Some(e);
                        break;
                    }
                }
            }
            if got_work {
                idle_delay = MIN_POLL;
                continue;
            }
            let full = running.len() >= worker.config.max_concurrent_shards;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(done) = running.join_next(), if !running.is_empty() => {
                    add_joined(&mut stats, done);
                    idle_delay = MIN_POLL;
                }
                _ = tokio::time::sleep(idle_delay), if !full => {
                    idle_delay = (idle_delay * 2).min(max_poll);
                }
            }
        }

        // Shards see the cancelled token themselves; wait for their segments
        // and release calls (or, after a claim error, their completion).
        while let Some(done) = running.join_next().await {
            add_joined(&mut stats, done);
        }
        tracing::info!(worker_id = %worker.config.worker_id, ?stats, "worker stopped");
        match claim_error {
            Some(e) => Err(WorkerError::Claim(e)),
            None => Ok(stats),
        }
    }

    fn backend_for(&self, model: &ModelSpec) -> Result<Arc<dyn Backend>, BackendError> {
        let key = serde_json::to_string(model)
            .map_err(|e| BackendError::Config(format!("cannot serialise the model spec: {e}")))?;
        let mut cache = match self.backends.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(backend) = cache.get(&key) {
            return Ok(Arc::clone(backend));
        }
        let backend = (self.factory)(model)?;
        cache.insert(key, Arc::clone(&backend));
        Ok(backend)
    }

    async fn run_shard(
        self: Arc<Self>,
        mut lease: Lease,
        shutdown: CancellationToken,
    ) -> WorkerStats {
        let mut stats = WorkerStats::default();
        // Owned, so the request futures borrow nothing from this frame.
        let requests = std::mem::take(&mut lease.requests);
        let total = requests.len();
        tracing::info!(requests = total, "shard claimed");
        let backend = match self.backend_for(&lease.model) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the backend; failing the lease");
                self.fail_lease(&lease, e.to_string(), &mut stats).await;
                return stats;
            }
        };

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
        let mut outcomes = std::pin::pin!(outcomes);
        let mut records = Vec::with_capacity(total);
        while let Some((req, result)) = outcomes.next().await {
            records.push(to_record(&req, &fingerprint, result));
            done.fetch_add(1, Ordering::Relaxed);
        }
        heartbeat.abort();

        let summary = Summary::of(&records);
        stats.requests_ok = summary.written.len() as u64;
        stats.requests_failed = summary.failed.len() as u64;
        let path = cache::segment_path(lease.job_id, lease.shard_id, lease.attempt);
        let finished = records.len() == total;

        if lost.load(Ordering::Relaxed) {
            // Someone else owns the shard now; keep what was paid for in the
            // cache (a later reindex finds it) but do not complete.
            if !records.is_empty() {
                if let Err(e) = cache::write_segment(self.objects.as_ref(), &path, &records).await {
                    tracing::warn!(error = %e, segment = %path, "cannot write the partial segment");
                }
            }
            tracing::warn!(
                done = records.len(),
                "lease lost or job cancelled; stopped the shard without completing it"
            );
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
