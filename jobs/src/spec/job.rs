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

impl JobSpec {
    /// The judge models of the job's judge metrics, with each metric's
    /// position in `metrics` (for messages naming `metrics[i]`).
    pub fn judge_models(&self) -> impl Iterator<Item = (usize, &ModelSpec)> {
        self.metrics
            .iter()
            .enumerate()
            .filter_map(|(i, m)| Some((i, m.model.as_deref()?)))
    }

    /// [`JobSpec::judge_models`], to fill in (paths, fingerprints).
    pub fn judge_models_mut(&mut self) -> impl Iterator<Item = (usize, &mut ModelSpec)> {
        self.metrics
            .iter_mut()
            .enumerate()
            .filter_map(|(i, m)| Some((i, m.model.as_deref_mut()?)))
    }
}
