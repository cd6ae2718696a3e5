//! Job planning: stream the dataset, render and key every request, drop the
//! ones already in the cache index and put the rest into shards.
//!
//! Memory stays flat in the dataset's size: documents come in chunks of
//! `CHUNK_DOCS`, shards are written as they fill up, and the only state kept
//! across the whole job is a 16-byte id per distinct request key (for
//! de-duplication within the job) with the shard it went to.
//!
//! A job with judge metrics also records, per document, what its judges
//! need and which shards hold its requests (`judge_items`); the judge stage
//! (`judge_stage.rs`) grades each document once those shards finish.

use chrono::Utc;
use jobs::judge::{JudgeItem, Judges};
use jobs::protocol::{FailureKind, JobState};
use jobs::spec::BackendKind;
use jobs::{InferenceRequest, JobSpec, RequestKey};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::coordinator::Coordinator;
use crate::docstream::{key_id, spawn_doc_stream, DocMsg, PlanFailure};
use crate::error::CoordinatorError;
use crate::store::{NewJudgeItem, NewShard, PlanTotals};

/// Shards written per store transaction.
const SHARD_BATCH: usize = 50;
/// How often the planner loop looks for jobs even without a wake-up.
const PLAN_POLL: Duration = Duration::from_secs(5);
/// Pause before planning again after the store failed transiently.
const PLAN_RETRY: Duration = Duration::from_millis(500);
/// Planning passes a job may start without one being seen to end: a job
/// whose planning takes the coordinator down (a crash, running out of
/// memory) is failed after this many, instead of at every restart.
const MAX_PLAN_ATTEMPTS: u32 = 3;

/// Why planning stopped early: the job's own fault, or its data's
/// reading's (recorded on the job, with whose fault it is), or the
/// store's.
enum PlanStop {
    Job(PlanFailure),
    // Boxed: the error is large and this travels through hot helpers.
    Store(Box<CoordinatorError>),
}

impl From<CoordinatorError> for PlanStop {
    fn from(e: CoordinatorError) -> Self {
        PlanStop::Store(Box::new(e))
    }
}

impl From<crate::store::StoreError> for PlanStop {
    fn from(e: crate::store::StoreError) -> Self {
        PlanStop::Store(Box::new(e.into()))
    }
}

struct ShardBuilder {
    job_id: Uuid,
    shard_size: usize,
    max_attempts: u32,
    current: Vec<InferenceRequest>,
    ready: Vec<NewShard>,
    next_seq: u64,
}

impl ShardBuilder {
    fn push(&mut self, request: InferenceRequest) -> Result<(), PlanStop> {
        self.current.push(request);
        if self.current.len() >= self.shard_size {
            self.seal()?;
        }
        Ok(())
    }

    fn seal(&mut self) -> Result<(), PlanStop> {
        if self.current.is_empty() {
            return Ok(());
        }
        let requests = std::mem::take(&mut self.current);
        let requests_json = serde_json::to_string(&requests).map_err(|e| {
            PlanStop::Store(Box::new(CoordinatorError::Internal(format!(
                "cannot encode the requests of job {}: {e}",
                self.job_id
            ))))
        })?;
        self.ready.push(NewShard {
            id: Uuid::now_v7(),
            seq: self.next_seq,
            requests_json,
            request_count: requests.len() as u64,
            max_attempts: self.max_attempts,
        });
        self.next_seq += 1;
        Ok(())
    }
}

/// A document to judge, waiting for the shards its requests went to.
fn waiting_item(item: JudgeItem, seen: &HashMap<u128, i64>) -> Result<NewJudgeItem, PlanStop> {
    let wait_seqs: BTreeSet<u64> = item
        .keys
        .iter()
        .filter_map(|k| seen.get(&key_id(k)))
        .filter_map(|seq| u64::try_from(*seq).ok())
        .collect();
    let item_json = serde_json::to_string(&item).map_err(|e| {
        PlanStop::Store(Box::new(CoordinatorError::Internal(format!(
            "cannot encode the judge item of doc {:?}: {e}",
            item.doc_id
        ))))
    })?;
    Ok(NewJudgeItem {
        doc_index: item.doc_index,
        wait_seqs: wait_seqs.into_iter().collect(),
        item_json,
    })
}

