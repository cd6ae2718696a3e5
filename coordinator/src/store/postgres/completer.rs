//! Group commit of shard completions. Every completion is a durable commit,
//! and a commit waits for a WAL flush (milliseconds on most disks); one
//! commit per completion would cap a coordinator at a few hundred shards/s.
//! Completions that arrive while earlier ones are being written are queued
//! and written together in one statement by the next free flusher, so one
//! commit serves many of them, without an added delay when the queue is
//! short (River's batch completer works the same way).

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;
use sqlx::Row;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};
use uuid::Uuid;

use super::{int, retry_busy, sorted_keys};
use crate::store::{Completion, LeaseFence, StoreError};

/// Most completions written by one statement.
const MAX_BATCH: usize = 128;
/// Completions waiting for a flusher; callers wait when it is full.
const QUEUE: usize = 4096;

struct Pending {
    fence: LeaseFence,
    completion: Completion,
    now: DateTime<Utc>,
    reply: oneshot::Sender<Result<bool, StoreError>>,
}

/// The queue in front of the flusher tasks. The tasks end when the last
/// clone of this is dropped.
#[derive(Clone)]
pub(super) struct Completer {
    queue: mpsc::Sender<Pending>,
}

impl Completer {
    /// Starts `flushers` tasks writing batches on `pool` (several, so that one
    /// batch is written while the previous one waits for its WAL flush).
    pub(super) fn start(pool: PgPool, flushers: usize) -> Self {
        let (queue, inbox) = mpsc::channel(QUEUE);
        let inbox = Arc::new(Mutex::new(inbox));
        for _ in 0..flushers.max(1) {
            tokio::spawn(run_flusher(pool.clone(), inbox.clone()));
        }
        Completer { queue }
    }

    /// Queues one fenced completion and waits for its outcome: true when it
    /// was applied, false when the fence did not match.
    pub(super) async fn complete(
        &self,
        fence: &LeaseFence,
        completion: &Completion,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (reply, outcome) = oneshot::channel();
        let pending = Pending {
            fence: fence.clone(),
            completion: completion.clone(),
            now,
            reply,
        };
        self.queue.send(pending).await.map_err(|_| {
            StoreError::Unavailable("the store's completion queue is closed".into())
        })?;
        outcome.await.map_err(|_| {
            StoreError::Unavailable(
                "the store's completer stopped before answering; complete again".into(),
            )
        })?
    }
}

async fn run_flusher(pool: PgPool, inbox: Arc<Mutex<mpsc::Receiver<Pending>>>) {
    loop {
        let batch = {
            let mut inbox = inbox.lock().await;
            let Some(first) = inbox.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match inbox.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            batch
        };
        // One statement must not update a shard twice: a repeated shard (a
        // worker retrying its completion) waits for the next round, where
        // its fence no longer matches.
        let mut rest = batch;
        while !rest.is_empty() {
            let mut seen = HashSet::new();
            let (round, later): (Vec<Pending>, Vec<Pending>) = rest
                .into_iter()
                .partition(|p| seen.insert(p.fence.shard_id));
            flush(&pool, round).await;
            rest = later;
        }
    }
}

/// An error for each waiting caller (`StoreError` is not `Clone`).
fn copy_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::JobNotFound(id) => StoreError::JobNotFound(*id),
        StoreError::ShardNotFound(id) => StoreError::ShardNotFound(*id),
        StoreError::ScheduleNotFound(name) => StoreError::ScheduleNotFound(name.clone()),
        StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
        StoreError::Busy(m) => StoreError::Busy(m.clone()),
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Corrupt { table, reason } => StoreError::Corrupt {
            table,
            reason: reason.clone(),
        },
        other => StoreError::Database(other.to_string()),
    }
}

