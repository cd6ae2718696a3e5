//! [`NewSchedule`]: a schedule as a user asks for it — its name, when it
//! fires and the job spec each fire submits — and the checks it passes
//! before it is stored.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::cron_expr::{CronError, CronExpr};
use crate::spec::{JobSpec, SpecError};

/// Longest schedule name.
const MAX_NAME: usize = 64;

/// A schedule to create.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    /// Unique among schedules: letters, digits, `.`, `_` and `-`.
    pub name: String,
    /// Five-field crontab expression (`minute hour day-of-month month
    /// day-of-week`) or a macro (`@daily`, ...).
    pub cron: String,
    /// IANA time zone whose wall clock the expression reads.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// The job each fire submits.
    pub spec: JobSpec,
}

/// A schedule name is 1 to 64 letters, digits, `.`, `_` and `-`, and not
/// `.` or `..`: it goes into URL paths as it is.
pub fn check_name(name: &str) -> Result<(), ScheduleError> {
    if name.is_empty() || name.len() > MAX_NAME {
        let shown: String = name.chars().take(MAX_NAME).collect();
        return Err(ScheduleError::Name(format!(
            "{shown:?} must be 1 to {MAX_NAME} characters"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(ScheduleError::Name(format!(
            "{name:?} has {c:?}; use letters, digits, `.`, `_` and `-`"
        )));
    }
    if name == "." || name == ".." {
        return Err(ScheduleError::Name(format!(
            "{name:?} is not a name; use letters or digits too"
        )));
    }
    Ok(())
}

fn default_timezone() -> String {
    "UTC".to_string()
}

/// Why a schedule was refused; the text names the field.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule `name`: {0}")]
    Name(String),
    #[error("schedule {0}")]
    Cron(#[from] CronError),
    #[error("schedule `spec`: {0}")]
    Spec(#[from] SpecError),
}

impl NewSchedule {
    /// Checks the name, the expression, the time zone and the spec, and
    /// returns the parsed expression.
    pub fn validate(&self) -> Result<CronExpr, ScheduleError> {
        check_name(&self.name)?;
        let expr = CronExpr::parse(&self.cron, &self.timezone)?;
        self.spec.validate()?;
        Ok(expr)
    }
}
