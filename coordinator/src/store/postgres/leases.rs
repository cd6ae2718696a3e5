//! [`LeaseStore`] on Postgres: each fenced operation is one statement (or,
//! for completions, one group commit through the completer), retried when it
//! lost a serialization race.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobs::protocol::{FailKind, JobState, ShardState};
use sqlx::Row;
use std::time::Duration;

use super::{int, job_state_of, retry_busy, small, sorted_keys, PostgresStore};
use crate::store::backoff::sql_params;
use crate::store::rows::{lease_end, shard_state};
use crate::store::{
    Backoff, Claimant, ClaimedShard, Completion, ExpiredLease, HeartbeatOutcome, LeaseFence,
    LeaseStore, Partial, ReapOutcome, StoreError,
};

#[async_trait]
impl LeaseStore for PostgresStore {
    async fn claim_matching(
        &self,
        who: &Claimant<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedShard>, StoreError> {
        if who.wants_nothing() {
            return Ok(Vec::new());
        }
        let (names, patterns) = (&who.backend_names(), &who.like_patterns());
        let (worker_id, max, lease) = (who.worker_id, who.max, who.lease);
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
        kind: FailKind,
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
                .bind(kind.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::from)
        })
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(shard_state(&row.try_get::<String, _>("state")?)?))
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
            let (base_ms, cap_ms, jitter) = sql_params(backoff);
            let rows = sqlx::query(include_str!("reap.sql"))
                .bind(now)
                .bind(base_ms)
                .bind(cap_ms)
                .bind(jitter)
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
}
