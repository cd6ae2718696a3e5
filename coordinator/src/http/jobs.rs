//! Job routes (admin token): submit, list, inspect, cancel, results,
//! samples, failures, and scoring a spec from the cache.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jobs::protocol::{ErrorBody, JobStatus, SubmitJobRequest};
use jobs::{MetricsReport, RequestKey};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::ApiResult;
use super::extract::{Admin, JobId, QueryArgs, SpecBody};
use crate::coordinator::Coordinator;
use crate::error::CoordinatorError;
use crate::rescore::{MissingRequest, RescoreOutcome};

const DEFAULT_FAILURES_LIMIT: u64 = 1000;

/// Body of `GET /v1/jobs/{id}/results`: the metrics report (so it parses as
/// `jobs::protocol::ResultsResponse`) plus what is missing from the cache.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct ResultsBody {
    #[serde(flatten)]
    pub report: MetricsReport,
    pub missing_requests: u64,
    pub missing_examples: Vec<MissingRequest>,
    pub failed_requests: u64,
    /// Judge requests whose verdict is not in the cache.
    #[serde(default)]
    pub missing_verdicts: u64,
    /// Tokens the job's requests used (absent when scoring a spec that is
    /// not a job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<jobs::Usage>,
    /// Their cost under the spec's `[model.price]`, beside the synchronous
    /// price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<jobs::protocol::CostSummary>,
}

impl ResultsBody {
    fn new(outcome: RescoreOutcome, job: Option<JobStatus>) -> Self {
        let (usage, cost) = match job {
            Some(status) => (Some(status.counts.usage), status.cost),
            None => (None, None),
        };
        ResultsBody {
            report: outcome.report,
            missing_requests: outcome.missing_requests,
            missing_examples: outcome.missing_examples,
            failed_requests: outcome.failed_requests,
            missing_verdicts: outcome.missing_verdicts,
            usage,
            cost,
        }
    }
}

/// One element of `GET /v1/jobs/{id}/failures`.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct FailureBody {
    pub key: RequestKey,
    pub shard_id: Uuid,
    pub error: String,
}

#[derive(Deserialize)]
pub(super) struct FailuresQuery {
    limit: Option<u64>,
}

/// Body of `POST /v1/rescore` and `POST /v1/rescore/samples`: a spec to
/// score from the cache alone (it need not have been submitted).
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct RescoreRequest {
    pub spec: jobs::JobSpec,
}

#[utoipa::path(post, path = "/v1/jobs", tag = "jobs",
    request_body = SubmitJobRequest,
    responses(
        (status = 201, description = "The job, stored as `planning`", body = JobStatus),
        (status = 403, description = "A data file outside the coordinator's dataset roots", body = ErrorBody),
    )
)]
pub(super) async fn submit(
    _: Admin,
    State(c): State<Coordinator>,
    SpecBody(req): SpecBody<SubmitJobRequest>,
) -> ApiResult<Response> {
    let status = c.submit_with_priority(req.spec, req.priority).await?;
    Ok((StatusCode::CREATED, Json(status)).into_response())
}

#[utoipa::path(get, path = "/v1/jobs", tag = "jobs",
    responses((status = 200, description = "Every job", body = Vec<JobStatus>))
)]
pub(super) async fn list(_: Admin, State(c): State<Coordinator>) -> ApiResult<Response> {
    Ok(Json(c.list_jobs().await?).into_response())
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = JobStatus),
        (status = 404, description = "No such job", body = ErrorBody),
        )
)]
pub(super) async fn get(
    _: Admin,
    State(c): State<Coordinator>,
    JobId(id): JobId,
) -> ApiResult<Response> {
    Ok(Json(c.job_status(id).await?).into_response())
}

#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job, cancelled", body = JobStatus),
        (status = 404, description = "No such job", body = ErrorBody),
        )
)]
pub(super) async fn cancel(
    _: Admin,
    State(c): State<Coordinator>,
    JobId(id): JobId,
) -> ApiResult<Response> {
    Ok(Json(c.cancel(id).await?).into_response())
}

