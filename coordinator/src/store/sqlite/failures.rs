//! [`FailureStore`] on SQLite.

use async_trait::async_trait;
use jobs::RequestKey;
use sqlx::Row;
use std::collections::HashMap;
use uuid::Uuid;

use super::{keys_json, parse_uuid, SqliteStore, KEY_BATCH};
use crate::store::rows::collect_key_texts;
use crate::store::{FailureStore, RequestFailure, StoreError};

#[async_trait]
impl FailureStore for SqliteStore {
    async fn job_failures(
        &self,
        job_id: Uuid,
        limit: u64,
    ) -> Result<Vec<RequestFailure>, StoreError> {
        let rows = sqlx::query(include_str!("job_failures.sql"))
            .bind(job_id.to_string())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(RequestFailure {
                    job_id: parse_uuid("request_failures", &row.try_get::<String, _>(0)?)?,
                    key: RequestKey(row.try_get(1)?),
                    shard_id: parse_uuid("request_failures", &row.try_get::<String, _>(2)?)?,
                    error: row.try_get(3)?,
                })
            })
            .collect()
    }

    async fn failures_for_keys(
        &self,
        keys: &[RequestKey],
    ) -> Result<HashMap<RequestKey, String>, StoreError> {
        let mut found = HashMap::new();
        for batch in keys.chunks(KEY_BATCH) {
            let rows = sqlx::query(include_str!("failures_for_keys.sql"))
                .bind(keys_json(batch))
                .fetch_all(&self.pool)
                .await?;
            // Ordered oldest first, so the latest error of a key wins.
            collect_key_texts(&rows, &mut found)?;
        }
        Ok(found)
    }
}
