//! One module per subcommand; each returns an exit code or a
//! [`failure::Failure`], which `dispatch` prints once.

mod cache_cmd;
mod diff;
mod dry_run;
mod failure;
mod home;
mod job_file;
mod job_source;
mod local_results;
mod remote;
mod rescore;
mod results;
mod run;
mod run_dir;
mod schedule;
mod serve;
mod signal;
mod summary;
mod worker;

use crate::cli::Command;
use failure::chain_message;

pub async fn dispatch(command: Command) -> i32 {
    let result = match command {
        Command::Run(args) => run::run(args).await,
        Command::Rescore(args) => {
            // A job id can only be rescored where the job lives; a spec file
            // goes to a coordinator only when one is named.
            if args.is_remote() {
                remote::rescore(args).await
            } else {
                rescore::rescore(args).await
            }
        }
        Command::Serve(args) => serve::serve(args).await,
        Command::Worker(args) => worker::worker(args).await,
        Command::Submit(args) => remote::submit(args).await,
        Command::Status(args) => remote::status(args).await,
        Command::Results(args) => remote::results(args).await,
        Command::Cancel(args) => remote::cancel(args).await,
        Command::Diff(args) => diff::diff(args).await,
        Command::Cache(cmd) => cache_cmd::cache(cmd).await,
        Command::Schedule(cmd) => schedule::schedule(cmd).await,
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("error: {}", chain_message(&failure.error));
            failure.code
        }
    }
}
