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
}

#[derive(Args, Debug)]
pub struct RescoreArgs {
    /// The job spec (TOML). Outputs are looked up by request key.
    pub job: PathBuf,
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

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[arg(long, env = "SHARDLINE_LISTEN", default_value = "127.0.0.1:8700")]
    pub listen: String,
    #[command(flatten)]
    pub home: HomeArgs,
    /// Name of the environment variable holding the admin token.
    #[arg(long, default_value = "SHARDLINE_ADMIN_TOKEN")]
    pub admin_token_env: String,
    /// Name of the environment variable holding the worker token.
    #[arg(long, default_value = "SHARDLINE_WORKER_TOKEN")]
    pub worker_token_env: String,
    /// Lease length in seconds; workers heartbeat at a third of it.
    #[arg(long, default_value_t = 60)]
    pub lease_secs: u64,
}

#[derive(Args, Debug, Clone)]
pub struct RemoteArgs {
    /// Coordinator base URL.
    #[arg(
        long,
        env = "SHARDLINE_COORDINATOR",
        default_value = "http://127.0.0.1:8700"
    )]
    pub coordinator: String,
    /// Name of the environment variable holding the bearer token.
    #[arg(long, default_value = "SHARDLINE_ADMIN_TOKEN")]
    pub token_env: String,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[arg(
        long,
        env = "SHARDLINE_COORDINATOR",
        default_value = "http://127.0.0.1:8700"
    )]
    pub coordinator: String,
    /// Name of the environment variable holding the worker token.
    #[arg(long, default_value = "SHARDLINE_WORKER_TOKEN")]
    pub token_env: String,
    /// Cache location (directory) the segments are written to.
    #[arg(long, env = "SHARDLINE_CACHE")]
    pub cache: String,
    /// Upper bound on the shards run at once; 0 = automatic (claim ahead
    /// until twice the model's `concurrency` requests are pending).
    #[arg(long, default_value_t = 0)]
    pub shards: usize,
    /// Worker id; defaults to host name and process id.
    #[arg(long)]
    pub id: Option<String>,
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    pub job: PathBuf,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// A job id; all jobs when absent.
    pub job_id: Option<String>,
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
