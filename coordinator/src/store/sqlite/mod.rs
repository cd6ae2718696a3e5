//! The store on an embedded SQLite database (WAL mode), the single-machine
//! default: one file per role implements its trait, the SQL lives in the
//! `.sql` files beside them.
//!
//! SQLite has one writer at a time: every write transaction starts with
//! `BEGIN IMMEDIATE`, so it takes the write lock up front and waits up to the
//! busy timeout for it, instead of failing midway when a read would have to
//! be upgraded to a write.

mod cache_index;
mod failures;
mod jobs;
mod judge;
mod leadership;
mod leases;
mod metrics;
mod provider_batch;
mod schedule;

use ::jobs::protocol::FailedRequest;
use ::jobs::{RequestKey, Usage};
use chrono::{DateTime, TimeZone, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::SqlitePool;
use std::path::Path;
use std::time::Duration;
use uuid::Uuid;

use super::{SegmentEntry, StoreError};

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

/// Records a shard's failed requests, in the caller's transaction.
async fn record_failures(
    conn: &mut SqliteConnection,
    job_id: &str,
    shard_id: &str,
    failed: &[FailedRequest],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if failed.is_empty() {
        return Ok(());
    }
    let failures = serde_json::to_string(failed)
        .map_err(|e| StoreError::Database(format!("cannot encode request failures: {e}")))?;
    sqlx::query(include_str!("failures_upsert.sql"))
        .bind(job_id)
        .bind(shard_id)
        .bind(ms(now))
        .bind(failures)
        .execute(&mut *conn)
        .await?;
    Ok(())
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

    crate::store_conformance_suite!(make);
}
