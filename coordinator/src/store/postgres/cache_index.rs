//! [`CacheIndexStore`] on Postgres.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobs::RequestKey;
use sqlx::Row;
use std::collections::{HashMap, HashSet};

use super::{index_in, retry_busy, PostgresStore, KEY_BATCH};
use crate::store::rows::collect_key_texts;
use crate::store::{CacheIndexStore, SegmentEntry, StoreError};

#[async_trait]
impl CacheIndexStore for PostgresStore {
    async fn lookup_keys(
        &self,
        keys: &[RequestKey],
    ) -> Result<HashMap<RequestKey, String>, StoreError> {
        let mut found = HashMap::new();
        for batch in keys.chunks(KEY_BATCH) {
            let list: Vec<&str> = batch.iter().map(|k| k.as_str()).collect();
            let rows = sqlx::query(include_str!("cache_lookup.sql"))
                .bind(&list)
                .fetch_all(&self.pool)
                .await?;
            collect_key_texts(&rows, &mut found)?;
        }
        Ok(found)
    }

    async fn index_segment(
        &self,
        entry: &SegmentEntry,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        retry_busy("index segment", || async move {
            let mut tx = self.pool.begin().await?;
            let added = index_in(&mut tx, entry, now).await?;
            tx.commit().await?;
            Ok(added)
        })
        .await
    }

    async fn indexed_segments(&self) -> Result<HashSet<String>, StoreError> {
        let rows = sqlx::query(include_str!("segments_list.sql"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
    }

    async fn clear_cache_index(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(include_str!("cache_clear.sql"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(include_str!("segments_clear.sql"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
