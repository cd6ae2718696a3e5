//! The one place that maps a [`BackendKind`] to its implementation: the
//! backend a model spec names, and the background task a kind needs.

use jobs::spec::{BackendKind, ModelSpec};
use std::sync::Arc;

use super::background::BackgroundTask;
use super::cache::BackendCache;
use super::engine::EngineBackend;
use super::error::BackendError;
use super::interface::Backend;
use super::openai::OpenAiBackend;
use super::openai_batch::{self, OpenAiBatchBackend};

/// Builds the backend a model spec names.
pub fn build_backend(model: &ModelSpec) -> Result<Arc<dyn Backend>, BackendError> {
    match model.backend {
        BackendKind::Openai => Ok(Arc::new(OpenAiBackend::from_spec(model)?)),
        BackendKind::OpenaiBatch => Ok(Arc::new(OpenAiBatchBackend::from_spec(model)?)),
        BackendKind::Engine => Ok(Arc::new(EngineBackend::from_spec(model)?)),
        BackendKind::None => Err(BackendError::Config(
            "backend none makes no inference calls; this shard should not exist".into(),
        )),
    }
}

/// The task a worker offering `kind` runs beside its shards, if any:
/// submitted provider-batch shards hold no lease, so every worker that
/// offers the backend polls them.
pub fn background_task(kind: BackendKind) -> Option<BackgroundTask> {
    match kind {
        BackendKind::OpenaiBatch => Some(openai_batch::spawn_poller),
        BackendKind::Openai | BackendKind::Engine | BackendKind::None => None,
    }
}

impl Default for BackendCache {
    /// Builds backends with [`build_backend`].
    fn default() -> Self {
        BackendCache::new(Arc::new(build_backend))
    }
}
