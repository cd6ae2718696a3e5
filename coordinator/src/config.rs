//! The coordinator's settings and the one table of their defaults, read by
//! the CLI's `serve`, the embedded cluster and the tests alike.

use std::time::Duration;

use jobs::{DatasetRoots, ReadLimits, ReadPolicy};

use crate::limits::JobLimits;

/// How long a lease lasts without a heartbeat.
pub const DEFAULT_LEASE_SECS: u64 = 60;
/// How often the leader returns expired leases to the pool: often enough
/// that a dead worker's shards wait little more than their lease, rarely
/// enough to cost the database nothing (one indexed query per pass).
pub const DEFAULT_REAPER_INTERVAL: Duration = Duration::from_secs(2);

/// Shortest bearer token `serve` accepts: 16 bytes, so a token cannot be
/// guessed by trying (generate one with `openssl rand -hex 32`).
pub const MIN_TOKEN_BYTES: usize = 16;

/// Why a pair of tokens is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRule {
    #[error("is too short ({len} bytes); use at least {MIN_TOKEN_BYTES} random bytes (e.g. `openssl rand -hex 32`)")]
    TooShort { len: usize },
    #[error("is the same as the worker token; the admin token must differ, or every worker could submit and cancel jobs")]
    SameAsWorker,
}

/// Checks the rules `serve` holds its tokens to: each at least
/// [`MIN_TOKEN_BYTES`] long, and the admin token different from the worker
/// token. Returns which token broke which rule.
pub fn check_tokens(admin: &str, worker: &str) -> Result<(), (TokenRole, TokenRule)> {
    for (role, token) in [(TokenRole::Admin, admin), (TokenRole::Worker, worker)] {
        if token.len() < MIN_TOKEN_BYTES {
            return Err((role, TokenRule::TooShort { len: token.len() }));
        }
    }
    if admin == worker {
        return Err((TokenRole::Admin, TokenRule::SameAsWorker));
    }
    Ok(())
}

/// Which of the two tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRole {
    Admin,
    Worker,
}

/// The heartbeat period told to workers when none is set: a third of the
/// lease, so two heartbeats can be lost before the lease is.
pub fn default_heartbeat_secs(lease_secs: u64) -> u64 {
    (lease_secs / 3).max(1)
}

#[derive(Clone)]
pub struct CoordinatorConfig {
    /// Bearer token for job routes (submit, list, cancel, results).
    pub admin_token: String,
    /// Bearer token for lease routes (claim, heartbeat, complete, fail).
    pub worker_token: String,
    /// Length of a lease; a worker that misses heartbeats this long loses it.
    pub lease_secs: u64,
    /// Heartbeat period told to workers (keep it well under `lease_secs`).
    pub heartbeat_interval_secs: u64,
    /// How often the reaper returns expired leases.
    pub reaper_interval: Duration,
    /// What a submitted job may ask for.
    pub limits: JobLimits,
    /// Where a job's data files may be read from, and how much of them.
    pub read: ReadPolicy,
}

/// Tokens are secrets: a `{:?}` of the config (in a log line, a panic
/// message) must never print them.
impl std::fmt::Debug for CoordinatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordinatorConfig")
            .field("admin_token", &"<redacted>")
            .field("worker_token", &"<redacted>")
            .field("lease_secs", &self.lease_secs)
            .field("heartbeat_interval_secs", &self.heartbeat_interval_secs)
            .field("reaper_interval", &self.reaper_interval)
            .field("limits", &self.limits)
            .field("read", &self.read)
            .finish()
    }
}

impl CoordinatorConfig {
    /// The defaults above for everything but the tokens; no dataset root,
    /// so no job's data file can be read until the caller names some.
    pub fn with_tokens(admin_token: impl Into<String>, worker_token: impl Into<String>) -> Self {
        CoordinatorConfig {
            admin_token: admin_token.into(),
            worker_token: worker_token.into(),
            lease_secs: DEFAULT_LEASE_SECS,
            heartbeat_interval_secs: default_heartbeat_secs(DEFAULT_LEASE_SECS),
            reaper_interval: DEFAULT_REAPER_INTERVAL,
            limits: JobLimits::default(),
            read: ReadPolicy::new(DatasetRoots::none(), ReadLimits::default()),
        }
    }

    /// A lease's length, never zero.
    pub(crate) fn lease_length(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::CoordinatorConfig;

    #[test]
    fn debug_never_shows_the_tokens() {
        let config = CoordinatorConfig::with_tokens("admin-secret-123", "worker-secret-456");
        let shown = format!("{config:?}");
        assert!(!shown.contains("admin-secret-123"), "{shown}");
        assert!(!shown.contains("worker-secret-456"), "{shown}");
        assert!(shown.contains("lease_secs: 60"), "{shown}");
    }
}

#[cfg(test)]
mod token_tests {
    use super::*;

    #[test]
    fn short_and_equal_tokens_are_refused() {
        let long = "a".repeat(MIN_TOKEN_BYTES);
        let other = "b".repeat(32);
        assert_eq!(check_tokens(&long, &other), Ok(()));
        assert_eq!(
            check_tokens("short", &other),
            Err((TokenRole::Admin, TokenRule::TooShort { len: 5 }))
        );
        assert_eq!(
            check_tokens(&other, "x"),
            Err((TokenRole::Worker, TokenRule::TooShort { len: 1 }))
        );
        assert_eq!(
            check_tokens(&other, &other),
            Err((TokenRole::Admin, TokenRule::SameAsWorker))
        );
    }
}
