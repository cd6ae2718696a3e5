//! Flags that several cluster commands share: `--config` and the S3
//! options of the cache.

use clap::Args;
use std::path::PathBuf;

use super::provenance::Provenance;
use super::value;
use crate::config::defaults::CONFIG_ENV;
use crate::config::S3Flags;

/// `--config FILE`: the TOML config file of the cluster commands.
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArg {
    /// TOML config file with `[serve]`, `[worker]`, `[client]` and `[s3]`
    /// tables. Flags beat environment variables, which beat the file.
    #[arg(long = "config", value_name = "FILE", env = CONFIG_ENV, value_parser = value::path())]
    pub path: Option<PathBuf>,
}

/// Options of an S3 cache (`--cache s3://BUCKET/PREFIX`). Credentials come
/// from the standard AWS chain (environment, profile, instance role).
#[derive(Args, Debug, Clone, Default)]
pub struct S3Args {
    /// Endpoint of an S3-compatible server, e.g. http://127.0.0.1:9000.
    /// Else AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL.
    #[arg(long, value_name = "URL", env = "SHARDLINE_S3_ENDPOINT", value_parser = value::text())]
    pub s3_endpoint: Option<String>,
    /// Address buckets as ENDPOINT/BUCKET (most S3-compatible servers need
    /// it).
    #[arg(long, env = "SHARDLINE_S3_FORCE_PATH_STYLE", value_parser = value::switch())]
    pub s3_force_path_style: bool,
    /// Region of the bucket. Else AWS_DEFAULT_REGION.
    #[arg(long, value_name = "REGION", env = "AWS_REGION", value_parser = value::text())]
    pub s3_region: Option<String>,
}

impl S3Args {
    pub fn flags(&self, given: &Provenance) -> S3Flags {
        S3Flags {
            endpoint: given.given("s3_endpoint", self.s3_endpoint.clone()),
            force_path_style: given.given("s3_force_path_style", self.s3_force_path_style),
            region: given.given("s3_region", self.s3_region.clone()),
        }
    }
}
