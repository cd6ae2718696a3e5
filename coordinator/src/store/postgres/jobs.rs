//! [`JobStore`] on Postgres.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobs::protocol::{FailureKind, JobState};
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

use super::{int, job_state_of, retry_busy, small, PostgresStore, SHARD_BATCH};
use crate::store::rows::{
    count, failure_kind_of, job_counts, job_state, job_state_str, shard_state,
};
use crate::store::{JobRecord, JobStore, NewJob, NewShard, PlanTotals, ShardRecord, StoreError};

fn job_from_row(row: &PgRow) -> Result<JobRecord, StoreError> {
    Ok(JobRecord {
        id: row.try_get("id")?,
        parent_id: row.try_get("parent_id")?,
        name: row.try_get("name")?,
        spec_hash: row.try_get("spec_hash")?,
        backend: row.try_get("backend")?,
        priority: row.try_get("priority")?,
        state: job_state(&row.try_get::<String, _>("state")?)?,
        error: row.try_get("error")?,
        error_kind: failure_kind_of(row.try_get("error_kind")?)?,
        counts: job_counts(row)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn shard_from_row(row: &PgRow) -> Result<ShardRecord, StoreError> {
    Ok(ShardRecord {
        id: row.try_get("id")?,
        job_id: row.try_get("job_id")?,
        seq: count(row.try_get("seq")?),
        state: shard_state(&row.try_get::<String, _>("state")?)?,
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

#[async_trait]
impl JobStore for PostgresStore {
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

    async fn count_planning_attempt(&self, job_id: Uuid) -> Result<u32, StoreError> {
        let count: Option<i64> = sqlx::query_scalar(include_str!("planning_attempt.sql"))
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(count.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)))
    }

    async fn uncount_planning_attempt(&self, job_id: Uuid) -> Result<(), StoreError> {
        sqlx::query(include_str!("planning_attempt_undo.sql"))
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
        kind: FailureKind,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(include_str!("job_fail.sql"))
            .bind(job_id)
            .bind(error)
            .bind(now)
            .bind(kind.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn add_usage(
        &self,
        _job_id: Uuid,
        shard_id: Uuid,
        usage: jobs::Usage,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if usage == jobs::Usage::default() {
            return Ok(());
        }
        // Postgres keeps usage per shard (no hot job row); the job's is
        // their sum.
        retry_busy("add shard usage", || async move {
            sqlx::query(include_str!("shard_add_usage.sql"))
                .bind(shard_id)
                .bind(int(usage.prompt_tokens))
                .bind(int(usage.completion_tokens))
                .bind(now)
                .execute(&self.pool)
                .await
                .map(|_| ())
                .map_err(StoreError::from)
        })
        .await
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
}
