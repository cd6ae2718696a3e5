//! [`ProviderBatchStore`] on Postgres: the `openai-batch` lifecycle,
//! reservations under the enqueued-token cap (serialised per model by an
//! advisory lock), the `running` → `submitted` step, poll leases (`FOR UPDATE
//! SKIP LOCKED`) and the end of a submitted shard, each one fenced statement or
//! transaction. The SQL is in the `batch_*.sql` files beside this one.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobs::protocol::{JobState, ShardState};
use sqlx::Row;
use std::time::Duration;
use uuid::Uuid;

use super::{int, job_state_of, retry_busy, sorted_keys, PostgresStore};
use crate::store::provider_batch::grant;
use crate::store::rows::lease_end;
use crate::store::{
    BatchEnd, BatchFence, BatchSubmission, BatchUpdate, Claimant, ClaimedPoll, LeaseFence, Partial,
    PollClaim, PollFence, ProviderBatchStore, StoreError,
};

/// The partial's segment, sorted keys and tokens as the SQL binds them.
fn partial_binds(partial: Option<&Partial>) -> (Option<String>, Vec<String>, i64, i64) {
    match partial {
        Some(p) => (
            Some(p.segment.clone()),
            sorted_keys(&p.written),
            int(p.usage.prompt_tokens),
            int(p.usage.completion_tokens),
        ),
        None => (None, Vec::new(), 0, 0),
    }
}

