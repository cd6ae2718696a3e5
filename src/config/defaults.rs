//! The one table of defaults of the CLI's settings. A default that belongs
//! to the coordinator is its constant, so the two can never disagree.

use coordinator::{DEFAULT_LEASE_SECS, DEFAULT_REAPER_INTERVAL};

pub use coordinator::default_heartbeat_secs;

/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "SHARDLINE_CONFIG";

/// `serve --listen`.
pub const LISTEN: &str = "127.0.0.1:8700";
/// `--coordinator` of `worker` and the job commands.
pub const COORDINATOR: &str = "http://127.0.0.1:8700";
/// `--home`: the SQLite store, the default cache and the results.
pub const HOME: &str = ".shardline";
/// The variable holding the admin token, unless another is named.
pub const ADMIN_TOKEN_ENV: &str = "SHARDLINE_ADMIN_TOKEN";
/// The variable holding the worker token, unless another is named.
pub const WORKER_TOKEN_ENV: &str = "SHARDLINE_WORKER_TOKEN";
/// `serve --lease-secs`.
pub const LEASE_SECS: u64 = DEFAULT_LEASE_SECS;
/// `serve --reaper-interval-ms` (the coordinator's interval in ms).
pub const REAPER_INTERVAL_MS: u64 = DEFAULT_REAPER_INTERVAL.as_millis() as u64;
/// The shortest reaper interval `serve` accepts; shorter ones are raised.
pub const MIN_REAPER_INTERVAL_MS: u64 = 50;
/// `serve --max-samples-per-doc` (the coordinator's own default).
pub const MAX_SAMPLES_PER_DOC: u32 = coordinator::DEFAULT_MAX_SAMPLES_PER_DOC;
/// `serve --max-tokens` (the coordinator's own default).
pub const MAX_TOKENS: u32 = coordinator::DEFAULT_MAX_TOKENS;
/// `serve --max-shard-size` (the coordinator's own default).
pub const MAX_SHARD_SIZE: u32 = coordinator::DEFAULT_MAX_SHARD_SIZE;
/// `serve --max-docs-per-job`.
pub const MAX_DOCS_PER_JOB: u64 = jobs::dataset::DEFAULT_MAX_DOCS_PER_JOB;
/// `serve --max-dataset-bytes`.
pub const MAX_DATASET_BYTES: u64 = jobs::dataset::DEFAULT_MAX_DATASET_BYTES;
/// `serve --max-line-bytes`.
pub const MAX_LINE_BYTES: u64 = jobs::dataset::DEFAULT_MAX_LINE_BYTES;
/// `serve --max-spec-bytes` (the coordinator's own default).
pub const MAX_SPEC_BYTES: u64 = coordinator::DEFAULT_MAX_SPEC_BYTES;
/// `worker --backend`.
pub const BACKEND: &str = "openai";
/// `worker --shards`: 0 lets the worker decide.
pub const WORKER_SHARDS: usize = 0;
/// `worker --poll-ms`.
pub const POLL_MS: u64 = 2_000;
/// `worker --flush-ms` (the worker's own default).
pub const FLUSH_MS: u64 = worker::backend::DEFAULT_FLUSH_SECS * 1_000;
/// `worker --flush-outputs` (the worker's own default).
pub const FLUSH_OUTPUTS: usize = worker::backend::DEFAULT_FLUSH_OUTPUTS;

/// `worker --allow-key-env`: the worker's own default list.
pub fn allowed_key_envs() -> Vec<String> {
    worker::backend::DEFAULT_ALLOWED_KEY_ENVS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_reaper_runs_every_two_seconds_as_the_coordinator_says() {
        assert_eq!(super::REAPER_INTERVAL_MS, 2_000);
        assert_eq!(
            super::REAPER_INTERVAL_MS as u128,
            coordinator::DEFAULT_REAPER_INTERVAL.as_millis()
        );
    }
}
