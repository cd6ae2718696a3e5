//! The coordinator's HTTP API (axum): job routes for admins, lease routes for
//! workers, `/healthz` and Prometheus `/metrics`. Routes and bodies are the
//! ones `jobs::protocol` defines; every error is a JSON `ErrorBody`.

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jobs::protocol::{
    ClaimRequest, CompleteRequest, ErrorBody, FailRequest, HeartbeatRequest, ReleaseRequest,
    SubmitJobRequest,
};
use jobs::{MetricsReport, RequestKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::future::Future;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::coordinator::Coordinator;
use crate::error::CoordinatorError;
use crate::rescore::MissingRequest;
use crate::store::StoreError;

/// Completions carry every written key; leave room for large shards.
const BODY_LIMIT: usize = 64 * 1024 * 1024;
const DEFAULT_FAILURES_LIMIT: u64 = 1000;

/// Body of `GET /v1/jobs/{id}/results`: the metrics report (so it parses as
/// `jobs::protocol::ResultsResponse`) plus what is missing from the cache.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ResultsBody {
    #[serde(flatten)]
    pub report: MetricsReport,
    pub missing_requests: u64,
    pub missing_examples: Vec<MissingRequest>,
    pub failed_requests: u64,
    /// Tokens the job's requests used (absent when scoring a spec that is
    /// not a job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<jobs::Usage>,
    /// Their cost under the spec's `[model.price]`, beside the synchronous
    /// price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<jobs::protocol::CostSummary>,
}

/// One element of `GET /v1/jobs/{id}/failures`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FailureBody {
    pub key: RequestKey,
    pub shard_id: Uuid,
    pub error: String,
}

#[derive(Deserialize)]
struct FailuresQuery {
    limit: Option<u64>,
}

/// An error answer: status plus `ErrorBody`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status == StatusCode::CONFLICT {
            // A fenced completion: the worker may read either `ErrorBody` or
            // `CompleteResponse`/`ReleaseResponse` from it.
            let body = serde_json::json!({ "error": self.message, "accepted": false });
            return (self.status, Json(body)).into_response();
        }
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

impl From<CoordinatorError> for ApiError {
    fn from(err: CoordinatorError) -> Self {
        let status = match &err {
            CoordinatorError::Spec(_) | CoordinatorError::BadRequest(_) => StatusCode::BAD_REQUEST,
            CoordinatorError::JobNotFound(_) => StatusCode::NOT_FOUND,
            CoordinatorError::Fenced { .. } => StatusCode::CONFLICT,
            CoordinatorError::Planning(_)
            | CoordinatorError::Dataset(_)
            | CoordinatorError::Render(_) => StatusCode::UNPROCESSABLE_ENTITY,
            CoordinatorError::Store(StoreError::Busy(_) | StoreError::Unavailable(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %err, "request failed");
        }
        ApiError::new(status, err.to_string())
    }
}

type ApiResult<T> = Result<T, ApiError>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Admin,
    Worker,
}

/// Compares without stopping at the first differing byte.
fn token_matches(given: &str, expected: &str) -> bool {
    if expected.is_empty() || given.len() != expected.len() {
        return false;
    }
    given
        .bytes()
        .zip(expected.bytes())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// Admin routes take the admin token; worker routes take either token.
fn authorize(c: &Coordinator, headers: &HeaderMap, role: Role) -> ApiResult<()> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(given) = given else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing bearer token: send `Authorization: Bearer <token>`",
        ));
    };
    let config = c.config();
    let ok = token_matches(given, &config.admin_token)
        || (role == Role::Worker && token_matches(given, &config.worker_token));
    if ok {
        Ok(())
    } else {
        let which = match role {
            Role::Admin => "the admin token",
            Role::Worker => "the worker or admin token",
        };
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("invalid bearer token: this route needs {which}"),
        ))
    }
}

