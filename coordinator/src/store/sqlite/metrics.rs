//! [`MetricsStore`] on SQLite.

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::rows::{fetch_metrics, MetricsSql};
use crate::store::{MetricsStore, StoreError, StoreMetrics};

#[async_trait]
impl MetricsStore for SqliteStore {
    async fn metrics(&self) -> Result<StoreMetrics, StoreError> {
        let sql = MetricsSql {
            jobs: include_str!("metrics_jobs.sql"),
            shards: include_str!("metrics_shards.sql"),
            requests: include_str!("metrics_requests.sql"),
        };
        fetch_metrics(&self.pool, sql).await
    }
}
