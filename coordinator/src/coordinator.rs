//! The `Coordinator`: one handle on the store, the object store and the
//! per-process state of each concept (leases, leadership, planning,
//! metrics). The concepts' methods live in their own files; the HTTP layer
//! and the embedded cluster both call them.

use jobs::request::{canonical_json, sha256_hex};
use jobs::JobSpec;
use std::sync::Arc;

use crate::config::CoordinatorConfig;
use crate::error::CoordinatorError;
use crate::job_models::JobModels;
use crate::leader::Leadership;
use crate::metrics::{Counters, Metrics};
use crate::plan_signal::PlanSignal;
use crate::shard_keys::ShardKeyMemory;
use crate::store::Store;

struct Inner {
    store: Arc<dyn Store>,
    objects: Arc<dyn cache::ObjectStore>,
    config: CoordinatorConfig,
    metrics: Metrics,
    plan: PlanSignal,
    models: JobModels,
    shard_keys: ShardKeyMemory,
    leadership: Leadership,
}

/// Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Coordinator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens are secrets: never printed.
        f.debug_struct("Coordinator")
            .field("store", &self.inner.store)
            .field("objects", &self.inner.objects.describe())
            .field("lease_secs", &self.inner.config.lease_secs)
            .field("replica_id", &self.inner.leadership.replica_id())
            .finish_non_exhaustive()
    }
}

/// sha256 of the spec's canonical JSON: equal specs, equal hashes.
pub fn spec_hash(spec: &JobSpec) -> Result<String, CoordinatorError> {
    let value = serde_json::to_value(spec)
        .map_err(|e| CoordinatorError::Internal(format!("cannot encode the job spec: {e}")))?;
    Ok(sha256_hex(&canonical_json(&value)))
}

impl Coordinator {
    pub fn new(
        store: Arc<dyn Store>,
        objects: Arc<dyn cache::ObjectStore>,
        config: CoordinatorConfig,
    ) -> Self {
        Coordinator {
            inner: Arc::new(Inner {
                store,
                objects,
                config,
                metrics: Metrics::new(),
                plan: PlanSignal::default(),
                models: JobModels::default(),
                shard_keys: ShardKeyMemory::default(),
                leadership: Leadership::new(),
            }),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn objects(&self) -> &Arc<dyn cache::ObjectStore> {
        &self.inner.objects
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.inner.config
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.metrics.counters
    }

    pub(crate) fn plan_signal(&self) -> &PlanSignal {
        &self.inner.plan
    }

    pub(crate) fn job_models(&self) -> &JobModels {
        &self.inner.models
    }

    pub(crate) fn shard_key_memory(&self) -> &ShardKeyMemory {
        &self.inner.shard_keys
    }

    pub(crate) fn leadership(&self) -> &Leadership {
        &self.inner.leadership
    }

    /// This process's name in the leader row.
    pub fn replica_id(&self) -> &str {
        self.inner.leadership.replica_id()
    }

    /// Whether this replica held the leader row at its last tick.
    pub fn is_leader(&self) -> bool {
        self.inner.leadership.is_leading()
    }

    /// Prometheus exposition of the protocol counters and of the store's
    /// job, shard and request aggregates.
    pub async fn metrics_text(&self) -> Result<String, CoordinatorError> {
        let aggregates = self.inner.store.metrics().await?;
        self.inner
            .metrics
            .encode(&aggregates)
            .map_err(|e| CoordinatorError::Internal(format!("cannot encode the metrics: {e}")))
    }
}
