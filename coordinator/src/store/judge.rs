//! The judge stage's records: per document of a judged job, what its
//! judges need until its outputs exist (`judge_items`), and the child jobs
//! that run each judge metric's requests with the judge model.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobs::protocol::{FailureKind, JobState};
use jobs::spec::BackendKind;
use uuid::Uuid;

use super::{NewShard, StoreError};

/// A document to judge once the shards holding its requests have finished.
#[derive(Clone, Debug, PartialEq)]
pub struct NewJudgeItem {
    pub doc_index: u64,
    /// Seqs of the shards holding the document's requests; empty when every
    /// output was cached at planning.
    pub wait_seqs: Vec<u64>,
    /// The [`jobs::judge::JudgeItem`] as JSON.
    pub item_json: String,
}

/// A waiting document whose last shard has finished.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadyJudgeItem {
    pub doc_index: u64,
    /// Every shard holding its requests (see [`NewJudgeItem::wait_seqs`]).
    pub wait_seqs: Vec<u64>,
    pub item_json: String,
}

/// New requests of one judge metric, for its child job.
#[derive(Clone, Debug, PartialEq)]
pub struct JudgeStage {
    /// The child job's name (unique per parent).
    pub name: String,
    /// The child job's spec: the parent's, with the judge model as
    /// `[model]` and no metrics.
    pub spec_json: String,
    pub spec_hash: String,
    pub backend: BackendKind,
    pub model: String,
    /// Shards of new requests; the store numbers them after the child's
    /// existing ones.
    pub shards: Vec<NewShard>,
    /// Judge requests planned (new and cached).
    pub requests: u64,
    /// Of those, already in the cache.
    pub cached: u64,
}

/// A judged job's child job, as the judge stage follows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ChildJob {
    pub id: Uuid,
    pub name: String,
    pub state: JobState,
    pub error: Option<String>,
    pub error_kind: Option<FailureKind>,
}

#[async_trait]
pub trait JudgeStore: Send + Sync {
    /// Records documents to judge (planning, in the planner's batches).
    async fn insert_judge_items(
        &self,
        job_id: Uuid,
        items: &[NewJudgeItem],
    ) -> Result<(), StoreError>;

    /// Forgets a job's documents to judge (a planning pass starting over).
    async fn reset_judge_items(&self, job_id: Uuid) -> Result<(), StoreError>;

    /// Running jobs that have documents to judge (or had), not child jobs.
    async fn judged_jobs(&self) -> Result<Vec<Uuid>, StoreError>;

    /// Up to `limit` waiting documents of `job_id` whose last shard has
    /// finished (completed, dead or cancelled), or that wait for none.
    async fn ready_judge_items(
        &self,
        job_id: Uuid,
        limit: u32,
    ) -> Result<Vec<ReadyJudgeItem>, StoreError>;

    /// Of `seqs`, the shards of `job_id` that have not finished.
    async fn unfinished_shards(&self, job_id: Uuid, seqs: &[u64]) -> Result<Vec<u64>, StoreError>;

    /// Makes a waiting document wait for shard `seq` instead.
    async fn rewait_judge_item(
        &self,
        job_id: Uuid,
        doc_index: u64,
        seq: u64,
    ) -> Result<(), StoreError>;

    /// In one transaction: creates each stage's child job of `parent` when
    /// it has none (running, at the parent's priority), appends the
    /// stage's shards and counts, puts a completed child back to running
    /// when it gets shards, and marks the documents `done` as done. Fails
    /// with [`StoreError::Conflict`], changing nothing, when one of them is
    /// no longer waiting (another replica's stage judged it).
    async fn commit_judging(
        &self,
        parent: Uuid,
        stages: &[JudgeStage],
        done: &[u64],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The child jobs of `parent`.
    async fn child_jobs(&self, parent: Uuid) -> Result<Vec<ChildJob>, StoreError>;

    /// Puts back to running the child jobs of `parent` that completed while
    /// shards were being added to them. Returns how many.
    async fn reopen_children(&self, parent: Uuid, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Completes `job_id` if nothing of it is left: shards, documents to
    /// judge, unfinished child jobs. Returns whether it did.
    async fn complete_if_done(&self, job_id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Running child jobs whose parent has failed or was cancelled.
    async fn orphaned_children(&self) -> Result<Vec<Uuid>, StoreError>;
}
