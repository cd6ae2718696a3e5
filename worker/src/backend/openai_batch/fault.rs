//! Fault injection for the crash tests: with `SHARDLINE_FAULT=<point>` in its environment, a
//! worker SIGKILLs itself the first time it reaches that point, exactly as if the machine had
//! died there. Points: `batch-after-upload` (an input file is uploaded, no batch created),
//! `batch-after-create` (a batch exists, its id is not recorded), `batch-after-retry-create`
//! (the same for a batch of a retry round, created by a poller), `batch-during-poll` (a
//! submitted batch was polled, nothing recorded), `batch-during-download` (a result file was
//! downloaded, no segment written). Unset, nothing happens.

/// The environment variable naming the point to die at.
pub const FAULT_ENV: &str = "SHARDLINE_FAULT";

pub(crate) const AFTER_UPLOAD: &str = "batch-after-upload";
pub(crate) const AFTER_CREATE: &str = "batch-after-create";
pub(crate) const AFTER_RETRY_CREATE: &str = "batch-after-retry-create";
pub(crate) const DURING_POLL: &str = "batch-during-poll";
pub(crate) const DURING_DOWNLOAD: &str = "batch-during-download";

/// Dies here if the environment says so.
pub(crate) fn point(name: &str) {
    if std::env::var(FAULT_ENV).ok().as_deref() != Some(name) {
        return;
    }
    eprintln!("shardline: fault injection: SIGKILL at {name}");
    // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    // SIGKILL cannot be caught; this only runs if kill(2) failed.
    std::process::abort();
}
