//! Row decoding shared by the SQLite and Postgres stores: the queries differ
//! per database, the shape of what they return does not. Also the states'
//! spelling in both databases.

use chrono::{DateTime, Utc};
use jobs::protocol::{FailKind, FailureKind, JobCounts, JobState, ShardState};
use jobs::{RequestKey, Usage};
use sqlx::{ColumnIndex, Decode, Row, Type};
use std::collections::HashMap;
use std::time::Duration;

use super::{StoreError, StoreMetrics};

/// A database count (never negative in practice) as `u64`.
pub(crate) fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// When a lease taken at `now` for `lease` ends.
pub(crate) fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX)
}

/// A job row's progress counts (the columns of `job_get.sql`, named alike
/// in both databases).
pub(crate) fn job_counts<R>(row: &R) -> Result<JobCounts, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let n = |column: &str| -> Result<u64, StoreError> { Ok(count(row.try_get(column)?)) };
    Ok(JobCounts {
        docs: n("docs")?,
        bad_rows: n("bad_rows")?,
        requests: n("requests")?,
        cached: n("cached")?,
        completed: n("completed")?,
        failed: n("failed")?,
        shards_total: n("shards_total")?,
        shards_completed: n("shards_completed")?,
        shards_running: n("shards_running")?,
        shards_dead: n("shards_dead")?,
        usage: Usage {
            prompt_tokens: n("prompt_tokens")?,
            completion_tokens: n("completion_tokens")?,
        },
    })
}

/// A job state read from the database; an unknown one means a corrupt row.
pub(crate) fn job_state(text: &str) -> Result<JobState, StoreError> {
    parse_job_state(text).ok_or_else(|| corrupt_state("jobs", text))
}

/// A failed job's `error_kind` read from the database; an unknown one means
/// a corrupt row.
/// A nullable `error_kind` column: `None` for jobs that never failed (or
/// failed before the column existed).
pub(crate) fn failure_kind_of(text: Option<String>) -> Result<Option<FailureKind>, StoreError> {
    text.as_deref().map(failure_kind).transpose()
}

pub(crate) fn failure_kind(text: &str) -> Result<FailureKind, StoreError> {
    FailureKind::parse(text).ok_or_else(|| StoreError::Corrupt {
        table: "jobs",
        reason: format!("unknown error_kind {text:?}"),
    })
}

/// A shard state read from the database; an unknown one means a corrupt row.
pub(crate) fn shard_state(text: &str) -> Result<ShardState, StoreError> {
    parse_shard_state(text).ok_or_else(|| corrupt_state("shards", text))
}

/// The kind a job failed by its shard's death records: a configuration
/// failure says so; a shard that ran out of attempts failed at run time.
pub(crate) fn job_failure_kind(kind: FailKind) -> FailureKind {
    match kind {
        FailKind::Configuration => FailureKind::Configuration,
        FailKind::Transient => FailureKind::Runtime,
    }
}

fn corrupt_state(table: &'static str, state: &str) -> StoreError {
    StoreError::Corrupt {
        table,
        reason: format!("unknown state {state:?}"),
    }
}

/// Adds `(key, text)` rows to `into`; later rows win, so queries ordered
/// oldest first keep the latest value of a key.
pub(crate) fn collect_key_texts<R>(
    rows: &[R],
    into: &mut HashMap<RequestKey, String>,
) -> Result<(), StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    for row in rows {
        into.insert(RequestKey(row.try_get(0)?), row.try_get(1)?);
    }
    Ok(())
}

/// The metrics queries of one database: `(state, count)` rows for jobs and
/// for shards, and the one row of request counters.
pub(crate) struct MetricsSql {
    pub jobs: &'static str,
    pub shards: &'static str,
    pub requests: &'static str,
}

/// Runs the metrics queries on `pool` and builds the Prometheus aggregates.
pub(crate) async fn fetch_metrics<DB>(
    pool: &sqlx::Pool<DB>,
    sql: MetricsSql,
) -> Result<StoreMetrics, StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
{
    let jobs = sqlx::query(sql.jobs).fetch_all(pool).await?;
    let shards = sqlx::query(sql.shards).fetch_all(pool).await?;
    let requests = sqlx::query(sql.requests).fetch_one(pool).await?;
    let by_state = |rows: &[DB::Row]| -> Result<Vec<(String, u64)>, StoreError> {
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>(0)?, count(r.try_get(1)?))))
            .collect()
    };
    Ok(StoreMetrics {
        jobs_by_state: by_state(&jobs)?,
        shards_by_state: by_state(&shards)?,
        requests_completed: count(requests.try_get(0)?),
        requests_failed: count(requests.try_get(1)?),
        requests_cached: count(requests.try_get(2)?),
        cache_index_keys: count(requests.try_get(3)?),
    })
}

pub(crate) fn job_state_str(state: JobState) -> &'static str {
    match state {
        JobState::Planning => "planning",
        JobState::Running => "running",
        JobState::Completed => "completed",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

fn parse_job_state(s: &str) -> Option<JobState> {
    Some(match s {
        "planning" => JobState::Planning,
        "running" => JobState::Running,
        "completed" => JobState::Completed,
        "failed" => JobState::Failed,
        "cancelled" => JobState::Cancelled,
        _ => return None,
    })
}

fn parse_shard_state(s: &str) -> Option<ShardState> {
    Some(match s {
        "available" => ShardState::Available,
        "running" => ShardState::Running,
        "submitted" => ShardState::Submitted,
        "completed" => ShardState::Completed,
        "failed" => ShardState::Failed,
        "dead" => ShardState::Dead,
        "cancelled" => ShardState::Cancelled,
        _ => return None,
    })
}
