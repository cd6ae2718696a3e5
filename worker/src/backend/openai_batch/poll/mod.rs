//! Polling submitted shards. A worker offering `openai-batch` runs one poller: it takes short
//! poll leases on submitted shards that are due (`POST /v1/batches/claim`), and for each one
//! makes a *pass*: poll its batches, download and index the finished ones, create batches that
//! were waiting (for room under the enqueued-token cap, or a retry round), cancel them when the
//! job stopped, and finally complete, fail or cancel the shard, or hand it back with the time of
//! its next poll (the interval doubles while nothing changes).
//!
//! Every step that changes what exists at the provider is recorded before the next one: a
//! poller records its intent before creating a batch and the batch id right after, and indexes
//! each downloaded batch's segment before moving on, so a poller killed anywhere leaves a state
//! the next one continues from without a second batch for the same requests.

mod collect;
mod create;
mod finish;
mod pass;
mod poller;

pub use poller::spawn_poller;
