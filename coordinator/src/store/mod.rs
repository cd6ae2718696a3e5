//! The coordinator's database: jobs, shards and their leases, the cache
//! index, request failures, leadership and the provider-batch lifecycle, each
//! behind a role trait, with two implementations: SQLite (one machine) and
//! Postgres (several coordinator replicas, workers on many machines).
//!
//! The traits speak in domain values (job and shard states, lease fences,
//! request keys) and take `now` as an argument, so that both implementations
//! run the same conformance suite with a controlled clock. Policies (lease
//! length, retry backoff, leader lease) are decided by the caller and passed
//! in; the store only records them. [`Store`] gathers the roles, for callers
//! that hold the whole store (`Arc<dyn Store>`).

mod backoff;
mod cache_index;
mod claimant;
mod error;
mod failures;
mod jobs;
mod judge;
mod leadership;
mod leases;
mod metrics;
mod model_pattern;
pub mod postgres;
pub mod provider_batch;
mod rows;
mod schedule;
pub mod sqlite;

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;

pub use backoff::Backoff;
pub use cache_index::{CacheIndexStore, SegmentEntry};
pub use claimant::Claimant;
pub use error::StoreError;
pub use failures::{FailureStore, RequestFailure};
pub use jobs::{JobRecord, JobStore, NewJob, NewShard, PlanTotals, ShardRecord};
pub use judge::{ChildJob, JudgeStage, JudgeStore, NewJudgeItem, ReadyJudgeItem};
pub use leadership::{LeadershipStore, LEADER_DUTIES};
pub use leases::{
    ClaimedShard, Completion, ExpiredLease, HeartbeatOutcome, LeaseFence, LeaseStore, Partial,
    ReapOutcome,
};
pub use metrics::{MetricsStore, StoreMetrics};
pub use model_pattern::ModelPattern;
#[cfg(any(test, feature = "test-support"))]
pub use postgres::ScratchDatabase;
pub use postgres::{PostgresOptions, PostgresStore};
pub use provider_batch::{
    BatchEnd, BatchFence, BatchSubmission, BatchUpdate, ClaimedPoll, PollClaim, PollFence,
    ProviderBatchStore,
};
pub use schedule::{
    FireOutcome, NewScheduleRecord, ScheduleFire, ScheduleRecord, ScheduleRun, ScheduleStore,
};
pub use sqlite::SqliteStore;

use std::path::Path;
use std::sync::Arc;

/// Opens the store named by `database_url`: `postgres://…` or
/// `postgresql://…` for Postgres, `sqlite://PATH`, `sqlite:PATH` or a plain
/// file path for SQLite. Migrations are applied either way.
pub async fn open(database_url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::connect(database_url).await?));
    }
    let path = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .unwrap_or(database_url);
    if path.is_empty() || path.contains("://") {
        return Err(StoreError::Unavailable(format!(
            "unsupported database URL {:?}: use postgres://USER@HOST:PORT/DB or a SQLite file path",
            postgres::redact_url(database_url)
        )));
    }
    Ok(Arc::new(SqliteStore::open(Path::new(path)).await?))
}

/// The whole store: every role. Implementations must make every method
/// atomic: a crash between two calls never leaves a half-applied one.
pub trait Store:
    JobStore
    + JudgeStore
    + LeaseStore
    + CacheIndexStore
    + LeadershipStore
    + FailureStore
    + MetricsStore
    + ProviderBatchStore
    + ScheduleStore
    + std::fmt::Debug
{
}

impl<T> Store for T where
    T: JobStore
        + JudgeStore
        + LeaseStore
        + CacheIndexStore
        + LeadershipStore
        + FailureStore
        + MetricsStore
        + ProviderBatchStore
        + ScheduleStore
        + std::fmt::Debug
{
}
