//! Schedules: creating, pausing, resuming, deleting and listing them, and
//! the leader's duty of firing the due ones (`leader_tick`). A fire
//! submits the stored spec as a new job; a fire missed while no
//! coordinator ran is caught up once, not once per missed slot: the next
//! fire time is always the first one after *now*.

use chrono::{DateTime, Utc};
use jobs::protocol::{ScheduleRunStatus, ScheduleStatus};
use jobs::schedule::{CronExpr, NewSchedule};
use jobs::JobSpec;
use uuid::Uuid;

use crate::coordinator::Coordinator;
use crate::error::CoordinatorError;
use crate::store::{FireOutcome, NewScheduleRecord, ScheduleFire, ScheduleRecord, StoreError};
use crate::submission::new_job;

/// Runs shown with a schedule.
const RUNS_SHOWN: u32 = 10;

fn when(t: DateTime<Utc>) -> String {
    t.to_rfc3339()
}

/// The stored expression, parsed again (it was checked when stored).
fn expr_of(record: &ScheduleRecord) -> Result<CronExpr, CoordinatorError> {
    CronExpr::parse(&record.cron, &record.timezone)
        .map_err(|e| CoordinatorError::Internal(format!("stored schedule {:?}: {e}", record.name)))
}

fn next_after(
    expr: &CronExpr,
    name: &str,
    after: DateTime<Utc>,
) -> Result<DateTime<Utc>, CoordinatorError> {
    expr.next_after(after).ok_or_else(|| {
        CoordinatorError::BadRequest(format!(
            "schedule {name:?} never fires after {}: its expression names no future time",
            when(after)
        ))
    })
}

impl Coordinator {
    /// Stores a schedule after checking it as a submitted job is checked
    /// (spec, limits, dataset roots); it first fires at the expression's
    /// next time.
    pub async fn create_schedule(
        &self,
        new: NewSchedule,
    ) -> Result<ScheduleStatus, CoordinatorError> {
        let expr = new
            .validate()
            .map_err(|e| CoordinatorError::BadRequest(e.to_string()))?;
        self.admit(&new.spec)?;
        let now = Utc::now();
        let spec_json = serde_json::to_string(&new.spec)
            .map_err(|e| CoordinatorError::Internal(format!("cannot encode the job spec: {e}")))?;
        let created = self
            .store()
            .create_schedule(NewScheduleRecord {
                id: Uuid::now_v7(),
                name: new.name.clone(),
                cron: new.cron.trim().to_string(),
                timezone: new.timezone.trim().to_string(),
                spec_json,
                next_fire_at: next_after(&expr, &new.name, now)?,
                created_at: now,
            })
            .await;
        let record = match created {
            Ok(record) => record,
            Err(StoreError::Conflict(why)) => return Err(CoordinatorError::NameTaken(why)),
            Err(e) => return Err(e.into()),
        };
        tracing::info!(schedule = %record.name, cron = %record.cron, "schedule created");
        self.schedule_status(record).await
    }

    /// Every schedule, by name, with its newest runs.
    pub async fn schedules(&self) -> Result<Vec<ScheduleStatus>, CoordinatorError> {
        let mut out = Vec::new();
        for record in self.store().list_schedules().await? {
            out.push(self.schedule_status(record).await?);
        }
        Ok(out)
    }

    /// The schedule `name` with its newest runs.
    pub async fn schedule(&self, name: &str) -> Result<ScheduleStatus, CoordinatorError> {
        let record = self.store().get_schedule(name).await?;
        self.schedule_status(record).await
    }

    /// Stops `name` firing until it is resumed.
    pub async fn pause_schedule(&self, name: &str) -> Result<ScheduleStatus, CoordinatorError> {
        let record = self.store().get_schedule(name).await?;
        let now = Utc::now();
        let record = self
            .store()
            .set_schedule_paused(name, true, record.next_fire_at, now)
            .await?;
        self.schedule_status(record).await
    }

    /// Lets `name` fire again, from its next time after now (the fires it
    /// missed while paused are not caught up). An active schedule is left
    /// as it is (a pending run-now stays pending).
    pub async fn resume_schedule(&self, name: &str) -> Result<ScheduleStatus, CoordinatorError> {
        let record = self.store().get_schedule(name).await?;
        if !record.paused {
            return self.schedule_status(record).await;
        }
        let now = Utc::now();
        let next = next_after(&expr_of(&record)?, name, now)?;
        let record = self
            .store()
            .set_schedule_paused(name, false, next, now)
            .await?;
        self.schedule_status(record).await
    }

