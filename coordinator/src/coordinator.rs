//! The `Coordinator`: job submission, the lease protocol (with claim-time
//! cache filtering), crash recovery and cache-index maintenance. The HTTP
//! layer and the embedded CLI both call these methods.

use chrono::{DateTime, Utc};
use jobs::protocol::{
    ClaimRequest, ClaimResponse, CompleteRequest, CompleteResponse, FailRequest, FailResponse,
    HeartbeatRequest, HeartbeatResponse, JobStatus, Lease, ReleaseRequest, ReleaseResponse,
};
use jobs::request::{canonical_json, sha256_hex};
use jobs::spec::ModelSpec;
use jobs::{InferenceRequest, JobSpec, RequestKey};
use rand::Rng;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::CoordinatorError;
use crate::store::{
    Backoff, Completion, ExpiredLease, LeaseFence, ModelPattern, NewJob, Partial, RequestFailure,
    SegmentEntry, Store,
};

/// Most shards one claim hands out, whatever the worker asks for.
const MAX_SHARDS_PER_CLAIM: u32 = 64;
/// Claim rounds when every claimed shard turns out to be cached already.
const MAX_CLAIM_ROUNDS: usize = 8;
/// First retry delay of a failed shard; doubles per attempt up to the cap.
const RETRY_BASE: Duration = Duration::from_secs(1);
const RETRY_CAP: Duration = Duration::from_secs(120);
/// Backoff of shards whose lease expired: same curve as failed shards, with
/// up to half of each delay taken off at random.
const REAP_BACKOFF: Backoff = Backoff {
    base: RETRY_BASE,
    cap: RETRY_CAP,
    jitter: 0.5,
};
/// Shortest leader lease: a leader that stops renewing is replaced after at
/// most this long (or three reaper periods, if longer).
const MIN_LEADER_TTL: Duration = Duration::from_secs(10);
/// Shards whose request keys are remembered from their claim, to check
/// completions without reading the shard back. Past this the memory is
/// dropped and completions read the shard from the store.
const MAX_REMEMBERED_SHARDS: usize = 20_000;

/// A shard's job and the keys of its requests.
type ShardKeys = Arc<(Uuid, HashSet<RequestKey>)>;

/// Only the keys of a shard's stored requests.
#[derive(serde::Deserialize)]
struct KeyOnly {
    key: RequestKey,
}

#[derive(Clone)]
pub struct CoordinatorConfig {
    /// Bearer token for job routes (submit, list, cancel, results).
    pub admin_token: String,
    /// Bearer token for lease routes (claim, heartbeat, complete, fail).
    pub worker_token: String,
    /// Length of a lease; a worker that misses heartbeats this long loses it.
    pub lease_secs: u64,
    /// Heartbeat period told to workers (keep it well under `lease_secs`).
    pub heartbeat_interval_secs: u64,
    /// How often the reaper returns expired leases.
    pub reaper_interval: Duration,
}

/// Tokens are secrets: a `{:?}` of the config (in a log line, a panic
/// message) must never print them.
impl std::fmt::Debug for CoordinatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordinatorConfig")
            .field("admin_token", &"<redacted>")
            .field("worker_token", &"<redacted>")
            .field("lease_secs", &self.lease_secs)
            .field("heartbeat_interval_secs", &self.heartbeat_interval_secs)
            .field("reaper_interval", &self.reaper_interval)
            .finish()
    }
}

impl CoordinatorConfig {
    /// Defaults for everything but the tokens: 60 s leases, heartbeats every
    /// 15 s, a reaper pass every 5 s.
    pub fn with_tokens(admin_token: impl Into<String>, worker_token: impl Into<String>) -> Self {
        CoordinatorConfig {
            admin_token: admin_token.into(),
            worker_token: worker_token.into(),
            lease_secs: 60,
            heartbeat_interval_secs: 15,
            reaper_interval: Duration::from_secs(5),
        }
    }
}

/// Monotonic counters exported on `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub claims: AtomicU64,
    pub leases_granted: AtomicU64,
    pub completions: AtomicU64,
    pub completions_fenced: AtomicU64,
    pub shard_failures: AtomicU64,
    pub releases: AtomicU64,
    pub leases_reaped: AtomicU64,
    pub requests_cached_at_claim: AtomicU64,
}

/// What [`Coordinator::recover_after_crash`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Running leases of the previous process made available again.
    pub leases_returned: u64,
    /// Segments written before the crash and indexed now.
    pub index: IndexStats,
}