/// Parses a JSON body, naming the offending field on error.
fn parse_body<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path.is_empty() || path == "." {
            format!("invalid request body: {inner}")
        } else {
            format!("invalid request body at `{path}`: {inner}")
        };
        ApiError::new(StatusCode::BAD_REQUEST, message)
    })
}

fn parse_id(raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{raw:?} is not a job id (expected a UUID): {e}"),
        )
    })
}

async fn submit_job(
    State(c): State<Coordinator>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    authorize(&c, &headers, Role::Admin)?;
    let req: SubmitJobRequest = parse_body(&body)?;
    let status = c.submit_with_priority(req.spec, req.priority).await?;
    Ok((StatusCode::CREATED, Json(status)).into_response())
}

async fn list_jobs(State(c): State<Coordinator>, headers: HeaderMap) -> ApiResult<Response> {
    authorize(&c, &headers, Role::Admin)?;
    Ok(Json(c.list_jobs().await?).into_response())
}

async fn get_job(
    State(c): State<Coordinator>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    authorize(&c, &headers, Role::Admin)?;
    Ok(Json(c.job_status(parse_id(&id)?).await?).into_response())
}

async fn cancel_job(
    State(c): State<Coordinator>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    authorize(&c, &headers, Role::Admin)?;
    Ok(Json(c.cancel(parse_id(&id)?).await?).into_response())
}

async fn job_results(
    State(c): State<Coordinator>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    authorize(&c, &headers, Role::Admin)?;
    let id = parse_id(&id)?;
    let outcome = c.rescore_job_blocking(id).await?;
    let status = c.job_status(id).await?;
    Ok(Json(ResultsBody {
        report: outcome.report,
        missing_requests: outcome.missing_requests,
        missing_examples: outcome.missing_examples,
        failed_requests: outcome.failed_requests,
        usage: Some(status.counts.usage),
        cost: status.cost,
    })
    .into_response())
}

/// Body of `POST /v1/rescore` and `POST /v1/rescore/samples`: a spec to
/// score from the cache alone (it need not have been submitted).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RescoreRequest {
    pub spec: jobs::JobSpec,
}

async fn rescore_spec(
    State(c): State<Coordinator>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    authorize(&c, &headers, Role::Admin)?;
    let req: RescoreRequest = parse_body(&body)?;
    req.spec.validate().map_err(CoordinatorError::from)?;
    let outcome = c.rescore_spec_blocking(req.spec).await?;
    Ok(Json(ResultsBody {
        report: outcome.report,
        missing_requests: outcome.missing_requests,
        missing_examples: outcome.missing_examples,
        failed_requests: outcome.failed_requests,
        usage: None,
        cost: None,
    })
    .into_response())
}

