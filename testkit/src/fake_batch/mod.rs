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

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

mod config;
mod engine;
mod routes;
mod shared;

pub use config::{BatchSummary, FakeBatchConfig, FakeBatchStats, LineError};

use crate::{server, FakeConfig, FakeStats};
use engine::Engine;
use shared::{lock, BatchShared};

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
        let app = routes::router(shared.clone(), server::router(sync));
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
