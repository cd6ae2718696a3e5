//! What a fake Batch API does (timings, injected failures) and what it counts.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

/// A per-line failure injected by [`FakeBatchConfig::line_errors`].
#[derive(Debug, Clone)]
pub struct LineError {
    /// Lines whose prompt text contains this fail.
    pub needle: String,
    /// HTTP status of the line's response (e.g. 500 or 400).
    pub status: u16,
    /// How many times one request (by `custom_id`) fails before it succeeds.
    pub times: u32,
}

/// Knobs of the fake Batch API; change them at runtime with [`FakeBatchApi::set_batch_config`].
#[derive(Debug, Clone)]
pub struct FakeBatchConfig {
    /// Time a batch spends in `validating`.
    pub validating: Duration,
    /// Time a batch spends in `in_progress`; its lines complete evenly over it.
    pub in_progress: Duration,
    /// Time in `finalizing`.
    pub finalizing: Duration,
    /// Time in `cancelling` before `cancelled`.
    pub cancelling: Duration,
    /// A batch with a line whose prompt contains one of these fails validation.
    pub fail_validation_containing: Vec<String>,
    /// The first N batches created expire ...
    pub expire_first_batches: u64,
    /// ... this long after they started `in_progress` (keep it below `in_progress` for a
    /// partial output).
    pub expire_after: Duration,
    /// Per-line errors (in the error file).
    pub line_errors: Vec<LineError>,
    /// Lines whose prompt contains the text are left out of both files, the given number of
    /// times per request.
    pub drop_lines: Vec<(String, u32)>,
    /// Seed of the output order shuffle.
    pub shuffle_seed: u64,
    /// Most lines per input file (the API's limit is 50,000).
    pub max_lines: usize,
    /// Largest input file (the API's limit is 200 MB).
    pub max_file_bytes: u64,
    /// Input tokens a model may have in `in_progress`/`finalizing` batches at once; a batch that
    /// would exceed it fails validation with `token_limit_exceeded`, as OpenAI's does.
    pub enqueued_token_limit: Option<u64>,
}

impl Default for FakeBatchConfig {
    fn default() -> Self {
        FakeBatchConfig {
            validating: Duration::from_millis(100),
            in_progress: Duration::from_millis(300),
            finalizing: Duration::from_millis(100),
            cancelling: Duration::from_millis(100),
            fail_validation_containing: Vec::new(),
            expire_first_batches: 0,
            expire_after: Duration::from_millis(150),
            line_errors: Vec::new(),
            drop_lines: Vec::new(),
            shuffle_seed: 7,
            max_lines: 50_000,
            max_file_bytes: 200_000_000,
            enqueued_token_limit: None,
        }
    }
}

/// One batch as the stats show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatchSummary {
    pub id: String,
    /// sha256 of the batch's sorted `custom_id`s: which requests it holds.
    pub request_set: String,
    pub status: String,
    pub requests: usize,
    /// Input tokens (the fake tokenizer's count), as counted against
    /// [`FakeBatchConfig::enqueued_token_limit`].
    pub tokens: u64,
    /// `GET /batches/{id}` calls for it.
    pub polls: u64,
    pub metadata: Map<String, Value>,
}

/// Counters of the Batch API routes since start.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FakeBatchStats {
    /// `POST /files`.
    pub uploads: u64,
    pub upload_bytes: u64,
    /// `GET /files/{id}`.
    pub file_retrieves: u64,
    /// `GET /files/{id}/content`.
    pub downloads: u64,
    pub download_bytes: u64,
    /// `POST /batches` that created a batch.
    pub creates: u64,
    /// `POST /batches` answered with an error.
    pub create_errors: u64,
    /// `GET /batches/{id}` (polls).
    pub retrieves: u64,
    /// `GET /batches` pages.
    pub lists: u64,
    /// `POST /batches/{id}/cancel`.
    pub cancels: u64,
    /// Lines answered 200 / answered with an error / left out of both files.
    pub lines_ok: u64,
    pub lines_failed: u64,
    pub lines_dropped: u64,
    /// Most input tokens in progress at once for one model.
    pub max_enqueued_tokens: u64,
    /// Every batch, oldest first.
    pub batches: Vec<BatchSummary>,
    /// `custom_id` → lines answered 200 for it, over every batch.
    pub ok_per_custom_id: BTreeMap<String, u64>,
}

impl FakeBatchStats {
    /// Batches created per distinct request set.
    pub fn batches_per_request_set(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for b in &self.batches {
            *out.entry(b.request_set.clone()).or_insert(0) += 1;
        }
        out
    }

    /// The most batches any one request set was sent in (1 when nothing was paid twice).
    pub fn max_batches_per_request_set(&self) -> u64 {
        self.batches_per_request_set()
            .values()
            .copied()
            .max()
            .unwrap_or(0)
    }

    /// Summary without the per-request map, for printing.
    pub fn summary(&self) -> FakeBatchStats {
        FakeBatchStats {
            ok_per_custom_id: BTreeMap::new(),
            ..self.clone()
        }
    }
}
