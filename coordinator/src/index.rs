//! Segment indexing: the cache index (key -> segment) in the store is kept
//! up to date from the segments in the object store, and can be rebuilt
//! from them alone.

use chrono::Utc;
use jobs::RequestKey;
use uuid::Uuid;

use crate::coordinator::Coordinator;
use crate::error::CoordinatorError;
use crate::store::SegmentEntry;

/// What an index catch-up or rebuild did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    pub segments: u64,
    /// Successful records read.
    pub records: u64,
    /// Keys added to the index (a key already indexed is not counted).
    pub keys_indexed: u64,
    /// Segments that could not be read, with the reason.
    pub bad_segments: Vec<(String, String)>,
}

impl Coordinator {
    /// Indexes segments present in the object store but not yet in the index
    /// (a worker crashed between writing a segment and completing its shard).
    pub async fn index_new_segments(&self) -> Result<IndexStats, CoordinatorError> {
        let known = self.store().indexed_segments().await?;
        let all = cache::list_segments(self.objects().as_ref()).await?;
        let fresh: Vec<String> = all.into_iter().filter(|p| !known.contains(p)).collect();
        self.index_segments(fresh).await
    }

    /// Rebuilds the cache index from the object store alone.
    pub async fn reindex(&self) -> Result<IndexStats, CoordinatorError> {
        let all = cache::list_segments(self.objects().as_ref()).await?;
        self.store().clear_cache_index().await?;
        self.index_segments(all).await
    }

    async fn index_segments(&self, paths: Vec<String>) -> Result<IndexStats, CoordinatorError> {
        let mut stats = IndexStats::default();
        for path in paths {
            let keys = match cache::read_segment_keys(self.objects().as_ref(), &path).await {
                Ok(keys) => keys,
                Err(e) => {
                    tracing::warn!(segment = %path, error = %e, "skipping unreadable segment");
                    stats.bad_segments.push((path, e.to_string()));
                    continue;
                }
            };
            let name = cache::parse_segment_path(&path);
            let (job_id, shard_id, attempt) = (
                name.map(|n| n.job_id),
                name.map(|n| n.shard_id),
                name.map(|n| n.attempt),
            );
            stats.segments += 1;
            stats.records += keys.len() as u64;
            stats.keys_indexed += self
                .store()
                .index_segment(
                    &SegmentEntry {
                        path,
                        job_id,
                        shard_id,
                        attempt,
                        keys,
                    },
                    Utc::now(),
                )
                .await?;
        }
        Ok(stats)
    }

    /// Indexes the outputs of an attempt whose lease call was refused. The
    /// outputs are as good as any other attempt's (the key says what was
    /// asked), and indexing them means no later attempt pays for them
    /// again. Best effort: the shard's next attempt redoes whatever this
    /// misses.
    /// Indexes the segment of a refused lease call; the number of keys it
    /// added to the index (0 when they were all known: a repeated call).
    pub(crate) async fn index_refused(
        &self,
        job_id: Uuid,
        shard_id: Uuid,
        attempt: u32,
        segment: &str,
        written: &[RequestKey],
    ) -> u64 {
        if written.is_empty() {
            return 0;
        }
        let entry = SegmentEntry {
            path: segment.to_string(),
            job_id: Some(job_id),
            shard_id: Some(shard_id),
            attempt: Some(attempt),
            keys: written.to_vec(),
        };
        match self.store().index_segment(&entry, Utc::now()).await {
            Ok(added) => {
                tracing::info!(%shard_id, attempt, segment, added,
                    "indexed the outputs of a refused lease call");
                added
            }
            Err(e) => {
                tracing::warn!(%shard_id, attempt, segment, error = %e,
                    "cannot index the outputs of a refused lease call");
                0
            }
        }
    }
}