#[async_trait]
impl ProviderBatchStore for PostgresStore {
    async fn reserve(
        &self,
        holder: &BatchFence,
        model_key: &str,
        cap: u64,
        base: u64,
        wanted: &[u64],
        now: DateTime<Utc>,
    ) -> Result<Option<(u32, u64)>, StoreError> {
        let shard = holder.shard_id();
        let (kind, token, owner) = holder.binds();
        retry_busy("batch reserve", || async move {
            let mut tx = self.pool.begin().await?;
            sqlx::query(include_str!("batch_lock_model.sql"))
                .bind(model_key)
                .execute(&mut *tx)
                .await?;
            let held = sqlx::query(include_str!("batch_holder.sql"))
                .bind(shard)
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
                .bind(shard)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            let elsewhere = u64::try_from(elsewhere).unwrap_or(0);
            let (granted, added) = grant(cap, elsewhere, base, wanted);
            sqlx::query(include_str!("batch_reserve_set.sql"))
                .bind(shard)
                .bind(int(base.saturating_add(added)))
                .bind(model_key)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Some((granted, elsewhere)))
        })
        .await
    }

    async fn submit(
        &self,
        fence: &LeaseFence,
        submission: &BatchSubmission,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let row = retry_busy("batch submit", || async move {
            sqlx::query(include_str!("batch_submit.sql"))
                .bind(fence.shard_id)
                .bind(i64::from(fence.attempt))
                .bind(&fence.worker_id)
                .bind(&submission.state_json)
                .bind(&submission.model_key)
                .bind(int(submission.enqueued_tokens))
                .bind(submission.next_poll_at)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::from)
        })
        .await?;
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
        let (names, patterns) = (&who.backend_names(), &who.like_patterns());
        let (worker_id, max, lease) = (who.worker_id, who.max, who.lease);
        let until = lease_end(now, lease);
        let rows = retry_busy("batch claim", || async move {
            sqlx::query(include_str!("batch_claim.sql"))
                .bind(worker_id)
                .bind(until)
                .bind(now)
                .bind(names)
                .bind(i64::from(max))
                .bind(patterns)
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::from)
        })
        .await?;
        let mut claim = PollClaim::default();
        for row in &rows {
            claim.polls.push(ClaimedPoll {
                shard_id: row.try_get("id")?,
                job_id: row.try_get("job_id")?,
                poll_seq: u64::try_from(row.try_get::<i64, _>("poll_seq")?).unwrap_or(0),
                poll_expires_at: row.try_get("poll_expires_at")?,
                job_state: job_state_of(row, "job_state")?,
                state_json: row
                    .try_get::<Option<String>, _>("batch_state")?
                    .unwrap_or_default(),
            });
        }
        if claim.polls.is_empty() {
            let next: Option<DateTime<Utc>> = sqlx::query(include_str!("batch_next_due.sql"))
                .bind(names)
                .bind(patterns)
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?;
            claim.next_due_at = next;
        }
        Ok(claim)
    }

    async fn renew_poll(
        &self,
        fence: &PollFence,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<JobState>, StoreError> {
        let until = lease_end(now, lease);
        let row = retry_busy("batch heartbeat", || async move {
            sqlx::query(include_str!("batch_heartbeat.sql"))
                .bind(fence.shard_id)
                .bind(int(fence.poll_seq))
                .bind(&fence.worker_id)
                .bind(until)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::from)
        })
        .await?;
        match row {
            Some(row) => Ok(Some(job_state_of(&row, "job_state")?)),
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
        let until = lease_end(now, lease);
        let (segment, keys, prompt, completion) = partial_binds(update.partial.as_ref());
        let (segment, keys) = (&segment, &keys);
        let row = retry_busy("batch update", || async move {
            sqlx::query(include_str!("batch_update.sql"))
                .bind(fence.shard_id)
                .bind(int(fence.poll_seq))
                .bind(&fence.worker_id)
                .bind(&update.state_json)
                .bind(int(update.enqueued_tokens))
                .bind(update.keep_lease)
                .bind(update.next_poll_at)
                .bind(until)
                .bind(now)
                .bind(segment.as_deref())
                .bind(keys)
                .bind(prompt)
                .bind(completion)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::from)
        })
        .await?;
        Ok(row.is_some())
    }

    async fn finish(
        &self,
        fence: &PollFence,
        end: &BatchEnd,
        partial: Option<&Partial>,
        now: DateTime<Utc>,
    ) -> Result<Option<ShardState>, StoreError> {
        let (segment, keys, prompt, completion) = partial_binds(partial);
        let (segment, keys) = (&segment, &keys);
        let (failed_keys, failed_errors, error): (Vec<String>, Vec<String>, Option<&str>) =
            match end {
                BatchEnd::Completed { failed } => (
                    failed.iter().map(|f| f.key.as_str().to_string()).collect(),
                    failed.iter().map(|f| f.error.clone()).collect(),
                    None,
                ),
                BatchEnd::Failed { error } => (Vec::new(), Vec::new(), Some(error.as_str())),
                BatchEnd::Cancelled => (Vec::new(), Vec::new(), None),
            };
        let (failed_keys, failed_errors) = (&failed_keys, &failed_errors);
        let failed_count = int(failed_keys.len() as u64);
        let state = end.state_str();
        let row = retry_busy("batch finish", || async move {
            sqlx::query(include_str!("batch_finish.sql"))
                .bind(fence.shard_id)
                .bind(int(fence.poll_seq))
                .bind(&fence.worker_id)
                .bind(state)
                .bind(failed_count)
                .bind(error)
                .bind(now)
                .bind(segment.as_deref())
                .bind(keys)
                .bind(prompt)
                .bind(completion)
                .bind(failed_keys)
                .bind(failed_errors)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::from)
        })
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let job_id: Uuid = row.try_get("job_id")?;
        Ok(Some(match end {
            BatchEnd::Completed { .. } => {
                // Its own statement after the commit, as for every
                // completion: of two last shards finishing at once, the
                // later check sees both.
                sqlx::query(include_str!("job_complete_if_done.sql"))
                    .bind(vec![job_id])
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                ShardState::Completed
            }
            BatchEnd::Failed { .. } => ShardState::Dead,
            BatchEnd::Cancelled => ShardState::Cancelled,
        }))
    }

    async fn recover_polls(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(include_str!("batch_recover.sql"))
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
