//! The Shardline coordinator: job store, planner, lease protocol, HTTP API,
//! leadership and the reaper, segment indexing, metrics and rescoring from
//! the cache.

mod config;
mod coordinator;
mod data_access;
mod docstream;
pub mod embedded;
mod error;
pub mod estimate;
pub mod http;
mod index;
mod job_models;
mod judge_stage;
mod leader;
mod lease;
mod limits;
mod metrics;
mod plan_signal;
mod planner;
mod provider_batch;
mod reaper;
mod rescore;
mod schedules;
mod segment_cache;
mod server;
mod shard_keys;
pub mod store;
mod submission;

pub use config::{
    check_tokens, default_heartbeat_secs, CoordinatorConfig, TokenRole, TokenRule,
    DEFAULT_LEASE_SECS, DEFAULT_REAPER_INTERVAL, MIN_TOKEN_BYTES,
};
pub use coordinator::{spec_hash, Coordinator};
pub use error::CoordinatorError;
pub use http::{router, serve};
pub use index::IndexStats;
pub use limits::{
    JobLimits, DEFAULT_MAX_SAMPLES_PER_DOC, DEFAULT_MAX_SHARD_SIZE, DEFAULT_MAX_SPEC_BYTES,
    DEFAULT_MAX_TOKENS,
};
pub use reaper::RecoveryStats;
pub use rescore::{rescore_spec, MissingRequest, RescoreOutcome, DEFAULT_BOOTSTRAP_SEED};
pub use server::Server;
pub use store::{PostgresStore, SqliteStore, Store, StoreError};
