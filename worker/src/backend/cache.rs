//! [`BackendCache`]: one backend per model spec, shared by every shard of
//! the model, with the load each model has in the shards that use it.

use jobs::spec::ModelSpec;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

use super::error::BackendError;
use super::interface::Backend;
use super::load::{ModelLoad, ShardLoad};

/// Builds a backend for a model; replaceable for tests and new backends.
pub type BackendFactory =
    Arc<dyn Fn(&ModelSpec) -> Result<Arc<dyn Backend>, BackendError> + Send + Sync>;

/// Backends by model spec, with the load each model has in the shards that
/// use them. Every shard of one model (identical `[model]` spec, compared as
/// JSON) shares one backend: one connection pool, one concurrency semaphore,
/// one set of rate limits and one circuit breaker. Share one cache between
/// several Workers of a process (`Worker::with_shared_backends`) so that the
/// limits hold for the process, not per Worker.
pub struct BackendCache {
    factory: BackendFactory,
    models: Mutex<HashMap<String, ModelSlot>>,
    /// Signalled when requests finish, to wake claim loops waiting for room.
    progress: Arc<Notify>,
}

/// One model's backend and its current load.
#[derive(Clone)]
struct ModelSlot {
    backend: Arc<dyn Backend>,
    load: Arc<ModelLoad>,
}

impl std::fmt::Debug for BackendCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendCache")
            .field("models", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl BackendCache {
    /// A cache building backends with `factory`.
    pub fn new(factory: BackendFactory) -> Self {
        BackendCache {
            factory,
            models: Mutex::new(HashMap::new()),
            progress: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ModelSlot>> {
        match self.models.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The backend for `model`, built on first use. Build errors are not
    /// cached (the environment may be fixed meanwhile).
    pub fn backend(&self, model: &ModelSpec) -> Result<Arc<dyn Backend>, BackendError> {
        self.slot(model).map(|slot| slot.backend)
    }

    /// The backend for `model` and a share of its load for a shard of
    /// `requests` requests, counted right away so that the next claim
    /// decision sees them.
    pub fn start_shard(
        &self,
        model: &ModelSpec,
        requests: usize,
    ) -> Result<(Arc<dyn Backend>, ShardLoad), BackendError> {
        let slot = self.slot(model)?;
        Ok((slot.backend, ShardLoad::start(slot.load, requests)))
    }

    fn slot(&self, model: &ModelSpec) -> Result<ModelSlot, BackendError> {
        let key = serde_json::to_string(model)
            .map_err(|e| BackendError::Config(format!("cannot serialise the model spec: {e}")))?;
        let mut models = self.lock();
        if let Some(slot) = models.get(&key) {
            return Ok(slot.clone());
        }
        let backend = (self.factory)(model)?;
        let load = Arc::new(ModelLoad::new(
            backend.concurrency(),
            Arc::clone(&self.progress),
        ));
        let slot = ModelSlot { backend, load };
        models.insert(key, slot.clone());
        Ok(slot)
    }

    /// Requests missing to reach the claim-ahead target, summed over the
    /// models with running shards; 0 when every such model has enough.
    pub fn deficit(&self) -> usize {
        self.lock()
            .values()
            .map(|slot| slot.load.deficit())
            .fold(0usize, usize::saturating_add)
    }

    /// Notified when requests finish or shards end.
    pub fn progress(&self) -> &Notify {
        &self.progress
    }
}
