//! What a shard of the `openai-batch` backend keeps in the store once its
//! requests are in provider batches: its batches (one per input file), the
//! requests each one holds, and what is left to retry or failed for good.
//!
//! Lifecycle: a worker claims a shard
//! (`running`, with a lease), uploads its requests as one or more input
//! files, creates one batch per file and records the batch ids in the same
//! store step that moves the shard to `submitted`. A submitted shard holds
//! no lease: any worker takes a short *poll lease* on it, polls its
//! batches, downloads finished ones into cache segments, starts retry
//! rounds, and finally completes, fails or cancels the shard. The bodies of
//! those steps are in `crate::protocol::provider_batch`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::request::InferenceRequest;

/// Sorted, disjoint, half-open ranges of indices into a shard's request
/// list. A shard's parts are contiguous in the common case, so the state
/// stays a few bytes however many requests a part holds.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(transparent)]
pub struct IndexRanges(pub Vec<(u32, u32)>);

impl IndexRanges {
    /// The ranges covering `indices` (any order, duplicates allowed).
    pub fn from_indices(mut indices: Vec<u32>) -> IndexRanges {
        indices.sort_unstable();
        indices.dedup();
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for i in indices {
            match ranges.last_mut() {
                Some((_, end)) if *end == i => *end = i + 1,
                _ => ranges.push((i, i + 1)),
            }
        }
        IndexRanges(ranges)
    }

    pub fn len(&self) -> usize {
        self.0
            .iter()
            .map(|(a, b)| b.saturating_sub(*a) as usize)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().flat_map(|&(a, b)| a..b)
    }

    /// Whether every index is below `len`.
    pub fn fits(&self, len: usize) -> bool {
        self.0.iter().all(|&(a, b)| a <= b && (b as usize) <= len)
    }
}

/// Requests that share one error.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Eq)]
pub struct ErrorGroup {
    pub error: String,
    pub requests: IndexRanges,
}

/// Adds `index` to the group of `error` (created when new).
pub fn add_to_group(groups: &mut Vec<ErrorGroup>, error: &str, indices: Vec<u32>) {
    if indices.is_empty() {
        return;
    }
    match groups.iter_mut().find(|g| g.error == error) {
        Some(group) => {
            let mut all: Vec<u32> = group.requests.iter().collect();
            all.extend(indices);
            group.requests = IndexRanges::from_indices(all);
        }
        None => groups.push(ErrorGroup {
            error: error.to_string(),
            requests: IndexRanges::from_indices(indices),
        }),
    }
}

/// One input file and its batch.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct BatchPart {
    /// Position in its round.
    pub index: u32,
    /// sha256 over the job, shard, round and the part's request keys in
    /// order: the batch's identity. Written into the batch's metadata, so a
    /// worker that crashed between creating a batch and recording it finds
    /// it again by listing batches instead of creating a second one.
    pub request_set: String,
    pub requests: IndexRanges,
    /// Estimated input tokens (counted against `max_enqueued_tokens`).
    pub tokens: u64,
    /// Set (worker clock, Unix ms) before a poller creates the batch; a
    /// later poller seeing it without `batch_id` lists batches first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_started_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_file_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    /// Last status seen (`validating`, `in_progress`, …, `completed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Result files, once the batch names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_file_id: Option<String>,
    /// `request_counts` of the last poll.
    #[serde(default)]
    pub completed: u64,
    #[serde(default)]
    pub failed: u64,
    /// Its results are downloaded, written to a segment and indexed.
    #[serde(default)]
    pub done: bool,
}

impl BatchPart {
    /// Whether the batch reached a status it never leaves.
    pub fn is_terminal(&self) -> bool {
        self.status.as_deref().is_some_and(is_terminal_status)
    }

    /// Created, not finished: its tokens count against the enqueued cap.
    pub fn is_enqueued(&self) -> bool {
        self.batch_id.is_some() && !self.is_terminal()
    }
}

/// Statuses a batch never leaves.
pub fn is_terminal_status(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "expired" | "cancelled")
}

/// Everything a submitted shard keeps in the store.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, Default, PartialEq)]
pub struct BatchShardState {
    /// The lease attempt that submitted the shard (named in metadata and
    /// segment paths).
    pub attempt: u32,
    /// 0 for the first batches, n for the n-th retry round.
    pub round: u32,
    pub parts: Vec<BatchPart>,
    /// Requests to send again in the next round, by error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry: Vec<ErrorGroup>,
    /// Requests that failed for good, by error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<ErrorGroup>,
    /// Set when a batch failed: the shard fails with it once the other
    /// batches are processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fatal: Option<String>,
    /// Current delay between polls (grows while nothing changes).
    #[serde(default)]
    pub poll_delay_ms: u64,
}

impl BatchShardState {
    /// Estimated input tokens of the batches created and not finished.
    pub fn enqueued_tokens(&self) -> u64 {
        self.parts
            .iter()
            .filter(|p| p.is_enqueued())
            .map(|p| p.tokens)
            .fold(0u64, u64::saturating_add)
    }
}

/// The shard requests at `ranges` (indices past the end are skipped; the
/// callers check [`IndexRanges::fits`] first).
pub fn pick<'a>(
    requests: &'a [InferenceRequest],
    ranges: &'a IndexRanges,
) -> impl Iterator<Item = (u32, &'a InferenceRequest)> + 'a {
    ranges
        .iter()
        .filter_map(move |i| requests.get(i as usize).map(|r| (i, r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_count() {
        let r = IndexRanges::from_indices(vec![5, 1, 2, 3, 9, 2, 10]);
        assert_eq!(r.0, vec![(1, 4), (5, 6), (9, 11)]);
        assert_eq!(r.len(), 6);
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![1, 2, 3, 5, 9, 10]);
        assert!(r.fits(11));
        assert!(!r.fits(10));
        assert!(IndexRanges::default().is_empty());
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "[[1,4],[5,6],[9,11]]");
    }

    #[test]
    fn groups_collect_by_error() {
        let mut groups = Vec::new();
        add_to_group(&mut groups, "a", vec![1, 2]);
        add_to_group(&mut groups, "b", vec![7]);
        add_to_group(&mut groups, "a", vec![3]);
        add_to_group(&mut groups, "c", vec![]);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].requests.0, vec![(1, 4)]);
    }

    #[test]
    fn terminal_statuses() {
        for s in ["completed", "failed", "expired", "cancelled"] {
            assert!(is_terminal_status(s));
        }
        for s in ["validating", "in_progress", "finalizing", "cancelling"] {
            assert!(!is_terminal_status(s));
        }
    }
}