/// What an index catch-up or rebuild did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    pub segments: u64,
    /// Successful records read.
    pub records: u64,
    /// Keys added to the index (a key already indexed is not counted).
    pub keys_indexed: u64,
    /// Segments that could not be read, with the reason.
    pub bad_segments: Vec<(String, String)>,
}

pub(crate) struct Inner {
    pub store: Arc<dyn Store>,
    pub objects: Arc<dyn cache::ObjectStore>,
    pub config: CoordinatorConfig,
    pub counters: Counters,
    /// Wakes the planner loop when a job is submitted.
    pub plan_wakeup: Notify,
    /// One planning pass at a time in this process: two passes over the same
    /// job would delete each other's shards.
    pub planning: tokio::sync::Mutex<()>,
    /// Parsed model sections of jobs, for leases.
    models: Mutex<HashMap<Uuid, ModelSpec>>,
    /// Request keys of shards handed out by this replica (see
    /// [`MAX_REMEMBERED_SHARDS`]).
    shard_keys: Mutex<HashMap<Uuid, ShardKeys>>,
    /// This process's name in the leader row: unique per process, so a
    /// restarted replica never mistakes its previous life's row for its own.
    replica_id: String,
    /// Whether this replica held the leader row at its last tick; the
    /// planner and the reaper act only while it does.
    leading: AtomicBool,
}

/// Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Coordinator {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens are secrets: never printed.
        f.debug_struct("Coordinator")
            .field("store", &self.inner.store)
            .field("objects", &self.inner.objects.describe())
            .field("lease_secs", &self.inner.config.lease_secs)
            .field("replica_id", &self.inner.replica_id)
            .finish_non_exhaustive()
    }
}

/// sha256 of the spec's canonical JSON: equal specs, equal hashes.
pub fn spec_hash(spec: &JobSpec) -> Result<String, CoordinatorError> {
    let value = serde_json::to_value(spec)
        .map_err(|e| CoordinatorError::Internal(format!("cannot encode the job spec: {e}")))?;
    Ok(sha256_hex(&canonical_json(&value)))
}

/// Capped exponential backoff with full jitter in its upper half, so that
/// many shards failing together do not retry in lockstep.
pub(crate) fn retry_delay(attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(16);
    let base = RETRY_BASE.saturating_mul(1u32 << exp).min(RETRY_CAP);
    let jitter = rand::rng().random_range(0.5..=1.0);
    base.mul_f64(jitter)
}

/// `host-pid-random`: readable in the leader row, unique per process.
fn replica_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "coordinator".to_string());
    let nonce: u32 = rand::rng().random();
    format!("{host}-{}-{nonce:08x}", std::process::id())
}

fn chrono_after(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Splits a segment path written by `cache::segment_path` into job, shard
/// and attempt; `None` for segments named otherwise.
pub(crate) fn parse_segment_path(path: &str) -> Option<(Uuid, Uuid, u32)> {
    let rest = path
        .strip_prefix(cache::SEGMENT_PREFIX)?
        .strip_suffix(".jsonl.zst")?;
    let (job, file) = rest.split_once('/')?;
    let (shard, attempt) = file.rsplit_once('-')?;
    Some((
        Uuid::parse_str(job).ok()?,
        Uuid::parse_str(shard).ok()?,
        attempt.parse().ok()?,
    ))
}

/// Refuses a lease call that names a key outside its shard.
pub(crate) fn check_keys<'a>(
    shard_id: Uuid,
    known: &HashSet<RequestKey>,
    what: &str,
    mut keys: impl Iterator<Item = &'a RequestKey>,
) -> Result<(), CoordinatorError> {
    match keys.find(|k| !known.contains(*k)) {
        None => Ok(()),
        Some(key) => Err(CoordinatorError::BadRequest(format!(
            "{what} key {key} is not a request of shard {shard_id}"
        ))),
    }
}

