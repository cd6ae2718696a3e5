//! The `openai-batch` backend: runs shards through OpenAI's Batch API (Files + Batches) at
//! half the synchronous price, surviving crashes without paying twice.
//!
//! - [`submit`]: a claimed shard's requests become one or more JSONL input files (split by the
//!   per-file request and byte limits, and fed in waves under the model's enqueued-token cap),
//!   uploaded with `purpose = "batch"`; each gets a batch (`completion_window = "24h"`,
//!   metadata naming the job, shard, attempt and request set), and the batch ids are recorded
//!   in the same store step that moves the shard to `submitted`.
//! - [`poll`]: any worker offering `openai-batch` takes short poll leases on submitted shards
//!   and polls their batches with backoff; finished batches are downloaded, matched to requests
//!   by `custom_id`, written as cache segments and indexed; failed lines and lines missing from
//!   both files are retried in a new batch (or synchronously); an expired batch keeps its
//!   finished part; a failed batch fails the shard; a cancelled job cancels its batches and
//!   keeps what finished.
//! - Idempotency: a batch's metadata carries its request set (a hash over the job, shard,
//!   round and keys). Whenever a crash may have fallen between creating a batch and recording
//!   it (a later attempt of the shard, a poller that recorded its intent, a create that timed
//!   out), batches are listed and a matching one is adopted instead of creating another.
//! - [`fault`]: fault-injection points for the crash tests.

pub mod api;
pub(crate) mod fault;
pub mod input;
pub mod output;
pub(crate) mod poll;
pub(crate) mod submit;

use async_trait::async_trait;
use jobs::spec::ModelSpec;
use jobs::spec::ProviderBatchSpec;
use jobs::{InferenceOutput, InferenceRequest};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

pub use api::{BatchApi, BatchApiError, BatchObject};
pub use poll::spawn_poller;

use super::context::ShardContext;
use super::{Backend, BackendError, OpenAiBackend};
use crate::backend::key_policy::KeyPolicy;
use crate::stats::WorkerStats;
use jobs::protocol::Lease;

/// Metadata keys written on every batch (and matched when looking one up).
pub const META_JOB: &str = "shardline_job";
pub const META_SHARD: &str = "shardline_shard";
pub const META_ATTEMPT: &str = "shardline_attempt";
pub const META_ROUND: &str = "shardline_round";
pub const META_SET: &str = "shardline_request_set";

/// How far back a look-up for a batch created by a crashed worker goes.
const LOOKUP_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most pages of `GET /batches` read in one look-up.
const LOOKUP_MAX_PAGES: usize = 200;

/// The backend: the Batch API client, the synchronous backend (its request
/// bodies go into the input files, its answer parser reads the output files,
/// and it sends retries when `retry_with = "sync"`), and the batch settings.
#[derive(Clone)]
pub struct OpenAiBatchBackend {
    inner: Arc<Inner>,
}

struct Inner {
    api: BatchApi,
    sync: OpenAiBackend,
    spec: ProviderBatchSpec,
    model_key: String,
}

impl std::fmt::Debug for OpenAiBatchBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiBatchBackend")
            .field("api", &self.inner.api)
            .field("model_key", &self.inner.model_key)
            .finish_non_exhaustive()
    }
}

impl OpenAiBatchBackend {
    /// Builds the backend from `[model]`; the key is read only where `keys`
    /// allows it.
    pub fn from_spec(model: &ModelSpec, keys: &KeyPolicy) -> Result<Self, BackendError> {
        Self::with_api(model, keys, BatchApi::from_spec(model, keys)?)
    }

    /// The backend with a given Batch API client (tests: short backoffs).
    pub fn with_api(
        model: &ModelSpec,
        keys: &KeyPolicy,
        api: BatchApi,
    ) -> Result<Self, BackendError> {
        let sync = OpenAiBackend::from_spec(model, keys)?;
        let spec = ProviderBatchSpec::of(model);
        let model_key = format!("{}|{}", api.base_url(), model.model);
        Ok(OpenAiBatchBackend {
            inner: Arc::new(Inner {
                api,
                sync,
                spec,
                model_key,
            }),
        })
    }

    pub fn api(&self) -> &BatchApi {
        &self.inner.api
    }

    pub(crate) fn sync(&self) -> &OpenAiBackend {
        &self.inner.sync
    }

    pub fn spec(&self) -> &ProviderBatchSpec {
        &self.inner.spec
    }

    /// Shards of one key share the provider's enqueued-token quota.
    pub fn model_key(&self) -> &str {
        &self.inner.model_key
    }

