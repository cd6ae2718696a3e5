//! [`MetricsStore`] on Postgres.

use async_trait::async_trait;

use super::PostgresStore;
use crate::store::rows::{fetch_metrics, MetricsSql};
use crate::store::{MetricsStore, StoreError, StoreMetrics};

const METRICS_SQL: MetricsSql = MetricsSql {
    jobs: include_str!("metrics_jobs.sql"),
    shards: include_str!("metrics_shards.sql"),
    requests: include_str!("metrics_requests.sql"),
};

#[async_trait]
impl MetricsStore for PostgresStore {
    async fn metrics(&self) -> Result<StoreMetrics, StoreError> {
        fetch_metrics(&self.pool, METRICS_SQL).await
    }
}
