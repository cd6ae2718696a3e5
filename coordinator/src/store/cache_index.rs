//! The cache index: which segment holds the output of each request key, and
//! which segments were indexed.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobs::RequestKey;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

use super::StoreError;

/// A segment's successful keys, to add to the cache index.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentEntry {
    pub path: String,
    pub job_id: Option<Uuid>,
    pub shard_id: Option<Uuid>,
    pub attempt: Option<u32>,
    pub keys: Vec<RequestKey>,
}

/// The cache index tables. Every method is atomic.
#[async_trait]
pub trait CacheIndexStore: Send + Sync {
    /// The segment of every key that is in the cache index.
    async fn lookup_keys(
        &self,
        keys: &[RequestKey],
    ) -> Result<HashMap<RequestKey, String>, StoreError>;
    /// Adds a segment's keys to the index (first writer of a key wins) and
    /// records the segment as indexed. Returns how many keys were new.
    async fn index_segment(
        &self,
        entry: &SegmentEntry,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    async fn indexed_segments(&self) -> Result<HashSet<String>, StoreError>;
    /// Empties the cache index and the list of indexed segments.
    async fn clear_cache_index(&self) -> Result<(), StoreError>;
}
