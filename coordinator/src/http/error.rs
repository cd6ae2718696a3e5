//! The API's error answer: a status and a JSON `ErrorBody`, mapped once from
//! the coordinator's typed errors.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use jobs::protocol::ErrorBody;
use uuid::Uuid;

use crate::error::CoordinatorError;
use crate::store::StoreError;

/// An error answer: status plus `ErrorBody`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 409 for a lease call fenced on its attempt: a newer attempt owns the
    /// shard, or the lease is gone.
    pub(super) fn fenced(shard_id: Uuid, attempt: u32, worker_id: &str) -> Self {
        CoordinatorError::Fenced {
            shard_id,
            attempt,
            worker_id: worker_id.to_string(),
        }
        .into()
    }

    /// 409 for a provider-batch call whose holder no longer holds the shard.
    pub(super) fn not_holder(shard_id: Uuid, worker_id: &str) -> Self {
        ApiError::new(
            StatusCode::CONFLICT,
            format!("shard {shard_id} is no longer held by {worker_id}"),
        )
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
            CoordinatorError::Forbidden(_) => StatusCode::FORBIDDEN,
            CoordinatorError::JobNotFound(_)
            | CoordinatorError::Store(StoreError::ScheduleNotFound(_)) => StatusCode::NOT_FOUND,
            CoordinatorError::NameTaken(_) => StatusCode::CONFLICT,
            CoordinatorError::Fenced { .. } => StatusCode::CONFLICT,
            CoordinatorError::Dataset(e) if !e.is_bad_input() => StatusCode::INTERNAL_SERVER_ERROR,
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
