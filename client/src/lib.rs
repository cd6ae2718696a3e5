//! Shardline's coordinator HTTP client, used by workers (lease and
//! provider-batch APIs, worker token) and by the CLI's admin commands
//! (`submit`, `status`, `cancel`, results; admin token).
//!
//! Lease calls are retried on transient failures (connection refused,
//! timeouts, 5xx) for a bounded time, because a coordinator restart must not
//! make every worker drop its shards. A 409 on `complete`/`fail`/`release`
//! means the lease was fenced (a newer attempt owns the shard); that is an
//! expected outcome and is returned as [`LeaseOutcome::Fenced`].
//!
//! - [`http`]: [`CoordinatorClient`] and the transport every route uses.
//! - [`error`]: [`ClientError`], [`LeaseOutcome`].
//! - [`retry`]: backoff, `Retry-After` parsing, [`RetryPolicy`].
//! - `job_api`, `lease_api`, `provider_batch_api`, `schedule_api`: one
//!   method per route.
//! - [`text`]: error-message helpers shared with the worker's backends.

pub mod error;
pub mod http;
mod job_api;
mod lease_api;
mod provider_batch_api;
pub mod retry;
mod schedule_api;
pub mod text;

pub use error::{ClientError, LeaseOutcome, TokenKind};
pub use http::CoordinatorClient;
pub use retry::{Backoff, RetryPolicy};
