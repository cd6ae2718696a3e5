//! [`ScheduleStore`] on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use uuid::Uuid;

use super::{from_ms, ms, parse_uuid, SqliteStore};
use crate::store::rows::job_state;
use crate::store::{
    FireOutcome, NewScheduleRecord, ScheduleFire, ScheduleRecord, ScheduleRun, ScheduleStore,
    StoreError,
};

fn schedule_from_row(row: &SqliteRow) -> Result<ScheduleRecord, StoreError> {
    Ok(ScheduleRecord {
        id: parse_uuid("schedules", &row.try_get::<String, _>("id")?)?,
        name: row.try_get("name")?,
        cron: row.try_get("cron")?,
        timezone: row.try_get("timezone")?,
        spec_json: row.try_get("spec_json")?,
        paused: row.try_get::<i64, _>("paused")? != 0,
        next_fire_at: from_ms(row.try_get("next_fire_at")?),
        last_fired_at: row.try_get::<Option<i64>, _>("last_fired_at")?.map(from_ms),
        created_at: from_ms(row.try_get("created_at")?),
        updated_at: from_ms(row.try_get("updated_at")?),
    })
}

impl SqliteStore {
    /// Runs `query` (a statement on one schedule, by name) and reads the
    /// schedule back; [`StoreError::ScheduleNotFound`] when no row changed.
    async fn changed(
        &self,
        name: &str,
        done: sqlx::sqlite::SqliteQueryResult,
    ) -> Result<ScheduleRecord, StoreError> {
        if done.rows_affected() == 0 {
            return Err(StoreError::ScheduleNotFound(name.to_string()));
        }
        self.get_schedule(name).await
    }
}

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn create_schedule(&self, new: NewScheduleRecord) -> Result<ScheduleRecord, StoreError> {
        sqlx::query(include_str!("schedule_insert.sql"))
            .bind(new.id.to_string())
            .bind(&new.name)
            .bind(&new.cron)
            .bind(&new.timezone)
            .bind(&new.spec_json)
            .bind(ms(new.next_fire_at))
            .bind(ms(new.created_at))
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
            .bind(i64::from(paused))
            .bind(ms(next_fire_at))
            .bind(ms(now))
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
            .bind(ms(at))
            .bind(ms(now))
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
            .bind(ms(now))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    async fn fire_schedule(
        &self,
        fire: &ScheduleFire,
        now: DateTime<Utc>,
    ) -> Result<FireOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let moved = sqlx::query(include_str!("schedule_advance.sql"))
            .bind(fire.schedule_id.to_string())
            .bind(ms(fire.due_at))
            .bind(ms(fire.next_fire_at))
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        if moved.rows_affected() == 0 {
            return Ok(FireOutcome::Lost);
        }
        // One writer at a time (BEGIN IMMEDIATE): the live job looked up
        // here cannot appear before the insert below.
        let live: Option<String> = sqlx::query_scalar(include_str!("job_live_by_hash.sql"))
            .bind(&fire.job.spec_hash)
            .fetch_optional(&mut *tx)
            .await?;
        let outcome = match live {
            Some(id) => FireOutcome::StillRunning(parse_uuid("jobs", &id)?),
            None => {
                let job = &fire.job;
                sqlx::query(include_str!("job_insert.sql"))
                    .bind(job.id.to_string())
                    .bind(&job.name)
                    .bind(&job.spec_json)
                    .bind(&job.spec_hash)
                    .bind(job.backend.as_str())
                    .bind(ms(job.created_at))
                    .bind(i64::from(job.priority))
                    .bind(&job.model)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(include_str!("schedule_tag_job.sql"))
                    .bind(job.id.to_string())
                    .bind(fire.schedule_id.to_string())
                    .execute(&mut *tx)
                    .await?;
                FireOutcome::Fired(job.id)
            }
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
            .bind(schedule_id.to_string())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ScheduleRun {
                    job_id: parse_uuid("jobs", &r.try_get::<String, _>("id")?)?,
                    state: job_state(&r.try_get::<String, _>("state")?)?,
                    created_at: from_ms(r.try_get("created_at")?),
                })
            })
            .collect()
    }
}
