//! A tiny LRU of decoded segments (successful outputs only), so that
//! reading the outputs of many keys decodes each segment once while memory
//! stays bounded: rescoring, judging and dry-run estimates read through it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use jobs::{InferenceOutput, RequestKey};

use crate::error::CoordinatorError;
use crate::store::Store;

/// Decoded segments kept.
const SEGMENT_LRU: usize = 8;

pub(crate) type DecodedSegment = Arc<HashMap<RequestKey, InferenceOutput>>;

#[derive(Default)]
pub(crate) struct SegmentCache {
    entries: VecDeque<(String, DecodedSegment)>,
}

impl SegmentCache {
    pub(crate) async fn get(
        &mut self,
        objects: &dyn cache::ObjectStore,
        path: &str,
    ) -> Result<DecodedSegment, cache::SegmentError> {
        if let Some(pos) = self.entries.iter().position(|(p, _)| p == path) {
            if let Some(entry) = self.entries.remove(pos) {
                let decoded = entry.1.clone();
                self.entries.push_front(entry);
                return Ok(decoded);
            }
        }
        let records = cache::read_segment(objects, path).await?;
        let decoded: DecodedSegment = Arc::new(
            records
                .into_iter()
                .filter_map(|r| match (r.output, r.error) {
                    (Some(output), None) => Some((r.key, output)),
                    _ => None,
                })
                .collect(),
        );
        self.entries.push_front((path.to_string(), decoded.clone()));
        self.entries.truncate(SEGMENT_LRU);
        Ok(decoded)
    }

    /// The outputs of `keys` that the cache holds, read through the index.
    /// A segment that cannot be read counts its outputs as missing (see
    /// [`SegmentCache::read_outputs_strict`]).
    pub(crate) async fn read_outputs(
        &mut self,
        store: &dyn Store,
        objects: &dyn cache::ObjectStore,
        keys: &[RequestKey],
    ) -> Result<HashMap<RequestKey, InferenceOutput>, CoordinatorError> {
        self.read(store, objects, keys, false).await
    }

    /// [`SegmentCache::read_outputs`], failing when an indexed segment
    /// cannot be read (the object store is down, the segment is gone): for
    /// callers that would otherwise act on the outputs' absence for good.
    pub(crate) async fn read_outputs_strict(
        &mut self,
        store: &dyn Store,
        objects: &dyn cache::ObjectStore,
        keys: &[RequestKey],
    ) -> Result<HashMap<RequestKey, InferenceOutput>, CoordinatorError> {
        self.read(store, objects, keys, true).await
    }

    async fn read(
        &mut self,
        store: &dyn Store,
        objects: &dyn cache::ObjectStore,
        keys: &[RequestKey],
        strict: bool,
    ) -> Result<HashMap<RequestKey, InferenceOutput>, CoordinatorError> {
        let index = store.lookup_keys(keys).await?;
        let mut by_segment: HashMap<&str, Vec<&RequestKey>> = HashMap::new();
        for (key, segment) in &index {
            by_segment.entry(segment.as_str()).or_default().push(key);
        }
        let mut outputs: HashMap<RequestKey, InferenceOutput> = HashMap::new();
        for (segment, wanted) in by_segment {
            match self.get(objects, segment).await {
                Ok(decoded) => {
                    for key in wanted {
                        if let Some(output) = decoded.get(key) {
                            outputs.insert(key.clone(), output.clone());
                        }
                    }
                }
                Err(e) if strict => {
                    return Err(CoordinatorError::Internal(format!(
                        "cannot read the indexed segment {segment}: {e}; if it is gone, \
                         `shardline cache reindex` rebuilds the index from the object store"
                    )))
                }
                // The index points at a segment that is gone or corrupt: its
                // outputs count as missing (`cache reindex` repairs the index).
                Err(e) => tracing::warn!(segment, error = %e, "cannot read indexed segment"),
            }
        }
        Ok(outputs)
    }
}
