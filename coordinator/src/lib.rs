//! The Shardline coordinator: job store, planner, lease protocol, HTTP API
//! and rescoring from the cache.

mod batches;
mod coordinator;
mod docstream;
mod error;
pub mod estimate;
pub mod http;
mod planner;
mod rescore;
pub mod store;

pub use coordinator::{spec_hash, Coordinator, CoordinatorConfig, IndexStats, RecoveryStats};
pub use error::CoordinatorError;
pub use http::{router, serve};
pub use rescore::{rescore_spec, MissingRequest, RescoreOutcome, DEFAULT_BOOTSTRAP_SEED};
pub use store::{PostgresStore, SqliteStore, Store, StoreError};
