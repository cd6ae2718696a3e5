//! One module per subcommand; each returns an exit code or a [`Failure`].

mod cache_cmd;
mod dry_run;
mod home;
mod job_file;
mod remote;
mod rescore;
mod results;
mod run;
mod serve;
mod worker;

use crate::cli::Command;
use crate::exit;

/// An error with the exit code it deserves. Printed once, by `dispatch`.
pub struct Failure {
    pub code: i32,
    pub error: anyhow::Error,
}

impl Failure {
    /// Bad input: the user has to change something.
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: exit::USAGE,
            error: error.into(),
        }
    }
    pub fn runtime(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: exit::RUNTIME,
            error: error.into(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::runtime(error)
    }
}

pub type CmdResult = Result<i32, Failure>;

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
        Command::Cache(cmd) => cache_cmd::cache(cmd).await,
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("error: {}", chain_message(&failure.error));
            failure.code
        }
    }
}

/// The error and its causes on one line. Library errors often repeat their
/// source's text in their own message; a cause already said is not repeated.
pub(crate) fn chain_message(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

/// Resolves when Ctrl-C (SIGINT) or SIGTERM arrives.
pub async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