impl Coordinator {
    /// Plans every job waiting in `planning` (oldest first).
    pub async fn plan_pending(&self) -> Result<(), CoordinatorError> {
        for id in self.store().jobs_in_state(JobState::Planning).await? {
            self.plan_job(id).await?;
        }
        Ok(())
    }

    /// Plans one job and returns its state afterwards: `running`, or
    /// `completed` when nothing is left to run (everything was cached, or
    /// `backend = "none"`, whose missing outputs its results list), or
    /// `failed` with the reason recorded on the job and whose fault it is
    /// (bad row, duplicate id, no documents, template error: the job's; the
    /// store's or a crash's: not). A job no longer in `planning` is left
    /// alone.
    pub async fn plan_job(&self, id: Uuid) -> Result<JobState, CoordinatorError> {
        let store = self.store();
        let _planning = self.plan_signal().exclusive().await;
        let job = store.get_job(id).await?;
        if job.state != JobState::Planning {
            return Ok(job.state);
        }
        // Shards from a planning pass cut short by a crash are redone.
        store.reset_planning(id).await?;
        store.reset_judge_items(id).await?;
        let attempt = store.count_planning_attempt(id).await?;
        if attempt > MAX_PLAN_ATTEMPTS {
            let message = format!(
                "planning this job was started {} times and never finished: each time the \
                 coordinator stopped while planning it (a crash, a kill, or running out of \
                 memory), so it is failed rather than tried again; see the coordinator's log, \
                 fix the job, and submit it again",
                attempt - 1
            );
            return self.fail_planning(id, message, FailureKind::Runtime).await;
        }
        self.plan_signal().set_current(Some(id));
        let state = self.plan_counted(id).await;
        self.plan_signal().set_current(None);
        state
    }

    /// The planning pass of [`Coordinator::plan_job`], once counted.
    async fn plan_counted(&self, id: Uuid) -> Result<JobState, CoordinatorError> {
        let store = self.store();
        let spec = match self.job_spec(id).await {
            Ok(spec) => spec,
            // Stored by this coordinator: one it cannot read back is not
            // the job author's doing.
            Err(e) => {
                return self
                    .fail_planning(id, e.to_string(), FailureKind::Runtime)
                    .await
            }
        };
        // A job stored under other limits (or before there were any) is
        // not planned into what the operator does not allow now.
        if let Err(message) = self.config().limits.check(&spec) {
            return self.fail_planning(id, message, FailureKind::Input).await;
        }
        if let Err(e) = self.check_data_access(&spec) {
            return self
                .fail_planning(id, e.to_string(), FailureKind::Input)
                .await;
        }
        tracing::info!(job_id = %id, name = %spec.name, "planning job");
        match self.plan_into_shards(id, &spec).await {
            Ok(state) => {
                tracing::info!(job_id = %id, ?state, "planning done");
                Ok(state)
            }
            Err(PlanStop::Job(failure)) => {
                self.fail_planning(id, failure.message, failure.kind).await
            }
            Err(PlanStop::Store(e)) if e.is_retryable() => {
                // The database is restarting or busy: the job stays in
                // `planning`, and the next pass starts it over (its shards so
                // far are deleted first), instead of failing a good job.
                tracing::warn!(job_id = %id, error = %e, "planning interrupted; will retry");
                // Not the job's doing: the pass is not held against it
                // (best effort; the store may still be away).
                let _ = store.uncount_planning_attempt(id).await;
                Err(*e)
            }
            Err(PlanStop::Store(e)) => {
                // The job cannot go on without its store; say why on the job.
                let message = format!("planning stopped: {e}");
                let _ = store
                    .fail_job(id, &message, FailureKind::Runtime, Utc::now())
                    .await;
                Err(*e)
            }
        }
    }

