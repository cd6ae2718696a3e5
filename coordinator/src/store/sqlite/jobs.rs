//! [`JobStore`] on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobs::protocol::{FailureKind, JobState};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use uuid::Uuid;

use super::{add_usage, from_ms, ms, parse_uuid, SqliteStore};
use crate::store::rows::{
    count, failure_kind_of, job_counts, job_state, job_state_str, shard_state,
};
use crate::store::{JobRecord, JobStore, NewJob, NewShard, PlanTotals, ShardRecord, StoreError};

fn job_from_row(row: &SqliteRow) -> Result<JobRecord, StoreError> {
    let id: String = row.try_get("id")?;
    Ok(JobRecord {
        id: parse_uuid("jobs", &id)?,
        parent_id: row
            .try_get::<Option<String>, _>("parent_id")?
            .map(|p| parse_uuid("jobs", &p))
            .transpose()?,
        name: row.try_get("name")?,
        spec_hash: row.try_get("spec_hash")?,
        backend: row.try_get("backend")?,
        priority: i32::try_from(row.try_get::<i64, _>("priority")?).unwrap_or(0),
        state: job_state(&row.try_get::<String, _>("state")?)?,
        error: row.try_get("error")?,
        error_kind: failure_kind_of(row.try_get("error_kind")?)?,
        counts: job_counts(row)?,
        created_at: from_ms(row.try_get("created_at")?),
        updated_at: from_ms(row.try_get("updated_at")?),
    })
}

