//! `shardline schedule …`: create, list, show, pause, resume, fire and
//! delete the schedules of a coordinator.

use jobs::protocol::ScheduleStatus;
use jobs::schedule::{check_name, CronExpr, NewSchedule};

use super::failure::{client_failure, CmdResult, Failure};
use super::job_file::load_spec;
use super::remote::{client, state_name};
use crate::cli::{ScheduleCommand, ScheduleCreateArgs};
use crate::exit;
use crate::terminal::printable;

pub async fn schedule(command: ScheduleCommand) -> CmdResult {
    // A name goes into the request's path: refuse one that is no name.
    let name = match &command {
        ScheduleCommand::Create(a) => Some(&a.name),
        ScheduleCommand::List(_) => None,
        ScheduleCommand::Show(a)
        | ScheduleCommand::Pause(a)
        | ScheduleCommand::Resume(a)
        | ScheduleCommand::RunNow(a)
        | ScheduleCommand::Delete(a) => Some(&a.name),
    };
    if let Some(name) = name {
        check_name(name).map_err(|e| Failure::usage(anyhow::anyhow!("{e}")))?;
    }
    match command {
        ScheduleCommand::Create(args) => create(args).await,
        ScheduleCommand::List(args) => {
            let c = client(&args.remote)?;
            let all = c
                .list_schedules()
                .await
                .map_err(|e| client_failure(e, "cannot list the schedules"))?;
            print_table(&all);
            Ok(exit::OK)
        }
        ScheduleCommand::Show(args) => {
            let c = client(&args.remote)?;
            let s = c
                .schedule(&args.name)
                .await
                .map_err(|e| client_failure(e, "cannot read the schedule"))?;
            print_one(&s);
            Ok(exit::OK)
        }
        ScheduleCommand::Pause(args) => {
            let c = client(&args.remote)?;
            let s = c
                .pause_schedule(&args.name)
                .await
                .map_err(|e| client_failure(e, "cannot pause the schedule"))?;
            eprintln!("paused schedule {}", printable(&s.name));
            Ok(exit::OK)
        }
        ScheduleCommand::Resume(args) => {
            let c = client(&args.remote)?;
            let s = c
                .resume_schedule(&args.name)
                .await
                .map_err(|e| client_failure(e, "cannot resume the schedule"))?;
            eprintln!(
                "resumed schedule {}; it fires next at {}",
                printable(&s.name),
                s.next_fire_at
            );
            Ok(exit::OK)
        }
        ScheduleCommand::RunNow(args) => {
            let c = client(&args.remote)?;
            let s = c
                .run_schedule_now(&args.name)
                .await
                .map_err(|e| client_failure(e, "cannot fire the schedule"))?;
            eprintln!(
                "schedule {} fires at the coordinator's next tick; `shardline schedule show {}` \
                 lists its job",
                printable(&s.name),
                printable(&s.name)
            );
            Ok(exit::OK)
        }
        ScheduleCommand::Delete(args) => {
            let c = client(&args.remote)?;
            c.delete_schedule(&args.name)
                .await
                .map_err(|e| client_failure(e, "cannot delete the schedule"))?;
            eprintln!(
                "deleted schedule {}; the jobs it fired stay",
                printable(&args.name)
            );
            Ok(exit::OK)
        }
    }
}

async fn create(args: ScheduleCreateArgs) -> CmdResult {
    // Checked here first, so that a typo is named before anything is sent.
    CronExpr::parse(&args.cron, &args.timezone)
        .map_err(|e| Failure::usage(anyhow::anyhow!("schedule {}: {e}", args.name)))?;
    let spec = load_spec(&args.job, None, None).await?;
    let new = NewSchedule {
        name: args.name,
        cron: args.cron,
        timezone: args.timezone,
        spec,
    };
    let c = client(&args.remote)?;
    let s = c
        .create_schedule(&new)
        .await
        .map_err(|e| client_failure(e, "cannot create the schedule"))?;
    println!("{}", s.id);
    eprintln!(
        "created schedule {} ({} {}): it submits {} next at {}",
        printable(&s.name),
        s.cron,
        s.timezone,
        printable(&s.job_name),
        s.next_fire_at
    );
    Ok(exit::OK)
}

fn print_table(all: &[ScheduleStatus]) {
    println!(
        "{:<24}  {:<16}  {:<16}  {:<7}  {:<25}  {:<10}",
        "name", "cron", "timezone", "state", "next fire", "last run"
    );
    for s in all {
        let last = s
            .runs
            .first()
            .map(|r| state_name(r.state))
            .unwrap_or_else(|| "-".to_string());
        println!(
            "{:<24}  {:<16}  {:<16}  {:<7}  {:<25}  {:<10}",
            printable(&s.name),
            printable(&s.cron),
            printable(&s.timezone),
            if s.paused { "paused" } else { "active" },
            s.next_fire_at,
            last
        );
    }
}

fn print_one(s: &ScheduleStatus) {
    println!("name:      {}", printable(&s.name));
    println!(
        "cron:      {} ({})",
        printable(&s.cron),
        printable(&s.timezone)
    );
    println!("job:       {}", printable(&s.job_name));
    println!("state:     {}", if s.paused { "paused" } else { "active" });
    println!("next fire: {}", s.next_fire_at);
    if let Some(last) = &s.last_fired_at {
        println!("last fire: {last}");
    }
    println!("runs (newest first):");
    if s.runs.is_empty() {
        println!("  none yet");
    }
    for r in &s.runs {
        println!(
            "  {}  {:<9}  {}",
            r.job_id,
            state_name(r.state),
            r.created_at
        );
    }
}
