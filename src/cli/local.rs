//! Arguments of the commands that work on a home folder: `run`,
//! `rescore` (which may also go to a coordinator) and `cache`.

use clap::{Args, Subcommand};
use std::path::PathBuf;

use super::provenance::Provenance;
use super::remote::SamplesFormat;
use super::settings::ConfigArg;
use super::value;
use crate::config::{defaults, ClientFlags, Given};

#[derive(Args, Debug, Clone)]
pub struct HomeArgs {
    /// Folder for the embedded store, cache and results.
    #[arg(long, env = "SHARDLINE_HOME", default_value = defaults::HOME)]
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
    /// Also write the per-sample table beside samples.jsonl, one row per
    /// document and one column per metric: `csv` (samples.csv) or
    /// `parquet` (samples.parquet).
    #[arg(long, value_enum, default_value_t = SamplesFormat::Jsonl)]
    pub format: SamplesFormat,
    /// No progress bar (also off when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// Plan the job and print its requests, estimated tokens and cost
    /// (under `[model.price]`) without sending anything.
    #[arg(long)]
    pub dry_run: bool,
    /// A folder (or s3://BUCKET/PREFIX) the job's dataset and few-shot
    /// files may come from, besides the job file's own folder; repeatable.
    #[arg(long = "dataset-root", value_name = "DIR")]
    pub dataset_roots: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RescoreArgs {
    /// The job spec (TOML), or the id of a job on a coordinator. Outputs are
    /// looked up by request key.
    pub job: PathBuf,
    /// Rescore on this coordinator, from its cache (a spec's dataset path
    /// must then be readable by the coordinator). A job id always goes to a
    /// coordinator: this flag, else SHARDLINE_COORDINATOR, the config file
    /// or the default; a spec goes to one only when this flag is typed.
    #[arg(long, value_name = "URL", env = "SHARDLINE_COORDINATOR", value_parser = value::text())]
    pub coordinator: Option<String>,
    /// With a coordinator: the variable holding the admin token.
    #[arg(long, value_name = "VAR", env = "SHARDLINE_ADMIN_TOKEN_ENV", value_parser = value::text())]
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
    /// Also write the per-sample table beside samples.jsonl: `csv` or
    /// `parquet` (with a coordinator, only together with --output).
    #[arg(long, value_enum, default_value_t = SamplesFormat::Jsonl)]
    pub format: SamplesFormat,
    #[arg(skip)]
    pub given: Provenance,
}

impl RescoreArgs {
    /// Whether the rescore goes to a coordinator: a job id always does, a
    /// spec file only with `--coordinator` on the command line.
    pub fn is_remote(&self) -> bool {
        let is_job_id = uuid::Uuid::parse_str(&self.job.to_string_lossy()).is_ok();
        is_job_id || self.given.on_command_line("coordinator")
    }

    pub fn client_flags(&self) -> ClientFlags {
        let defaults = ClientFlags::default();
        let pick = |id: &str, value: &Option<String>, default: Given<String>| match value {
            Some(v) => self.given.given(id, v.clone()),
            None => default,
        };
        ClientFlags {
            coordinator: pick("coordinator", &self.coordinator, defaults.coordinator),
            token_env: pick("token_env", &self.token_env, defaults.token_env),
        }
    }
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
