//! Arguments of `shardline schedule …`: schedules live on a coordinator
//! (`shardline serve`), which fires them while it runs.

use clap::{Args, Subcommand};
use std::path::PathBuf;

use super::remote::RemoteArgs;

#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Store a schedule: at each fire the coordinator submits JOB (its spec
    /// as read now, engine fingerprints included) as a new job. A fire
    /// missed while no coordinator ran is made once when one starts, not
    /// once per missed time; a fire due while the last one's job still
    /// runs is skipped.
    Create(ScheduleCreateArgs),
    /// List the schedules, with when each fires next and its last run.
    List(ScheduleListArgs),
    /// Show one schedule and the jobs it fired.
    Show(ScheduleNameArgs),
    /// Stop a schedule firing until it is resumed.
    Pause(ScheduleNameArgs),
    /// Let a paused schedule fire again, from its next time after now.
    Resume(ScheduleNameArgs),
    /// Fire a schedule now (within the coordinator's next tick).
    RunNow(ScheduleNameArgs),
    /// Delete a schedule; the jobs it fired stay.
    Delete(ScheduleNameArgs),
}

impl ScheduleCommand {
    pub fn remote_mut(&mut self) -> &mut RemoteArgs {
        match self {
            ScheduleCommand::Create(a) => &mut a.remote,
            ScheduleCommand::List(a) => &mut a.remote,
            ScheduleCommand::Show(a)
            | ScheduleCommand::Pause(a)
            | ScheduleCommand::Resume(a)
            | ScheduleCommand::RunNow(a)
            | ScheduleCommand::Delete(a) => &mut a.remote,
        }
    }
}

#[derive(Args, Debug)]
pub struct ScheduleCreateArgs {
    /// The schedule's name: letters, digits, `.`, `_` and `-`.
    pub name: String,
    /// When it fires: five crontab fields, `minute hour day-of-month month
    /// day-of-week` (days of the week 0-7, 0 and 7 Sunday, or names), e.g.
    /// "0 3 * * *" (daily at 03:00) or "30 6 * * 1-5"; or @hourly, @daily,
    /// @weekly, @monthly, @yearly.
    #[arg(long)]
    pub cron: String,
    /// The job file each fire submits.
    pub job: PathBuf,
    /// The IANA time zone whose wall clock --cron reads (e.g.
    /// Europe/Berlin); daylight saving time is followed.
    #[arg(long, default_value = "UTC")]
    pub timezone: String,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Args, Debug)]
pub struct ScheduleListArgs {
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Args, Debug)]
pub struct ScheduleNameArgs {
    /// The schedule's name.
    pub name: String,
    #[command(flatten)]
    pub remote: RemoteArgs,
}
