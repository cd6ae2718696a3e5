//! [`ScheduleStore`] on Postgres.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgQueryResult, PgRow};
use sqlx::Row;
use uuid::Uuid;

use super::PostgresStore;
use crate::store::rows::job_state;
use crate::store::{
    FireOutcome, NewScheduleRecord, ScheduleFire, ScheduleRecord, ScheduleRun, ScheduleStore,
    StoreError,
};

fn schedule_from_row(row: &PgRow) -> Result<ScheduleRecord, StoreError> {
    Ok(ScheduleRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        cron: row.try_get("cron")?,
        timezone: row.try_get("timezone")?,
        spec_json: row.try_get("spec_json")?,
        paused: row.try_get("paused")?,
        next_fire_at: row.try_get("next_fire_at")?,
        last_fired_at: row.try_get("last_fired_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl PostgresStore {
    /// The schedule `name` after a statement on it, or
    /// [`StoreError::ScheduleNotFound`] when the statement changed no row.
    async fn changed(&self, name: &str, done: PgQueryResult) -> Result<ScheduleRecord, StoreError> {
        if done.rows_affected() == 0 {
            return Err(StoreError::ScheduleNotFound(name.to_string()));
        }
        self.get_schedule(name).await
    }
}

#[async_trait]
impl ScheduleStore for PostgresStore {
    async fn create_schedule(&self, new: NewScheduleRecord) -> Result<ScheduleRecord, StoreError> {
        sqlx::query(include_str!("schedule_insert.sql"))
            .bind(new.id)
            .bind(&new.name)
            .bind(&new.cron)
            .bind(&new.timezone)
            .bind(&new.spec_json)
            .bind(new.next_fire_at)
            .bind(new.created_at)
            .execute(&self.pool)
            .await
            .map_err(|e| match StoreError::from(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!(
                    "a schedule named {:?} exists; pick another name or delete it first",
                    new.name
                )),
                other => other,
            })?;
        self.get_schedule(&new.name).await
    }

    async fn get_schedule(&self, name: &str) -> Result<ScheduleRecord, StoreError> {
        let row = sqlx::query(include_str!("schedule_get.sql"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::ScheduleNotFound(name.to_string()))?;
        schedule_from_row(&row)
    }

    async fn list_schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        let rows = sqlx::query(include_str!("schedule_list.sql"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    async fn set_schedule_paused(
        &self,
        name: &str,
        paused: bool,
        next_fire_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<ScheduleRecord, StoreError> {
        let done = sqlx::query(include_str!("schedule_pause.sql"))
            .bind(name)
            .bind(paused)
            .bind(next_fire_at)
            .bind(now)
            .execute(&self.pool)
            .await?;
        self.changed(name, done).await
    }

    async fn set_next_fire(
        &self,
        name: &str,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<ScheduleRecord, StoreError> {
        let done = sqlx::query(include_str!("schedule_next.sql"))
            .bind(name)
            .bind(at)
            .bind(now)
            .execute(&self.pool)
            .await?;
        self.changed(name, done).await
    }

    async fn delete_schedule(&self, name: &str) -> Result<(), StoreError> {
        let done = sqlx::query(include_str!("schedule_delete.sql"))
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::ScheduleNotFound(name.to_string()));
        }
        Ok(())
    }

    async fn due_schedules(&self, now: DateTime<Utc>) -> Result<Vec<ScheduleRecord>, StoreError> {
        let rows = sqlx::query(include_str!("schedule_due.sql"))
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    async fn fire_schedule(
        &self,
        fire: &ScheduleFire,
        now: DateTime<Utc>,
    ) -> Result<FireOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(include_str!("schedule_advance.sql"))
            .bind(fire.schedule_id)
            .bind(fire.due_at)
            .bind(fire.next_fire_at)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if moved.rows_affected() == 0 {
            return Ok(FireOutcome::Lost);
        }
        let job = &fire.job;
        // Nothing is inserted while the same spec's job is live.
        let inserted = sqlx::query(include_str!("job_insert.sql"))
            .bind(job.id)
            .bind(&job.name)
            .bind(&job.spec_json)
            .bind(&job.spec_hash)
            .bind(job.backend.as_str())
            .bind(job.priority)
            .bind(job.created_at)
            .bind(&job.model)
            .fetch_optional(&mut *tx)
            .await?;
        let outcome = if inserted.is_some() {
            sqlx::query(include_str!("schedule_tag_job.sql"))
                .bind(job.id)
                .bind(fire.schedule_id)
                .execute(&mut *tx)
                .await?;
            FireOutcome::Fired(job.id)
        } else {
            let live: Option<Uuid> = sqlx::query_scalar(include_str!("job_live_by_hash.sql"))
                .bind(&job.spec_hash)
                .fetch_optional(&mut *tx)
                .await?;
            // The live job finished between the two statements: the fire
            // is undone and made again at the next tick.
            let Some(live) = live else {
                return Err(StoreError::Busy(format!(
                    "the job of spec {} finished while schedule {} fired; firing again",
                    job.spec_hash, fire.schedule_id
                )));
            };
            FireOutcome::StillRunning(live)
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn schedule_runs(
        &self,
        schedule_id: Uuid,
        limit: u32,
    ) -> Result<Vec<ScheduleRun>, StoreError> {
        let rows = sqlx::query(include_str!("schedule_runs.sql"))
            .bind(schedule_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ScheduleRun {
                    job_id: r.try_get("id")?,
                    state: job_state(&r.try_get::<String, _>("state")?)?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }
}