async fn flush(pool: &PgPool, batch: Vec<Pending>) {
    let now = batch.iter().map(|p| p.now).max().unwrap_or_else(Utc::now);
    let result = retry_busy("complete", || write_batch(pool, &batch, now)).await;
    match result {
        Ok(accepted) => {
            let jobs: Vec<Uuid> = accepted
                .values()
                .copied()
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            if !jobs.is_empty() {
                complete_jobs_if_done(pool, &jobs, now).await;
            }
            for (i, p) in batch.into_iter().enumerate() {
                let _ = p.reply.send(Ok(accepted.contains_key(&(i + 1))));
            }
        }
        // A completion the database refuses (bad data) must not fail the
        // others that happened to share its batch: write each on its own.
        Err(e) if batch.len() > 1 && !e.is_retryable() => {
            tracing::warn!(error = %e, completions = batch.len(),
                "a batch of completions was refused; writing them one by one");
            for p in batch {
                Box::pin(flush(pool, vec![p])).await;
            }
        }
        Err(e) => {
            for p in batch {
                let _ = p.reply.send(Err(copy_error(&e)));
            }
        }
    }
}

/// Writes the batch; returns the accepted positions (from 1) and their jobs.
async fn write_batch(
    pool: &PgPool,
    batch: &[Pending],
    now: DateTime<Utc>,
) -> Result<HashMap<usize, Uuid>, StoreError> {
    let mut ids = Vec::with_capacity(batch.len());
    let mut attempts = Vec::with_capacity(batch.len());
    let mut owners = Vec::with_capacity(batch.len());
    let mut failed = Vec::with_capacity(batch.len());
    let mut prompt = Vec::with_capacity(batch.len());
    let mut completion_tokens = Vec::with_capacity(batch.len());
    let mut segments = Vec::with_capacity(batch.len());
    let mut records = Vec::with_capacity(batch.len());
    let (mut keys, mut key_pos) = (Vec::new(), Vec::new());
    let (mut failed_keys, mut failed_errors, mut failed_pos) = (Vec::new(), Vec::new(), Vec::new());
    for (i, p) in batch.iter().enumerate() {
        let n = i as i64 + 1;
        let c = &p.completion;
        ids.push(p.fence.shard_id);
        attempts.push(i64::from(p.fence.attempt));
        owners.push(p.fence.worker_id.as_str());
        failed.push(int(c.failed.len() as u64));
        prompt.push(int(c.usage.prompt_tokens));
        completion_tokens.push(int(c.usage.completion_tokens));
        segments.push(c.segment.as_deref());
        records.push(int(c.written.len() as u64));
        for key in sorted_keys(&c.written) {
            keys.push(key);
            key_pos.push(n);
        }
        // Within one completion the last error of a key wins.
        let errors: BTreeMap<&str, &str> = c
            .failed
            .iter()
            .map(|f| (f.key.as_str(), f.error.as_str()))
            .collect();
        for (key, error) in errors {
            failed_keys.push(key);
            failed_errors.push(error);
            failed_pos.push(n);
        }
    }
    let rows = sqlx::query(include_str!("complete_batch.sql"))
        .bind(&ids)
        .bind(&attempts)
        .bind(&owners)
        .bind(&failed)
        .bind(&prompt)
        .bind(&completion_tokens)
        .bind(&segments)
        .bind(&records)
        .bind(now)
        .bind(&keys)
        .bind(&key_pos)
        .bind(&failed_keys)
        .bind(&failed_errors)
        .bind(&failed_pos)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            let n: i64 = row.try_get("n")?;
            let job_id: Uuid = row.try_get("job_id")?;
            Ok((usize::try_from(n).unwrap_or(0), job_id))
        })
        .collect()
}

/// After a batch committed: completes the jobs whose last shard was in it.
/// A separate statement on purpose (see job_complete_if_done.sql); if it is
/// lost, the reaper's sweep completes the job.
async fn complete_jobs_if_done(pool: &PgPool, jobs: &[Uuid], now: DateTime<Utc>) {
    let done = retry_busy("complete jobs", || async move {
        sqlx::query(include_str!("job_complete_if_done.sql"))
            .bind(jobs)
            .bind(now)
            .execute(pool)
            .await
            .map_err(StoreError::from)
    })
    .await;
    if let Err(e) = done {
        tracing::warn!(error = %e, jobs = jobs.len(),
            "could not check whether jobs are complete; the reaper will");
    }
}
