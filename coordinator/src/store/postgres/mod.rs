//! [`Store`] on Postgres, for a coordinator (one or several replicas) serving
//! workers on many machines. The SQL lives in the `.sql` files beside this one.
//!
//! Concurrency model (READ COMMITTED): claims lock rows with
//! `FOR UPDATE SKIP LOCKED`, so claimers never wait on each other; every lease
//! operation is one fenced statement (data-modifying CTEs), so it is atomic
//! and costs one round trip; completions arriving together share one
//! statement and one commit (see `completer`); usage is counted per shard, so
//! completions of one job never queue on the job's row. Serialization
//! failures and deadlocks are
//! retried here a few times; connection errors surface as
//! [`StoreError::Unavailable`], which callers retry (the pool tests each
//! connection before use and replaces the dead ones after a Postgres restart).

mod batches;
mod completer;
mod scratch;

pub use scratch::{ScratchDatabase, DEFAULT_TEST_DATABASE_URL, TEST_DATABASE_URL_ENV};

use super::rows::{collect_key_texts, count, lease_end, metrics_from_rows};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobs::protocol::{JobCounts, JobState, ShardState};
use jobs::spec::BackendKind;
use jobs::{RequestKey, Usage};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

use super::{
    job_state_str, parse_job_state, parse_shard_state, Backoff, ClaimedShard, Completion,
    ExpiredLease, HeartbeatOutcome, JobRecord, LeaseFence, ModelPattern, NewJob, NewShard, Partial,
    PlanTotals, ReapOutcome, RequestFailure, SegmentEntry, ShardRecord, Store, StoreError,
    StoreMetrics, LEADER_DUTIES,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Keys per array parameter, so that one statement stays a few MB at most.
const KEY_BATCH: usize = 10_000;
/// Shards per insert statement.
const SHARD_BATCH: usize = 500;
/// Tries of one operation that lost a serialization race or a deadlock.
const BUSY_TRIES: u32 = 4;
/// Tasks writing batches of completions (each holds a connection while it
/// writes).
const COMPLETION_FLUSHERS: usize = 4;

/// Pool settings. The defaults suit a coordinator replica: a pool big enough
/// for a few hundred workers' claims and heartbeats, a bounded wait for a
/// connection, and connections recycled so that a failover or restart of
/// Postgres is absorbed within minutes even for idle ones.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    pub max_connections: u32,
    /// How long a call waits for a free (or new) connection before failing
    /// with [`StoreError::Unavailable`].
    pub acquire_timeout: Duration,
    /// Statements running longer are cancelled (and reported retryable).
    pub statement_timeout: Duration,
    /// Sent to the server, shown in `pg_stat_activity`.
    pub application_name: String,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(60),
            application_name: "shardline-coordinator".into(),
        }
    }
}

#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The URL without its password, for messages.
    url: String,
    completer: completer::Completer,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// `url` with any password replaced by `***`, safe to print: the one in the
/// user info (even one holding an unescaped `/` or `?`), and the `password`
/// and `sslpassword` query parameters libpq also accepts.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The last `@` ends the user info wherever it is, so a password holding
    // a `/` or `?` is still found.
    let (main, query) = match rest.rfind('@') {
        Some(at) => match rest[at..].find('?') {
            Some(q) => rest.split_at(at + q),
            None => (rest, ""),
        },
        None => match rest.find('?') {
            Some(q) => rest.split_at(q),
            None => (rest, ""),
        },
    };
    let main = match main.rfind('@') {
        Some(at) => {
            let (userinfo, host) = main.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _password)) => format!("{user}:***{host}"),
                None => main.to_string(),
            }
        }
        None => main.to_string(),
    };
    let query = query
        .split_inclusive(['?', '&'])
        .map(|part| {
            let (param, sep) = match part.strip_suffix(['?', '&']) {
                Some(p) => (p, &part[p.len()..]),
                None => (part, ""),
            };
            match param.split_once('=') {
                Some((name, _)) if name == "password" || name == "sslpassword" => {
                    format!("{name}=***{sep}")
                }
                _ => part.to_string(),
            }
        })
        .collect::<String>();
    format!("{scheme}://{main}{query}")
}

