//! `[model.batch]`: the `openai-batch` backend's settings (input file
//! limits, the enqueued-token cap, polling and retries) and the Batch API's
//! own limits they are checked against.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Most requests the Batch API accepts in one input file.
pub const API_MAX_REQUESTS_PER_FILE: u32 = 50_000;
/// Largest input file the Batch API accepts (200 MB, read as decimal
/// megabytes so that either reading of "MB" is respected).
pub const API_MAX_FILE_BYTES: u64 = 200_000_000;
/// The only completion window the Batch API offers.
pub const COMPLETION_WINDOW: &str = "24h";

/// How requests that failed inside a batch (or are missing from its output)
/// are sent again.
#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RetryWith {
    /// In a new batch of just those requests (batch price, up to 24 h more).
    #[default]
    Batch,
    /// Through the synchronous endpoint at once (full price).
    Sync,
}

/// `[model.batch]`.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderBatchSpec {
    /// Requests per input file; a shard with more is split over several
    /// batches. At most 50,000 (the API's limit).
    #[serde(default = "default_max_requests_per_file")]
    pub max_requests_per_file: u32,
    /// Bytes per input file; at most 200 MB (the API's limit).
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// Cap on estimated input tokens enqueued at once for this model across
    /// every worker (the provider's batch queue limit). Batches beyond it
    /// wait for earlier ones to finish, so a large job runs in waves
    /// instead of failing with a quota error. No cap when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_enqueued_tokens: Option<u64>,
    /// Seconds between polls of a batch while its status changes; doubles
    /// while it does not, up to `max_poll_interval_secs`.
    #[serde(default = "default_poll_interval_secs")]
    pub poll_interval_secs: f64,
    #[serde(default = "default_max_poll_interval_secs")]
    pub max_poll_interval_secs: f64,
    /// Rounds of retries for requests that failed in a batch or are missing
    /// from its output files.
    #[serde(default = "default_max_request_retries")]
    pub max_request_retries: u32,
    /// `batch` (a new batch) or `sync` (the synchronous endpoint).
    #[serde(default)]
    pub retry_with: RetryWith,
}

impl Default for ProviderBatchSpec {
    fn default() -> Self {
        ProviderBatchSpec {
            max_requests_per_file: default_max_requests_per_file(),
            max_file_bytes: default_max_file_bytes(),
            max_enqueued_tokens: None,
            poll_interval_secs: default_poll_interval_secs(),
            max_poll_interval_secs: default_max_poll_interval_secs(),
            max_request_retries: default_max_request_retries(),
            retry_with: RetryWith::Batch,
        }
    }
}

fn default_max_requests_per_file() -> u32 {
    API_MAX_REQUESTS_PER_FILE
}
fn default_max_file_bytes() -> u64 {
    API_MAX_FILE_BYTES
}
fn default_poll_interval_secs() -> f64 {
    30.0
}
fn default_max_poll_interval_secs() -> f64 {
    600.0
}
fn default_max_request_retries() -> u32 {
    2
}

impl ProviderBatchSpec {
    /// First delay between polls, in milliseconds.
    pub fn poll_interval_ms(&self) -> u64 {
        (self.poll_interval_secs * 1000.0).ceil() as u64
    }

    pub fn max_poll_interval_ms(&self) -> u64 {
        (self.max_poll_interval_secs * 1000.0).ceil() as u64
    }
}
