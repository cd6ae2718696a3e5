//! Routes that take no token and show no job or model names: `/healthz`
//! (liveness) and `/metrics` (Prometheus exposition).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::error::ApiResult;
use crate::coordinator::Coordinator;

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The coordinator is up", content_type = "text/plain", body = String))
)]
pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus exposition (OpenMetrics text)",
            content_type = "application/openmetrics-text", body = String),
        (status = 500, description = "The store could not be read", body = jobs::protocol::ErrorBody),
        (status = 503, description = "The store is busy or unavailable", body = jobs::protocol::ErrorBody),
    )
)]
pub(super) async fn metrics(State(c): State<Coordinator>) -> ApiResult<Response> {
    let text = c.metrics_text().await?;
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response())
}