    async fn fail_planning(
        &self,
        id: Uuid,
        message: String,
        kind: FailureKind,
    ) -> Result<JobState, CoordinatorError> {
        tracing::warn!(job_id = %id, error = %message, kind = kind.as_str(), "planning failed");
        self.store()
            .fail_job(id, &message, kind, Utc::now())
            .await?;
        Ok(self.store().get_job(id).await?.state)
    }

    async fn plan_into_shards(&self, id: Uuid, spec: &JobSpec) -> Result<JobState, PlanStop> {
        let store = self.store();
        let no_inference = spec.model.backend == BackendKind::None;
        // Distinct keys, with the seq of the shard each went to (-1: cached,
        // or left missing by `backend = "none"`).
        let mut seen: HashMap<u128, i64> = HashMap::new();
        // A job that makes no inference does not judge either: its judges
        // score the verdicts the cache holds.
        let judges = Judges::new(spec).map_err(|e| PlanStop::Job(PlanFailure::input(e)))?;
        let judging = !judges.is_empty() && !no_inference;
        let mut totals = PlanTotals::default();
        // `backend = "none"`: requests not in the cache, which nothing
        // will run; scoring marks their documents missing.
        let mut missing = 0u64;
        let mut shards = ShardBuilder {
            job_id: id,
            shard_size: spec.sharding.shard_size.max(1) as usize,
            max_attempts: spec.sharding.max_attempts.max(1),
            current: Vec::new(),
            ready: Vec::new(),
            next_seq: 0,
        };
        let mut docs = spawn_doc_stream(spec.clone(), self.config().read.clone());
        loop {
            let msg = docs
                .recv()
                .await
                .unwrap_or_else(|| DocMsg::Failed(PlanFailure::reader_gone()));
            let chunk = match msg {
                DocMsg::Chunk(chunk) => chunk,
                DocMsg::Done { docs: n, bad_rows } => {
                    totals.docs = n;
                    totals.bad_rows = bad_rows;
                    break;
                }
                DocMsg::Failed(failure) => return Err(PlanStop::Job(failure)),
            };
            // Distinct new requests of this chunk, in document order.
            let mut fresh: Vec<InferenceRequest> = Vec::new();
            let mut items: Vec<JudgeItem> = Vec::new();
            for (doc, plan) in chunk {
                if judging {
                    let mut item = JudgeItem::of(&doc, &plan);
                    judges
                        .check(&item)
                        .map_err(|e| PlanStop::Job(PlanFailure::input(e)))?;
                    judges.trim(&mut item);
                    items.push(item);
                }
                for request in plan.requests {
                    if let std::collections::hash_map::Entry::Vacant(slot) =
                        seen.entry(key_id(&request.key))
                    {
                        slot.insert(-1);
                        fresh.push(request);
                    }
                }
            }
            totals.requests += fresh.len() as u64;
            let keys: Vec<RequestKey> = fresh.iter().map(|r| r.key.clone()).collect();
            let cached = store.lookup_keys(&keys).await?;
            for request in fresh {
                if cached.contains_key(&request.key) {
                    totals.cached += 1;
                } else if no_inference {
                    missing += 1;
                } else {
                    seen.insert(key_id(&request.key), shards.next_seq as i64);
                    shards.push(request)?;
                }
            }
            if !items.is_empty() {
                let items: Vec<NewJudgeItem> = items
                    .into_iter()
                    .map(|item| waiting_item(item, &seen))
                    .collect::<Result<_, _>>()?;
                store.insert_judge_items(id, &items).await?;
            }
            if shards.ready.len() >= SHARD_BATCH {
                store
                    .insert_shards(id, &std::mem::take(&mut shards.ready), Utc::now())
                    .await?;
            }
        }
        shards.seal()?;
        if !shards.ready.is_empty() {
            store
                .insert_shards(id, &std::mem::take(&mut shards.ready), Utc::now())
                .await?;
        }
        if missing > 0 {
            // Not a failure: the job completes, and its results score what
            // the cache holds and list the rest (`shardline run` exits 3).
            tracing::info!(job_id = %id, missing, requests = totals.requests,
                "backend = \"none\": requests missing from the cache are left unscored");
        }
        let state = store.finish_planning(id, totals, Utc::now()).await?;
        Ok(state)
    }