impl PostgresStore {
    /// Connects with the default [`PostgresOptions`] and applies the
    /// migrations (under an advisory lock, so replicas starting together
    /// are safe).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let redacted = redact_url(url);
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "bad Postgres URL {redacted}: {e}; expected postgres://USER[:PASSWORD]@HOST:PORT/DATABASE"
                ))
            })?
            .application_name(&options.application_name)
            .options([(
                "statement_timeout",
                format!("{}ms", options.statement_timeout.as_millis().max(1)),
            )]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(options.acquire_timeout)
            // A connection that died with the server (restart, failover) is
            // found out here and replaced, instead of failing the caller.
            .test_before_acquire(true)
            .idle_timeout(Some(Duration::from_secs(120)))
            .max_lifetime(Some(Duration::from_secs(30 * 60)))
            .connect_with(connect)
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot connect to Postgres at {redacted}: {e}; check that the server runs \
                     and accepts this user (scripts/ensure-postgres.sh starts a local one)"
                ))
            })?;
        MIGRATOR.run(&pool).await?;
        let flushers = COMPLETION_FLUSHERS.min(options.max_connections.max(1) as usize);
        Ok(PostgresStore {
            completer: completer::Completer::start(pool.clone(), flushers),
            pool,
            url: redacted,
        })
    }

    /// The connection pool (for tests and tools that inspect the tables).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection; later calls fail with `Unavailable`.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Runs `op` again when it lost a serialization race or a deadlock: Postgres
