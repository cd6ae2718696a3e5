//! [`Store`] on an embedded SQLite database (WAL mode), the single-machine
//! default. The SQL lives in the `.sql` files beside this one.
//!
//! SQLite has one writer at a time: every write transaction starts with
//! `BEGIN IMMEDIATE`, so it takes the write lock up front and waits up to the
//! busy timeout for it, instead of failing midway when a read would have to
//! be upgraded to a write.

mod batches;

use super::rows::{collect_key_texts, count, lease_end, metrics_from_rows};
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use jobs::protocol::{JobCounts, JobState, ShardState};
use jobs::spec::BackendKind;
use jobs::{RequestKey, Usage};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;
use uuid::Uuid;

use super::{
    job_state_str, parse_job_state, parse_shard_state, Backoff, ClaimedShard, Completion,
    ExpiredLease, HeartbeatOutcome, JobRecord, LeaseFence, ModelPattern, NewJob, NewShard, Partial,
    PlanTotals, ReapOutcome, RequestFailure, SegmentEntry, ShardRecord, Store, StoreError,
    StoreMetrics, LEADER_DUTIES,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// How long a writer waits for the lock before giving up with `Busy`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Keys per `json_each` batch, so that one statement stays small.
const KEY_BATCH: usize = 5_000;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Unavailable(format!(
                        "cannot create the database folder {}: {e}",
                        dir.display()
                    ))
                })?;
            }
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot open database {}: {e}", path.display()))
            })?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

fn parse_uuid(table: &'static str, s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(|e| StoreError::Corrupt {
        table,
        reason: format!("bad id {s:?}: {e}"),
    })
}

fn keys_json<'a>(keys: impl IntoIterator<Item = &'a RequestKey>) -> String {
    let list: Vec<&str> = keys.into_iter().map(|k| k.as_str()).collect();
    serde_json::Value::from(list).to_string()
}

fn backend_str(b: BackendKind) -> &'static str {
    b.as_str()
}

fn job_from_row(row: &SqliteRow) -> Result<JobRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    Ok(JobRecord {
        id: parse_uuid("jobs", &id)?,
        name: row.try_get("name")?,
        spec_hash: row.try_get("spec_hash")?,
        backend: row.try_get("backend")?,
        priority: i32::try_from(row.try_get::<i64, _>("priority")?).unwrap_or(0),
        state: parse_job_state(&state).ok_or_else(|| StoreError::Corrupt {
            table: "jobs",
            reason: format!("unknown state {state:?}"),
        })?,
        error: row.try_get("error")?,
        counts: JobCounts {
            docs: count(row.try_get("docs")?),
            bad_rows: count(row.try_get("bad_rows")?),
            requests: count(row.try_get("requests")?),
            cached: count(row.try_get("cached")?),
            completed: count(row.try_get("completed")?),
            failed: count(row.try_get("failed")?),
            shards_total: count(row.try_get("shards_total")?),
            shards_completed: count(row.try_get("shards_completed")?),
            shards_running: count(row.try_get("shards_running")?),
            shards_dead: count(row.try_get("shards_dead")?),
            usage: Usage {
                prompt_tokens: count(row.try_get("prompt_tokens")?),
                completion_tokens: count(row.try_get("completion_tokens")?),
            },
        },
        created_at: from_ms(row.try_get("created_at")?),
        updated_at: from_ms(row.try_get("updated_at")?),
    })
}

