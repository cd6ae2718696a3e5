//! Command-line arguments of the `shardline` binary.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "shardline",
    version,
    about = "Distributed batch-inference job runner for LLM evaluation",
    long_about = "Runs eval jobs (dataset × model × task × metrics) as sharded batch inference, \
                  caching every output so that resumed, repeated and re-scored jobs never pay for \
                  inference twice."
)]
pub struct Cli {
    /// Log filter (tracing syntax), e.g. `info` or `shardline=debug`.
    #[arg(long, global = true, env = "SHARDLINE_LOG", default_value = "error")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a job on this machine: coordinator and workers in one process.
    Run(RunArgs),
    /// Compute metrics from the cache alone, with zero inference calls.
    Rescore(RescoreArgs),
    /// Run the coordinator's HTTP API.
    Serve(ServeArgs),
    /// Run a worker that pulls shards from a coordinator.
    Worker(WorkerArgs),
    /// Submit a job to a coordinator.
    Submit(SubmitArgs),
    /// Show jobs on a coordinator.
    Status(StatusArgs),
    /// Fetch a finished job's metrics and samples from a coordinator.
    Results(ResultsArgs),
    /// Cancel a job on a coordinator.
    Cancel(CancelArgs),
    /// Maintain the output cache.
    #[command(subcommand)]
    Cache(CacheCommand),
}

