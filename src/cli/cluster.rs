//! Arguments of `serve` and `worker`, and their conversion to the flags
//! that config resolution layers over the file.

use clap::Args;
use std::path::PathBuf;

use super::provenance::Provenance;
use super::settings::{ConfigArg, S3Args};
use super::value;
use crate::config::{defaults, ServeFlags, WorkerFlags};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", env = "SHARDLINE_LISTEN",
          default_value = defaults::LISTEN, value_parser = value::text())]
    pub listen: String,
    /// The store: postgres://USER@HOST:PORT/DB (many machines, several
    /// replicas) or sqlite://PATH; default: SQLite under --home. The
    /// password is best left to PGPASSWORD.
    #[arg(long, value_name = "URL", env = "SHARDLINE_DATABASE_URL",
          hide_env_values = true, value_parser = value::text())]
    pub database_url: Option<String>,
    /// Cache location: s3://BUCKET/PREFIX or a directory; default
    /// <home>/cache.
    #[arg(long, value_name = "LOCATION", env = "SHARDLINE_CACHE", value_parser = value::text())]
    pub cache: Option<String>,
    /// Folder for the SQLite store and the default cache.
    #[arg(long, value_name = "DIR", env = "SHARDLINE_HOME",
          default_value = defaults::HOME, value_parser = value::path())]
    pub home: PathBuf,
    /// Name of the environment variable holding the admin token. Tokens
    /// are never given as values.
    #[arg(long, value_name = "VAR", env = "SHARDLINE_ADMIN_TOKEN_ENV",
          default_value = defaults::ADMIN_TOKEN_ENV, value_parser = value::text())]
    pub admin_token_env: String,
    /// Name of the environment variable holding the worker token.
    #[arg(long, value_name = "VAR", env = "SHARDLINE_WORKER_TOKEN_ENV",
          default_value = defaults::WORKER_TOKEN_ENV, value_parser = value::text())]
    pub worker_token_env: String,
    /// Lease length in seconds; a worker that misses its heartbeats this
    /// long loses its shard.
    #[arg(long, value_name = "SECS", env = "SHARDLINE_LEASE_SECS",
          default_value_t = defaults::LEASE_SECS, value_parser = value::seconds())]
    pub lease_secs: u64,
    /// Heartbeat period told to workers (default a third of the lease).
    #[arg(long, value_name = "SECS", env = "SHARDLINE_HEARTBEAT_SECS", value_parser = value::seconds())]
    pub heartbeat_secs: Option<u64>,
    /// How often the leader returns expired leases.
    #[arg(long, value_name = "MS", env = "SHARDLINE_REAPER_INTERVAL_MS",
          default_value_t = defaults::REAPER_INTERVAL_MS, value_parser = value::millis())]
    pub reaper_interval_ms: u64,
    /// Most samples per document (`task.generation.n`) a submitted job may
    /// ask for; larger jobs are refused with 400.
    #[arg(long, value_name = "N", env = "SHARDLINE_MAX_SAMPLES_PER_DOC",
          default_value_t = defaults::MAX_SAMPLES_PER_DOC, value_parser = value::limit())]
    pub max_samples_per_doc: u32,
    /// Most tokens per answer (`task.generation.max_tokens`) a submitted
    /// job may ask for.
    #[arg(long, value_name = "N", env = "SHARDLINE_MAX_TOKENS",
          default_value_t = defaults::MAX_TOKENS, value_parser = value::limit())]
    pub max_tokens: u32,
    /// Most requests per shard (`sharding.shard_size`) a submitted job may
    /// ask for.
    #[arg(long, value_name = "N", env = "SHARDLINE_MAX_SHARD_SIZE",
          default_value_t = defaults::MAX_SHARD_SIZE, value_parser = value::limit())]
    pub max_shard_size: u32,
    /// A folder (or s3://BUCKET/PREFIX) submitted jobs may read datasets
    /// and few-shot files from; repeatable (the variable is
    /// comma-separated). Without one, no job's data file is read: jobs
    /// naming one are refused with 403.
    #[arg(long = "dataset-root", value_name = "DIR", env = "SHARDLINE_DATASET_ROOTS", value_parser = value::text())]
    pub dataset_roots: Vec<String>,
    /// Most documents one job may plan.
    #[arg(long, value_name = "N", env = "SHARDLINE_MAX_DOCS_PER_JOB",
          default_value_t = defaults::MAX_DOCS_PER_JOB, value_parser = value::big_limit())]
    pub max_docs_per_job: u64,
    /// Most bytes read from one dataset (all its files, decompressed) or
    /// few-shot file.
    #[arg(long, value_name = "BYTES", env = "SHARDLINE_MAX_DATASET_BYTES",
          default_value_t = defaults::MAX_DATASET_BYTES, value_parser = value::big_limit())]
    pub max_dataset_bytes: u64,
    /// Longest line (one document; a CSV record, a JSON array's element) of
    /// a dataset or few-shot file.
    #[arg(long, value_name = "BYTES", env = "SHARDLINE_MAX_LINE_BYTES",
          default_value_t = defaults::MAX_LINE_BYTES, value_parser = value::big_limit())]
    pub max_line_bytes: u64,
    /// Largest job spec a submission (or a rescore) may send.
    #[arg(long, value_name = "BYTES", env = "SHARDLINE_MAX_SPEC_BYTES",
          default_value_t = defaults::MAX_SPEC_BYTES, value_parser = value::big_limit())]
    pub max_spec_bytes: u64,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print the resolved settings as JSON (tokens as the names of their
    /// variables) and exit.
    #[arg(long, hide = true)]
    pub print_settings: bool,
    #[arg(skip)]
    pub given: Provenance,
}

