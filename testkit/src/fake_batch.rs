//! A fake of OpenAI's Batch API (Files + Batches) for tests, served beside the fake synchronous
//! endpoints of [`crate::FakeOpenAi`] on one base URL.
//!
//! Routes (all under `/v1`, bearer auth when [`FakeConfig::api_key`] is set):
//! - Files: `POST /files` (multipart: `purpose` = `batch`, `file`), `GET /files/{id}`,
//!   `GET /files/{id}/content`.
//! - Batches: `POST /batches`, `GET /batches/{id}`, `GET /batches?limit=&after=` (newest first,
//!   cursor pagination), `POST /batches/{id}/cancel`.
//! - Everything else (`/chat/completions`, `/completions`, `/models`, `/_fake/stats`) is the fake
//!   synchronous server, answering with the same deterministic model.
//! - `GET /_fake/batch/stats` returns [`FakeBatchStats`] as JSON.
//!
//! A batch follows the documented statuses: `validating` for [`FakeBatchConfig::validating`],
//! then `failed` (with `errors`) or `in_progress`; its lines complete evenly over
//! [`FakeBatchConfig::in_progress`] in a shuffled order (so the output file's order differs from
//! the input's), then `finalizing` and `completed`. A cancel moves it to `cancelling` and, after
//! [`FakeBatchConfig::cancelling`], to `cancelled`, keeping the lines already done; an expiring
//! batch keeps its finished lines too. Undone lines go to the error file with `batch_expired` /
//! `batch_cancelled`. Status advances lazily, whenever a request looks at batches, so the fake
//! needs no background task and a slow test machine only makes batches finish later.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::fake_batch_engine::Engine;
use crate::{server, FakeConfig, FakeStats};

/// A per-line failure injected by [`FakeBatchConfig::line_errors`].
#[derive(Debug, Clone)]
pub struct LineError {
    /// Lines whose prompt text contains this fail.
    pub needle: String,
    /// HTTP status of the line's response (e.g. 500 or 400).
    pub status: u16,
    /// How many times one request (by `custom_id`) fails before it succeeds.
    pub times: u32,
}

/// Knobs of the fake Batch API; change them at runtime with [`FakeBatchApi::set_batch_config`].
#[derive(Debug, Clone)]
pub struct FakeBatchConfig {
    /// Time a batch spends in `validating`.
    pub validating: Duration,
    /// Time a batch spends in `in_progress`; its lines complete evenly over it.
    pub in_progress: Duration,
    /// Time in `finalizing`.
    pub finalizing: Duration,
    /// Time in `cancelling` before `cancelled`.
    pub cancelling: Duration,
    /// A batch with a line whose prompt contains one of these fails validation.
    pub fail_validation_containing: Vec<String>,
    /// The first N batches created expire ...
    pub expire_first_batches: u64,
    /// ... this long after they started `in_progress` (keep it below `in_progress` for a
    /// partial output).
    pub expire_after: Duration,
    /// Per-line errors (in the error file).
    pub line_errors: Vec<LineError>,
    /// Lines whose prompt contains the text are left out of both files, the given number of
    /// times per request.
    pub drop_lines: Vec<(String, u32)>,
    /// Seed of the output order shuffle.
    pub shuffle_seed: u64,
    /// Most lines per input file (the API's limit is 50,000).
    pub max_lines: usize,
    /// Largest input file (the API's limit is 200 MB).
    pub max_file_bytes: u64,
    /// Input tokens a model may have in `in_progress`/`finalizing` batches at once; a batch that
    /// would exceed it fails validation with `token_limit_exceeded`, as OpenAI's does.
    pub enqueued_token_limit: Option<u64>,
}

impl Default for FakeBatchConfig {
    fn default() -> Self {
        FakeBatchConfig {
            validating: Duration::from_millis(100),
            in_progress: Duration::from_millis(300),
            finalizing: Duration::from_millis(100),
            cancelling: Duration::from_millis(100),
            fail_validation_containing: Vec::new(),
            expire_first_batches: 0,
            expire_after: Duration::from_millis(150),
            line_errors: Vec::new(),
            drop_lines: Vec::new(),
            shuffle_seed: 7,
            max_lines: 50_000,
            max_file_bytes: 200_000_000,
            enqueued_token_limit: None,
        }
    }
}

/// One batch as the stats show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatchSummary {
    pub id: String,
    /// sha256 of the batch's sorted `custom_id`s: which requests it holds.
    pub request_set: String,
    pub status: String,
    pub requests: usize,
    /// Input tokens (the fake tokenizer's count), as counted against
    /// [`FakeBatchConfig::enqueued_token_limit`].
    pub tokens: u64,
    /// `GET /batches/{id}` calls for it.
    pub polls: u64,
    pub metadata: Map<String, Value>,
}

