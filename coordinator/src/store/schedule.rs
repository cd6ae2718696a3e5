//! Schedules as the store keeps them: a job spec, its cron expression and
//! time zone, and when it fires next; firing one creates its job in the
//! same transaction that moves `next_fire_at` on, so no fire happens twice.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobs::protocol::JobState;
use uuid::Uuid;

use super::{NewJob, StoreError};

#[derive(Clone, Debug, PartialEq)]
pub struct NewScheduleRecord {
    pub id: Uuid,
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub spec_json: String,
    pub next_fire_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleRecord {
    pub id: Uuid,
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub spec_json: String,
    pub paused: bool,
    pub next_fire_at: DateTime<Utc>,
    pub last_fired_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One fire of a due schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleFire {
    pub schedule_id: Uuid,
    /// The `next_fire_at` the caller saw: the fire happens only if it is
    /// still that (another replica has not fired it meanwhile).
    pub due_at: DateTime<Utc>,
    /// When it fires after this one.
    pub next_fire_at: DateTime<Utc>,
    /// The job to create.
    pub job: NewJob,
}

/// What a fire did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FireOutcome {
    /// The job was created.
    Fired(Uuid),
    /// The same spec's job from an earlier fire is still planning or
    /// running: no second one is made, and the schedule moves on.
    StillRunning(Uuid),
    /// Someone else fired it (or it was paused, moved or deleted) first.
    Lost,
}

/// A job a schedule fired.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleRun {
    pub job_id: Uuid,
    pub state: JobState,
    pub created_at: DateTime<Utc>,
}

#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Stores a new schedule; [`StoreError::Conflict`] when its name is
    /// taken.
    async fn create_schedule(&self, new: NewScheduleRecord) -> Result<ScheduleRecord, StoreError>;

    /// The schedule named `name`; [`StoreError::ScheduleNotFound`] if none.
    async fn get_schedule(&self, name: &str) -> Result<ScheduleRecord, StoreError>;

    /// Every schedule, by name.
    async fn list_schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError>;

    /// Pauses or resumes `name`; resuming sets when it fires next.
    async fn set_schedule_paused(
        &self,
        name: &str,
        paused: bool,
        next_fire_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<ScheduleRecord, StoreError>;

    /// Makes `name` fire at `at` (`run-now`: now).
    async fn set_next_fire(
        &self,
        name: &str,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<ScheduleRecord, StoreError>;

    /// Deletes `name`; the jobs it fired stay.
    async fn delete_schedule(&self, name: &str) -> Result<(), StoreError>;

    /// Unpaused schedules whose `next_fire_at` is at or before `now`.
    async fn due_schedules(&self, now: DateTime<Utc>) -> Result<Vec<ScheduleRecord>, StoreError>;

    /// Fires a schedule: in one transaction, moves `next_fire_at` from
    /// `fire.due_at` to `fire.next_fire_at` (or does nothing when it has
    /// moved), records the fire, and creates the job (`planning`, tagged
    /// with the schedule) unless the same spec's job is still live.
    async fn fire_schedule(
        &self,
        fire: &ScheduleFire,
        now: DateTime<Utc>,
    ) -> Result<FireOutcome, StoreError>;

    /// The newest `limit` jobs `schedule_id` fired, newest first.
    async fn schedule_runs(
        &self,
        schedule_id: Uuid,
        limit: u32,
    ) -> Result<Vec<ScheduleRun>, StoreError>;
}
