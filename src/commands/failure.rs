//! A command's failure: the error and the exit code it deserves.

use crate::exit;
use crate::terminal::printable_lines;

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

/// A failed call to the coordinator, with what was being done: bad input
/// (exit 2) when the coordinator refused what was sent, else a runtime
/// failure.
pub fn client_failure(error: client::ClientError, doing: &'static str) -> Failure {
    let refused = error.is_refusal();
    let error = anyhow::Error::new(error).context(doing);
    if refused {
        Failure::usage(error)
    } else {
        Failure::runtime(error)
    }
}

/// A coordinator call that failed (in this process), with what was being
/// done: bad input (exit 2) when the job's spec or files are at fault, else
/// a runtime failure.
pub fn coordinator_failure(error: coordinator::CoordinatorError, doing: &'static str) -> Failure {
    let bad_input = error.is_bad_input();
    let error = anyhow::Error::new(error).context(doing);
    if bad_input {
        Failure::usage(error)
    } else {
        Failure::runtime(error)
    }
}

/// How a job that ended failed: exit 2 when its own input is at fault
/// (fix the job and run it again), 1 otherwise.
pub fn job_failed(status: &jobs::protocol::JobStatus) -> Failure {
    let error = anyhow::anyhow!(
        "job {} failed: {}",
        status.name,
        status.error.as_deref().unwrap_or("no reason recorded")
    );
    // The job's input, or the job and its endpoint together, must change
    // before it can succeed: bad input or configuration.
    match status.error_kind {
        Some(jobs::protocol::FailureKind::Input | jobs::protocol::FailureKind::Configuration) => {
            Failure::usage(error)
        }
        _ => Failure::runtime(error),
    }
}

pub type CmdResult = Result<i32, Failure>;

/// The error and its causes on one line, safe for a terminal (endpoint and
/// spec text inside it has its control characters escaped). Library errors
/// often repeat their source's text in their own message; a cause already
/// said is not repeated.
pub fn chain_message(error: &anyhow::Error) -> String {
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
    printable_lines(&message).into_owned()
}
