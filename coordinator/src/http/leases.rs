//! Lease routes (worker token): claim, heartbeat, flush, complete, fail,
//! release.
//! Every call after the claim is fenced on the attempt number.

use axum::extract::State;
use axum::Json;
use jobs::protocol::{
    ClaimRequest, ClaimResponse, CompleteRequest, CompleteResponse, ErrorBody, FailRequest,
    FailResponse, FlushRequest, FlushResponse, HeartbeatRequest, HeartbeatResponse, ReleaseRequest,
    ReleaseResponse,
};

use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, WorkerOrAdmin};
use crate::coordinator::Coordinator;

#[utoipa::path(post, path = "/v1/leases/claim", tag = "leases",
    request_body = ClaimRequest,
    responses(
        (status = 200, body = ClaimResponse),
        )
)]
pub(super) async fn claim(
    _: WorkerOrAdmin,
    State(c): State<Coordinator>,
    JsonBody(req): JsonBody<ClaimRequest>,
) -> ApiResult<Json<ClaimResponse>> {
    Ok(Json(c.claim(&req).await?))
}

#[utoipa::path(post, path = "/v1/leases/heartbeat", tag = "leases",
    request_body = HeartbeatRequest,
    responses(
        (status = 200, body = HeartbeatResponse),
        )
)]
pub(super) async fn heartbeat(
    _: WorkerOrAdmin,
    State(c): State<Coordinator>,
    JsonBody(req): JsonBody<HeartbeatRequest>,
) -> ApiResult<Json<HeartbeatResponse>> {
    Ok(Json(c.heartbeat(&req).await?))
}

#[utoipa::path(post, path = "/v1/leases/flush", tag = "leases",
    request_body = FlushRequest,
    responses(
        (status = 200, body = FlushResponse),
        )
)]
pub(super) async fn flush(
    _: WorkerOrAdmin,
    State(c): State<Coordinator>,
    JsonBody(req): JsonBody<FlushRequest>,
) -> ApiResult<Json<FlushResponse>> {
    Ok(Json(c.flush(&req).await?))
}

#[utoipa::path(post, path = "/v1/leases/complete", tag = "leases",
    request_body = CompleteRequest,
    responses(
        (status = 200, body = CompleteResponse),
        (status = 409, description = "Fenced: the lease is no longer this attempt's", body = ErrorBody),
        )
)]
pub(super) async fn complete(
    _: WorkerOrAdmin,
    State(c): State<Coordinator>,
    JsonBody(req): JsonBody<CompleteRequest>,
) -> ApiResult<Json<CompleteResponse>> {
    let answer = c.complete(&req).await?;
    if !answer.accepted {
        return Err(ApiError::fenced(req.shard_id, req.attempt, &req.worker_id));
    }
    Ok(Json(answer))
}

#[utoipa::path(post, path = "/v1/leases/fail", tag = "leases",
    request_body = FailRequest,
    responses(
        (status = 200, body = FailResponse),
        (status = 409, description = "Fenced: the lease is no longer this attempt's", body = ErrorBody),
        )
)]
pub(super) async fn fail(
    _: WorkerOrAdmin,
    State(c): State<Coordinator>,
    JsonBody(req): JsonBody<FailRequest>,
) -> ApiResult<Json<FailResponse>> {
    match c.fail(&req).await? {
        Some(answer) => Ok(Json(answer)),
        None => Err(ApiError::fenced(req.shard_id, req.attempt, &req.worker_id)),
    }
}

#[utoipa::path(post, path = "/v1/leases/release", tag = "leases",
    request_body = ReleaseRequest,
    responses(
        (status = 200, body = ReleaseResponse),
        (status = 409, description = "Fenced: the lease is no longer this attempt's", body = ErrorBody),
        )
)]
pub(super) async fn release(
    _: WorkerOrAdmin,
    State(c): State<Coordinator>,
    JsonBody(req): JsonBody<ReleaseRequest>,
) -> ApiResult<Json<ReleaseResponse>> {
    let answer = c.release(&req).await?;
    if !answer.accepted {
        return Err(ApiError::fenced(req.shard_id, req.attempt, &req.worker_id));
    }
    Ok(Json(answer))
}
