//! Lease routes (worker token): claim, heartbeat, complete, fail, release.
//! Every call after the claim is fenced on the attempt number.

use axum::extract::State;
use axum::Json;
use jobs::protocol::{
    ClaimRequest, ClaimResponse, CompleteRequest, CompleteResponse, FailRequest, FailResponse,
    HeartbeatRequest, HeartbeatResponse, ReleaseRequest, ReleaseResponse,
};

use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, WorkerOrAdmin};
use crate::coordinator::Coordinator;

pub(super) async fn claim(
    _: WorkerOrAdmin,
    State(c): State<Coordinator>,
    JsonBody(req): JsonBody<ClaimRequest>,
) -> ApiResult<Json<ClaimResponse>> {
    Ok(Json(c.claim(&req).await?))
}

pub(super) async fn heartbeat(
    _: WorkerOrAdmin,
    State(c): State<Coordinator>,
    JsonBody(req): JsonBody<HeartbeatRequest>,
) -> ApiResult<Json<HeartbeatResponse>> {
    Ok(Json(c.heartbeat(&req).await?))
}

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
