//! The store on Postgres, for a coordinator (one or several replicas) serving
//! workers on many machines: one file per role implements its trait, the SQL
//! lives in the `.sql` files beside them.
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

mod cache_index;
mod completer;
mod failures;
mod jobs;
mod judge;
mod leadership;
mod leases;
mod metrics;
mod provider_batch;
mod redact;
mod schedule;
#[cfg(any(test, feature = "test-support"))]
mod scratch;

pub use redact::redact_url;
#[cfg(any(test, feature = "test-support"))]
pub use scratch::{ScratchDatabase, DEFAULT_TEST_DATABASE_URL, TEST_DATABASE_URL_ENV};

use ::jobs::protocol::JobState;
use ::jobs::RequestKey;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use super::rows::job_state;
use super::{SegmentEntry, StoreError};

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
    job_state(&row.try_get::<String, _>(column)?)
}

#[cfg(test)]
mod tests;
