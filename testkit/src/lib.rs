//! Test kit for Shardline: a fake OpenAI-compatible server that stands in for a paid API.
//!
//! [`FakeOpenAi`] serves `POST /v1/chat/completions`, `POST /v1/completions` (with vLLM-style
//! `echo` + `logprobs`) and `GET /v1/models` on 127.0.0.1, answers deterministically (see
//! [`tokenize`] and [`default_answer`]), follows the OpenAI error format, and injects faults on a
//! schedule set by [`FakeConfig`]: 401 without the key, 429 with `Retry-After`, 500/503, slow
//! prompts. It records every request so tests can assert on exactly what reached the "provider".
//!
//! Fault schedule: inference requests are numbered by arrival from 1. After the auth check, request
//! `k` answers 500 if `k <= fail_first`, else 429 if `k % rate_limit_every == 0`, else 500/503
//! (alternating) if `k % server_error_every == 0`; only then is the body validated and answered.
//! `GET /_fake/stats` returns [`FakeStats`] as JSON for tests that run the `fake-openai` binary.
//!
//! Servers that lack what log-likelihood scoring needs are imitated by switches: no
//! `/v1/completions` route ([`FakeConfig::serve_completions`]), `echo` ignored
//! ([`FakeConfig::ignore_echo`]), no `logprobs` ([`FakeConfig::drop_logprobs`]). Over TLS
//! ([`FakeOpenAi::start_tls`]) the server presents a certificate from a private CA
//! ([`TestPki`]).

mod api_error;
mod fake_batch;
mod model;
mod params;
mod server;
mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use fake_batch::{BatchSummary, FakeBatchApi, FakeBatchConfig, FakeBatchStats, LineError};
pub use model::{default_answer, token_count, tokenize};
pub use tls::TestPki;

/// Knobs of the fake server; change them at runtime with [`FakeOpenAi::set_config`].
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// When set, requests need `Authorization: Bearer <key>`, else 401 `invalid_api_key`.
    pub api_key: Option<String>,
    /// A wrong key's 401 quotes the key it got, whole. OpenAI's message
    /// quotes a masked key; a careless proxy quotes all of it, which is
    /// what a client must not store or log.
    pub echo_wrong_key: bool,
    /// Delay added to every inference request.
    pub latency: Duration,
    /// Every Nth inference request (by arrival) answers 429.
    pub rate_limit_every: Option<u64>,
    /// `Retry-After` (rounded up to whole seconds) and `retry-after-ms` on 429 answers.
    pub retry_after_secs: f64,
    /// The first N inference requests answer 500.
    pub fail_first: u64,
    /// Every Nth inference request answers 500 or 503 (alternating, 500 first).
    pub server_error_every: Option<u64>,
    /// Requests whose prompt text contains one of these always answer 400.
    pub fail_prompts_containing: Vec<String>,
    /// Extra delay for requests whose prompt text contains the needle.
    pub slow_prompts_containing: Vec<(String, Duration)>,
    /// Prompt text (exact, or equal after trimming whitespace) → completion text.
    pub answers: HashMap<String, String>,
    /// `max_tokens` above this answers 400, like a model's context limit.
    pub max_tokens_limit: u32,
    /// Tokens of these texts get log-probability -0.01 and are the argmax, so a multiple-choice
    /// test can predict which choice wins (leading whitespace ignored).
    pub favoured_continuations: Vec<String>,
    /// Models listed by `GET /v1/models`. Any model name is served except `"missing-model"`,
    /// which answers 404 `model_not_found`.
    pub served_models: Vec<String>,
    /// Keep every request in [`FakeOpenAi::requests`]; turn off for long benchmarks.
    pub record_requests: bool,
    /// Serve `POST /v1/completions`; off, it answers 404 `Invalid URL` like any unknown route,
    /// as a chat-only server does.
    pub serve_completions: bool,
    /// Answer `/v1/completions` as if `echo` were false: the text and `logprobs` cover the
    /// generated tokens only, as servers that ignore the parameter do.
    pub ignore_echo: bool,
    /// Answer `/v1/completions` with `"logprobs": null` whatever was asked.
    pub drop_logprobs: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            api_key: None,
            echo_wrong_key: false,
            latency: Duration::ZERO,
            rate_limit_every: None,
            retry_after_secs: 1.0,
            fail_first: 0,
            server_error_every: None,
            fail_prompts_containing: Vec::new(),
            slow_prompts_containing: Vec::new(),
            answers: HashMap::new(),
            max_tokens_limit: 4096,
            favoured_continuations: Vec::new(),
            served_models: vec!["fake-model".to_string()],
            record_requests: true,
            serve_completions: true,
            ignore_echo: false,
            drop_logprobs: false,
        }
    }
}

