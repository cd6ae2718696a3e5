//! The job API (admin token): submit, list, inspect and cancel jobs, read
//! their results and samples, rescore a spec from the cache.

use bytes::Bytes;
use futures::stream::BoxStream;
use jobs::protocol::routes;
use jobs::protocol::{JobStatus, SubmitJobRequest};
use jobs::JobSpec;
use reqwest::Method;
use uuid::Uuid;

use crate::error::{ClientError, TokenKind};
use crate::http::{transport_error, CoordinatorClient};

impl CoordinatorClient {
    pub async fn submit(&self, spec: &JobSpec) -> Result<JobStatus, ClientError> {
        self.submit_with_priority(spec, 0).await
    }

    /// Submits at a priority: higher runs first, equal priorities share the
    /// workers.
    pub async fn submit_with_priority(
        &self,
        spec: &JobSpec,
        priority: i32,
    ) -> Result<JobStatus, ClientError> {
        let body = SubmitJobRequest {
            spec: spec.clone(),
            priority,
        };
        self.call(Method::POST, routes::JOBS, Some(&body), TokenKind::Admin)
            .await
    }

    /// Scores `spec` on the coordinator from its cache alone (the spec need
    /// not have been submitted): the same body as [`CoordinatorClient::results`].
    pub async fn rescore_spec(&self, spec: &JobSpec) -> Result<serde_json::Value, ClientError> {
        let body = serde_json::json!({ "spec": spec });
        self.call(Method::POST, routes::RESCORE, Some(&body), TokenKind::Admin)
            .await
    }

    /// `samples.jsonl` of [`CoordinatorClient::rescore_spec`], as a stream.
    pub async fn rescore_samples_stream(
        &self,
        spec: &JobSpec,
    ) -> Result<BoxStream<'static, Result<Bytes, ClientError>>, ClientError> {
        let body = serde_json::json!({ "spec": spec });
        self.stream(
            Method::POST,
            routes::RESCORE_SAMPLES.to_string(),
            Some(&body),
            TokenKind::Admin,
        )
        .await
    }

    pub async fn list_jobs(&self) -> Result<Vec<JobStatus>, ClientError> {
        self.call::<(), _>(Method::GET, routes::JOBS, None, TokenKind::Admin)
            .await
    }

    pub async fn job(&self, id: Uuid) -> Result<JobStatus, ClientError> {
        self.call::<(), _>(Method::GET, &routes::job_of(id), None, TokenKind::Admin)
            .await
    }

    pub async fn cancel(&self, id: Uuid) -> Result<JobStatus, ClientError> {
        self.call::<(), _>(
            Method::POST,
            &routes::job_cancel_of(id),
            None,
            TokenKind::Admin,
        )
        .await
    }

    /// The job's results (metrics report) as JSON.
    pub async fn results(&self, id: Uuid) -> Result<serde_json::Value, ClientError> {
        self.call::<(), _>(
            Method::GET,
            &routes::job_results_of(id),
            None,
            TokenKind::Admin,
        )
        .await
    }

    /// `samples.jsonl` of a job as a byte stream (it can be large).
    pub async fn samples_stream(
        &self,
        id: Uuid,
    ) -> Result<BoxStream<'static, Result<Bytes, ClientError>>, ClientError> {
        let route = routes::job_samples_of(id);
        self.stream::<()>(Method::GET, route, None, TokenKind::Admin)
            .await
    }

    /// `samples.jsonl` of a job, whole.
    pub async fn samples(&self, id: Uuid) -> Result<String, ClientError> {
        let route = routes::job_samples_of(id);
        let response = self
            .send_raw::<()>(Method::GET, &route, None, TokenKind::Admin, None)
            .await?;
        response
            .text()
            .await
            .map_err(|e| transport_error(&route, &self.base_url, &e))
    }
}
