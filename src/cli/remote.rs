//! Arguments of the job commands that talk to a running coordinator
//! (`submit`, `status`, `results`, `cancel`); the last three may read a
//! local home instead.

use clap::Args;
use std::path::PathBuf;

use super::provenance::Provenance;
use super::settings::ConfigArg;
use super::value;
use crate::config::{defaults, ClientFlags};

#[derive(Args, Debug, Clone)]
pub struct RemoteArgs {
    /// Coordinator base URL.
    #[arg(long, value_name = "URL", env = "SHARDLINE_COORDINATOR",
          default_value = defaults::COORDINATOR, value_parser = value::text())]
    pub coordinator: String,
    /// Name of the environment variable holding the admin token. Tokens
    /// are never given as values.
    #[arg(long, value_name = "VAR", env = "SHARDLINE_ADMIN_TOKEN_ENV",
          default_value = defaults::ADMIN_TOKEN_ENV, value_parser = value::text())]
    pub token_env: String,
    #[command(flatten)]
    pub config: ConfigArg,
    #[arg(skip)]
    pub given: Provenance,
}

impl RemoteArgs {
    pub fn flags(&self) -> ClientFlags {
        ClientFlags {
            coordinator: self.given.given("coordinator", self.coordinator.clone()),
            token_env: self.given.given("token_env", self.token_env.clone()),
        }
    }
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

/// `--home DIR`: read a local home's jobs directly, without a coordinator.
#[derive(Args, Debug, Clone, Default)]
pub struct LocalHomeArgs {
    /// Read the jobs of this local home (the folder `shardline run` keeps
    /// its store, cache and results in; default .shardline) directly,
    /// instead of asking a coordinator. Without --coordinator (or its
    /// variable, or the config file), an existing .shardline is read.
    #[arg(long, value_name = "DIR", env = "SHARDLINE_HOME", value_parser = value::path())]
    pub home: Option<PathBuf>,
    /// With a local home: its cache, if `run` was given one; default
    /// `<home>/cache`.
    #[arg(long, value_name = "LOCATION", env = "SHARDLINE_CACHE", value_parser = value::text())]
    pub cache: Option<String>,
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
    #[command(flatten)]
    pub local: LocalHomeArgs,
}

#[derive(Args, Debug)]
pub struct ResultsArgs {
    pub job_id: String,
    #[command(flatten)]
    pub remote: RemoteArgs,
    #[command(flatten)]
    pub local: LocalHomeArgs,
    /// Folder to write metrics.json and samples.jsonl into.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Also write the per-sample table in this format beside
    /// samples.jsonl, one row per document and one column per metric:
    /// `csv` writes samples.csv (pandas: `pd.read_csv`), `parquet` writes
    /// samples.parquet (`pd.read_parquet`). Needs --output.
    #[arg(long, value_enum, default_value_t = SamplesFormat::Jsonl)]
    pub format: SamplesFormat,
}

/// The forms of the per-sample results.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SamplesFormat {
    /// samples.jsonl only.
    Jsonl,
    /// samples.jsonl and samples.csv.
    Csv,
    /// samples.jsonl and samples.parquet.
    Parquet,
}

#[derive(Args, Debug)]
pub struct CancelArgs {
    pub job_id: String,
    #[command(flatten)]
    pub remote: RemoteArgs,
    #[command(flatten)]
    pub local: LocalHomeArgs,
}