/// rolled it back, so running it again is safe. Anything else is returned.
async fn retry_busy<T, F, Fut>(what: &'static str, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut tries = 1;
    loop {
        match op().await {
            Err(StoreError::Busy(reason)) if tries < BUSY_TRIES => {
                let pause = Duration::from_millis(rand::random_range(5..25u64) * u64::from(tries));
                tracing::debug!(operation = what, tries, %reason, "retrying after a transaction conflict");
                tokio::time::sleep(pause).await;
                tries += 1;
            }
            other => return other,
        }
    }
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn small(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

/// Distinct keys in sorted order: concurrent writers of overlapping keys
/// then lock them in the same order.
fn sorted_keys<'a>(keys: impl IntoIterator<Item = &'a RequestKey>) -> Vec<String> {
    let mut out: Vec<String> = keys.into_iter().map(|k| k.as_str().to_string()).collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn corrupt_state(table: &'static str, state: &str) -> StoreError {
    StoreError::Corrupt {
        table,
        reason: format!("unknown state {state:?}"),
    }
}

fn job_from_row(row: &PgRow) -> Result<JobRecord, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(JobRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        spec_hash: row.try_get("spec_hash")?,
        backend: row.try_get("backend")?,
        priority: row.try_get("priority")?,
        state: parse_job_state(&state).ok_or_else(|| corrupt_state("jobs", &state))?,
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
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn shard_from_row(row: &PgRow) -> Result<ShardRecord, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(ShardRecord {
        id: row.try_get("id")?,
        job_id: row.try_get("job_id")?,
        seq: count(row.try_get("seq")?),
        state: parse_shard_state(&state).ok_or_else(|| corrupt_state("shards", &state))?,
        attempt: small(row.try_get("attempt")?),
        attempts_used: small(row.try_get("attempts_used")?),
        max_attempts: small(row.try_get("max_attempts")?),
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        next_visible_at: row.try_get("next_visible_at")?,
        last_error: row.try_get("last_error")?,
        request_count: count(row.try_get("request_count")?),
        completed_count: count(row.try_get("completed_count")?),
        failed_count: count(row.try_get("failed_count")?),
    })
}

/// Indexes a segment's keys inside the caller's transaction.
async fn index_in(
    conn: &mut sqlx::PgConnection,
    entry: &SegmentEntry,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let keys = sorted_keys(&entry.keys);
    let mut added = 0;
    for batch in keys.chunks(KEY_BATCH) {
        added += sqlx::query(include_str!("cache_insert.sql"))
            .bind(&entry.path)
            .bind(now)
            .bind(batch)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    sqlx::query(include_str!("segment_insert.sql"))
        .bind(&entry.path)
        .bind(entry.job_id)
        .bind(entry.shard_id)
        .bind(entry.attempt.map(i64::from))
        .bind(int(entry.keys.len() as u64))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(added)
}

fn job_state_of(row: &PgRow, column: &str) -> Result<JobState, StoreError> {
    let state: String = row.try_get(column)?;
    parse_job_state(&state).ok_or_else(|| corrupt_state("jobs", &state))
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_job(&self, job: NewJob) -> Result<(JobRecord, bool), StoreError> {
        // The insert yields nothing while a live job has the same spec; that
        // job may finish before the look-up, so go round again (bounded).
        for _ in 0..3 {
            let inserted = sqlx::query(include_str!("job_insert.sql"))
                .bind(job.id)
                .bind(&job.name)
                .bind(&job.spec_json)
                .bind(&job.spec_hash)
                .bind(job.backend.as_str())
                .bind(job.priority)
                .bind(job.created_at)
                .bind(&job.model)
                .fetch_optional(&self.pool)
                .await?;
            if inserted.is_some() {
                return Ok((self.get_job(job.id).await?, true));
            }
            let live = sqlx::query(include_str!("job_live_by_hash.sql"))
                .bind(&job.spec_hash)
                .fetch_optional(&self.pool)
                .await?;
            if let Some(row) = live {
                let id: Uuid = row.try_get(0)?;
                return Ok((self.get_job(id).await?, false));
            }
        }
        Err(StoreError::Busy(format!(
            "job with spec hash {} keeps starting and finishing; submit again",
            job.spec_hash
        )))
    }

    async fn get_job(&self, id: Uuid) -> Result<JobRecord, StoreError> {
        let row = sqlx::query(include_str!("job_get.sql"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::JobNotFound(id))?;
        job_from_row(&row)
    }

    async fn job_spec_json(&self, id: Uuid) -> Result<String, StoreError> {
        let row = sqlx::query(include_str!("job_spec.sql"))
            .bind(id)
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
            .map(|r| r.try_get::<Uuid, _>(0).map_err(StoreError::from))
            .collect()
    }

    async fn reset_planning(&self, job_id: Uuid) -> Result<(), StoreError> {
        sqlx::query(include_str!("planning_reset.sql"))
            .bind(job_id)
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
        retry_busy("insert shards", || async move {
            let mut tx = self.pool.begin().await?;
            let job = sqlx::query(include_str!("job_lock_share.sql"))
                .bind(job_id)
                .fetch_optional(&mut *tx)
                .await?;
            if job.is_none() {
                return Err(StoreError::JobNotFound(job_id));
            }
            for batch in shards.chunks(SHARD_BATCH) {
                let ids: Vec<Uuid> = batch.iter().map(|s| s.id).collect();
                let seqs: Vec<i64> = batch.iter().map(|s| int(s.seq)).collect();
                let max_attempts: Vec<i64> = batch
                    .iter()
                    .map(|s| i64::from(s.max_attempts.max(1)))
                    .collect();
                let requests: Vec<&str> = batch.iter().map(|s| s.requests_json.as_str()).collect();
                let counts: Vec<i64> = batch.iter().map(|s| int(s.request_count)).collect();
                sqlx::query(include_str!("shard_insert.sql"))
                    .bind(job_id)
                    .bind(&ids)
                    .bind(&seqs)
                    .bind(&max_attempts)
                    .bind(&requests)
                    .bind(&counts)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn finish_planning(
        &self,
        job_id: Uuid,
        totals: PlanTotals,
        now: DateTime<Utc>,
    ) -> Result<JobState, StoreError> {
        let row = sqlx::query(include_str!("planning_finish.sql"))
            .bind(job_id)
            .bind(int(totals.docs))
            .bind(int(totals.bad_rows))
            .bind(int(totals.requests))
            .bind(int(totals.cached))
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        let row = match row {
            Some(row) => row,
            None => sqlx::query(include_str!("job_state.sql"))
                .bind(job_id)
                .fetch_optional(&self.pool)
                .await?
                .ok_or(StoreError::JobNotFound(job_id))?,
        };
        job_state_of(&row, "state")
    }

    async fn fail_job(
        &self,
        job_id: Uuid,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(include_str!("job_fail.sql"))
            .bind(job_id)
            .bind(error)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn cancel_job(&self, job_id: Uuid, now: DateTime<Utc>) -> Result<JobRecord, StoreError> {
        retry_busy("cancel job", || async move {
            let mut tx = self.pool.begin().await?;
            let changed = sqlx::query(include_str!("job_cancel.sql"))
                .bind(job_id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if changed > 0 {
                sqlx::query(include_str!("shards_cancel_available.sql"))
                    .bind(job_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await?;
        self.get_job(job_id).await
    }

    async fn list_shards(&self, job_id: Uuid) -> Result<Vec<ShardRecord>, StoreError> {
        let rows = sqlx::query(include_str!("shard_list.sql"))
            .bind(job_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(shard_from_row).collect()
    }

    async fn shard_requests(&self, shard_id: Uuid) -> Result<Option<(Uuid, String)>, StoreError> {
        let row = sqlx::query(include_str!("shard_requests.sql"))
            .bind(shard_id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(Some((row.try_get(0)?, row.try_get(1)?))),
            None => Ok(None),
        }
    }

    async fn lookup_keys(
        &self,
        keys: &[RequestKey],
    ) -> Result<HashMap<RequestKey, String>, StoreError> {
        let mut found = HashMap::new();
        for batch in keys.chunks(KEY_BATCH) {
            let list: Vec<&str> = batch.iter().map(|k| k.as_str()).collect();
            let rows = sqlx::query(include_str!("cache_lookup.sql"))
                .bind(&list)
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
        retry_busy("index segment", || async move {
            let mut tx = self.pool.begin().await?;
            let added = index_in(&mut tx, entry, now).await?;
            tx.commit().await?;
            Ok(added)
        })
        .await
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
        let mut tx = self.pool.begin().await?;
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
        let names: Vec<&str> = backends.iter().map(|b| b.as_str()).collect();
        let names = &names;
        let patterns: Vec<String> = models.iter().map(ModelPattern::like).collect();
        let patterns = &patterns;
        // Room for many claimers skipping each other's locked rows, while
        // keeping the ranked set (sorted on every claim) small.
        let per_job = (i64::from(max) * 16).clamp(64, 4096);
        let until = lease_end(now, lease);
        let rows = retry_busy("claim", || async move {
            sqlx::query(include_str!("claim.sql"))
                .bind(worker_id)
                .bind(until)
                .bind(now)
                .bind(names)
                .bind(i64::from(max))
                .bind(per_job)
                .bind(patterns)
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::from)
        })
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ClaimedShard {
                    shard_id: row.try_get("id")?,
                    job_id: row.try_get("job_id")?,
                    attempt: small(row.try_get("attempt")?),
                    lease_expires_at: row.try_get("lease_expires_at")?,
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
        let until = lease_end(now, lease);
        let row = retry_busy("heartbeat", || async move {
            sqlx::query(include_str!("heartbeat.sql"))
                .bind(fence.shard_id)
                .bind(i64::from(fence.attempt))
                .bind(&fence.worker_id)
                .bind(until)
                .bind(int(progress))
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::from)
        })
        .await?;
        let Some(row) = row else {
            return Ok(HeartbeatOutcome {
                keep_going: false,
                lease_expires_at: None,
                cancelled: false,
            });
        };
        Ok(match job_state_of(&row, "job_state")? {
            JobState::Running => HeartbeatOutcome {
                keep_going: true,
                lease_expires_at: row.try_get("lease_expires_at")?,
                cancelled: false,
            },
            other => HeartbeatOutcome {
                keep_going: false,
                lease_expires_at: None,
                cancelled: other == JobState::Cancelled,
            },
        })
    }

    async fn complete(
        &self,
        fence: &LeaseFence,
        completion: &Completion,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.completer.complete(fence, completion, now).await
    }

    async fn fail(
        &self,
        fence: &LeaseFence,
        error: &str,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<ShardState>, StoreError> {
        let row = retry_busy("fail", || async move {
            sqlx::query(include_str!("shard_fail.sql"))
                .bind(fence.shard_id)
                .bind(i64::from(fence.attempt))
                .bind(&fence.worker_id)
                .bind(error)
                .bind(retry_at)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::from)
        })
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let state: String = row.try_get("state")?;
        let state = parse_shard_state(&state).ok_or_else(|| corrupt_state("shards", &state))?;
        Ok(Some(state))
    }

    async fn release(
        &self,
        fence: &LeaseFence,
        partial: Option<&Partial>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let written = partial.map(|p| sorted_keys(&p.written)).unwrap_or_default();
        let written = &written;
        let usage = partial.map(|p| p.usage).unwrap_or_default();
        let row = retry_busy("release", || async move {
            sqlx::query(include_str!("release.sql"))
                .bind(fence.shard_id)
                .bind(i64::from(fence.attempt))
                .bind(&fence.worker_id)
                .bind(now)
                .bind(partial.map(|p| p.segment.as_str()))
                .bind(written)
                .bind(int(usage.prompt_tokens))
                .bind(int(usage.completion_tokens))
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::from)
        })
        .await?;
        Ok(row.is_some())
    }

    async fn reap_expired(
        &self,
        now: DateTime<Utc>,
        backoff: &Backoff,
    ) -> Result<ReapOutcome, StoreError> {
        retry_busy("reap", || async move {
            let mut tx = self.pool.begin().await?;
            let rows = sqlx::query(include_str!("reap.sql"))
                .bind(now)
                .bind(backoff.base_ms())
                .bind(backoff.cap_ms())
                .bind(backoff.jitter_fraction())
                .fetch_all(&mut *tx)
                .await?;
            let mut outcome = ReapOutcome::default();
            for row in &rows {
                let state: String = row.try_get("state")?;
                outcome.expired.push(ExpiredLease {
                    job_id: row.try_get("job_id")?,
                    shard_id: row.try_get("id")?,
                    attempt: small(row.try_get("attempt")?),
                });
                match state.as_str() {
                    "dead" => outcome.dead += 1,
                    "cancelled" => outcome.cancelled += 1,
                    _ => outcome.returned += 1,
                }
            }
            outcome.jobs_completed = sqlx::query(include_str!("jobs_complete_finished.sql"))
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(outcome)
        })
        .await
    }

    async fn recover_orphaned(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(include_str!("recover.sql"))
            .bind(now)
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
        let until = lease_end(now, ttl);
        let row = retry_busy("leadership", || async move {
            sqlx::query(include_str!("leader_acquire.sql"))
                .bind(LEADER_DUTIES)
                .bind(holder)
                .bind(until)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::from)
        })
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
            .bind(job_id)
            .bind(int(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(RequestFailure {
                    job_id: row.try_get(0)?,
                    key: RequestKey(row.try_get(1)?),
                    shard_id: row.try_get(2)?,
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
            let list: Vec<&str> = batch.iter().map(|k| k.as_str()).collect();
            let rows = sqlx::query(include_str!("failures_for_keys.sql"))
                .bind(&list)
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
mod tests;

#[cfg(test)]
mod redact_tests {
    use super::redact_url;

    #[test]
    fn passwords_never_survive_redaction() {
        let cases = [
            (
                "postgres://u:secret@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            ("postgres://u:pa/ss@h/db", "postgres://u:***@h/db"),
            ("postgres://u:pa?ss@h/db?x=1", "postgres://u:***@h/db?x=1"),
            (
                "postgres://u@h/db?sslmode=require&password=secret",
                "postgres://u@h/db?sslmode=require&password=***",
            ),
            (
                "postgres://h/db?sslpassword=secret&user=u",
                "postgres://h/db?sslpassword=***&user=u",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("sqlite:///tmp/x.db", "sqlite:///tmp/x.db"),
        ];
        for (url, want) in cases {
            let got = redact_url(url);
            assert_eq!(got, want, "{url}");
            assert!(!got.contains("secret") && !got.contains("pa/ss"), "{got}");
        }
    }
}
