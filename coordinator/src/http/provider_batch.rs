//! Provider-batch routes (worker token): the `openai-batch` lifecycle of a
//! shard — reserve, submit, poll leases, updates and the finish — see
//! `crate::provider_batch`.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use jobs::{
    protocol::BatchAccepted, protocol::BatchClaimRequest, protocol::BatchClaimResponse,
    protocol::BatchFinishRequest, protocol::BatchFinishResponse, protocol::BatchHeartbeatRequest,
    protocol::BatchHeartbeatResponse, protocol::BatchRequestsRequest,
    protocol::BatchReserveRequest, protocol::BatchReserveResponse, protocol::BatchSubmitRequest,
    protocol::BatchUpdateRequest, protocol::ErrorBody, InferenceRequest,
};

use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, WorkerOrAdmin};
use crate::coordinator::Coordinator;

#[utoipa::path(post, path = "/v1/batches/reserve", tag = "batches",
    request_body = BatchReserveRequest,
    responses(
        (status = 200, body = BatchReserveResponse),
        (status = 409, description = "The caller no longer holds the shard", body = ErrorBody),
        )
)]
pub(super) async fn reserve(
    _: WorkerOrAdmin,
    State(c): State<Coordinator>,
    JsonBody(req): JsonBody<BatchReserveRequest>,
) -> ApiResult<Json<BatchReserveResponse>> {
    match c.batch_reserve(&req).await? {
        Some(answer) => Ok(Json(answer)),
        None => Err(ApiError::not_holder(req.shard_id, &req.worker_id)),
    }
}

#[utoipa::path(post, path = "/v1/batches/submit", tag = "batches", operation_id = "batch_submit",
    request_body = BatchSubmitRequest,
    responses(
        (status = 200, body = BatchAccepted),
        (status = 409, description = "Fenced: the lease is no longer this attempt's", body = ErrorBody),
        )
)]
pub(super) async fn submit(
    _: WorkerOrAdmin,
    State(c): State<Coordinator>,
    JsonBody(req): JsonBody<BatchSubmitRequest>,
) -> ApiResult<Json<BatchAccepted>> {
    if !c.batch_submit(&req).await? {
        return Err(ApiError::fenced(req.shard_id, req.attempt, &req.worker_id));
    }
    Ok(Json(BatchAccepted { accepted: true }))
}

#[utoipa::path(post, path = "/v1/batches/requests", tag = "batches",
    request_body = BatchRequestsRequest,
    responses(
        (status = 200, body = Vec<InferenceRequest>),
        )
)]
pub(super) async fn requests(
    _: WorkerOrAdmin,
    State(c): State<Coordinator>,
    JsonBody(req): JsonBody<BatchRequestsRequest>,
) -> ApiResult<Response> {
    // Sent as stored: no decoding on the coordinator.
    let json = c.batch_requests_json(req.shard_id).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

#[utoipa::path(post, path = "/v1/batches/claim", tag = "batches", operation_id = "batch_claim",
    request_body = BatchClaimRequest,
    responses(
        (status = 200, body = BatchClaimResponse),
        )
)]
pub(super) async fn claim(
    _: WorkerOrAdmin,
    State(c): State<Coordinator>,
    JsonBody(req): JsonBody<BatchClaimRequest>,
) -> ApiResult<Json<BatchClaimResponse>> {
    Ok(Json(c.batch_claim(&req).await?))
}

#[utoipa::path(post, path = "/v1/batches/heartbeat", tag = "batches", operation_id = "batch_heartbeat",
    request_body = BatchHeartbeatRequest,
    responses(
        (status = 200, body = BatchHeartbeatResponse),
        (status = 409, description = "The caller no longer holds the shard", body = ErrorBody),
        )
)]
pub(super) async fn heartbeat(
    _: WorkerOrAdmin,
    State(c): State<Coordinator>,
    JsonBody(req): JsonBody<BatchHeartbeatRequest>,
) -> ApiResult<Json<BatchHeartbeatResponse>> {
    match c.batch_heartbeat(&req).await? {
        Some(answer) => Ok(Json(answer)),
        None => Err(ApiError::not_holder(req.shard_id, &req.worker_id)),
    }
}

#[utoipa::path(post, path = "/v1/batches/update", tag = "batches",
    request_body = BatchUpdateRequest,
    responses(
        (status = 200, body = BatchAccepted),
        (status = 409, description = "The caller no longer holds the shard", body = ErrorBody),
        )
)]
pub(super) async fn update(
    _: WorkerOrAdmin,
    State(c): State<Coordinator>,
    JsonBody(req): JsonBody<BatchUpdateRequest>,
) -> ApiResult<Json<BatchAccepted>> {
    if !c.batch_update(&req).await? {
        return Err(ApiError::not_holder(req.shard_id, &req.worker_id));
    }
    Ok(Json(BatchAccepted { accepted: true }))
}

#[utoipa::path(post, path = "/v1/batches/finish", tag = "batches",
    request_body = BatchFinishRequest,
    responses(
        (status = 200, body = BatchFinishResponse),
        (status = 409, description = "The caller no longer holds the shard", body = ErrorBody),
        )
)]
pub(super) async fn finish(
    _: WorkerOrAdmin,
    State(c): State<Coordinator>,
    JsonBody(req): JsonBody<BatchFinishRequest>,
) -> ApiResult<Json<BatchFinishResponse>> {
    match c.batch_finish(&req).await? {
        Some(answer) => Ok(Json(answer)),
        None => Err(ApiError::not_holder(req.shard_id, &req.worker_id)),
    }
}