fn shard_from_row(row: &SqliteRow) -> Result<ShardRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let job_id: String = row.try_get("job_id")?;
    let state: String = row.try_get("state")?;
    let lease_expires_at: Option<i64> = row.try_get("lease_expires_at")?;
    Ok(ShardRecord {
        id: parse_uuid("shards", &id)?,
        job_id: parse_uuid("shards", &job_id)?,
        seq: count(row.try_get("seq")?),
        state: parse_shard_state(&state).ok_or_else(|| StoreError::Corrupt {
            table: "shards",
            reason: format!("unknown state {state:?}"),
        })?,
        attempt: u32::try_from(row.try_get::<i64, _>("attempt")?).unwrap_or(0),
        attempts_used: u32::try_from(row.try_get::<i64, _>("attempts_used")?).unwrap_or(0),
        max_attempts: u32::try_from(row.try_get::<i64, _>("max_attempts")?).unwrap_or(0),
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: lease_expires_at.map(from_ms),
        next_visible_at: from_ms(row.try_get("next_visible_at")?),
        last_error: row.try_get("last_error")?,
        request_count: count(row.try_get("request_count")?),
        completed_count: count(row.try_get("completed_count")?),
        failed_count: count(row.try_get("failed_count")?),
    })
}

/// Indexes a segment's keys inside the caller's transaction.
async fn index_in(
    conn: &mut SqliteConnection,
    entry: &SegmentEntry,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let mut added = 0;
    for batch in entry.keys.chunks(KEY_BATCH) {
        added += sqlx::query(include_str!("cache_insert.sql"))
            .bind(&entry.path)
            .bind(ms(now))
            .bind(keys_json(batch))
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    sqlx::query(include_str!("segment_insert.sql"))
        .bind(&entry.path)
        .bind(entry.job_id.map(|id| id.to_string()))
        .bind(entry.shard_id.map(|id| id.to_string()))
        .bind(entry.attempt.map(i64::from))
        .bind(i64::try_from(entry.keys.len()).unwrap_or(i64::MAX))
        .bind(ms(now))
        .execute(&mut *conn)
        .await?;
    Ok(added)
}

async fn add_usage(
    conn: &mut SqliteConnection,
    job_id: &str,
    usage: Usage,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if usage == Usage::default() {
        return Ok(());
    }
    sqlx::query(include_str!("job_add_usage.sql"))
        .bind(job_id)
        .bind(i64::try_from(usage.prompt_tokens).unwrap_or(i64::MAX))
        .bind(i64::try_from(usage.completion_tokens).unwrap_or(i64::MAX))
        .bind(ms(now))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn fence_binds(fence: &LeaseFence) -> (String, i64, &str) {
    (
        fence.shard_id.to_string(),
        i64::from(fence.attempt),
        fence.worker_id.as_str(),
    )
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_job(&self, job: NewJob) -> Result<(JobRecord, bool), StoreError> {
        let inserted = sqlx::query(include_str!("job_insert.sql"))
            .bind(job.id.to_string())
            .bind(&job.name)
            .bind(&job.spec_json)
            .bind(&job.spec_hash)
            .bind(backend_str(job.backend))
            .bind(ms(job.created_at))
            .bind(i64::from(job.priority))
            .bind(&job.model)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from);
        match inserted {
            Ok(_) => Ok((self.get_job(job.id).await?, true)),
            // The partial unique index on live jobs' spec_hash refused it:
            // the same spec is already being worked on.
            Err(StoreError::Conflict(_)) => {
                let row = sqlx::query(include_str!("job_live_by_hash.sql"))
                    .bind(&job.spec_hash)
                    .fetch_optional(&self.pool)
                    .await?;
                match row {
                    Some(row) => {
                        let id: String = row.try_get("id")?;
                        Ok((self.get_job(parse_uuid("jobs", &id)?).await?, false))
                    }
                    // It finished between the insert and the look-up: retry once.
                    None => Box::pin(self.create_job(job)).await,
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn get_job(&self, id: Uuid) -> Result<JobRecord, StoreError> {
        let row = sqlx::query(include_str!("job_get.sql"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::JobNotFound(id))?;
        job_from_row(&row)
    }

    async fn job_spec_json(&self, id: Uuid) -> Result<String, StoreError> {
        let row = sqlx::query(include_str!("job_spec.sql"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::JobNotFound(id))?;
        Ok(row.try_get(0)?)
    }

    async fn list_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        let rows = sqlx::query(include_str!("job_list.sql"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn jobs_in_state(&self, state: JobState) -> Result<Vec<Uuid>, StoreError> {
        let rows = sqlx::query(include_str!("jobs_in_state.sql"))
            .bind(job_state_str(state))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| parse_uuid("jobs", &r.try_get::<String, _>(0)?))
            .collect()
    }

    async fn reset_planning(&self, job_id: Uuid) -> Result<(), StoreError> {
        sqlx::query(include_str!("planning_reset.sql"))
            .bind(job_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_shards(
        &self,
        job_id: Uuid,
        shards: &[NewShard],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let job = job_id.to_string();
        for shard in shards {
            sqlx::query(include_str!("shard_insert.sql"))
                .bind(shard.id.to_string())
                .bind(&job)
                .bind(i64::try_from(shard.seq).unwrap_or(i64::MAX))
                .bind(i64::from(shard.max_attempts.max(1)))
                .bind(&shard.requests_json)
                .bind(i64::try_from(shard.request_count).unwrap_or(i64::MAX))
                .bind(ms(now))
                .execute(&mut *tx)
                .await
                .map_err(|e| match StoreError::from(e) {
                    StoreError::Conflict(msg) if msg.contains("FOREIGN KEY") => {
                        StoreError::JobNotFound(job_id)
                    }
                    other => other,
                })?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn finish_planning(
        &self,
        job_id: Uuid,
        totals: PlanTotals,
        now: DateTime<Utc>,
    ) -> Result<JobState, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(include_str!("planning_finish.sql"))
            .bind(job_id.to_string())
            .bind(i64::try_from(totals.docs).unwrap_or(i64::MAX))
            .bind(i64::try_from(totals.bad_rows).unwrap_or(i64::MAX))
            .bind(i64::try_from(totals.requests).unwrap_or(i64::MAX))
            .bind(i64::try_from(totals.cached).unwrap_or(i64::MAX))
            .bind(ms(now))
            .fetch_optional(&mut *tx)
            .await?;
        let row = match row {
            Some(row) => row,
            None => sqlx::query(include_str!("job_state.sql"))
                .bind(job_id.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::JobNotFound(job_id))?,
        };
        tx.commit().await?;
        let state: String = row.try_get(0)?;
        parse_job_state(&state).ok_or_else(|| StoreError::Corrupt {
            table: "jobs",
            reason: format!("unknown state {state:?}"),
        })
    }

    async fn fail_job(
        &self,
        job_id: Uuid,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(include_str!("job_fail.sql"))
            .bind(job_id.to_string())
            .bind(error)
            .bind(ms(now))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn cancel_job(&self, job_id: Uuid, now: DateTime<Utc>) -> Result<JobRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let id = job_id.to_string();
        let changed = sqlx::query(include_str!("job_cancel.sql"))
            .bind(&id)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed > 0 {
            sqlx::query(include_str!("shards_cancel_available.sql"))
                .bind(&id)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.get_job(job_id).await
    }

    async fn list_shards(&self, job_id: Uuid) -> Result<Vec<ShardRecord>, StoreError> {
        let rows = sqlx::query(include_str!("shard_list.sql"))
            .bind(job_id.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(shard_from_row).collect()
    }

    async fn shard_requests(&self, shard_id: Uuid) -> Result<Option<(Uuid, String)>, StoreError> {
        let row = sqlx::query(include_str!("shard_requests.sql"))
            .bind(shard_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let job_id: String = row.try_get(0)?;
        Ok(Some((parse_uuid("shards", &job_id)?, row.try_get(1)?)))
    }

    async fn lookup_keys(
        &self,
        keys: &[RequestKey],
    ) -> Result<HashMap<RequestKey, String>, StoreError> {
        let mut found = HashMap::new();
        for batch in keys.chunks(KEY_BATCH) {
            let rows = sqlx::query(include_str!("cache_lookup.sql"))
                .bind(keys_json(batch))
                .fetch_all(&self.pool)
                .await?;
            collect_key_texts(&rows, &mut found)?;
        }
        Ok(found)
    }

    async fn index_segment(
        &self,
        entry: &SegmentEntry,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let added = index_in(&mut tx, entry, now).await?;
        tx.commit().await?;
        Ok(added)
    }

    async fn indexed_segments(&self) -> Result<HashSet<String>, StoreError> {
        let rows = sqlx::query(include_str!("segments_list.sql"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
    }

    async fn clear_cache_index(&self) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(include_str!("cache_clear.sql"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(include_str!("segments_clear.sql"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn claim_matching(
        &self,
        worker_id: &str,
        backends: &[BackendKind],
        models: &[ModelPattern],
        max: u32,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedShard>, StoreError> {
        if max == 0 || backends.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<&str> = backends.iter().map(|b| backend_str(*b)).collect();
        let globs: Vec<String> = models.iter().map(ModelPattern::sqlite_glob).collect();
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(include_str!("claim.sql"))
            .bind(worker_id)
            .bind(ms(lease_end(now, lease)))
            .bind(ms(now))
            .bind(serde_json::Value::from(names).to_string())
            .bind(i64::from(max))
            .bind(serde_json::Value::from(globs).to_string())
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                let job_id: String = row.try_get("job_id")?;
                Ok(ClaimedShard {
                    shard_id: parse_uuid("shards", &id)?,
                    job_id: parse_uuid("shards", &job_id)?,
                    attempt: u32::try_from(row.try_get::<i64, _>("attempt")?).unwrap_or(0),
                    lease_expires_at: from_ms(row.try_get("lease_expires_at")?),
                    requests_json: row.try_get("requests_json")?,
                })
            })
            .collect()
    }

    async fn heartbeat(
        &self,
        fence: &LeaseFence,
        progress: u64,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<HeartbeatOutcome, StoreError> {
        let (shard, attempt, owner) = fence_binds(fence);
        let mut tx = self.begin_write().await?;
        let renewed = sqlx::query(include_str!("heartbeat.sql"))
            .bind(&shard)
            .bind(attempt)
            .bind(owner)
            .bind(ms(lease_end(now, lease)))
            .bind(i64::try_from(progress).unwrap_or(i64::MAX))
            .bind(ms(now))
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = renewed {
            tx.commit().await?;
            return Ok(HeartbeatOutcome {
                keep_going: true,
                lease_expires_at: Some(from_ms(row.try_get(0)?)),
                cancelled: false,
            });
        }
        // Either the lease is no longer the caller's, or its job stopped
        // running; in the second case the shard stops too.
        let stopped = sqlx::query(include_str!("heartbeat_stop.sql"))
            .bind(&shard)
            .bind(attempt)
            .bind(owner)
            .bind(ms(now))
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        let cancelled = match stopped {
            Some(row) => row.try_get::<Option<String>, _>(0)?.as_deref() == Some("cancelled"),
            None => false,
        };
        Ok(HeartbeatOutcome {
            keep_going: false,
            lease_expires_at: None,
            cancelled,
        })
    }

    async fn complete(
        &self,
        fence: &LeaseFence,
        completion: &Completion,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (shard, attempt, owner) = fence_binds(fence);
        let failed = i64::try_from(completion.failed.len()).unwrap_or(i64::MAX);
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(include_str!("shard_complete.sql"))
            .bind(&shard)
            .bind(attempt)
            .bind(owner)
            .bind(failed)
            .bind(ms(now))
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(false);
        };
        let job_id: String = row.try_get(0)?;
        let job_uuid = parse_uuid("shards", &job_id)?;
        if let Some(segment) = &completion.segment {
            let entry = SegmentEntry {
                path: segment.clone(),
                job_id: Some(job_uuid),
                shard_id: Some(fence.shard_id),
                attempt: Some(fence.attempt),
                keys: completion.written.clone(),
            };
            index_in(&mut tx, &entry, now).await?;
        }
        if !completion.failed.is_empty() {
            let failures = serde_json::to_string(&completion.failed).map_err(|e| {
                StoreError::Database(format!("cannot encode request failures: {e}"))
            })?;
            sqlx::query(include_str!("failures_upsert.sql"))
                .bind(&job_id)
                .bind(&shard)
                .bind(ms(now))
                .bind(failures)
                .execute(&mut *tx)
                .await?;
        }
        add_usage(&mut tx, &job_id, completion.usage, now).await?;
        sqlx::query(include_str!("job_complete_if_done.sql"))
            .bind(&job_id)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn fail(
        &self,
        fence: &LeaseFence,
        error: &str,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<ShardState>, StoreError> {
        let (shard, attempt, owner) = fence_binds(fence);
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(include_str!("shard_fail.sql"))
            .bind(&shard)
            .bind(attempt)
            .bind(owner)
            .bind(error)
            .bind(ms(retry_at))
            .bind(ms(now))
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let job_id: String = row.try_get("job_id")?;
        let seq: i64 = row.try_get("seq")?;
        let used: i64 = row.try_get("attempts_used")?;
        let state: String = row.try_get("state")?;
        let state = parse_shard_state(&state).ok_or_else(|| StoreError::Corrupt {
            table: "shards",
            reason: format!("unknown state {state:?}"),
        })?;
        if state == ShardState::Dead {
            sqlx::query(include_str!("job_fail.sql"))
                .bind(&job_id)
                .bind(format!(
                    "shard {seq} failed {used} times; last error: {error}"
                ))
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Some(state))
    }

    async fn release(
        &self,
        fence: &LeaseFence,
        partial: Option<&Partial>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (shard, attempt, owner) = fence_binds(fence);
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(include_str!("shard_release.sql"))
            .bind(&shard)
            .bind(attempt)
            .bind(owner)
            .bind(ms(now))
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(false);
        };
        let job_id: String = row.try_get(0)?;
        if let Some(partial) = partial {
            let entry = SegmentEntry {
                path: partial.segment.clone(),
                job_id: Some(parse_uuid("shards", &job_id)?),
                shard_id: Some(fence.shard_id),
                attempt: Some(fence.attempt),
                keys: partial.written.clone(),
            };
            index_in(&mut tx, &entry, now).await?;
            add_usage(&mut tx, &job_id, partial.usage, now).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn reap_expired(
        &self,
        now: DateTime<Utc>,
        backoff: &Backoff,
    ) -> Result<ReapOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(include_str!("reap.sql"))
            .bind(ms(now))
            .bind(backoff.base_ms())
            .bind(backoff.cap_ms())
            .bind(backoff.jitter_fraction())
            .fetch_all(&mut *tx)
            .await?;
        let mut outcome = ReapOutcome::default();
        for row in &rows {
            let state: String = row.try_get("state")?;
            let shard_id: String = row.try_get("id")?;
            let job_id: String = row.try_get("job_id")?;
            outcome.expired.push(ExpiredLease {
                job_id: parse_uuid("shards", &job_id)?,
                shard_id: parse_uuid("shards", &shard_id)?,
                attempt: u32::try_from(row.try_get::<i64, _>("attempt")?).unwrap_or(0),
            });
            match state.as_str() {
                "dead" => {
                    outcome.dead += 1;
                    let job_id: String = row.try_get("job_id")?;
                    let seq: i64 = row.try_get("seq")?;
                    let used: i64 = row.try_get("attempts_used")?;
                    let last: Option<String> = row.try_get("last_error")?;
                    sqlx::query(include_str!("job_fail.sql"))
                        .bind(&job_id)
                        .bind(format!(
                            "shard {seq} failed {used} times; last error: {}",
                            last.unwrap_or_default()
                        ))
                        .bind(ms(now))
                        .execute(&mut *tx)
                        .await?;
                }
                "cancelled" => outcome.cancelled += 1,
                _ => outcome.returned += 1,
            }
        }
        outcome.jobs_completed = sqlx::query(include_str!("jobs_complete_finished.sql"))
            .bind(ms(now))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(outcome)
    }

    async fn recover_orphaned(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(include_str!("recover.sql"))
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        sqlx::query(include_str!("leader_clear.sql"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn try_acquire_leadership(
        &self,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(include_str!("leader_acquire.sql"))
            .bind(LEADER_DUTIES)
            .bind(holder)
            .bind(ms(lease_end(now, ttl)))
            .bind(ms(now))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn release_leadership(&self, holder: &str) -> Result<(), StoreError> {
        sqlx::query(include_str!("leader_release.sql"))
            .bind(LEADER_DUTIES)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn job_failures(
        &self,
        job_id: Uuid,
        limit: u64,
    ) -> Result<Vec<RequestFailure>, StoreError> {
        let rows = sqlx::query(include_str!("job_failures.sql"))
            .bind(job_id.to_string())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(RequestFailure {
                    job_id: parse_uuid("request_failures", &row.try_get::<String, _>(0)?)?,
                    key: RequestKey(row.try_get(1)?),
                    shard_id: parse_uuid("request_failures", &row.try_get::<String, _>(2)?)?,
                    error: row.try_get(3)?,
                })
            })
            .collect()
    }

    async fn failures_for_keys(
        &self,
        keys: &[RequestKey],
    ) -> Result<HashMap<RequestKey, String>, StoreError> {
        let mut found = HashMap::new();
        for batch in keys.chunks(KEY_BATCH) {
            let rows = sqlx::query(include_str!("failures_for_keys.sql"))
                .bind(keys_json(batch))
                .fetch_all(&self.pool)
                .await?;
            // Ordered oldest first, so the latest error of a key wins.
            collect_key_texts(&rows, &mut found)?;
        }
        Ok(found)
    }

    async fn metrics(&self) -> Result<StoreMetrics, StoreError> {
        let jobs = sqlx::query(include_str!("metrics_jobs.sql"))
            .fetch_all(&self.pool)
            .await?;
        let shards = sqlx::query(include_str!("metrics_shards.sql"))
            .fetch_all(&self.pool)
            .await?;
        let requests = sqlx::query(include_str!("metrics_requests.sql"))
            .fetch_one(&self.pool)
            .await?;
        metrics_from_rows(&jobs, &shards, &requests)
    }

    async fn batch_reserve(
        &self,
        holder: &super::BatchFence,
        model_key: &str,
        cap: u64,
        base: u64,
        wanted: &[u64],
        now: DateTime<Utc>,
    ) -> Result<Option<(u32, u64)>, StoreError> {
        self.batch_reserve_impl(holder, model_key, cap, base, wanted, now)
            .await
    }

    async fn batch_submit(
        &self,
        fence: &LeaseFence,
        submission: &super::BatchSubmission,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.batch_submit_impl(fence, submission, now).await
    }

    async fn batch_claim_polls(
        &self,
        worker_id: &str,
        backends: &[BackendKind],
        models: &[ModelPattern],
        max: u32,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<super::PollClaim, StoreError> {
        self.batch_claim_polls_impl(worker_id, backends, models, max, lease, now)
            .await
    }

    async fn batch_heartbeat(
        &self,
        fence: &super::PollFence,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<JobState>, StoreError> {
        self.batch_heartbeat_impl(fence, lease, now).await
    }

    async fn batch_update(
        &self,
        fence: &super::PollFence,
        update: &super::BatchUpdate,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.batch_update_impl(fence, update, lease, now).await
    }

    async fn batch_finish(
        &self,
        fence: &super::PollFence,
        end: &super::BatchEnd,
        partial: Option<&Partial>,
        now: DateTime<Utc>,
    ) -> Result<Option<ShardState>, StoreError> {
        self.batch_finish_impl(fence, end, partial, now).await
    }

    async fn batch_recover_polls(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.batch_recover_polls_impl(now).await
    }
}

#[cfg(test)]
mod tests {
    use super::SqliteStore;

    async fn make() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("state").join("shardline.db"))
            .await
            .expect("open sqlite store");
        (store, dir)
    }

    crate::store::conformance::store_conformance_suite!(make);
    crate::store::batch_conformance::batch_conformance_suite!(make);
}