    /// Background loop: plans submitted jobs until `stop` is cancelled, on
    /// the leading replica only (two planners of one job would delete each
    /// other's shards).
    pub(crate) async fn run_planner(&self, stop: CancellationToken) {
        loop {
            let mut pause = PLAN_POLL;
            if self.is_leader() {
                tokio::select! {
                    _ = stop.cancelled() => {
                        // A pass cut short by a shutdown is not the job's
                        // doing either.
                        if let Some(id) = self.plan_signal().take_current() {
                            let _ = self.store().uncount_planning_attempt(id).await;
                        }
                        return;
                    }
                    result = self.plan_pending() => {
                        match result {
                            Ok(()) => {}
                            Err(e) if e.is_retryable() => {
                                tracing::warn!(error = %e, "planner pass interrupted; retrying shortly");
                                pause = PLAN_RETRY;
                            }
                            Err(e) => tracing::error!(error = %e, "planner pass failed"),
                        }
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.plan_signal().woken() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{PostgresOptions, PostgresStore, ScratchDatabase, Store};
    use crate::CoordinatorConfig;
    use sqlx::Connection;
    use std::sync::Arc;

    /// A transient store failure in the middle of planning (here: a lock
    /// held elsewhere until the statement times out) leaves the job in
    /// `planning` for the next pass, which plans it completely.
    #[tokio::test]
    async fn a_transient_store_error_is_retried_not_fatal() {
        let admin = ScratchDatabase::admin_url_from_env();
        let db = ScratchDatabase::create(&admin, "shardline_plan")
            .await
            .expect("Postgres for the test (scripts/test.sh starts it)");
        let options = PostgresOptions {
            max_connections: 4,
            statement_timeout: Duration::from_millis(200),
            ..PostgresOptions::default()
        };
        let store: Arc<dyn Store> = Arc::new(
            PostgresStore::connect_with(db.url(), options)
                .await
                .expect("connect"),
        );
        let dir = tempfile::tempdir().unwrap();
        let rows: String = (0..5)
            .map(|i| format!("{{\"id\": \"d{i}\", \"q\": \"q{i}\", \"a\": \"a\"}}\n"))
            .collect();
        std::fs::write(dir.path().join("data.jsonl"), rows).unwrap();
        let spec = JobSpec::from_toml_str(
            r#"
name = "retry"
[model]
backend = "openai"
model = "m"
base_url = "http://127.0.0.1:9/v1"
[dataset]
path = "data.jsonl"
id_field = "id"
[task]
kind = "generate"
prompt = "{{ q }}"
target = "{{ a }}"
[[metrics]]
type = "exact_match"
[sharding]
shard_size = 2
"#,
            "job.toml",
            Some(dir.path()),
        )
        .expect("spec");
        let objects: Arc<dyn cache::ObjectStore> =
            Arc::new(cache::LocalDirStore::new(dir.path().join("cache")));
        let coordinator = Coordinator::new(store.clone(), objects, {
            let mut config = CoordinatorConfig::with_tokens("a", "w");
            config.read = jobs::ReadPolicy::unrestricted();
            config
        });
        let job = coordinator.submit(spec).await.expect("submit");

        // Another session locks the job row: writing shards times out.
        let mut blocker = sqlx::PgConnection::connect(db.url()).await.unwrap();
        sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
        sqlx::query("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE")
            .bind(job.id)
            .execute(&mut blocker)
            .await
            .unwrap();
        let err = coordinator.plan_job(job.id).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        let status = coordinator.job_status(job.id).await.unwrap();
        assert_eq!(status.state, JobState::Planning, "{status:?}");
        assert_eq!(status.error, None);

        sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
        let _ = blocker.close().await;
        assert_eq!(
            coordinator.plan_job(job.id).await.unwrap(),
            JobState::Running
        );
        let status = coordinator.job_status(job.id).await.unwrap();
        assert_eq!(status.counts.requests, 5);
        assert_eq!(
            status.counts.shards_total, 3,
            "no shard left over from the first pass"
        );
    }
}
