//! [`LeadershipStore`] on Postgres.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Duration;

use super::{retry_busy, PostgresStore};
use crate::store::rows::lease_end;
use crate::store::{LeadershipStore, StoreError, LEADER_DUTIES};

#[async_trait]
impl LeadershipStore for PostgresStore {
    async fn try_acquire_leadership(
        &self,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let until = lease_end(now, ttl);
        let row = retry_busy("leadership", || async move {
            sqlx::query(include_str!("leader_acquire.sql"))
                .bind(LEADER_DUTIES)
                .bind(holder)
                .bind(until)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::from)
        })
        .await?;
        Ok(row.is_some())
    }

    async fn release_leadership(&self, holder: &str) -> Result<(), StoreError> {
        sqlx::query(include_str!("leader_release.sql"))
            .bind(LEADER_DUTIES)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
