//! Job submission and the job API: submit (idempotent per spec), status,
//! list, cancel, the stored spec and failures.

use chrono::Utc;
use jobs::protocol::JobStatus;
use jobs::spec::ModelSpec;
use jobs::JobSpec;
use uuid::Uuid;

use crate::coordinator::{spec_hash, Coordinator};
use crate::error::CoordinatorError;
use crate::job_models::decode_stored_spec;
use crate::store::{NewJob, RequestFailure};

/// The store record of a new job of `spec`.
pub(crate) fn new_job(spec: &JobSpec, priority: i32) -> Result<NewJob, CoordinatorError> {
    let spec_json = serde_json::to_string(spec)
        .map_err(|e| CoordinatorError::Internal(format!("cannot encode the job spec: {e}")))?;
    Ok(NewJob {
        id: Uuid::now_v7(),
        name: spec.name.clone(),
        spec_json,
        spec_hash: spec_hash(spec)?,
        backend: spec.model.backend,
        model: spec.model.model.clone(),
        priority,
        created_at: Utc::now(),
    })
}

impl Coordinator {
    /// Validates and records a job at priority 0; planning happens in the
    /// background (see [`Coordinator::plan_pending`]). Idempotent: while a
    /// job with the same spec is planning or running, that job is returned.
    pub async fn submit(&self, spec: JobSpec) -> Result<JobStatus, CoordinatorError> {
        self.submit_with_priority(spec, 0).await
    }

    /// [`Coordinator::submit`] at a priority: workers take shards of
    /// higher-priority jobs first, and share themselves fairly between jobs
    /// of equal priority. A resubmitted live spec keeps its first priority.
    pub async fn submit_with_priority(
        &self,
        spec: JobSpec,
        priority: i32,
    ) -> Result<JobStatus, CoordinatorError> {
        self.admit(&spec)?;
        let (job, created) = self.store().create_job(new_job(&spec, priority)?).await?;
        if created {
            tracing::info!(job_id = %job.id, name = %job.name, priority, "job submitted");
            self.plan_signal().wake();
        } else {
            tracing::info!(job_id = %job.id, name = %job.name, "same spec already live; reusing job");
        }
        Ok(job.status())
    }

    /// What a spec must pass to become a job here: its own checks, this
    /// coordinator's limits and dataset roots.
    pub(crate) fn admit(&self, spec: &JobSpec) -> Result<(), CoordinatorError> {
        spec.validate()?;
        self.config()
            .limits
            .check(spec)
            .map_err(CoordinatorError::BadRequest)?;
        self.check_data_access(spec)
    }

    pub async fn job_status(&self, id: Uuid) -> Result<JobStatus, CoordinatorError> {
        let status = self.store().get_job(id).await?.status();
        Ok(self.priced(status).await)
    }

    /// Every job, newest first.
    pub async fn list_jobs(&self) -> Result<Vec<JobStatus>, CoordinatorError> {
        let mut out = Vec::new();
        for job in self.store().list_jobs().await? {
            out.push(self.priced(job.status()).await);
        }
        Ok(out)
    }

    /// Cancels a job: no shard of it is handed out again, and workers on its
    /// running shards are told to stop at their next heartbeat.
    pub async fn cancel(&self, id: Uuid) -> Result<JobStatus, CoordinatorError> {
        let job = self.store().cancel_job(id, Utc::now()).await?;
        tracing::info!(job_id = %id, state = ?job.state, "job cancel requested");
        Ok(job.status())
    }

    /// The job's spec as submitted.
    pub async fn job_spec(&self, id: Uuid) -> Result<JobSpec, CoordinatorError> {
        let json = self.store().job_spec_json(id).await?;
        decode_stored_spec(id, &json)
    }

    /// Requests of the job that failed after the worker's retries.
    pub async fn failures(
        &self,
        id: Uuid,
        limit: u64,
    ) -> Result<Vec<RequestFailure>, CoordinatorError> {
        // Distinguish "no failures" from "no such job".
        self.store().get_job(id).await?;
        Ok(self.store().job_failures(id, limit).await?)
    }

    /// The job's model section, parsed once per process.
    pub(crate) async fn model_of(&self, job_id: Uuid) -> Result<ModelSpec, CoordinatorError> {
        self.job_models()
            .model_of(self.store().as_ref(), job_id)
            .await
    }
}