#[utoipa::path(get, path = "/v1/jobs/{id}/results", tag = "jobs",
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "Scores from the cache", body = ResultsBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 403, description = "A data file outside the coordinator's dataset roots", body = ErrorBody),
        (status = 422, description = "The dataset could not be read or rendered", body = ErrorBody),
        )
)]
pub(super) async fn results(
    _: Admin,
    State(c): State<Coordinator>,
    JobId(id): JobId,
) -> ApiResult<Response> {
    let outcome = c.rescore_job_blocking(id).await?;
    let status = c.job_status(id).await?;
    Ok(Json(ResultsBody::new(outcome, Some(status))).into_response())
}

#[utoipa::path(post, path = "/v1/rescore", tag = "jobs",
    request_body = RescoreRequest,
    responses(
        (status = 200, description = "Scores from the cache", body = ResultsBody),
        (status = 403, description = "A data file outside the coordinator's dataset roots", body = ErrorBody),
        (status = 422, description = "The dataset could not be read or rendered", body = ErrorBody),
        )
)]
pub(super) async fn rescore_spec(
    _: Admin,
    State(c): State<Coordinator>,
    SpecBody(req): SpecBody<RescoreRequest>,
) -> ApiResult<Response> {
    req.spec.validate().map_err(CoordinatorError::from)?;
    let outcome = c.rescore_spec_blocking(req.spec).await?;
    Ok(Json(ResultsBody::new(outcome, None)).into_response())
}

#[utoipa::path(post, path = "/v1/rescore/samples", tag = "jobs",
    request_body = RescoreRequest,
    responses(
        (status = 200, description = "`samples.jsonl`, streamed", content_type = "application/x-ndjson", body = String),
        (status = 403, description = "A data file outside the coordinator's dataset roots", body = ErrorBody),
        (status = 422, description = "The dataset could not be read or rendered", body = ErrorBody),
        )
)]
pub(super) async fn rescore_samples(
    _: Admin,
    State(c): State<Coordinator>,
    SpecBody(req): SpecBody<RescoreRequest>,
) -> ApiResult<Response> {
    req.spec.validate().map_err(CoordinatorError::from)?;
    // Refused before the answer starts: a stream cannot turn into a 403.
    c.check_data_access(&req.spec)?;
    Ok(samples_response(c.stream_samples(req.spec)))
}

#[utoipa::path(get, path = "/v1/jobs/{id}/samples", tag = "jobs",
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "`samples.jsonl`, streamed", content_type = "application/x-ndjson", body = String),
        (status = 404, description = "No such job", body = ErrorBody),
        )
)]
pub(super) async fn samples(
    _: Admin,
    State(c): State<Coordinator>,
    JobId(id): JobId,
) -> ApiResult<Response> {
    // Resolve the job before the stream starts, so a bad id is a clean 404.
    let spec = c.job_spec(id).await?;
    Ok(samples_response(c.stream_samples(spec)))
}

fn samples_response(rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Response {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

#[utoipa::path(get, path = "/v1/jobs/{id}/failures", tag = "jobs",
    params(
        ("id" = Uuid, Path, description = "The job's id"),
        ("limit" = Option<u64>, Query, description = "Most failures to list (default 1000)"),
    ),
    responses(
        (status = 200, description = "The job's failed requests", body = Vec<FailureBody>),
        (status = 404, description = "No such job", body = ErrorBody),
        )
)]
pub(super) async fn failures(
    _: Admin,
    State(c): State<Coordinator>,
    JobId(id): JobId,
    QueryArgs(query): QueryArgs<FailuresQuery>,
) -> ApiResult<Response> {
    let limit = query.limit.unwrap_or(DEFAULT_FAILURES_LIMIT);
    let failures: Vec<FailureBody> = c
        .failures(id, limit)
        .await?
        .into_iter()
        .map(|f| FailureBody {
            key: f.key,
            shard_id: f.shard_id,
            error: f.error,
        })
        .collect();
    Ok(Json(failures).into_response())
}