/// Counters since start. A request counts in exactly one of ok / rate_limited / server_errors /
/// client_errors; `total`, `chat` and `completions` count requests as they arrive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FakeStats {
    /// Every request received on any route (including `/v1/models` and unknown routes).
    pub total: u64,
    pub ok: u64,
    pub rate_limited: u64,
    /// 5xx answers.
    pub server_errors: u64,
    /// 4xx answers other than 429 (401, 400, 404).
    pub client_errors: u64,
    /// Highest number of inference requests being handled at the same time.
    pub max_in_flight: u64,
    pub chat: u64,
    pub completions: u64,
    /// TCP connections accepted, over TLS or not; one whose TLS handshake failed counts too,
    /// though none of its requests reaches a route.
    pub connections: u64,
    /// Microseconds from the server's start to the first inference request it received, and
    /// to the last inference answer it sent (any status): a benchmark's inference window.
    pub first_inference_us: Option<u64>,
    pub last_answer_us: Option<u64>,
    /// Microseconds spent answering inference requests (received to answer built), summed:
    /// divided by `chat + completions`, the latency a client without overhead would see, which
    /// exceeds `latency` by the timer's millisecond granularity.
    pub inference_us: u64,
}

/// One request as the server saw it. The `Authorization` header is never recorded.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The JSON body; `Value::Null` when the body was empty or not JSON.
    pub body: Value,
    /// Last user message (chat) or prompt (completions); empty when there is none.
    pub prompt: String,
    /// Body fields outside the OpenAI parameters this server knows (e.g. vLLM's `top_k`).
    pub extra: Map<String, Value>,
    /// HTTP status answered.
    pub status: u16,
    pub received_at: SystemTime,
    /// Time from arrival to answer, injected latency included.
    pub duration: Duration,
}

/// A running fake server on 127.0.0.1. Dropping it stops the server abruptly; prefer
/// [`FakeOpenAi::shutdown`].
pub struct FakeOpenAi {
    addr: SocketAddr,
    /// `http` or `https`.
    scheme: &'static str,
    shared: Arc<server::Shared>,
    shutdown_tx: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeOpenAi {
    /// Starts the server on 127.0.0.1 with a port picked by the OS.
    pub async fn start(config: FakeConfig) -> std::io::Result<FakeOpenAi> {
        Self::start_on_port(config, 0).await
    }

    /// Starts the server on 127.0.0.1:`port` (0 lets the OS pick).
    pub async fn start_on_port(config: FakeConfig, port: u16) -> std::io::Result<FakeOpenAi> {
        Self::serve(config, port, None).await
    }

    /// Starts the server on 127.0.0.1 over TLS, presenting `pki`'s server certificate:
    /// [`FakeOpenAi::base_url`] is then `https://127.0.0.1:PORT/v1`.
    pub async fn start_tls(config: FakeConfig, pki: &TestPki) -> std::io::Result<FakeOpenAi> {
        Self::serve(config, 0, Some(pki.acceptor()?)).await
    }

    async fn serve(
        config: FakeConfig,
        port: u16,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<FakeOpenAi> {
        let tcp = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = tcp.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let shared = Arc::new(server::Shared::new(config));
        let listener = tls::CountingListener {
            tcp,
            tls,
            shared: shared.clone(),
        };
        let app = server::router(shared.clone());
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                // A dropped sender also means "stop".
                let _ = shutdown_rx.await;
            });
            if let Err(err) = serve.await {
                tracing::warn!(error = %err, "fake OpenAI server stopped with an error");
            }
        });
        tracing::debug!(%addr, "fake OpenAI server listening");
        Ok(FakeOpenAi {
            addr,
            scheme,
            shared,
            shutdown_tx: Some(shutdown_tx),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT/v1` (`https://` over TLS), the value for an OpenAI client's
    /// `base_url`.
    pub fn base_url(&self) -> String {
        format!("{}://{}/v1", self.scheme, self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn stats(&self) -> FakeStats {
        self.shared.stats()
    }

    /// Every request answered so far, in the order they were answered.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        server::lock(&self.shared.requests).clone()
    }

    /// Requests whose prompt text contains `needle` and that were answered 200.
    pub fn count_for_prompt(&self, needle: &str) -> usize {
        server::lock(&self.shared.requests)
            .iter()
            .filter(|r| r.status == 200 && r.prompt.contains(needle))
            .count()
    }

    /// Changes knobs at runtime; requests already running keep the config they started with.
    pub fn set_config(&self, f: impl FnOnce(&mut FakeConfig)) {
        let mut guard = self
            .shared
            .config
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut config = FakeConfig::clone(&guard);
        f(&mut config);
        *guard = Arc::new(config);
    }

    /// Resets the arrival counter that drives the fault schedule (not the stats).
    pub fn reset_schedule(&self) {
        self.shared.arrivals.store(0, Ordering::SeqCst);
    }

    /// Stops accepting connections and waits (up to 5 s) for answers in progress.
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

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
