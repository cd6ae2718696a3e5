//! The `openai-batch` backend's domain: its `[model.batch]` settings, the
//! state a submitted shard keeps in the store (its batches, their requests,
//! what is left to retry), and the coordinator ↔ worker bodies of the batch
//! routes.
//!
//! Lifecycle (DESIGN.md): a worker claims a shard (`running`, with a lease),
//! uploads its requests as one or more input files, creates one batch per
//! file and records the batch ids in the same store step that moves the
//! shard to `submitted`. A submitted shard holds no lease: any worker takes
//! a short *poll lease* on it (`POST /v1/batches/claim`), polls its batches,
//! downloads finished ones into cache segments, starts retry rounds, and
//! finally completes, fails or cancels the shard.
//!
//! Routes (worker token, all `POST`, 409 when the holder's fence no longer
//! matches):
//! - `/v1/batches/reserve` ([`BatchReserveRequest`] → [`BatchReserveResponse`]):
//!   room under the model's enqueued-token cap.
//! - `/v1/batches/submit` ([`BatchSubmitRequest`] → [`BatchAccepted`]):
//!   `running` → `submitted`, batch ids recorded.
//! - `/v1/batches/requests` ([`BatchRequestsRequest`] → `Vec<InferenceRequest>`):
//!   the shard's requests in planned order; [`IndexRanges`] index this list.
//! - `/v1/batches/claim` ([`BatchClaimRequest`] → [`BatchClaimResponse`]):
//!   poll leases on submitted shards that are due (or whose job stopped).
//! - `/v1/batches/heartbeat` ([`BatchHeartbeatRequest`] → [`BatchHeartbeatResponse`]).
//! - `/v1/batches/update` ([`BatchUpdateRequest`] → [`BatchAccepted`]):
//!   new state, outputs to index, next poll time.
//! - `/v1/batches/finish` ([`BatchFinishRequest`] → [`BatchFinishResponse`]).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::protocol::{FailedRequest, JobState, PartialOutputs, ShardState, WorkerCapabilities};
use crate::request::InferenceRequest;
use crate::spec::{BackendKind, ModelSpec};
use crate::spec_load::SpecError;

/// Most requests the Batch API accepts in one input file.
pub const API_MAX_REQUESTS_PER_FILE: u32 = 50_000;
/// Largest input file the Batch API accepts (200 MB, read as decimal
/// megabytes so that either reading of "MB" is respected).
pub const API_MAX_FILE_BYTES: u64 = 200_000_000;
/// The only completion window the Batch API offers.
pub const COMPLETION_WINDOW: &str = "24h";

/// How requests that failed inside a batch (or are missing from its output)
/// are sent again.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RetryWith {
    /// In a new batch of just those requests (batch price, up to 24 h more).
    #[default]
    Batch,
    /// Through the synchronous endpoint at once (full price).
    Sync,
}

/// `[model.batch]`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BatchSpec {
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