fn shard_from_row(row: &SqliteRow) -> Result<ShardRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let job_id: String = row.try_get("job_id")?;
    let lease_expires_at: Option<i64> = row.try_get("lease_expires_at")?;
    Ok(ShardRecord {
        id: parse_uuid("shards", &id)?,
        job_id: parse_uuid("shards", &job_id)?,
        seq: count(row.try_get("seq")?),
        state: shard_state(&row.try_get::<String, _>("state")?)?,
        attempt: u32::try_from(row.try_get::<i64, _>("attempt")?).unwrap_or(0),
        attempts_used: u32::try_from(row.try_get::<i64, _>("attempts_used")?).unwrap_or(0),
        max_attempts: u32::try_from(row.try_get::<i64, _>("max_attempts")?).unwrap_or(0),
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: lease_expires_at.map(from_ms),
        next_visible_at: from_ms(row.try_get("next_visible_at")?),
        last_error: row.try_get("last_error")?,
        request_count: count(row.try_get("request_count")?),
        completed_count: count(row.try_get("completed_count")?),
        failed_count: count(row.try_get("failed_count")?),
    })
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn create_job(&self, job: NewJob) -> Result<(JobRecord, bool), StoreError> {
        let inserted = sqlx::query(include_str!("job_insert.sql"))
            .bind(job.id.to_string())
            .bind(&job.name)
            .bind(&job.spec_json)
            .bind(&job.spec_hash)
            .bind(job.backend.as_str())
            .bind(ms(job.created_at))
            .bind(i64::from(job.priority))
            .bind(&job.model)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from);
        match inserted {
            Ok(_) => Ok((self.get_job(job.id).await?, true)),
            // The partial unique index on live jobs' spec_hash refused it:
            // the same spec is already being worked on.
            Err(StoreError::Conflict(_)) => {
                let row = sqlx::query(include_str!("job_live_by_hash.sql"))
                    .bind(&job.spec_hash)
                    .fetch_optional(&self.pool)
                    .await?;
                match row {
                    Some(row) => {
                        let id: String = row.try_get("id")?;
                        Ok((self.get_job(parse_uuid("jobs", &id)?).await?, false))
                    }
                    // It finished between the insert and the look-up: retry once.
                    None => Box::pin(self.create_job(job)).await,
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn get_job(&self, id: Uuid) -> Result<JobRecord, StoreError> {
        let row = sqlx::query(include_str!("job_get.sql"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::JobNotFound(id))?;
        job_from_row(&row)
    }

    async fn job_spec_json(&self, id: Uuid) -> Result<String, StoreError> {
        let row = sqlx::query(include_str!("job_spec.sql"))
            .bind(id.to_string())
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
            .map(|r| parse_uuid("jobs", &r.try_get::<String, _>(0)?))
            .collect()
    }

    async fn reset_planning(&self, job_id: Uuid) -> Result<(), StoreError> {
        sqlx::query(include_str!("planning_reset.sql"))
            .bind(job_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn count_planning_attempt(&self, job_id: Uuid) -> Result<u32, StoreError> {
        let count: Option<i64> = sqlx::query_scalar(include_str!("planning_attempt.sql"))
            .bind(job_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(count.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)))
    }

    async fn uncount_planning_attempt(&self, job_id: Uuid) -> Result<(), StoreError> {
        sqlx::query(include_str!("planning_attempt_undo.sql"))
            .bind(job_id.to_string())
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
        let mut tx = self.begin_write().await?;
        let job = job_id.to_string();
        for shard in shards {
            sqlx::query(include_str!("shard_insert.sql"))
                .bind(shard.id.to_string())
                .bind(&job)
                .bind(i64::try_from(shard.seq).unwrap_or(i64::MAX))
                .bind(i64::from(shard.max_attempts.max(1)))
                .bind(&shard.requests_json)
                .bind(i64::try_from(shard.request_count).unwrap_or(i64::MAX))
                .bind(ms(now))
                .execute(&mut *tx)
                .await
                .map_err(|e| match StoreError::from(e) {
                    StoreError::Conflict(msg) if msg.contains("FOREIGN KEY") => {
                        StoreError::JobNotFound(job_id)
                    }
                    other => other,
                })?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn finish_planning(
        &self,
        job_id: Uuid,
        totals: PlanTotals,
        now: DateTime<Utc>,
    ) -> Result<JobState, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(include_str!("planning_finish.sql"))
            .bind(job_id.to_string())
            .bind(i64::try_from(totals.docs).unwrap_or(i64::MAX))
            .bind(i64::try_from(totals.bad_rows).unwrap_or(i64::MAX))
            .bind(i64::try_from(totals.requests).unwrap_or(i64::MAX))
            .bind(i64::try_from(totals.cached).unwrap_or(i64::MAX))
            .bind(ms(now))
            .fetch_optional(&mut *tx)
            .await?;
        let row = match row {
            Some(row) => row,
            None => sqlx::query(include_str!("job_state.sql"))
                .bind(job_id.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::JobNotFound(job_id))?,
        };
        tx.commit().await?;
        job_state(&row.try_get::<String, _>(0)?)
    }

    async fn fail_job(
        &self,
        job_id: Uuid,
        error: &str,
        kind: FailureKind,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(include_str!("job_fail.sql"))
            .bind(job_id.to_string())
            .bind(error)
            .bind(ms(now))
            .bind(kind.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn add_usage(
        &self,
        job_id: Uuid,
        _shard_id: Uuid,
        usage: jobs::Usage,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // SQLite keeps usage on the job row (one writer at a time).
        let mut tx = self.begin_write().await?;
        add_usage(&mut tx, &job_id.to_string(), usage, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn cancel_job(&self, job_id: Uuid, now: DateTime<Utc>) -> Result<JobRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let id = job_id.to_string();
        let changed = sqlx::query(include_str!("job_cancel.sql"))
            .bind(&id)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed > 0 {
            sqlx::query(include_str!("shards_cancel_available.sql"))
                .bind(&id)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.get_job(job_id).await
    }

    async fn list_shards(&self, job_id: Uuid) -> Result<Vec<ShardRecord>, StoreError> {
        let rows = sqlx::query(include_str!("shard_list.sql"))
            .bind(job_id.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(shard_from_row).collect()
    }

    async fn shard_requests(&self, shard_id: Uuid) -> Result<Option<(Uuid, String)>, StoreError> {
        let row = sqlx::query(include_str!("shard_requests.sql"))
            .bind(shard_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let job_id: String = row.try_get(0)?;
        Ok(Some((parse_uuid("shards", &job_id)?, row.try_get(1)?)))
    }
}
