//! The job spec: what a user writes in `job.toml` (or posts as JSON), one
//! file per section, and how it is loaded (`load`, `locate`) and checked
//! (`validate`, one file per section).
//!
//! Parsing is strict: unknown fields and wrong values are rejected with the
//! field path and, for enumerations, the accepted values.
//! `JobSpec::from_toml_file` then validates what serde cannot (templates
//! compile, regexes compile, metrics fit the task kind) so that a bad spec
//! fails before any work starts.

mod dataset;
mod engine;
mod env;
mod error;
mod job;
mod load;
mod locate;
mod metrics;
mod model;
mod price;
mod prompt_format;
mod provider_batch;
mod sharding;
mod task;
mod validate;

pub use dataset::{DatasetFormat, DatasetSpec, OnBadRow};
pub use engine::{ByteSize, DeviceSpec, EngineSpec};
pub use env::{EnvVar, MissingEnvVar, MissingEnvVars, ENV_FIELDS};
pub use error::SpecError;
pub use job::JobSpec;
pub use locate::Location;
pub use metrics::{JudgeAggregate, MetricKind, MetricSpec, Normalization};
pub use model::{
    is_fingerprint, BackendKind, Endpoint, ModelSpec, SystemRole, ENGINE_EXTRA_BODY_KEYS,
};
pub use price::PriceSpec;
pub use prompt_format::{PromptFormat, RoleStrings};
pub use provider_batch::{
    ProviderBatchSpec, RetryWith, API_MAX_FILE_BYTES, API_MAX_REQUESTS_PER_FILE, COMPLETION_WINDOW,
};
pub use sharding::ShardingSpec;
pub use task::{FewshotSpec, GenerationSpec, MessageTemplate, TargetKind, TaskKind, TaskSpec};

#[cfg(test)]
mod tests;
