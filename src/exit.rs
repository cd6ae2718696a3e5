//! Exit codes of the `shardline` binary.

/// Everything asked for was done.
pub const OK: i32 = 0;
/// Something failed while running (I/O, network, a failed job).
pub const RUNTIME: i32 = 1;
/// The input was wrong (bad arguments, bad job spec): fix it and retry.
pub const USAGE: i32 = 2;
/// The job finished but some outputs are missing (failed or not cached):
/// results were written for the rest; running again retries only those.
pub const INCOMPLETE: i32 = 3;
/// `diff --fail-on-regression X`: a metric fell by more than X, with an
/// interval that leaves out 0.
pub const REGRESSION: i32 = 4;
/// Stopped by Ctrl-C or SIGTERM; running the same command again resumes.
pub const INTERRUPTED: i32 = 130;
