//! The whole job spec: what a user writes in `job.toml` (or posts as JSON),
//! one field per section.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::dataset::DatasetSpec;
use super::metrics::MetricSpec;
use super::model::ModelSpec;
use super::sharding::ShardingSpec;
use super::task::TaskSpec;

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub name: String,
    pub model: ModelSpec,
    pub dataset: DatasetSpec,
    pub task: TaskSpec,
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
    #[serde(default)]
    pub sharding: ShardingSpec,
}
