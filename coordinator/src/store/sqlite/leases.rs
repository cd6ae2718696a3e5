//! [`LeaseStore`] on SQLite: every fenced operation is one `BEGIN IMMEDIATE`
//! transaction that matches the fence first and changes nothing when it
//! does not.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobs::protocol::{FailKind, ShardState};
use sqlx::Row;
use std::time::Duration;

use super::{add_usage, from_ms, index_in, ms, parse_uuid, record_failures, SqliteStore};
use crate::store::backoff::sql_params;
use crate::store::rows::{job_failure_kind, lease_end, shard_state};
use crate::store::{
    Backoff, Claimant, ClaimedShard, Completion, ExpiredLease, HeartbeatOutcome, LeaseFence,
    LeaseStore, Partial, ReapOutcome, SegmentEntry, StoreError,
};

fn fence_binds(fence: &LeaseFence) -> (String, i64, &str) {
    (
        fence.shard_id.to_string(),
        i64::from(fence.attempt),
        fence.worker_id.as_str(),
    )
}

#[async_trait]
impl LeaseStore for SqliteStore {
    async fn claim_matching(
        &self,
        who: &Claimant<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedShard>, StoreError> {
        if who.wants_nothing() {
            return Ok(Vec::new());
        }
        let (names, globs) = (who.backend_names(), who.glob_patterns());
        let (worker_id, max, lease) = (who.worker_id, who.max, who.lease);
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
        record_failures(&mut tx, &job_id, &shard, &completion.failed, now).await?;
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
        kind: FailKind,
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
            .bind(kind.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let job_id: String = row.try_get("job_id")?;
        let seq: i64 = row.try_get("seq")?;
        let used: i64 = row.try_get("attempts_used")?;
        let state = shard_state(&row.try_get::<String, _>("state")?)?;
        if state == ShardState::Dead {
            // A configuration failure is the whole story; a shard that ran
            // out of attempts says how often it tried.
            let message = match kind {
                FailKind::Configuration => error.to_string(),
                FailKind::Transient => {
                    format!("shard {seq} failed {used} times; last error: {error}")
                }
            };
            sqlx::query(include_str!("job_fail.sql"))
                .bind(&job_id)
                .bind(message)
                .bind(ms(now))
                .bind(job_failure_kind(kind).as_str())
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
        let (base_ms, cap_ms, jitter) = sql_params(backoff);
        let rows = sqlx::query(include_str!("reap.sql"))
            .bind(ms(now))
            .bind(base_ms)
            .bind(cap_ms)
            .bind(jitter)
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
                        .bind(jobs::protocol::FailureKind::Runtime.as_str())
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
}