    pub(crate) fn limits(&self) -> input::Limits {
        input::Limits {
            max_requests: self.inner.spec.max_requests_per_file as usize,
            max_bytes: self.inner.spec.max_file_bytes,
        }
    }

    /// The metadata of a new batch.
    pub(crate) fn metadata(
        job_id: Uuid,
        shard_id: Uuid,
        attempt: u32,
        round: u32,
        request_set: &str,
    ) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(META_JOB.into(), Value::from(job_id.to_string()));
        m.insert(META_SHARD.into(), Value::from(shard_id.to_string()));
        m.insert(META_ATTEMPT.into(), Value::from(attempt.to_string()));
        m.insert(META_ROUND.into(), Value::from(round.to_string()));
        m.insert(META_SET.into(), Value::from(request_set.to_string()));
        m
    }

    /// The batches of this shard created after `since_unix`, by the request
    /// set in their metadata (the newest of each): one walk through
    /// `GET /batches`, newest first, paging with `after`.
    pub(crate) async fn find_shard_batches(
        &self,
        shard_id: Uuid,
        since_unix: i64,
    ) -> Result<HashMap<String, BatchObject>, BatchApiError> {
        let shard = shard_id.to_string();
        let mut found = HashMap::new();
        let mut after: Option<String> = None;
        for _ in 0..LOOKUP_MAX_PAGES {
            let page = self.inner.api.list(after.as_deref()).await?;
            let mut older = false;
            for batch in &page.data {
                let meta = batch.metadata.as_ref();
                let field = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str);
                if field(META_SHARD) == Some(shard.as_str()) {
                    if let Some(set) = field(META_SET) {
                        found
                            .entry(set.to_string())
                            .or_insert_with(|| batch.clone());
                    }
                }
                if batch.created_at.is_some_and(|t| t < since_unix) {
                    older = true;
                }
            }
            if older || !page.has_more {
                break;
            }
            match page
                .last_id
                .or_else(|| page.data.last().map(|b| b.id.clone()))
            {
                Some(last) => after = Some(last),
                None => break,
            }
        }
        Ok(found)
    }

    /// [`Self::find_shard_batches`] over the default look-back window.
    pub(crate) async fn find_recent_shard_batches(
        &self,
        shard_id: Uuid,
    ) -> Result<HashMap<String, BatchObject>, BatchApiError> {
        let since = now_unix_ms() / 1000 - LOOKUP_WINDOW.as_secs() as i64;
        self.find_shard_batches(shard_id, since).await
    }

    /// Creates a batch, or finds the one a lost answer created: a create
    /// whose outcome is unknown (timeout, 5xx) is followed by a look-up
    /// before any new try.
    pub(crate) async fn create_once(
        &self,
        input_file_id: &str,
        endpoint: &str,
        metadata: &Map<String, Value>,
        shard_id: Uuid,
        request_set: &str,
    ) -> Result<BatchObject, BatchApiError> {
        let started = now_unix_ms() / 1000 - 60;
        let mut tries = 0u32;
        loop {
            tries += 1;
            match self
                .inner
                .api
                .create(input_file_id, endpoint, metadata)
                .await
            {
                Ok(batch) => return Ok(batch),
                Err(e) if e.is_ambiguous() && tries <= 5 => {
                    tracing::warn!(error = %e, "batch creation may or may not have happened; looking it up");
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(tries))).await;
                    let found = self.find_shard_batches(shard_id, started).await?;
                    if let Some(batch) = found.get(request_set) {
                        return Ok(batch.clone());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[async_trait]
impl Backend for OpenAiBatchBackend {
    fn concurrency(&self) -> usize {
        self.inner.sync.concurrency()
    }

    /// One request through the synchronous endpoint (used for retries when
    /// `retry_with = "sync"`).
    async fn run(&self, req: &InferenceRequest) -> Result<InferenceOutput, BackendError> {
        self.inner.sync.run(req).await
    }

    /// Submits the shard as provider batches instead of running it request
    /// by request; the pollers ([`spawn_poller`]) finish it.
    async fn run_shard(&self, mut lease: Lease, ctx: ShardContext) -> WorkerStats {
        let requests = std::mem::take(&mut lease.requests);
        let stats = self.submit_shard(&lease, requests, &ctx).await;
        ctx.heartbeat.stop();
        stats
    }
}

pub(crate) fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Object path of a segment written from a batch's results: beside the
/// shard's attempt segments, one per part of each round.
pub fn batch_segment_path(
    job_id: Uuid,
    shard_id: Uuid,
    attempt: u32,
    round: u32,
    label: &str,
) -> String {
    format!(
        "{}{job_id}/{shard_id}-{attempt}-batch-r{round}-{label}.jsonl.zst",
        cache::SEGMENT_PREFIX
    )
}
