//! Shardline worker: claims shards from the coordinator over HTTP, runs
//! their requests on a backend (Shardline's engine, an OpenAI-compatible
//! endpoint, or the OpenAI Batch API),
//! heartbeats while it works, writes one cache segment per shard attempt and
//! completes the lease, fenced on the attempt number.
//!
//! - [`client`]: the coordinator HTTP client (job API and lease API).
//! - [`backend`]: the [`Backend`] trait and its implementations (`engine`,
//!   `openai`, `openai-batch`).
//! - [`worker`]: the claim / run / complete loop with graceful shutdown.
//! - [`retry`]: backoff and `Retry-After` parsing shared by both.

pub mod backend;
pub mod client;
pub mod retry;
pub mod worker;

pub use backend::{build_backend, Backend, BackendError, OpenAiBackend};
pub use client::{ClientError, CoordinatorClient, LeaseOutcome, RetryPolicy};
pub use retry::Backoff;
pub use worker::{
    BackendCache, BackendFactory, Worker, WorkerConfig, WorkerError, WorkerStats, CLAIM_AHEAD,
    DEFAULT_MAX_CONCURRENT_SHARDS,
};

/// At most `max` characters of `text`, with an ellipsis when cut.
pub(crate) fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// An error and its sources on one line (reqwest hides the useful part, e.g.
/// "connection refused", in the source chain).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = inner.source();
    }
    out
}
