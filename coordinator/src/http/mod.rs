//! The coordinator's HTTP API (axum): job routes for admins, lease and
//! provider-batch routes for workers, `/healthz` and Prometheus `/metrics`.
//! Routes and bodies are the ones `jobs::protocol` defines; every error is a
//! JSON `ErrorBody`.

mod error;
mod extract;
mod jobs;
mod leases;
mod provider_batch;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::future::Future;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::coordinator::Coordinator;
pub use error::ApiError;
use error::ApiResult;
pub use jobs::{FailureBody, RescoreRequest, ResultsBody};

/// Completions carry every written key; leave room for large shards.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

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
        .route("/v1/jobs", post(jobs::submit).get(jobs::list))
        .route("/v1/jobs/{id}", get(jobs::get))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/results", get(jobs::results))
        .route("/v1/jobs/{id}/samples", get(jobs::samples))
        .route("/v1/jobs/{id}/failures", get(jobs::failures))
        .route("/v1/rescore", post(jobs::rescore_spec))
        .route("/v1/rescore/samples", post(jobs::rescore_samples))
        .route("/v1/leases/claim", post(leases::claim))
        .route("/v1/leases/heartbeat", post(leases::heartbeat))
        .route("/v1/leases/complete", post(leases::complete))
        .route("/v1/leases/fail", post(leases::fail))
        .route("/v1/leases/release", post(leases::release))
        .route("/v1/batches/reserve", post(provider_batch::reserve))
        .route("/v1/batches/submit", post(provider_batch::submit))
        .route("/v1/batches/requests", post(provider_batch::requests))
        .route("/v1/batches/claim", post(provider_batch::claim))
        .route("/v1/batches/heartbeat", post(provider_batch::heartbeat))
        .route("/v1/batches/update", post(provider_batch::update))
        .route("/v1/batches/finish", post(provider_batch::finish))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
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
