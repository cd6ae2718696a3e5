//! [`ProviderBatchStore`] on SQLite: the `openai-batch` lifecycle, reservations
//! under the enqueued-token cap, the `running` → `submitted` step, poll leases
//! and the end of a submitted shard. Every method is one `BEGIN IMMEDIATE`
//! transaction; the SQL is in the `batch_*.sql` files beside this one.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobs::protocol::{JobState, ShardState};
use sqlx::Row;
use std::time::Duration;

use super::{add_usage, from_ms, index_in, ms, parse_uuid, record_failures, SqliteStore};
use crate::store::provider_batch::grant;
use crate::store::rows::{job_state, lease_end};
use crate::store::{
    BatchEnd, BatchFence, BatchSubmission, BatchUpdate, Claimant, ClaimedPoll, LeaseFence, Partial,
    PollClaim, PollFence, ProviderBatchStore, SegmentEntry, StoreError,
};

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn seq(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Indexes a pass's outputs and adds their usage, in the caller's
/// transaction.
async fn index_partial(
    conn: &mut sqlx::SqliteConnection,
    job_id: &str,
    shard_id: uuid::Uuid,
    partial: &Partial,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let entry = SegmentEntry {
        path: partial.segment.clone(),
        job_id: Some(parse_uuid("shards", job_id)?),
        shard_id: Some(shard_id),
        attempt: None,
        keys: partial.written.clone(),
    };
    index_in(conn, &entry, now).await?;
    add_usage(conn, job_id, partial.usage, now).await
}

#[async_trait]
impl ProviderBatchStore for SqliteStore {
    async fn reserve(
        &self,
        holder: &BatchFence,
        model_key: &str,
        cap: u64,
        base: u64,
        wanted: &[u64],
        now: DateTime<Utc>,
    ) -> Result<Option<(u32, u64)>, StoreError> {
        let shard = holder.shard_id().to_string();
        let (kind, token, owner) = holder.binds();
        let mut tx = self.begin_write().await?;
        let held = sqlx::query(include_str!("batch_holder.sql"))
            .bind(&shard)
            .bind(kind)
            .bind(token)
            .bind(owner)
            .fetch_optional(&mut *tx)
            .await?;
        if held.is_none() {
            tx.rollback().await?;
            return Ok(None);
        }
        let elsewhere: i64 = sqlx::query(include_str!("batch_enqueued.sql"))
            .bind(model_key)
            .bind(&shard)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let elsewhere = u64::try_from(elsewhere).unwrap_or(0);
        let (granted, added) = grant(cap, elsewhere, base, wanted);
        sqlx::query(include_str!("batch_reserve_set.sql"))
            .bind(&shard)
            .bind(int(base.saturating_add(added)))
            .bind(model_key)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some((granted, elsewhere)))
    }

    async fn submit(
        &self,
        fence: &LeaseFence,
        submission: &BatchSubmission,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(include_str!("batch_submit.sql"))
            .bind(fence.shard_id.to_string())
            .bind(i64::from(fence.attempt))
            .bind(&fence.worker_id)
            .bind(&submission.state_json)
            .bind(&submission.model_key)
            .bind(int(submission.enqueued_tokens))
            .bind(ms(submission.next_poll_at))
            .bind(ms(now))
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.is_some())
    }

    async fn claim_polls(
        &self,
        who: &Claimant<'_>,
        now: DateTime<Utc>,
    ) -> Result<PollClaim, StoreError> {
        if who.wants_nothing() {
            return Ok(PollClaim::default());
        }
        let names = serde_json::Value::from(who.backend_names()).to_string();
        let globs = serde_json::Value::from(who.glob_patterns()).to_string();
        let (worker_id, max, lease) = (who.worker_id, who.max, who.lease);
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(include_str!("batch_claim.sql"))
            .bind(worker_id)
            .bind(ms(lease_end(now, lease)))
            .bind(ms(now))
            .bind(&names)
            .bind(i64::from(max))
            .bind(&globs)
            .fetch_all(&mut *tx)
            .await?;
        let mut claim = PollClaim::default();
        for row in &rows {
            let id: String = row.try_get("id")?;
            let job_id: String = row.try_get("job_id")?;
            let state: String = row.try_get("job_state")?;
            claim.polls.push(ClaimedPoll {
                shard_id: parse_uuid("shards", &id)?,
                job_id: parse_uuid("shards", &job_id)?,
                poll_seq: u64::try_from(row.try_get::<i64, _>("poll_seq")?).unwrap_or(0),
                poll_expires_at: from_ms(row.try_get("poll_expires_at")?),
                job_state: job_state(&state)?,
                state_json: row
                    .try_get::<Option<String>, _>("batch_state")?
                    .unwrap_or_default(),
            });
        }
        if claim.polls.is_empty() {
            let next: Option<i64> = sqlx::query(include_str!("batch_next_due.sql"))
                .bind(&names)
                .bind(&globs)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            claim.next_due_at = next.map(from_ms);
        }
        tx.commit().await?;
        Ok(claim)
    }

    async fn renew_poll(
        &self,
        fence: &PollFence,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<JobState>, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(include_str!("batch_heartbeat.sql"))
            .bind(fence.shard_id.to_string())
            .bind(seq(fence.poll_seq))
            .bind(&fence.worker_id)
            .bind(ms(lease_end(now, lease)))
            .bind(ms(now))
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        match row {
            Some(row) => Ok(Some(job_state(&row.try_get::<String, _>(0)?)?)),
            None => Ok(None),
        }
    }

    async fn record_poll(
        &self,
        fence: &PollFence,
        update: &BatchUpdate,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let written = update
            .partial
            .as_ref()
            .map_or(0, |p| p.written.len() as u64);
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(include_str!("batch_update.sql"))
            .bind(fence.shard_id.to_string())
            .bind(seq(fence.poll_seq))
            .bind(&fence.worker_id)
            .bind(&update.state_json)
            .bind(int(update.enqueued_tokens))
            .bind(update.keep_lease)
            .bind(ms(update.next_poll_at))
            .bind(ms(lease_end(now, lease)))
            .bind(ms(now))
            .bind(int(written))
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(false);
        };
        let job_id: String = row.try_get(0)?;
        if let Some(partial) = &update.partial {
            index_partial(&mut tx, &job_id, fence.shard_id, partial, now).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn finish(
        &self,
        fence: &PollFence,
        end: &BatchEnd,
        partial: Option<&Partial>,
        now: DateTime<Utc>,
    ) -> Result<Option<ShardState>, StoreError> {
        let shard = fence.shard_id.to_string();
        let (failed, error) = match end {
            BatchEnd::Completed { failed } => (failed.len() as u64, None),
            BatchEnd::Failed { error } => (0, Some(error.as_str())),
            BatchEnd::Cancelled => (0, None),
        };
        let written = partial.map_or(0, |p| p.written.len() as u64);
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(include_str!("batch_finish.sql"))
            .bind(&shard)
            .bind(seq(fence.poll_seq))
            .bind(&fence.worker_id)
            .bind(end.state_str())
            .bind(int(written))
            .bind(int(failed))
            .bind(error)
            .bind(ms(now))
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let job_id: String = row.try_get("job_id")?;
        let shard_seq: i64 = row.try_get("seq")?;
        if let Some(partial) = partial {
            index_partial(&mut tx, &job_id, fence.shard_id, partial, now).await?;
        }
        let state = match end {
            BatchEnd::Completed { failed } => {
                record_failures(&mut tx, &job_id, &shard, failed, now).await?;
                sqlx::query(include_str!("job_complete_if_done.sql"))
                    .bind(&job_id)
                    .bind(ms(now))
                    .execute(&mut *tx)
                    .await?;
                ShardState::Completed
            }
            BatchEnd::Failed { error } => {
                sqlx::query(include_str!("job_fail.sql"))
                    .bind(&job_id)
                    .bind(format!("shard {shard_seq} failed: {error}"))
                    .bind(ms(now))
                    .bind(jobs::protocol::FailureKind::Runtime.as_str())
                    .execute(&mut *tx)
                    .await?;
                ShardState::Dead
            }
            BatchEnd::Cancelled => ShardState::Cancelled,
        };
        tx.commit().await?;
        Ok(Some(state))
    }

    async fn recover_polls(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(include_str!("batch_recover.sql"))
            .bind(ms(now))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
