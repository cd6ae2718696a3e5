//! Bodies of the job API (admin token): submitting a job, its status and
//! counts, its results.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::cost::CostSummary;
use super::state::{FailureKind, JobState};
use crate::output::Usage;
use crate::results::MetricsReport;
use crate::spec::JobSpec;

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
#[schema(example = json!({
    "spec": {
        "name": "qa",
        "model": {"backend": "openai", "model": "gpt-4o-mini", "api_key_env": "OPENAI_API_KEY"},
        "dataset": {"path": "/data/questions.jsonl", "id_field": "id"},
        "task": {
            "kind": "generate",
            "messages": [{"role": "user", "content": "Question: {{ question }}"}],
            "target": "{{ answer }}"
        },
        "metrics": [{"type": "exact_match", "normalize": ["strip", "lowercase"]}]
    },
    "priority": 0
}))]
pub struct SubmitJobRequest {
    pub spec: JobSpec,
    /// Higher is served first; jobs of equal priority share the workers
    /// fairly. Absent means 0.
    #[serde(default)]
    pub priority: i32,
}

/// Progress counts of a job, in requests unless named otherwise.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, Default, PartialEq)]
pub struct JobCounts {
    pub docs: u64,
    /// Rows skipped by `on_bad_row = "skip"`.
    pub bad_rows: u64,
    pub requests: u64,
    /// Requests whose output was already in the cache at planning time.
    pub cached: u64,
    /// Requests completed by this job's shards.
    pub completed: u64,
    /// Requests that failed after retries (retried by a later run).
    pub failed: u64,
    pub shards_total: u64,
    pub shards_completed: u64,
    pub shards_running: u64,
    pub shards_dead: u64,
    #[serde(default)]
    pub usage: Usage,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct JobStatus {
    pub id: Uuid,
    /// The judged job, when this job runs one of its judge metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<Uuid>,
    pub name: String,
    pub state: JobState,
    pub counts: JobCounts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whose `error` it is, when the job failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<FailureKind>,
    pub created_at: String,
    pub updated_at: String,
    /// Cost of `counts.usage` under the spec's `[model.price]` (absent
    /// without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostSummary>,
}

/// Body of `GET /v1/jobs/{id}/results`: the job's `metrics.json`.
pub type ResultsResponse = MetricsReport;
