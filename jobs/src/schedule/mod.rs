//! Schedules: a job spec re-submitted on a cron schedule. `cron_expr`
//! reads the expression and its time zone; `new` is what a user asks for,
//! checked before it is stored.

mod cron_expr;
mod new;

pub use cron_expr::{CronError, CronExpr};
pub use new::{check_name, NewSchedule, ScheduleError};
