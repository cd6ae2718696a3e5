//! The store's counts behind the Prometheus endpoint.

use async_trait::async_trait;

use super::StoreError;

/// Aggregates for the Prometheus endpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoreMetrics {
    pub jobs_by_state: Vec<(String, u64)>,
    pub shards_by_state: Vec<(String, u64)>,
    pub requests_completed: u64,
    pub requests_failed: u64,
    pub requests_cached: u64,
    pub cache_index_keys: u64,
}

/// Aggregates over jobs, shards, request counters and the cache index.
#[async_trait]
pub trait MetricsStore: Send + Sync {
    async fn metrics(&self) -> Result<StoreMetrics, StoreError>;
}