impl ServeArgs {
    pub fn flags(&self) -> ServeFlags {
        let g = &self.given;
        ServeFlags {
            listen: g.given("listen", self.listen.clone()),
            database_url: g.given("database_url", self.database_url.clone()),
            cache: g.given("cache", self.cache.clone()),
            home: g.given("home", self.home.clone()),
            admin_token_env: g.given("admin_token_env", self.admin_token_env.clone()),
            worker_token_env: g.given("worker_token_env", self.worker_token_env.clone()),
            lease_secs: g.given("lease_secs", self.lease_secs),
            heartbeat_secs: g.given("heartbeat_secs", self.heartbeat_secs),
            reaper_interval_ms: g.given("reaper_interval_ms", self.reaper_interval_ms),
            max_samples_per_doc: g.given("max_samples_per_doc", self.max_samples_per_doc),
            max_tokens: g.given("max_tokens", self.max_tokens),
            max_shard_size: g.given("max_shard_size", self.max_shard_size),
            dataset_roots: g.given("dataset_roots", self.dataset_roots.clone()),
            max_docs_per_job: g.given("max_docs_per_job", self.max_docs_per_job),
            max_dataset_bytes: g.given("max_dataset_bytes", self.max_dataset_bytes),
            max_line_bytes: g.given("max_line_bytes", self.max_line_bytes),
            max_spec_bytes: g.given("max_spec_bytes", self.max_spec_bytes),
            s3: self.s3.flags(g),
        }
    }
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Coordinator base URL.
    #[arg(long, value_name = "URL", env = "SHARDLINE_COORDINATOR",
          default_value = defaults::COORDINATOR, value_parser = value::text())]
    pub coordinator: String,
    /// Name of the environment variable holding the worker token. Tokens
    /// are never given as values.
    #[arg(long, value_name = "VAR", env = "SHARDLINE_WORKER_TOKEN_ENV",
          default_value = defaults::WORKER_TOKEN_ENV, value_parser = value::text())]
    pub token_env: String,
    /// Backend this worker runs (repeatable; the variable is
    /// comma-separated).
    #[arg(long = "backend", value_name = "KIND", env = "SHARDLINE_BACKENDS",
          default_value = defaults::BACKEND, value_parser = value::text())]
    pub backends: Vec<String>,
    /// Model this worker serves, as the job's `model.model` or a glob
    /// (`*`, `?`); repeatable (the variable is comma-separated). Default:
    /// any model.
    #[arg(long = "model", value_name = "NAME|GLOB", env = "SHARDLINE_MODELS", value_parser = value::text())]
    pub models: Vec<String>,
    /// Environment variable a job may name as its API key (`model.api_key_env`),
    /// or a prefix ending in `*`; repeatable (the variable is
    /// comma-separated). Default: OPENAI_API_KEY, ANTHROPIC_API_KEY,
    /// SHARDLINE_KEY_*. The coordinator tokens are never allowed.
    #[arg(long = "allow-key-env", value_name = "NAME|PREFIX*", env = "SHARDLINE_ALLOW_KEY_ENV", value_parser = value::text())]
    pub allow_key_env: Vec<String>,
    /// Base URL (or a prefix of one, on a `/` boundary) a job's endpoint
    /// must lie under; repeatable (the variable is comma-separated).
    /// Default: any endpoint.
    #[arg(long = "allow-endpoint", value_name = "URL", env = "SHARDLINE_ALLOW_ENDPOINTS", value_parser = value::text())]
    pub allow_endpoints: Vec<String>,
    /// Cache location the segments are written to: the coordinator's,
    /// s3://BUCKET/PREFIX or a shared directory.
    #[arg(long, value_name = "LOCATION", env = "SHARDLINE_CACHE", value_parser = value::text())]
    pub cache: Option<String>,
    /// Upper bound on the shards run at once; 0 = automatic (claim ahead
    /// until twice the model's `concurrency` requests are pending).
    #[arg(long, value_name = "N", env = "SHARDLINE_WORKER_SHARDS",
          default_value_t = defaults::WORKER_SHARDS, value_parser = value::count())]
    pub shards: usize,
    /// Worker id; defaults to host name and process id.
    #[arg(long, env = "SHARDLINE_WORKER_ID", value_parser = value::text())]
    pub id: Option<String>,
    /// Longest wait between claims while idle.
    #[arg(long, value_name = "MS", env = "SHARDLINE_POLL_MS",
          default_value_t = defaults::POLL_MS, value_parser = value::millis())]
    pub poll_ms: u64,
    /// A running shard writes its outputs so far to the cache at least this
    /// often (when it has new ones), so that a killed worker loses only
    /// those since; 0 turns the clock off.
    #[arg(long, value_name = "MS", env = "SHARDLINE_FLUSH_MS",
          default_value_t = defaults::FLUSH_MS, value_parser = value::millis())]
    pub flush_ms: u64,
    /// ... or as soon as this many new outputs wait; 0 turns the count off.
    #[arg(long, value_name = "N", env = "SHARDLINE_FLUSH_OUTPUTS",
          default_value_t = defaults::FLUSH_OUTPUTS, value_parser = value::count())]
    pub flush_outputs: usize,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print the resolved settings as JSON (the token as the name of its
    /// variable) and exit.
    #[arg(long, hide = true)]
    pub print_settings: bool,
    #[arg(skip)]
    pub given: Provenance,
}

impl WorkerArgs {
    pub fn flags(&self) -> WorkerFlags {
        let g = &self.given;
        WorkerFlags {
            coordinator: g.given("coordinator", self.coordinator.clone()),
            token_env: g.given("token_env", self.token_env.clone()),
            cache: g.given("cache", self.cache.clone()),
            backends: g.given("backends", self.backends.clone()),
            models: g.given("models", self.models.clone()),
            allow_key_env: g.given("allow_key_env", self.allow_key_env.clone()),
            allow_endpoints: g.given("allow_endpoints", self.allow_endpoints.clone()),
            shards: g.given("shards", self.shards),
            id: g.given("id", self.id.clone()),
            poll_ms: g.given("poll_ms", self.poll_ms),
            flush_ms: g.given("flush_ms", self.flush_ms),
            flush_outputs: g.given("flush_outputs", self.flush_outputs),
            s3: self.s3.flags(g),
        }
    }
}