/// Counters of the Batch API routes since start.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FakeBatchStats {
    /// `POST /files`.
    pub uploads: u64,
    pub upload_bytes: u64,
    /// `GET /files/{id}`.
    pub file_retrieves: u64,
    /// `GET /files/{id}/content`.
    pub downloads: u64,
    pub download_bytes: u64,
    /// `POST /batches` that created a batch.
    pub creates: u64,
    /// `POST /batches` answered with an error.
    pub create_errors: u64,
    /// `GET /batches/{id}` (polls).
    pub retrieves: u64,
    /// `GET /batches` pages.
    pub lists: u64,
    /// `POST /batches/{id}/cancel`.
    pub cancels: u64,
    /// Lines answered 200 / answered with an error / left out of both files.
    pub lines_ok: u64,
    pub lines_failed: u64,
    pub lines_dropped: u64,
    /// Most input tokens in progress at once for one model.
    pub max_enqueued_tokens: u64,
    /// Every batch, oldest first.
    pub batches: Vec<BatchSummary>,
    /// `custom_id` → lines answered 200 for it, over every batch.
    pub ok_per_custom_id: BTreeMap<String, u64>,
}

impl FakeBatchStats {
    /// Batches created per distinct request set.
    pub fn batches_per_request_set(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for b in &self.batches {
            *out.entry(b.request_set.clone()).or_insert(0) += 1;
        }
        out
    }

    /// The most batches any one request set was sent in (1 when nothing was paid twice).
    pub fn max_batches_per_request_set(&self) -> u64 {
        self.batches_per_request_set()
            .values()
            .copied()
            .max()
            .unwrap_or(0)
    }

    /// Summary without the per-request map, for printing.
    pub fn summary(&self) -> FakeBatchStats {
        FakeBatchStats {
            ok_per_custom_id: BTreeMap::new(),
            ..self.clone()
        }
    }
}

/// State shared by the batch handlers and the [`FakeBatchApi`] handle.
pub(crate) struct BatchShared {
    pub sync: Arc<server::Shared>,
    pub engine: Mutex<Engine>,
}

impl BatchShared {
    pub fn sync_config(&self) -> Arc<FakeConfig> {
        self.sync
            .config
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// A running fake Batch API (and synchronous API) on 127.0.0.1. Dropping it stops the server
/// abruptly; prefer [`FakeBatchApi::shutdown`].
pub struct FakeBatchApi {
    addr: SocketAddr,
    shared: Arc<BatchShared>,
    shutdown_tx: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeBatchApi {
    /// Starts on 127.0.0.1 with a port picked by the OS.
    pub async fn start(config: FakeConfig, batch: FakeBatchConfig) -> std::io::Result<Self> {
        Self::start_on_port(config, batch, 0).await
    }

    pub async fn start_on_port(
        config: FakeConfig,
        batch: FakeBatchConfig,
        port: u16,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let sync = Arc::new(server::Shared::new(config));
        let shared = Arc::new(BatchShared {
            sync: sync.clone(),
            engine: Mutex::new(Engine::new(batch)),
        });
        let app = crate::fake_batch_routes::router(shared.clone(), server::router(sync));
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = shutdown_rx.await;
            });
            if let Err(err) = serve.await {
                tracing::warn!(error = %err, "fake Batch API server stopped with an error");
            }
        });
        Ok(FakeBatchApi {
            addr,
            shared,
            shutdown_tx: Some(shutdown_tx),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Batch API counters (batch statuses advanced to now first).
    pub fn batch_stats(&self) -> FakeBatchStats {
        let config = self.shared.sync_config();
        let mut engine = lock(&self.shared.engine);
        engine.advance_all(&config);
        engine.stats()
    }

    /// Counters of the synchronous endpoints.
    pub fn sync_stats(&self) -> FakeStats {
        self.shared.sync.stats()
    }

    /// Requests whose prompt contains `needle` answered 200 by the synchronous endpoints.
    pub fn sync_count_for_prompt(&self, needle: &str) -> usize {
        server::lock(&self.shared.sync.requests)
            .iter()
            .filter(|r| r.status == 200 && r.prompt.contains(needle))
            .count()
    }

    /// Changes batch knobs at runtime (batches already created keep their expiry choice).
    pub fn set_batch_config(&self, f: impl FnOnce(&mut FakeBatchConfig)) {
        let mut engine = lock(&self.shared.engine);
        f(engine.config_mut());
    }

    /// Changes the synchronous server's knobs (API key, answers, …).
    pub fn set_config(&self, f: impl FnOnce(&mut FakeConfig)) {
        let mut guard = self
            .shared
            .sync
            .config
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut config = FakeConfig::clone(&guard);
        f(&mut config);
        *guard = Arc::new(config);
    }

    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for FakeBatchApi {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