async fn rescore_samples(
    State(c): State<Coordinator>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    authorize(&c, &headers, Role::Admin)?;
    let req: RescoreRequest = parse_body(&body)?;
    req.spec.validate().map_err(CoordinatorError::from)?;
    Ok(samples_response(c.stream_samples(req.spec)))
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

async fn job_samples(
    State(c): State<Coordinator>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    authorize(&c, &headers, Role::Admin)?;
    // Resolve the job before the stream starts, so a bad id is a clean 404.
    let spec = c.job_spec(parse_id(&id)?).await?;
    Ok(samples_response(c.stream_samples(spec)))
}

async fn job_failures(
    State(c): State<Coordinator>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<FailuresQuery>,
) -> ApiResult<Response> {
    authorize(&c, &headers, Role::Admin)?;
    let limit = query.limit.unwrap_or(DEFAULT_FAILURES_LIMIT);
    let failures: Vec<FailureBody> = c
        .failures(parse_id(&id)?, limit)
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

async fn claim(
    State(c): State<Coordinator>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    authorize(&c, &headers, Role::Worker)?;
    let req: ClaimRequest = parse_body(&body)?;
    Ok(Json(c.claim(&req).await?).into_response())
}

async fn heartbeat(
    State(c): State<Coordinator>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    authorize(&c, &headers, Role::Worker)?;
    let req: HeartbeatRequest = parse_body(&body)?;
    Ok(Json(c.heartbeat(&req).await?).into_response())
}

fn fenced(shard_id: Uuid, attempt: u32, worker_id: &str) -> ApiError {
    CoordinatorError::Fenced {
        shard_id,
        attempt,
        worker_id: worker_id.to_string(),
    }
    .into()
}

async fn complete(
    State(c): State<Coordinator>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    authorize(&c, &headers, Role::Worker)?;
    let req: CompleteRequest = parse_body(&body)?;
    let answer = c.complete(&req).await?;
    if !answer.accepted {
        return Err(fenced(req.shard_id, req.attempt, &req.worker_id));
    }
    Ok(Json(answer).into_response())
}

async fn fail(
    State(c): State<Coordinator>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    authorize(&c, &headers, Role::Worker)?;
    let req: FailRequest = parse_body(&body)?;
    match c.fail(&req).await? {
        Some(answer) => Ok(Json(answer).into_response()),
        None => Err(fenced(req.shard_id, req.attempt, &req.worker_id)),
    }
}

async fn release(
    State(c): State<Coordinator>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    authorize(&c, &headers, Role::Worker)?;
    let req: ReleaseRequest = parse_body(&body)?;
    let answer = c.release(&req).await?;
    if !answer.accepted {
        return Err(fenced(req.shard_id, req.attempt, &req.worker_id));
    }
    Ok(Json(answer).into_response())
}

// ---- the `openai-batch` lifecycle (worker token; see `jobs::protocol::provider_batch`) ----

/// 409 for a batch call whose holder no longer holds the shard.
fn batch_fenced(shard_id: Uuid, worker_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!("shard {shard_id} is no longer held by {worker_id}"),
    )
}

async fn batch_reserve(
    State(c): State<Coordinator>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    authorize(&c, &headers, Role::Worker)?;
    let req: jobs::protocol::BatchReserveRequest = parse_body(&body)?;
    match c.batch_reserve(&req).await? {
        Some(answer) => Ok(Json(answer).into_response()),
        None => Err(batch_fenced(req.shard_id, &req.worker_id)),
    }
}

async fn batch_submit(
    State(c): State<Coordinator>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    authorize(&c, &headers, Role::Worker)?;
    let req: jobs::protocol::BatchSubmitRequest = parse_body(&body)?;
    if !c.batch_submit(&req).await? {
        return Err(fenced(req.shard_id, req.attempt, &req.worker_id));
    }
    Ok(Json(jobs::protocol::BatchAccepted { accepted: true }).into_response())
}

async fn batch_requests(
    State(c): State<Coordinator>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    authorize(&c, &headers, Role::Worker)?;
    let req: jobs::protocol::BatchRequestsRequest = parse_body(&body)?;
    // Sent as stored: no decoding on the coordinator.
    let json = c.batch_requests_json(req.shard_id).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

async fn batch_claim(
    State(c): State<Coordinator>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    authorize(&c, &headers, Role::Worker)?;
    let req: jobs::protocol::BatchClaimRequest = parse_body(&body)?;
    Ok(Json(c.batch_claim(&req).await?).into_response())
}

async fn batch_heartbeat(
    State(c): State<Coordinator>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    authorize(&c, &headers, Role::Worker)?;
    let req: jobs::protocol::BatchHeartbeatRequest = parse_body(&body)?;
    match c.batch_heartbeat(&req).await? {
        Some(answer) => Ok(Json(answer).into_response()),
        None => Err(batch_fenced(req.shard_id, &req.worker_id)),
    }
}

async fn batch_update(
    State(c): State<Coordinator>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    authorize(&c, &headers, Role::Worker)?;
    let req: jobs::protocol::BatchUpdateRequest = parse_body(&body)?;
    if !c.batch_update(&req).await? {
        return Err(batch_fenced(req.shard_id, &req.worker_id));
    }
    Ok(Json(jobs::protocol::BatchAccepted { accepted: true }).into_response())
}

async fn batch_finish(
    State(c): State<Coordinator>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    authorize(&c, &headers, Role::Worker)?;
    let req: jobs::protocol::BatchFinishRequest = parse_body(&body)?;
    match c.batch_finish(&req).await? {
        Some(answer) => Ok(Json(answer).into_response()),
        None => Err(batch_fenced(req.shard_id, &req.worker_id)),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(c): State<Coordinator>) -> ApiResult<Response> {
    let text = c.metrics_text().await?;
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response())
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route")
}

/// The API's routes, without background tasks (see [`serve`]).
pub fn router(coordinator: Coordinator) -> Router {
    Router::new()
        .route(
            jobs::protocol::routes::JOBS,
            post(submit_job).get(list_jobs),
        )
        .route(jobs::protocol::routes::JOB, get(get_job))
        .route(jobs::protocol::routes::JOB_CANCEL, post(cancel_job))
        .route(jobs::protocol::routes::JOB_RESULTS, get(job_results))
        .route(jobs::protocol::routes::JOB_SAMPLES, get(job_samples))
        .route(jobs::protocol::routes::JOB_FAILURES, get(job_failures))
        .route(jobs::protocol::routes::RESCORE, post(rescore_spec))
        .route(
            jobs::protocol::routes::RESCORE_SAMPLES,
            post(rescore_samples),
        )
        .route(jobs::protocol::routes::LEASES_CLAIM, post(claim))
        .route(jobs::protocol::routes::LEASES_HEARTBEAT, post(heartbeat))
        .route(jobs::protocol::routes::LEASES_COMPLETE, post(complete))
        .route(jobs::protocol::routes::LEASES_FAIL, post(fail))
        .route(jobs::protocol::routes::LEASES_RELEASE, post(release))
        .route(jobs::protocol::routes::BATCHES_RESERVE, post(batch_reserve))
        .route(jobs::protocol::routes::BATCHES_SUBMIT, post(batch_submit))
        .route(
            jobs::protocol::routes::BATCHES_REQUESTS,
            post(batch_requests),
        )
        .route(jobs::protocol::routes::BATCHES_CLAIM, post(batch_claim))
        .route(
            jobs::protocol::routes::BATCHES_HEARTBEAT,
            post(batch_heartbeat),
        )
        .route(jobs::protocol::routes::BATCHES_UPDATE, post(batch_update))
        .route(jobs::protocol::routes::BATCHES_FINISH, post(batch_finish))
        .route(jobs::protocol::routes::HEALTHZ, get(healthz))
        .route(jobs::protocol::routes::METRICS, get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(coordinator)
}

/// Serves the API on `listener` and runs the planner and the lease reaper
/// (only while this replica holds the leader row, so that several replicas
/// can serve one database) until `shutdown` resolves; then stops accepting,
/// lets requests in flight finish, and stops the background tasks.
pub async fn serve(
    listener: TcpListener,
    coordinator: Coordinator,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop = CancellationToken::new();
    let planner = {
        let c = coordinator.clone();
        let stop = stop.child_token();
        tokio::spawn(async move { c.run_planner(stop).await })
    };
    let reaper = {
        let c = coordinator.clone();
        let stop = stop.child_token();
        tokio::spawn(async move { c.run_leader_duties(stop).await })
    };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "coordinator listening");
    }
    let stop_on_shutdown = stop.clone();
    let served = axum::serve(listener, router(coordinator))
        .with_graceful_shutdown(async move {
            shutdown.await;
            stop_on_shutdown.cancel();
        })
        .await;
    stop.cancel();
    let _ = planner.await;
    let _ = reaper.await;
    served
}
