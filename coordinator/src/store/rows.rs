//! Row decoding shared by the SQLite and Postgres stores: the queries differ
//! per database, the shape of what they return does not.

use chrono::{DateTime, Utc};
use jobs::RequestKey;
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

/// Builds the Prometheus aggregates from `(state, count)` rows for jobs and
/// shards and the one row of request counters.
pub(crate) fn metrics_from_rows<R>(
    jobs: &[R],
    shards: &[R],
    requests: &R,
) -> Result<StoreMetrics, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let by_state = |rows: &[R]| -> Result<Vec<(String, u64)>, StoreError> {
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>(0)?, count(r.try_get(1)?))))
            .collect()
    };
    Ok(StoreMetrics {
        jobs_by_state: by_state(jobs)?,
        shards_by_state: by_state(shards)?,
        requests_completed: count(requests.try_get(0)?),
        requests_failed: count(requests.try_get(1)?),
        requests_cached: count(requests.try_get(2)?),
        cache_index_keys: count(requests.try_get(3)?),
    })
}