#[derive(Args, Debug, Clone)]
pub struct HomeArgs {
    /// Folder for the embedded store, cache and results.
    #[arg(long, env = "SHARDLINE_HOME", default_value = ".shardline")]
    pub home: PathBuf,
    /// Cache location; defaults to `<home>/cache`.
    #[arg(long, env = "SHARDLINE_CACHE")]
    pub cache: Option<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The job spec (TOML).
    pub job: PathBuf,
    #[command(flatten)]
    pub home: HomeArgs,
    /// Worker tasks to run in this process.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Upper bound on the shards each worker runs at once; 0 = automatic
    /// (workers claim ahead until twice the model's `concurrency` requests
    /// are pending, so the endpoint is never starved by shard boundaries).
    #[arg(long, default_value_t = 0)]
    pub shards_per_worker: usize,
    /// Override `model.model` of the spec.
    #[arg(long)]
    pub model: Option<String>,
    /// Override `dataset.limit` of the spec.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Where to write samples.jsonl and metrics.json; defaults to
    /// `<home>/results/<job name>`.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// No progress bar (also off when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// Plan the job and print its requests, estimated tokens and cost
    /// (under `[model.price]`) without sending anything.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct RescoreArgs {
    /// The job spec (TOML), or the id of a job on a coordinator. Outputs are
    /// looked up by request key.
    pub job: PathBuf,
    /// Rescore on this coordinator, from its cache (a spec's dataset path
    /// must then be readable by the coordinator). A job id always goes to a
    /// coordinator: this flag, else SHARDLINE_COORDINATOR, the config file
    /// or the default.
    #[arg(long, value_name = "URL")]
    pub coordinator: Option<String>,
    /// With a coordinator: the variable holding the admin token.
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub home: HomeArgs,
    /// Override `model.model` of the spec.
    #[arg(long)]
    pub model: Option<String>,
    /// Override `dataset.limit` of the spec.
    #[arg(long)]
    pub limit: Option<u64>,
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// `--config FILE`: the TOML config file of the cluster commands.
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArg {
    /// TOML config file with `[serve]`, `[worker]`, `[client]` and `[s3]`
    /// tables. Flags beat environment variables, which beat the file.
    /// [env: SHARDLINE_CONFIG]
    #[arg(long = "config", value_name = "FILE")]
    pub path: Option<PathBuf>,
}

/// Options of an S3 cache (`--cache s3://BUCKET/PREFIX`). Credentials come
/// from the standard AWS chain (environment, profile, instance role).
#[derive(Args, Debug, Clone, Default)]
pub struct S3Args {
    /// Endpoint of an S3-compatible server, e.g. http://127.0.0.1:9000.
    /// [env: SHARDLINE_S3_ENDPOINT, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL]
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Address buckets as ENDPOINT/BUCKET (most S3-compatible servers need
    /// it). [env: SHARDLINE_S3_FORCE_PATH_STYLE]
    #[arg(long)]
    pub s3_force_path_style: bool,
    /// Region of the bucket. [env: AWS_REGION, AWS_DEFAULT_REGION]
    #[arg(long, value_name = "REGION")]
    pub s3_region: Option<String>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8700). [env: SHARDLINE_LISTEN]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The store: postgres://USER@HOST:PORT/DB (many machines, several
    /// replicas) or sqlite://PATH; default: SQLite under --home. The
    /// password is best left to PGPASSWORD. [env: SHARDLINE_DATABASE_URL]
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Cache location: s3://BUCKET/PREFIX or a directory; default
    /// <home>/cache. [env: SHARDLINE_CACHE]
    #[arg(long, value_name = "LOCATION")]
    pub cache: Option<String>,
    /// Folder for the SQLite store and the default cache (default
    /// .shardline). [env: SHARDLINE_HOME]
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Name of the environment variable holding the admin token (default
    /// SHARDLINE_ADMIN_TOKEN). Tokens are never given as values.
    #[arg(long, value_name = "VAR")]
    pub admin_token_env: Option<String>,
    /// Name of the environment variable holding the worker token (default
    /// SHARDLINE_WORKER_TOKEN).
    #[arg(long, value_name = "VAR")]
    pub worker_token_env: Option<String>,
    /// Lease length in seconds (default 60); a worker that misses its
    /// heartbeats this long loses its shard. [env: SHARDLINE_LEASE_SECS]
    #[arg(long, value_name = "SECS")]
    pub lease_secs: Option<u64>,
    /// Heartbeat period told to workers (default a third of the lease).
    /// [env: SHARDLINE_HEARTBEAT_SECS]
    #[arg(long, value_name = "SECS")]
    pub heartbeat_secs: Option<u64>,
    /// How often the leader returns expired leases (default 2000).
    /// [env: SHARDLINE_REAPER_INTERVAL_MS]
    #[arg(long, value_name = "MS")]
    pub reaper_interval_ms: Option<u64>,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Args, Debug, Clone)]
pub struct RemoteArgs {
    /// Coordinator base URL (default http://127.0.0.1:8700).
    /// [env: SHARDLINE_COORDINATOR]
    #[arg(long, value_name = "URL")]
    pub coordinator: Option<String>,
    /// Name of the environment variable holding the admin token (default
    /// SHARDLINE_ADMIN_TOKEN). Tokens are never given as values.
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Coordinator base URL (default http://127.0.0.1:8700).
    /// [env: SHARDLINE_COORDINATOR]
    #[arg(long, value_name = "URL")]
    pub coordinator: Option<String>,
    /// Name of the environment variable holding the worker token (default
    /// SHARDLINE_WORKER_TOKEN). Tokens are never given as values.
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,
    /// Backend this worker runs (repeatable; default openai).
    /// [env: SHARDLINE_BACKENDS, comma-separated]
    #[arg(long = "backend", value_name = "KIND")]
    pub backends: Vec<String>,
    /// Model this worker serves, as the job's `model.model` or a glob
    /// (`*`, `?`); repeatable. Default: any model.
    /// [env: SHARDLINE_MODELS, comma-separated]
    #[arg(long = "model", value_name = "NAME|GLOB")]
    pub models: Vec<String>,
    /// Cache location the segments are written to: the coordinator's,
    /// s3://BUCKET/PREFIX or a shared directory. [env: SHARDLINE_CACHE]
    #[arg(long, value_name = "LOCATION")]
    pub cache: Option<String>,
    /// Upper bound on the shards run at once; 0 = automatic (claim ahead
    /// until twice the model's `concurrency` requests are pending).
    /// [env: SHARDLINE_WORKER_SHARDS]
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// Worker id; defaults to host name and process id.
    /// [env: SHARDLINE_WORKER_ID]
    #[arg(long)]
    pub id: Option<String>,
    /// Longest wait between claims while idle (default 2000).
    /// [env: SHARDLINE_POLL_MS]
    #[arg(long, value_name = "MS")]
    pub poll_ms: Option<u64>,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    pub job: PathBuf,
    /// Higher runs first; jobs of equal priority share the workers.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// Wait until the job ends, showing its progress.
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// A job id; all jobs when absent.
    pub job_id: Option<String>,
    /// Refresh until the job (or every listed job) has ended; exits 1 if a
    /// watched job failed or was cancelled.
    #[arg(long)]
    pub watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub interval: f64,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Args, Debug)]
pub struct ResultsArgs {
    pub job_id: String,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Folder to write metrics.json and samples.jsonl into.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CancelArgs {
    pub job_id: String,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Rebuild the cache index from the segments in the object store alone.
    Reindex(ReindexArgs),
}

#[derive(Args, Debug)]
pub struct ReindexArgs {
    #[command(flatten)]
    pub home: HomeArgs,
}
