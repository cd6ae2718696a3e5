//! Schedule routes (admin token): create, list, inspect, pause, resume,
//! fire now and delete.

use ::jobs::protocol::{ErrorBody, ScheduleStatus};
use ::jobs::schedule::NewSchedule;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::ApiResult;
use super::extract::{Admin, SpecBody};
use crate::coordinator::Coordinator;

#[utoipa::path(post, path = "/v1/schedules", tag = "schedules", operation_id = "create_schedule",
    request_body = NewSchedule,
    responses(
        (status = 201, description = "The schedule, stored", body = ScheduleStatus),
        (status = 400, description = "A bad name, expression, time zone or spec", body = ErrorBody),
        (status = 403, description = "A data file outside the coordinator's dataset roots", body = ErrorBody),
        (status = 409, description = "A schedule of that name exists", body = ErrorBody),
    )
)]
pub(super) async fn create(
    _: Admin,
    State(c): State<Coordinator>,
    SpecBody(new): SpecBody<NewSchedule>,
) -> ApiResult<Response> {
    let status = c.create_schedule(new).await?;
    Ok((StatusCode::CREATED, Json(status)).into_response())
}

#[utoipa::path(get, path = "/v1/schedules", tag = "schedules", operation_id = "list_schedules",
    responses((status = 200, description = "Every schedule", body = Vec<ScheduleStatus>))
)]
pub(super) async fn list(_: Admin, State(c): State<Coordinator>) -> ApiResult<Response> {
    Ok(Json(c.schedules().await?).into_response())
}

#[utoipa::path(get, path = "/v1/schedules/{name}", tag = "schedules", operation_id = "get_schedule",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, description = "The schedule and its newest runs", body = ScheduleStatus),
        (status = 404, description = "No such schedule", body = ErrorBody),
    )
)]
pub(super) async fn get(
    _: Admin,
    State(c): State<Coordinator>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(c.schedule(&name).await?).into_response())
}

#[utoipa::path(delete, path = "/v1/schedules/{name}", tag = "schedules", operation_id = "delete_schedule",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 204, description = "Deleted; the jobs it fired stay"),
        (status = 404, description = "No such schedule", body = ErrorBody),
    )
)]
pub(super) async fn delete(
    _: Admin,
    State(c): State<Coordinator>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    c.delete_schedule(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/v1/schedules/{name}/pause", tag = "schedules", operation_id = "pause_schedule",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, description = "The schedule, paused", body = ScheduleStatus),
        (status = 404, description = "No such schedule", body = ErrorBody),
    )
)]
pub(super) async fn pause(
    _: Admin,
    State(c): State<Coordinator>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(c.pause_schedule(&name).await?).into_response())
}

#[utoipa::path(post, path = "/v1/schedules/{name}/resume", tag = "schedules", operation_id = "resume_schedule",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, description = "The schedule, firing again", body = ScheduleStatus),
        (status = 400, description = "The schedule's expression names no future time", body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
    )
)]
pub(super) async fn resume(
    _: Admin,
    State(c): State<Coordinator>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(c.resume_schedule(&name).await?).into_response())
}

#[utoipa::path(post, path = "/v1/schedules/{name}/run", tag = "schedules", operation_id = "run_schedule",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, description = "The schedule, due now: the leader fires it at its next tick", body = ScheduleStatus),
        (status = 400, description = "The schedule is paused", body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
    )
)]
pub(super) async fn run_now(
    _: Admin,
    State(c): State<Coordinator>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(c.run_schedule_now(&name).await?).into_response())
}
