//! [`MetricsStore`] on Postgres.

use async_trait::async_trait;

use super::PostgresStore;
use crate::store::rows::metrics_from_rows;
use crate::store::{MetricsStore, StoreError, StoreMetrics};

#[async_trait]
impl MetricsStore for PostgresStore {
    async fn metrics(&self) -> Result<StoreMetrics, StoreError> {
        let jobs = sqlx::query(include_str!("metrics_jobs.sql"))
            .fetch_all(&self.pool)
            .await?;
        let shards = sqlx::query(include_str!("metrics_shards.sql"))
            .fetch_all(&self.pool)
            .await?;
        let requests = sqlx::query(include_str!("metrics_requests.sql"))
            .fetch_one(&self.pool)
            .await?;
        metrics_from_rows(&jobs, &shards, &requests)
    }
}
