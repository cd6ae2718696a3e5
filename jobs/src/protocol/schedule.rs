//! Bodies of the schedule routes (admin token): a schedule as the API shows
//! it, with the jobs it fired. Creating one takes a
//! [`NewSchedule`](crate::schedule::NewSchedule).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::state::JobState;

/// A schedule and its newest runs.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct ScheduleStatus {
    pub id: Uuid,
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub paused: bool,
    /// When it fires next (RFC 3339, UTC); while paused, when it would.
    pub next_fire_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fired_at: Option<String>,
    pub created_at: String,
    /// The name of the job each fire submits.
    pub job_name: String,
    /// The jobs it fired, newest first (the latest few).
    #[serde(default)]
    pub runs: Vec<ScheduleRunStatus>,
}

/// One job a schedule fired.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct ScheduleRunStatus {
    pub job_id: Uuid,
    pub state: JobState,
    pub created_at: String,
}