impl Default for BatchSpec {
    fn default() -> Self {
        BatchSpec {
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

impl BatchSpec {
    /// The settings of `model`, defaults when it has no `[model.batch]`.
    pub fn of(model: &ModelSpec) -> BatchSpec {
        model.batch.clone().unwrap_or_default()
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        if self.max_requests_per_file == 0 || self.max_requests_per_file > API_MAX_REQUESTS_PER_FILE
        {
            return Err(SpecError::invalid(
                "model.batch.max_requests_per_file",
                format!(
                    "{} is out of range; give 1 to {API_MAX_REQUESTS_PER_FILE} (the Batch API's \
                     limit per input file)",
                    self.max_requests_per_file
                ),
            ));
        }
        // One line needs room for its envelope at least.
        if self.max_file_bytes < 1024 || self.max_file_bytes > API_MAX_FILE_BYTES {
            return Err(SpecError::invalid(
                "model.batch.max_file_bytes",
                format!(
                    "{} is out of range; give 1024 to {API_MAX_FILE_BYTES} (the Batch API's \
                     limit per input file)",
                    self.max_file_bytes
                ),
            ));
        }
        if self.max_enqueued_tokens == Some(0) {
            return Err(SpecError::invalid(
                "model.batch.max_enqueued_tokens",
                "must be at least 1 (leave it out for no cap)",
            ));
        }
        let interval_ok = |v: f64| v.is_finite() && v > 0.0;
        if !interval_ok(self.poll_interval_secs) {
            return Err(SpecError::invalid(
                "model.batch.poll_interval_secs",
                "must be a number of seconds above 0",
            ));
        }
        if !interval_ok(self.max_poll_interval_secs)
            || self.max_poll_interval_secs < self.poll_interval_secs
        {
            return Err(SpecError::invalid(
                "model.batch.max_poll_interval_secs",
                "must be a number of seconds at least poll_interval_secs",
            ));
        }
        Ok(())
    }

    /// First delay between polls, in milliseconds.
    pub fn poll_interval_ms(&self) -> u64 {
        (self.poll_interval_secs * 1000.0).ceil() as u64
    }

    pub fn max_poll_interval_ms(&self) -> u64 {
        (self.max_poll_interval_secs * 1000.0).ceil() as u64
    }
}

/// Spec checks of the batch backend, called by `JobSpec::validate`.
pub(crate) fn validate_model(model: &ModelSpec) -> Result<(), SpecError> {
    if let Some(batch) = &model.batch {
        if model.backend != BackendKind::OpenaiBatch {
            return Err(SpecError::invalid(
                "model.batch",
                format!(
                    "is only read by backend = \"openai-batch\", but the backend is {:?}; remove \
                     [model.batch] or change the backend",
                    model.backend.as_str()
                ),
            ));
        }
        batch.validate()?;
    }
    if let Some(price) = &model.price {
        price.validate()?;
    }
    Ok(())
}

/// Sorted, disjoint, half-open ranges of indices into a shard's request
/// list. A shard's parts are contiguous in the common case, so the state
/// stays a few bytes however many requests a part holds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
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
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
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
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
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
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
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

/// Who holds a shard during a batch operation: the claim's lease (before
/// the shard is submitted) or a poll lease (after).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BatchHolder {
    Lease { attempt: u32 },
    Poll { poll_seq: u64 },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BatchReserveRequest {
    pub worker_id: String,
    pub shard_id: Uuid,
    pub holder: BatchHolder,
    /// Groups shards that share a provider quota (base URL and model).
    pub model_key: String,
    pub cap: u64,
    /// Tokens of this shard's batches already enqueued.
    pub base_tokens: u64,
    /// Tokens of the batches the caller wants to create, in order.
    pub wanted: Vec<u64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BatchReserveResponse {
    /// How many of `wanted` (a prefix) may be created now.
    pub granted: u32,
    /// Tokens enqueued by other shards of the model.
    pub enqueued_elsewhere: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BatchSubmitRequest {
    pub worker_id: String,
    pub shard_id: Uuid,
    pub attempt: u32,
    pub state: BatchShardState,
    pub model_key: String,
    /// First poll after this many milliseconds.
    pub next_poll_in_ms: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BatchAccepted {
    pub accepted: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BatchRequestsRequest {
    pub worker_id: String,
    pub shard_id: Uuid,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BatchClaimRequest {
    pub worker_id: String,
    pub capabilities: WorkerCapabilities,
    pub max: u32,
}

/// A poll lease on a submitted shard.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BatchPoll {
    pub shard_id: Uuid,
    pub job_id: Uuid,
    /// Fencing token of the poll lease.
    pub poll_seq: u64,
    pub lease_expires_at: String,
    pub heartbeat_interval_secs: u64,
    /// `running`, or the state that tells the poller to cancel.
    pub job_state: JobState,
    pub model: ModelSpec,
    pub state: BatchShardState,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BatchClaimResponse {
    pub polls: Vec<BatchPoll>,
    /// When nothing was due: milliseconds until the next submitted shard is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_due_in_ms: Option<u64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BatchHeartbeatRequest {
    pub worker_id: String,
    pub shard_id: Uuid,
    pub poll_seq: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BatchHeartbeatResponse {
    pub keep_going: bool,
    pub job_state: Option<JobState>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BatchUpdateRequest {
    pub worker_id: String,
    pub shard_id: Uuid,
    pub poll_seq: u64,
    pub state: BatchShardState,
    /// Keep the poll lease (more work follows, e.g. creating a batch right
    /// after recording the intent); otherwise it ends and the shard is due
    /// again in `next_poll_in_ms`.
    #[serde(default)]
    pub keep_lease: bool,
    pub next_poll_in_ms: u64,
    /// Outputs written to a segment by this pass, to index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<PartialOutputs>,
}

/// How a submitted shard ends.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum BatchOutcome {
    /// Every request has an output or a final error.
    Completed { failed: Vec<FailedRequest> },
    /// A batch failed (e.g. validation): the shard dies and its job fails.
    Failed { error: String },
    /// The job stopped; the batches were cancelled and their finished part
    /// kept.
    Cancelled,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BatchFinishRequest {
    pub worker_id: String,
    pub shard_id: Uuid,
    pub poll_seq: u64,
    pub outcome: BatchOutcome,
    /// Outputs written by this last pass, to index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<PartialOutputs>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BatchFinishResponse {
    pub accepted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ShardState>,
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
    fn spec_limits_are_checked() {
        let mut spec = BatchSpec::default();
        assert!(spec.validate().is_ok());
        spec.max_requests_per_file = 50_001;
        let e = spec.validate().unwrap_err().to_string();
        assert!(e.contains("max_requests_per_file"), "{e}");
        let mut spec = BatchSpec {
            poll_interval_secs: 10.0,
            max_poll_interval_secs: 5.0,
            ..BatchSpec::default()
        };
        assert!(spec.validate().is_err());
        spec.max_poll_interval_secs = 10.0;
        assert!(spec.validate().is_ok());
        assert_eq!(spec.poll_interval_ms(), 10_000);
    }

    fn spec(model: &str) -> Result<crate::JobSpec, SpecError> {
        crate::JobSpec::from_toml_str(
            &format!(
                r#"
name = "t"
[model]
{model}
[dataset]
path = "d.jsonl"
[task]
kind = "generate"
prompt = "{{{{ q }}}}"
"#
            ),
            "job.toml",
            None,
        )
    }

    #[test]
    fn the_spec_names_the_batch_backend_and_checks_its_section() {
        let ok = spec(
            "backend = \"openai-batch\"\nmodel = \"m\"\nbase_url = \"http://x/v1\"\n\
             [model.batch]\nmax_requests_per_file = 10\nretry_with = \"sync\"\n\
             [model.price]\ninput_per_million = 1.0\noutput_per_million = 2.0",
        )
        .unwrap();
        assert_eq!(ok.model.backend, BackendKind::OpenaiBatch);
        let batch = BatchSpec::of(&ok.model);
        assert_eq!(batch.max_requests_per_file, 10);
        assert_eq!(batch.retry_with, RetryWith::Sync);
        assert_eq!(batch.max_file_bytes, API_MAX_FILE_BYTES);
        let e = spec("backend = \"openai-batch\"\nmodel = \"m\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("model.base_url"), "{e}");
        let e = spec(
            "backend = \"openai\"\nmodel = \"m\"\nbase_url = \"http://x/v1\"\n\
             [model.batch]\nmax_requests_per_file = 10",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`model.batch`") && e.contains("openai-batch"),
            "{e}"
        );
        let e = spec(
            "backend = \"openai-batch\"\nmodel = \"m\"\nbase_url = \"http://x/v1\"\n\
             [model.batch]\nmax_requests_per_file = 60000",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("job.toml:") && e.contains("50000"), "{e}");
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
