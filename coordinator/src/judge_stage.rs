//! The judge stage, a leader-only loop: each document of a judged job is
//! graded as soon as the shards holding its requests have finished, not
//! when the whole job has. Its judge requests are keyed and looked up in
//! the cache like any request; the new ones become shards of a child job
//! per judge metric, whose model is the judge's, so claims, leases, retries,
//! prices and provider batches work for them unchanged.
//!
//! Crash safety: a document's judge shards and its `done` mark are written
//! in one transaction, so a pass cut short is simply done again.

use chrono::Utc;
use jobs::judge::{JudgeItem, Judges};
use jobs::protocol::{FailureKind, JobState};
use jobs::{InferenceRequest, JobSpec, RequestKey};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::coordinator::{spec_hash, Coordinator};
use crate::error::CoordinatorError;
use crate::segment_cache::SegmentCache;
use crate::store::{JudgeStage, NewShard, ReadyJudgeItem, StoreError};

/// Documents judged per pass and transaction.
const JUDGE_BATCH: u32 = 500;
/// How often the stage looks for documents whose outputs have arrived.
const JUDGE_POLL: Duration = Duration::from_millis(500);

impl Coordinator {
    /// Background loop of the judge stage until `stop`, on the leading
    /// replica only (two stages would plan the same judge requests twice).
    pub(crate) async fn run_judge_stage(&self, stop: CancellationToken) {
        loop {
            if self.is_leader() {
                if let Err(e) = self.judge_pass().await {
                    tracing::warn!(error = %e, "judge pass failed; trying again shortly");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(JUDGE_POLL) => {}
            }
        }
    }

    /// One pass over every judged job: plan the judge requests of the
    /// documents whose outputs have arrived, fail a job whose judge failed,
    /// complete a job with nothing left, and cancel the judges of jobs that
    /// ended otherwise.
    pub async fn judge_pass(&self) -> Result<(), CoordinatorError> {
        let store = self.store();
        for child in store.orphaned_children().await? {
            store.cancel_job(child, Utc::now()).await?;
        }
        for job in store.judged_jobs().await? {
            // One job's trouble (a store hiccup, an unreadable segment) must
            // not hold up the others: it is tried again next pass.
            match self.judge_job(job).await {
                Ok(()) => {}
                Err(CoordinatorError::Store(StoreError::Conflict(why))) => {
                    tracing::info!(job_id = %job, %why, "judging left to another replica");
                }
                Err(e) => tracing::warn!(job_id = %job, error = %e, "judging paused; retrying"),
            }
            if !self.is_leader() {
                break;
            }
        }
        Ok(())
    }

    async fn judge_job(&self, id: Uuid) -> Result<(), CoordinatorError> {
        let store = self.store();
        store.reopen_children(id, Utc::now()).await?;
        for child in store.child_jobs(id).await? {
            if matches!(child.state, JobState::Failed | JobState::Cancelled) {
                let why = child.error.as_deref().unwrap_or("it was cancelled");
                let message = format!("judge job {:?} ({}) stopped: {why}", child.name, child.id);
                let kind = child.error_kind.unwrap_or(FailureKind::Runtime);
                store.fail_job(id, &message, kind, Utc::now()).await?;
                return Ok(());
            }
        }
        // Neither gets better by waiting: the job cannot be judged.
        let judges = match self.job_spec(id).await {
            Ok(spec) => Judges::new(&spec)
                .map(|judges| (spec, judges))
                .map_err(|e| (e.to_string(), FailureKind::Input)),
            Err(e) => Err((e.to_string(), FailureKind::Runtime)),
        };
        let (spec, judges) = match judges {
            Ok(found) => found,
            Err((why, kind)) => {
                let message = format!("cannot judge this job: {why}");
                store.fail_job(id, &message, kind, Utc::now()).await?;
                return Ok(());
            }
        };
        let mut segments = SegmentCache::default();
        // Leadership can move during a long pass: stop between batches.
        while self.is_leader() {
            let ready = store.ready_judge_items(id, JUDGE_BATCH).await?;
            let full = ready.len() as u32 >= JUDGE_BATCH;
            if ready.is_empty() {
                break;
            }
            let items = match self.settled(id, ready).await {
                Ok(items) => items,
                Err(e @ CoordinatorError::Internal(_)) => {
                    let message = format!("cannot judge this job: {e}");
                    store
                        .fail_job(id, &message, FailureKind::Runtime, Utc::now())
                        .await?;
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            if !items.is_empty() {
                self.judge_items(id, &spec, &judges, &mut segments, items)
                    .await?;
            }
            if !full {
                break;
            }
        }
        if store.complete_if_done(id, Utc::now()).await? {
            tracing::info!(job_id = %id, "job and its judges completed");
        }
        Ok(())
    }

    /// The ready documents whose every shard has finished; the others are
    /// set to wait for a shard still running.
    async fn settled(
        &self,
        id: Uuid,
        ready: Vec<ReadyJudgeItem>,
    ) -> Result<Vec<(u64, JudgeItem)>, CoordinatorError> {
        let store = self.store();
        let several: Vec<u64> = ready
            .iter()
            .filter(|r| r.wait_seqs.len() > 1)
            .flat_map(|r| r.wait_seqs.iter().copied())
            .collect::<HashSet<u64>>()
            .into_iter()
            .collect();
        let unfinished: HashSet<u64> = if several.is_empty() {
            HashSet::new()
        } else {
            store
                .unfinished_shards(id, &several)
                .await?
                .into_iter()
                .collect()
        };
        let mut items = Vec::with_capacity(ready.len());
        for r in ready {
            if let Some(seq) = r.wait_seqs.iter().find(|s| unfinished.contains(s)) {
                store.rewait_judge_item(id, r.doc_index, *seq).await?;
                continue;
            }
            let item: JudgeItem = serde_json::from_str(&r.item_json).map_err(|e| {
                CoordinatorError::Internal(format!(
                    "the judge item of doc {} of job {id} cannot be read: {e}",
                    r.doc_index
                ))
            })?;
            items.push((r.doc_index, item));
        }
        Ok(items)
    }

    /// Plans the judge requests of `items` whose outputs are all in the
    /// cache (a document with a failed request has nothing to judge), and
    /// marks every item done, in one transaction.
    async fn judge_items(
        &self,
        id: Uuid,
        spec: &JobSpec,
        judges: &Judges,
        segments: &mut SegmentCache,
        items: Vec<(u64, JudgeItem)>,
    ) -> Result<(), CoordinatorError> {
        let store = self.store();
        let mut keys: Vec<RequestKey> = items
            .iter()
            .flat_map(|(_, item)| item.keys.iter().cloned())
            .collect();
        keys.sort();
        keys.dedup();
        // Strict: an output that could not be read now must not count as
        // missing for good (its document would never be judged).
        let outputs = segments
            .read_outputs_strict(store.as_ref(), self.objects().as_ref(), &keys)
            .await?;
        let mut requests: Vec<Vec<InferenceRequest>> = vec![Vec::new(); judges.names().len()];
        let mut done = Vec::with_capacity(items.len());
        for (doc_index, item) in &items {
            done.push(*doc_index);
            let texts: Option<Vec<String>> = item
                .keys
                .iter()
                .map(|k| outputs.get(k).map(|o| o.text.clone().unwrap_or_default()))
                .collect();
            let Some(texts) = texts else {
                continue;
            };
            match judges.requests(item, &texts) {
                Ok(made) => {
                    for r in made {
                        requests[r.judge].push(r.request);
                    }
                }
                // The planner rendered this template for the document; an
                // output cannot make it fail, but should it, the document
                // goes unjudged rather than stopping every other one.
                Err(e) => tracing::warn!(job_id = %id, error = %e, "cannot render a judge prompt"),
            }
        }
        let mut stages = Vec::new();
        for (judge, requests) in requests.into_iter().enumerate() {
            if let Some(stage) = self.stage(id, spec, judges, judge, requests).await? {
                stages.push(stage);
            }
        }
        store.commit_judging(id, &stages, &done, Utc::now()).await?;
        // A completion check racing this commit may have closed a child.
        store.reopen_children(id, Utc::now()).await?;
        Ok(())
    }

    /// Judge `judge`'s requests as a stage of its child job: the cached
    /// ones counted, the others in shards of the job's shard size.
    async fn stage(
        &self,
        id: Uuid,
        spec: &JobSpec,
        judges: &Judges,
        judge: usize,
        requests: Vec<InferenceRequest>,
    ) -> Result<Option<JudgeStage>, CoordinatorError> {
        if requests.is_empty() {
            return Ok(None);
        }
        let (Some(model), Some(name)) = (judges.model(judge), judges.names().get(judge).cloned())
        else {
            return Ok(None);
        };
        let mut seen = HashSet::new();
        let distinct: Vec<InferenceRequest> = requests
            .into_iter()
            .filter(|r| seen.insert(r.key.clone()))
            .collect();
        let keys: Vec<RequestKey> = distinct.iter().map(|r| r.key.clone()).collect();
        let cached: HashMap<RequestKey, String> = self.store().lookup_keys(&keys).await?;
        let total = distinct.len() as u64;
        let fresh: Vec<InferenceRequest> = distinct
            .into_iter()
            .filter(|r| !cached.contains_key(&r.key))
            .collect();
        let mut child = spec.clone();
        child.name = format!("{}/judge:{name}", spec.name);
        child.model = model.clone();
        child.metrics = Vec::new();
        let spec_json = serde_json::to_string(&child)
            .map_err(|e| CoordinatorError::Internal(format!("cannot encode a judge spec: {e}")))?;
        // The parent's id makes each parent's judge job a spec of its own.
        let spec_hash = format!("{}:{id}", spec_hash(&child)?);
        let size = spec.sharding.shard_size.max(1) as usize;
        let mut shards = Vec::new();
        for chunk in fresh.chunks(size) {
            let requests_json = serde_json::to_string(chunk).map_err(|e| {
                CoordinatorError::Internal(format!("cannot encode judge requests: {e}"))
            })?;
            shards.push(NewShard {
                id: Uuid::now_v7(),
                // Numbered by the store after the child's existing shards.
                seq: 0,
                requests_json,
                request_count: chunk.len() as u64,
                max_attempts: spec.sharding.max_attempts.max(1),
            });
        }
        Ok(Some(JudgeStage {
            name: child.name.clone(),
            spec_json,
            spec_hash,
            backend: model.backend,
            model: model.model.clone(),
            shards,
            requests: total,
            cached: total - fresh.len() as u64,
        }))
    }
}
