//! The model section of each job, parsed once per process: every lease
//! carries it, and parsing the stored spec per lease would cost a read and a
//! parse per claim.

use jobs::spec::ModelSpec;
use jobs::JobSpec;
use std::collections::HashMap;
use std::sync::Mutex;
use uuid::Uuid;

use crate::error::CoordinatorError;
use crate::store::Store;

#[derive(Debug, Default)]
pub(crate) struct JobModels {
    by_job: Mutex<HashMap<Uuid, ModelSpec>>,
}

impl JobModels {
    /// The job's model section, from memory or else from the stored spec.
    pub(crate) async fn model_of(
        &self,
        store: &dyn Store,
        job_id: Uuid,
    ) -> Result<ModelSpec, CoordinatorError> {
        if let Some(model) = self
            .by_job
            .lock()
            .ok()
            .and_then(|m| m.get(&job_id).cloned())
        {
            return Ok(model);
        }
        let json = store.job_spec_json(job_id).await?;
        let model = decode_stored_spec(job_id, &json)?.model;
        if let Ok(mut models) = self.by_job.lock() {
            models.insert(job_id, model.clone());
        }
        Ok(model)
    }
}

/// A job's spec as the store holds it (JSON written at submission).
pub(crate) fn decode_stored_spec(job_id: Uuid, json: &str) -> Result<JobSpec, CoordinatorError> {
    serde_json::from_str(json).map_err(|e| {
        CoordinatorError::Internal(format!("stored spec of job {job_id} cannot be read: {e}"))
    })
}
