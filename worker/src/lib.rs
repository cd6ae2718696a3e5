//! Shardline worker: claims shards from the coordinator over HTTP, runs
//! their requests on a backend (Shardline's engine, an OpenAI-compatible
//! endpoint, or the OpenAI Batch API),
//! heartbeats while it works, writes one cache segment per shard attempt and
//! completes the lease, fenced on the attempt number.
//!
//! - [`backend`]: the [`Backend`] trait and its implementations (`engine`,
//!   `openai`, `openai-batch`).
//! - [`worker`]: the claim loop with graceful shutdown; it knows backends
//!   only through the [`Backend`] trait.
//! - [`stats`]: [`WorkerStats`]; `heartbeat`: the one lease-renewing loop.
//!
//! The coordinator's HTTP client is the `client` crate.

pub mod backend;
mod heartbeat;
pub mod stats;
pub mod worker;

pub use backend::{
    build_backend, Backend, BackendCache, BackendError, BackendFactory, OpenAiBackend, CLAIM_AHEAD,
};
pub use stats::WorkerStats;
pub use worker::{Worker, WorkerConfig, WorkerError, DEFAULT_MAX_CONCURRENT_SHARDS};