impl Coordinator {
    pub fn new(
        store: Arc<dyn Store>,
        objects: Arc<dyn cache::ObjectStore>,
        config: CoordinatorConfig,
    ) -> Self {
        Coordinator {
            inner: Arc::new(Inner {
                store,
                objects,
                config,
                counters: Counters::default(),
                plan_wakeup: Notify::new(),
                planning: tokio::sync::Mutex::new(()),
                models: Mutex::new(HashMap::new()),
                shard_keys: Mutex::new(HashMap::new()),
                replica_id: replica_id(),
                leading: AtomicBool::new(false),
            }),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn objects(&self) -> &Arc<dyn cache::ObjectStore> {
        &self.inner.objects
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.inner.config
    }

    fn lease_length(&self) -> Duration {
        Duration::from_secs(self.inner.config.lease_secs.max(1))
    }

    /// Validates and records a job at priority 0; planning happens in the
    /// background (see [`Coordinator::plan_pending`]). Idempotent: while a
    /// job with the same spec is planning or running, that job is returned.
    pub async fn submit(&self, spec: JobSpec) -> Result<JobStatus, CoordinatorError> {
        self.submit_with_priority(spec, 0).await
    }

    /// [`Coordinator::submit`] at a priority: workers take shards of
    /// higher-priority jobs first, and share themselves fairly between jobs
    /// of equal priority. A resubmitted live spec keeps its first priority.
    pub async fn submit_with_priority(
        &self,
        spec: JobSpec,
        priority: i32,
    ) -> Result<JobStatus, CoordinatorError> {
        spec.validate()?;
        let hash = spec_hash(&spec)?;
        let spec_json = serde_json::to_string(&spec)
            .map_err(|e| CoordinatorError::Internal(format!("cannot encode the job spec: {e}")))?;
        let (job, created) = self
            .inner
            .store
            .create_job(NewJob {
                id: Uuid::now_v7(),
                name: spec.name.clone(),
                spec_json,
                spec_hash: hash,
                backend: spec.model.backend,
                model: spec.model.model.clone(),
                priority,
                created_at: Utc::now(),
            })
            .await?;
        if created {
            tracing::info!(job_id = %job.id, name = %job.name, priority, "job submitted");
            self.inner.plan_wakeup.notify_one();
        } else {
            tracing::info!(job_id = %job.id, name = %job.name, "same spec already live; reusing job");
        }
        Ok(job.status())
    }

    pub async fn job_status(&self, id: Uuid) -> Result<JobStatus, CoordinatorError> {
        let status = self.inner.store.get_job(id).await?.status();
        Ok(self.priced(status).await)
    }

    /// Every job, newest first.
    pub async fn list_jobs(&self) -> Result<Vec<JobStatus>, CoordinatorError> {
        let mut out = Vec::new();
        for job in self.inner.store.list_jobs().await? {
            out.push(self.priced(job.status()).await);
        }
        Ok(out)
    }

    /// Cancels a job: no shard of it is handed out again, and workers on its
    /// running shards are told to stop at their next heartbeat.
    pub async fn cancel(&self, id: Uuid) -> Result<JobStatus, CoordinatorError> {
        let job = self.inner.store.cancel_job(id, Utc::now()).await?;
        tracing::info!(job_id = %id, state = ?job.state, "job cancel requested");
        Ok(job.status())
    }

    /// The job's spec as submitted.
    pub async fn job_spec(&self, id: Uuid) -> Result<JobSpec, CoordinatorError> {
        let json = self.inner.store.job_spec_json(id).await?;
        serde_json::from_str(&json).map_err(|e| {
            CoordinatorError::Internal(format!("stored spec of job {id} cannot be read: {e}"))
        })
    }

    /// Requests of the job that failed after the worker's retries.
    pub async fn failures(
        &self,
        id: Uuid,
        limit: u64,
    ) -> Result<Vec<RequestFailure>, CoordinatorError> {
        // Distinguish "no failures" from "no such job".
        self.inner.store.get_job(id).await?;
        Ok(self.inner.store.job_failures(id, limit).await?)
    }

    pub(crate) async fn model_of(&self, job_id: Uuid) -> Result<ModelSpec, CoordinatorError> {
        if let Ok(models) = self.inner.models.lock() {
            if let Some(model) = models.get(&job_id) {
                return Ok(model.clone());
            }
        }
        let model = self.job_spec(job_id).await?.model;
        if let Ok(mut models) = self.inner.models.lock() {
            models.insert(job_id, model.clone());
        }
        Ok(model)
    }

    /// Leases shards to a worker. Requests whose output is already in the
    /// cache index (written by another job, or by an attempt that crashed
    /// after writing its segment) are dropped from the lease; a shard left
    /// with nothing to do is completed on the spot and another is claimed.
    pub async fn claim(&self, req: &ClaimRequest) -> Result<ClaimResponse, CoordinatorError> {
        let counters = &self.inner.counters;
        counters.claims.fetch_add(1, Ordering::Relaxed);
        let models = req
            .capabilities
            .models
            .iter()
            .map(|glob| {
                ModelPattern::new(glob)
                    .map_err(|e| CoordinatorError::BadRequest(format!("capabilities.models: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let wanted = req.max_shards.clamp(1, MAX_SHARDS_PER_CLAIM) as usize;
        let mut leases = Vec::new();
        for _ in 0..MAX_CLAIM_ROUNDS {
            if leases.len() >= wanted {
                break;
            }
            let now = Utc::now();
            let claimed = self
                .inner
                .store
                .claim_matching(
                    &req.worker_id,
                    &req.capabilities.backends,
                    &models,
                    (wanted - leases.len()) as u32,
                    self.lease_length(),
                    now,
                )
                .await?;
            if claimed.is_empty() {
                break;
            }
            for shard in claimed {
                let fence = shard.fence(&req.worker_id);
                let requests: Vec<InferenceRequest> =
                    match serde_json::from_str(&shard.requests_json) {
                        Ok(r) => r,
                        Err(e) => {
                            // Cannot happen unless the row was edited; fail the
                            // shard rather than hand out garbage.
                            let error = format!("shard requests cannot be read: {e}");
                            tracing::error!(shard_id = %shard.shard_id, %error);
                            self.inner.store.fail(&fence, &error, now, now).await?;
                            continue;
                        }
                    };
                let keys: Vec<RequestKey> = requests.iter().map(|r| r.key.clone()).collect();
                self.remember_keys(shard.shard_id, shard.job_id, keys.iter().cloned());
                let cached = self.inner.store.lookup_keys(&keys).await?;
                let before = requests.len();
                let remaining: Vec<InferenceRequest> = requests
                    .into_iter()
                    .filter(|r| !cached.contains_key(&r.key))
                    .collect();
                let skipped = (before - remaining.len()) as u64;
                counters
                    .requests_cached_at_claim
                    .fetch_add(skipped, Ordering::Relaxed);
                if remaining.is_empty() {
                    tracing::info!(shard_id = %shard.shard_id, attempt = shard.attempt,
                        "every request of the shard is cached; completing it without a worker");
                    self.inner
                        .store
                        .complete(&fence, &Completion::default(), Utc::now())
                        .await?;
                    self.forget_keys(shard.shard_id);
                    counters.completions.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let model = self.model_of(shard.job_id).await?;
                tracing::debug!(shard_id = %shard.shard_id, attempt = shard.attempt,
                    worker_id = %req.worker_id, requests = remaining.len(), skipped, "lease granted");
                leases.push(Lease {
                    shard_id: shard.shard_id,
                    job_id: shard.job_id,
                    attempt: shard.attempt,
                    lease_expires_at: shard.lease_expires_at.to_rfc3339(),
                    heartbeat_interval_secs: self.inner.config.heartbeat_interval_secs,
                    model,
                    requests: remaining,
                });
            }
        }
        counters
            .leases_granted
            .fetch_add(leases.len() as u64, Ordering::Relaxed);
        Ok(ClaimResponse { leases })
    }

    pub async fn heartbeat(
        &self,
        req: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, CoordinatorError> {
        let fence = LeaseFence {
            shard_id: req.shard_id,
            attempt: req.attempt,
            worker_id: req.worker_id.clone(),
        };
        let outcome = self
            .inner
            .store
            .heartbeat(&fence, req.done, self.lease_length(), Utc::now())
            .await?;
        Ok(HeartbeatResponse {
            keep_going: outcome.keep_going,
            lease_expires_at: outcome.lease_expires_at.map(|t| t.to_rfc3339()),
            cancelled: outcome.cancelled,
        })
    }

    /// Fenced completion. `accepted: false` means the lease was no longer the
    /// caller's and nothing changed (the HTTP layer answers 409).
    pub async fn complete(
        &self,
        req: &CompleteRequest,
    ) -> Result<CompleteResponse, CoordinatorError> {
        let fence = LeaseFence {
            shard_id: req.shard_id,
            attempt: req.attempt,
            worker_id: req.worker_id.clone(),
        };
        let segment = if req.segment.is_empty() {
            if !req.written.is_empty() {
                return Err(CoordinatorError::BadRequest(
                    "completion lists written keys but names no segment".into(),
                ));
            }
            None
        } else {
            Some(req.segment.clone())
        };
        // A worker reports only requests of its shard: anything else would
        // put foreign outputs in the index or failures on the wrong job.
        let mut job_id = None;
        if !req.written.is_empty() || !req.failed.is_empty() {
            let Some(known) = self.shard_keys(req.shard_id).await? else {
                self.inner
                    .counters
                    .completions_fenced
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(CompleteResponse { accepted: false });
            };
            check_keys(req.shard_id, &known.1, "written", req.written.iter())?;
            check_keys(
                req.shard_id,
                &known.1,
                "failed",
                req.failed.iter().map(|f| &f.key),
            )?;
            job_id = Some(known.0);
        }
        let completion = Completion {
            segment,
            written: req.written.clone(),
            failed: req.failed.clone(),
            usage: req.usage,
        };
        let accepted = self
            .inner
            .store
            .complete(&fence, &completion, Utc::now())
            .await?;
        let counters = &self.inner.counters;
        if accepted {
            counters.completions.fetch_add(1, Ordering::Relaxed);
            self.forget_keys(req.shard_id);
            tracing::info!(shard_id = %req.shard_id, attempt = req.attempt, worker_id = %req.worker_id,
                written = req.written.len(), failed = req.failed.len(), "shard completed");
        } else {
            counters.completions_fenced.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(shard_id = %req.shard_id, attempt = req.attempt, worker_id = %req.worker_id,
                "late completion refused (lease no longer held)");
            if let (Some(segment), Some(job_id)) = (&completion.segment, job_id) {
                self.index_refused(job_id, req.shard_id, req.attempt, segment, &req.written)
                    .await;
            }
        }
        Ok(CompleteResponse { accepted })
    }

    /// Fenced failure of a whole shard attempt; `None` when fenced.
    pub async fn fail(&self, req: &FailRequest) -> Result<Option<FailResponse>, CoordinatorError> {
        let fence = LeaseFence {
            shard_id: req.shard_id,
            attempt: req.attempt,
            worker_id: req.worker_id.clone(),
        };
        let now = Utc::now();
        let retry_at = chrono_after(now, retry_delay(req.attempt));
        let state = self
            .inner
            .store
            .fail(&fence, &req.error, retry_at, now)
            .await?;
        if let Some(state) = state {
            self.inner
                .counters
                .shard_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(shard_id = %req.shard_id, attempt = req.attempt, ?state,
                error = %req.error, "shard attempt failed");
        }
        Ok(state.map(|state| FailResponse { state }))
    }

    /// Fenced hand-back of an unfinished shard (worker shutting down).
    pub async fn release(&self, req: &ReleaseRequest) -> Result<ReleaseResponse, CoordinatorError> {
        let fence = LeaseFence {
            shard_id: req.shard_id,
            attempt: req.attempt,
            worker_id: req.worker_id.clone(),
        };
        let partial = req.partial.as_ref().map(|p| Partial {
            segment: p.segment.clone(),
            written: p.written.clone(),
            usage: p.usage,
        });
        let mut job_id = None;
        if let Some(partial) = partial.as_ref().filter(|p| !p.written.is_empty()) {
            if partial.segment.is_empty() {
                return Err(CoordinatorError::BadRequest(
                    "release lists written keys but names no segment".into(),
                ));
            }
            let Some(known) = self.shard_keys(req.shard_id).await? else {
                return Ok(ReleaseResponse { accepted: false });
            };
            check_keys(req.shard_id, &known.1, "written", partial.written.iter())?;
            job_id = Some(known.0);
        }
        let accepted = self
            .inner
            .store
            .release(&fence, partial.as_ref(), Utc::now())
            .await?;
        if accepted {
            self.inner.counters.releases.fetch_add(1, Ordering::Relaxed);
        } else if let (Some(partial), Some(job_id)) = (&partial, job_id) {
            // A worker that lost its lease (expired, or the job was
            // cancelled) hands back what it paid for: index it, so that no
            // attempt requests it again.
            self.index_refused(
                job_id,
                req.shard_id,
                req.attempt,
                &partial.segment,
                &partial.written,
            )
            .await;
        }
        Ok(ReleaseResponse { accepted })
    }

    /// One reaper pass: expired leases go back to `available` (spending the
    /// attempt) or die.
    pub async fn reap_expired(&self) -> Result<crate::store::ReapOutcome, CoordinatorError> {
        let outcome = self
            .inner
            .store
            .reap_expired(Utc::now(), &REAP_BACKOFF)
            .await?;
        if outcome.jobs_completed > 0 {
            tracing::info!(
                jobs = outcome.jobs_completed,
                "finished jobs left running were completed"
            );
        }
        for lease in &outcome.expired {
            self.index_expired(lease).await;
        }
        let total = outcome.returned + outcome.dead + outcome.cancelled;
        if total > 0 {
            self.inner
                .counters
                .leases_reaped
                .fetch_add(total, Ordering::Relaxed);
            tracing::warn!(
                returned = outcome.returned,
                dead = outcome.dead,
                cancelled = outcome.cancelled,
                "expired leases reaped"
            );
        }
        Ok(outcome)
    }

    fn remember_keys(&self, shard_id: Uuid, job_id: Uuid, keys: impl Iterator<Item = RequestKey>) {
        let entry: ShardKeys = Arc::new((job_id, keys.collect()));
        if let Ok(mut map) = self.inner.shard_keys.lock() {
            if map.len() >= MAX_REMEMBERED_SHARDS && !map.contains_key(&shard_id) {
                // Shards whose workers died are never forgotten otherwise;
                // starting over only costs a read per completion.
                map.clear();
            }
            map.insert(shard_id, entry);
        }
    }

    fn forget_keys(&self, shard_id: Uuid) {
        if let Ok(mut map) = self.inner.shard_keys.lock() {
            map.remove(&shard_id);
        }
    }

    /// The job and request keys of a shard: remembered from its claim, else
    /// read from the store. `None` when the shard does not exist.
    pub(crate) async fn shard_keys(
        &self,
        shard_id: Uuid,
    ) -> Result<Option<ShardKeys>, CoordinatorError> {
        if let Ok(map) = self.inner.shard_keys.lock() {
            if let Some(known) = map.get(&shard_id) {
                return Ok(Some(Arc::clone(known)));
            }
        }
        let Some((job_id, json)) = self.inner.store.shard_requests(shard_id).await? else {
            return Ok(None);
        };
        let requests: Vec<KeyOnly> = serde_json::from_str(&json).map_err(|e| {
            CoordinatorError::Internal(format!("shard {shard_id}: requests cannot be read: {e}"))
        })?;
        let known: ShardKeys = Arc::new((job_id, requests.into_iter().map(|r| r.key).collect()));
        Ok(Some(known))
    }

    /// Indexes the outputs of an attempt whose lease call was refused. The
    /// outputs are as good as any other attempt's (the key says what was
    /// asked), and indexing them means no later attempt pays for them
    /// again. Best effort: the shard's next attempt redoes whatever this
    /// misses.
    async fn index_refused(
        &self,
        job_id: Uuid,
        shard_id: Uuid,
        attempt: u32,
        segment: &str,
        written: &[RequestKey],
    ) {
        if written.is_empty() {
            return;
        }
        let entry = SegmentEntry {
            path: segment.to_string(),
            job_id: Some(job_id),
            shard_id: Some(shard_id),
            attempt: Some(attempt),
            keys: written.to_vec(),
        };
        match self.inner.store.index_segment(&entry, Utc::now()).await {
            Ok(added) => tracing::info!(%shard_id, attempt, segment, added,
                "indexed the outputs of a refused lease call"),
            Err(e) => tracing::warn!(%shard_id, attempt, segment, error = %e,
                "cannot index the outputs of a refused lease call"),
        }
    }

    /// After the reaper took a lease back: if its worker wrote the
    /// attempt's segment before it died (or before its completion got
    /// through), index it so the next attempt skips those requests.
    async fn index_expired(&self, lease: &ExpiredLease) {
        let path = cache::segment_path(lease.job_id, lease.shard_id, lease.attempt);
        let records = match cache::read_segment(self.inner.objects.as_ref(), &path).await {
            Ok(records) => records,
            Err(cache::SegmentError::Store(cache::StoreError::NotFound { .. })) => return,
            Err(e) => {
                tracing::warn!(segment = %path, error = %e, "cannot read the segment of an expired lease");
                return;
            }
        };
        let keys: Vec<RequestKey> = records
            .into_iter()
            .filter(|r| r.is_success())
            .map(|r| r.key)
            .collect();
        self.index_refused(lease.job_id, lease.shard_id, lease.attempt, &path, &keys)
            .await;
    }

    /// This process's name in the leader row.
    pub fn replica_id(&self) -> &str {
        &self.inner.replica_id
    }

    /// Whether this replica held the leader row at its last tick.
    pub fn is_leader(&self) -> bool {
        self.inner.leading.load(Ordering::Acquire)
    }

    fn leader_ttl(&self) -> Duration {
        (self.inner.config.reaper_interval * 3).max(MIN_LEADER_TTL)
    }

    /// One tick of the leader-only duties: takes or renews the leader row,
    /// and reaps expired leases while this replica leads. Returns whether it
    /// leads. A store error steps down: the row may still be ours, but a
    /// replica that cannot renew it must not act as if it were.
    pub async fn leader_tick(&self) -> bool {
        let store = &self.inner.store;
        let id = &self.inner.replica_id;
        let leads = match store
            .try_acquire_leadership(id, self.leader_ttl(), Utc::now())
            .await
        {
            Ok(leads) => leads,
            Err(e) => {
                tracing::error!(replica = %id, error = %e, "cannot renew the leader row; stepping down");
                false
            }
        };
        let was = self.inner.leading.swap(leads, Ordering::AcqRel);
        if leads && !was {
            tracing::info!(replica = %id, "leading: this replica now plans jobs and reaps leases");
            // Jobs submitted to other replicas wait for a planner.
            self.inner.plan_wakeup.notify_one();
        } else if !leads && was {
            tracing::warn!(replica = %id, "no longer leading; planning and reaping stop here");
        }
        if leads {
            if let Err(e) = self.reap_expired().await {
                tracing::error!(error = %e, "reaper pass failed");
            }
        }
        leads
    }

    /// Background loop of the leader-only duties, one [`leader_tick`] per
    /// `reaper_interval` until `stop`; then gives the leader row up so that
    /// another replica takes over at once.
    ///
    /// [`leader_tick`]: Coordinator::leader_tick
    pub async fn run_leader_duties(&self, stop: CancellationToken) {
        let period = self
            .inner
            .config
            .reaper_interval
            .max(Duration::from_millis(50));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticker.tick() => {
                    self.leader_tick().await;
                }
            }
        }
        if self.inner.leading.swap(false, Ordering::AcqRel) {
            if let Err(e) = self
                .inner
                .store
                .release_leadership(&self.inner.replica_id)
                .await
            {
                tracing::warn!(error = %e, "could not give the leader row up; it expires on its own");
            }
        }
    }

    /// For the embedded single-process mode after a restart: no worker of the
    /// previous process survives, so every running lease is returned without
    /// spending an attempt, and segments written just before the crash are
    /// indexed so that their requests are not sent again.
    pub async fn recover_after_crash(&self) -> Result<RecoveryStats, CoordinatorError> {
        let leases_returned = self.inner.store.recover_orphaned(Utc::now()).await?;
        // Poll leases of submitted Batch API shards died with the process too.
        self.inner.store.batch_recover_polls(Utc::now()).await?;
        if leases_returned > 0 {
            tracing::info!(leases_returned, "leases of the previous process returned");
        }
        let index = self.index_new_segments().await?;
        Ok(RecoveryStats {
            leases_returned,
            index,
        })
    }

    /// Indexes segments present in the object store but not yet in the index
    /// (a worker crashed between writing a segment and completing its shard).
    pub async fn index_new_segments(&self) -> Result<IndexStats, CoordinatorError> {
        let known = self.inner.store.indexed_segments().await?;
        let all = cache::list_segments(self.inner.objects.as_ref()).await?;
        let fresh: Vec<String> = all.into_iter().filter(|p| !known.contains(p)).collect();
        self.index_segments(fresh).await
    }

    /// Rebuilds the cache index from the object store alone.
    pub async fn reindex(&self) -> Result<IndexStats, CoordinatorError> {
        let all = cache::list_segments(self.inner.objects.as_ref()).await?;
        self.inner.store.clear_cache_index().await?;
        self.index_segments(all).await
    }

    async fn index_segments(&self, paths: Vec<String>) -> Result<IndexStats, CoordinatorError> {
        let mut stats = IndexStats::default();
        for path in paths {
            let records = match cache::read_segment(self.inner.objects.as_ref(), &path).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(segment = %path, error = %e, "skipping unreadable segment");
                    stats.bad_segments.push((path, e.to_string()));
                    continue;
                }
            };
            let keys: Vec<RequestKey> = records
                .into_iter()
                .filter(|r| r.is_success())
                .map(|r| r.key)
                .collect();
            let (job_id, shard_id, attempt) = match parse_segment_path(&path) {
                Some((j, s, a)) => (Some(j), Some(s), Some(a)),
                None => (None, None, None),
            };
            stats.segments += 1;
            stats.records += keys.len() as u64;
            stats.keys_indexed += self
                .inner
                .store
                .index_segment(
                    &SegmentEntry {
                        path,
                        job_id,
                        shard_id,
                        attempt,
                        keys,
                    },
                    Utc::now(),
                )
                .await?;
        }
        Ok(stats)
    }

    /// Prometheus text exposition of job/shard/request gauges and the
    /// protocol counters.
    pub async fn metrics_text(&self) -> Result<String, CoordinatorError> {
        use std::fmt::Write as _;
        let m = self.inner.store.metrics().await?;
        let c = &self.inner.counters;
        let mut out = String::new();
        let _ = writeln!(out, "# HELP shardline_jobs Jobs by state.");
        let _ = writeln!(out, "# TYPE shardline_jobs gauge");
        for state in ["planning", "running", "completed", "failed", "cancelled"] {
            let n = m
                .jobs_by_state
                .iter()
                .find(|(s, _)| s == state)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "shardline_jobs{{state=\"{state}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP shardline_shards Shards by state.");
        let _ = writeln!(out, "# TYPE shardline_shards gauge");
        for state in [
            "available",
            "running",
            "submitted",
            "completed",
            "failed",
            "dead",
            "cancelled",
        ] {
            let n = m
                .shards_by_state
                .iter()
                .find(|(s, _)| s == state)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "shardline_shards{{state=\"{state}\"}} {n}");
        }
        let gauges = [
            (
                "shardline_requests_completed",
                "Requests completed by shards.",
                m.requests_completed,
            ),
            (
                "shardline_requests_failed",
                "Requests that failed after retries.",
                m.requests_failed,
            ),
            (
                "shardline_requests_cached",
                "Requests found in the cache at planning.",
                m.requests_cached,
            ),
            (
                "shardline_cache_index_keys",
                "Keys in the cache index.",
                m.cache_index_keys,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let counters = [
            ("shardline_claims_total", "Claim calls.", &c.claims),
            (
                "shardline_leases_granted_total",
                "Leases handed to workers.",
                &c.leases_granted,
            ),
            (
                "shardline_completions_total",
                "Shard completions accepted.",
                &c.completions,
            ),
            (
                "shardline_completions_fenced_total",
                "Late completions refused.",
                &c.completions_fenced,
            ),
            (
                "shardline_shard_failures_total",
                "Shard attempts failed.",
                &c.shard_failures,
            ),
            (
                "shardline_releases_total",
                "Shards handed back.",
                &c.releases,
            ),
            (
                "shardline_leases_reaped_total",
                "Expired leases reaped.",
                &c.leases_reaped,
            ),
            (
                "shardline_requests_cached_at_claim_total",
                "Requests dropped from leases as already cached.",
                &c.requests_cached_at_claim,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_paths_round_trip() {
        let (j, s) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(
            parse_segment_path(&cache::segment_path(j, s, 7)),
            Some((j, s, 7))
        );
        assert_eq!(parse_segment_path("segments/other.jsonl.zst"), None);
    }

    #[test]
    fn retry_delay_grows_and_is_capped() {
        let d1 = retry_delay(1);
        assert!(d1 >= RETRY_BASE / 2 && d1 <= RETRY_BASE, "{d1:?}");
        let d4 = retry_delay(4);
        assert!(d4 >= RETRY_BASE * 4 && d4 <= RETRY_BASE * 8, "{d4:?}");
        assert!(retry_delay(60) <= RETRY_CAP);
    }
}

#[cfg(test)]
mod config_tests {
    use super::CoordinatorConfig;

    #[test]
    fn debug_never_shows_the_tokens() {
        let config = CoordinatorConfig::with_tokens("admin-secret-123", "worker-secret-456");
        let shown = format!("{config:?}");
        assert!(!shown.contains("admin-secret-123"), "{shown}");
        assert!(!shown.contains("worker-secret-456"), "{shown}");
        assert!(shown.contains("lease_secs: 60"), "{shown}");
    }
}
