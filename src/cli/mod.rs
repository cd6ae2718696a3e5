//! Command-line arguments of the `shardline` binary. Flags that an
//! environment variable may set say so to clap (`env`), so `--help` names
//! each variable; which of the two gave a value is recorded in each
//! command's [`Provenance`] for the config file to slot in beneath them.

mod cluster;
mod diff;
mod local;
mod provenance;
mod remote;
mod schedule;
mod settings;
mod value;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

pub use cluster::{ServeArgs, WorkerArgs};
pub use diff::DiffArgs;
pub use local::{CacheCommand, HomeArgs, RescoreArgs, RunArgs};
pub use provenance::Provenance;
pub use remote::{
    CancelArgs, LocalHomeArgs, RemoteArgs, ResultsArgs, SamplesFormat, StatusArgs, SubmitArgs,
};
pub use schedule::{ScheduleCommand, ScheduleCreateArgs};
pub use settings::ConfigArg;

#[derive(Parser, Debug)]
#[command(
    name = "shardline",
    version,
    about = "Distributed batch-inference job runner for LLM evaluation",
    long_about = "Runs eval jobs (dataset × model × task × metrics) as sharded batch inference, \
                  caching every output so that resumed, repeated and re-scored jobs never pay for \
                  inference twice."
)]
pub struct Cli {
    /// Log filter (tracing syntax), e.g. `info` or `shardline=debug`.
    #[arg(long, global = true, env = "SHARDLINE_LOG", default_value = "error")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a job on this machine: coordinator and workers in one process.
    Run(RunArgs),
    /// Compute metrics from the cache alone, with zero inference calls.
    Rescore(RescoreArgs),
    /// Run the coordinator's HTTP API.
    Serve(ServeArgs),
    /// Run a worker that pulls shards from a coordinator.
    Worker(WorkerArgs),
    /// Submit a job to a coordinator.
    Submit(SubmitArgs),
    /// Show jobs on a coordinator, or those `run` kept in a local home.
    Status(StatusArgs),
    /// Fetch a finished job's metrics and samples (coordinator or local home).
    Results(ResultsArgs),
    /// Cancel a job (on a coordinator or in a local home).
    Cancel(CancelArgs),
    /// Compare two runs: per metric and subset, B − A with a paired
    /// bootstrap interval, and the documents whose score flipped.
    Diff(DiffArgs),
    /// Maintain the output cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Submit a job again on a cron schedule (on a coordinator).
    #[command(subcommand)]
    Schedule(ScheduleCommand),
}

impl Command {
    fn set_provenance(&mut self, given: Provenance) {
        match self {
            Command::Rescore(a) => a.given = given,
            Command::Serve(a) => a.given = given,
            Command::Worker(a) => a.given = given,
            Command::Submit(a) => a.remote.given = given,
            Command::Status(a) => a.remote.given = given,
            Command::Results(a) => a.remote.given = given,
            Command::Cancel(a) => a.remote.given = given,
            Command::Diff(a) => a.remote.given = given,
            Command::Schedule(c) => c.remote_mut().given = given,
            Command::Run(_) | Command::Cache(_) => {}
        }
    }
}

/// Parses the process's arguments and environment (exiting on an error,
/// as clap does), recording where each flag's value came from.
pub fn parse() -> Cli {
    let cmd = ignore_blank_env(Cli::command());
    let matches = cmd.clone().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some((name, sub_matches)) = matches.subcommand() {
        if let Some(sub) = cmd.find_subcommand(name) {
            // `schedule create …`: the flags are the inner command's.
            let inner = sub_matches
                .subcommand()
                .and_then(|(n, m)| Some((sub.find_subcommand(n)?, m)));
            match inner {
                Some((sub, sub_matches)) if name == "schedule" => {
                    cli.command.set_provenance(Provenance::of(sub, sub_matches));
                }
                _ => cli.command.set_provenance(Provenance::of(sub, sub_matches)),
            }
        }
    }
    cli
}

/// An empty or blank variable counts as unset: such a flag falls through
/// to the config file and the default, as if the variable were absent.
fn ignore_blank_env(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|arg| {
        let blank = arg
            .get_env()
            .and_then(std::env::var_os)
            .is_some_and(|v| v.to_string_lossy().trim().is_empty());
        if blank {
            arg.env(None::<&'static str>)
        } else {
            arg
        }
    })
    .mut_subcommands(ignore_blank_env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arguments_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn typed_flags_are_recorded_as_such() {
        let cmd = Cli::command();
        let matches = cmd
            .clone()
            .try_get_matches_from(["shardline", "serve", "--lease-secs", "9"])
            .unwrap();
        let (name, sub) = matches.subcommand().unwrap();
        let given = Provenance::of(cmd.find_subcommand(name).unwrap(), sub);
        assert!(given.on_command_line("lease_secs"));
        assert!(!given.on_command_line("listen"));
        assert_eq!(
            given.given("lease_secs", 9u64),
            crate::config::Given::flag("--lease-secs", 9)
        );
    }
}
