//! Shardline worker: claims shards from the coordinator over HTTP, runs
//! their requests on a backend (Shardline's engine, an OpenAI-compatible
//! endpoint, or the OpenAI Batch API),
//! heartbeats while it works, writes one cache segment per shard attempt and
//! completes the lease, fenced on the attempt number.
//!
//! - [`backend`]: the [`Backend`] trait and its implementations (`engine`,
//!   `openai`, `openai-batch`).
//! - [`worker`]: the claim / run / complete loop with graceful shutdown.
//!
//! The coordinator's HTTP client is the `client` crate; its types are
//! re-exported here for the crates that already name them through `worker`.

pub mod backend;
pub mod worker;

pub use backend::{build_backend, Backend, BackendError, OpenAiBackend};
pub use client::{Backoff, ClientError, CoordinatorClient, LeaseOutcome, RetryPolicy};
pub use worker::{
    BackendCache, BackendFactory, Worker, WorkerConfig, WorkerError, WorkerStats, CLAIM_AHEAD,
    DEFAULT_MAX_CONCURRENT_SHARDS,
};