    /// Makes `name` fire at the leader's next tick.
    pub async fn run_schedule_now(&self, name: &str) -> Result<ScheduleStatus, CoordinatorError> {
        let record = self.store().get_schedule(name).await?;
        if record.paused {
            return Err(CoordinatorError::BadRequest(format!(
                "schedule {name:?} is paused; resume it first (`shardline schedule resume \
                 {name}`)"
            )));
        }
        let now = Utc::now();
        let record = self.store().set_next_fire(name, now, now).await?;
        self.schedule_status(record).await
    }

    /// Deletes `name`; the jobs it fired stay.
    pub async fn delete_schedule(&self, name: &str) -> Result<(), CoordinatorError> {
        self.store().delete_schedule(name).await?;
        tracing::info!(schedule = %name, "schedule deleted");
        Ok(())
    }

    /// Fires every schedule due at `now` (the leader's duty): returns the
    /// jobs created. A schedule whose spec this coordinator no longer
    /// admits (its limits or roots changed) is paused, with the reason
    /// logged, instead of failing at every tick.
    pub async fn fire_due_schedules(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, CoordinatorError> {
        let mut fired = Vec::new();
        for record in self.store().due_schedules(now).await? {
            match self.fire(&record, now).await {
                Ok(Some(job)) => fired.push(job),
                Ok(None) => {}
                // The store may be back at the next tick.
                Err(e @ CoordinatorError::Store(_)) => {
                    tracing::warn!(schedule = %record.name, error = %e, "cannot fire; retrying");
                }
                // Its spec or expression no longer reads, or is refused
                // here: no tick will do better.
                Err(e) => {
                    tracing::error!(schedule = %record.name, error = %e,
                        "the schedule cannot fire; pausing it (fix it, then resume it)");
                    if let Err(e) = self
                        .store()
                        .set_schedule_paused(&record.name, true, record.next_fire_at, now)
                        .await
                    {
                        tracing::warn!(schedule = %record.name, error = %e, "cannot pause it");
                    }
                }
            }
        }
        if !fired.is_empty() {
            self.plan_signal().wake();
        }
        Ok(fired)
    }

    async fn fire(
        &self,
        record: &ScheduleRecord,
        now: DateTime<Utc>,
    ) -> Result<Option<Uuid>, CoordinatorError> {
        let expr = expr_of(record)?;
        let spec: JobSpec = serde_json::from_str(&record.spec_json).map_err(|e| {
            CoordinatorError::Internal(format!(
                "stored spec of schedule {:?} cannot be read: {e}",
                record.name
            ))
        })?;
        self.admit(&spec)?;
        let fire = ScheduleFire {
            schedule_id: record.id,
            due_at: record.next_fire_at,
            // After now, not after the missed time: one catch-up fire.
            next_fire_at: next_after(&expr, &record.name, now)?,
            job: new_job(&spec, 0)?,
        };
        match self.store().fire_schedule(&fire, now).await? {
            FireOutcome::Fired(job) => {
                tracing::info!(schedule = %record.name, job_id = %job,
                    due = %when(record.next_fire_at), "schedule fired");
                Ok(Some(job))
            }
            FireOutcome::StillRunning(job) => {
                tracing::warn!(schedule = %record.name, job_id = %job,
                    "schedule due while its last job still runs; skipped this fire");
                Ok(None)
            }
            FireOutcome::Lost => Ok(None),
        }
    }

    async fn schedule_status(
        &self,
        record: ScheduleRecord,
    ) -> Result<ScheduleStatus, CoordinatorError> {
        let runs = self
            .store()
            .schedule_runs(record.id, RUNS_SHOWN)
            .await?
            .into_iter()
            .map(|r| ScheduleRunStatus {
                job_id: r.job_id,
                state: r.state,
                created_at: when(r.created_at),
            })
            .collect();
        let job_name = serde_json::from_str::<JobSpec>(&record.spec_json)
            .map(|s| s.name)
            .unwrap_or_default();
        Ok(ScheduleStatus {
            id: record.id,
            name: record.name,
            cron: record.cron,
            timezone: record.timezone,
            paused: record.paused,
            next_fire_at: when(record.next_fire_at),
            last_fired_at: record.last_fired_at.map(when),
            created_at: when(record.created_at),
            job_name,
            runs,
        })
    }
}
