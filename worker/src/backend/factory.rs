//! The one place that maps a [`BackendKind`] to its implementation: the
//! backend a model spec names, and the background task a kind needs.

use jobs::spec::{BackendKind, ModelSpec};
use std::sync::Arc;

use super::background::BackgroundTask;
use super::cache::BackendCache;
use super::engine::EngineBackend;
use super::error::BackendError;
use super::interface::Backend;
use super::key_policy::KeyPolicy;
use super::openai::OpenAiBackend;
use super::openai_batch::{self, OpenAiBatchBackend};

/// Builds the backend a model spec names; an API key is read only from a
/// variable `keys` allows.
pub fn build_backend(
    model: &ModelSpec,
    keys: &KeyPolicy,
) -> Result<Arc<dyn Backend>, BackendError> {
    match model.backend {
        BackendKind::Openai => Ok(Arc::new(OpenAiBackend::from_spec(model, keys)?)),
        BackendKind::OpenaiBatch => Ok(Arc::new(OpenAiBatchBackend::from_spec(model, keys)?)),
        BackendKind::Engine => Ok(Arc::new(EngineBackend::from_spec(model, keys)?)),
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

impl BackendCache {
    /// A cache building backends with [`build_backend`] under `keys`.
    pub fn with_key_policy(keys: KeyPolicy) -> Self {
        BackendCache::new(Arc::new(move |model| build_backend(model, &keys)))
    }
}

impl Default for BackendCache {
    /// Builds backends with [`build_backend`] under the default
    /// [`KeyPolicy`] (the usual provider variables only).
    fn default() -> Self {
        BackendCache::with_key_policy(KeyPolicy::default())
    }
}
