//! The coordinator's HTTP API (axum): job and schedule routes for admins, lease and
//! provider-batch routes for workers, `/healthz`, Prometheus `/metrics` and
//! the API's OpenAPI description at `/openapi.json`.
//! Routes and bodies are the ones `jobs::protocol` defines; every error is a
//! JSON `ErrorBody`.

mod error;
mod extract;
mod jobs;
mod leases;
mod openapi;
mod provider_batch;
mod public;
mod schedules;

use ::jobs::protocol::routes;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use std::future::Future;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::coordinator::Coordinator;
pub use error::ApiError;
pub use jobs::{FailureBody, RescoreRequest, ResultsBody};
pub use openapi::document as openapi_document;

/// Completions carry every written key; leave room for large shards.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Runs each request on its own task, so that a client that goes away (a
/// worker killed mid-call) cannot cancel the handler halfway through a store
/// transaction: the work finishes, and only the answer is dropped.
async fn run_to_completion(request: Request, next: Next) -> Response {
    match tokio::spawn(next.run(request)).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "request handler failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the request handler failed",
            )
            .into_response()
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route")
}

/// The API's routes, without background tasks (see [`serve`]).
pub fn router(coordinator: Coordinator) -> Router {
    Router::new()
        .route(routes::JOBS, post(jobs::submit).get(jobs::list))
        .route(routes::JOB, get(jobs::get))
        .route(routes::JOB_CANCEL, post(jobs::cancel))
        .route(routes::JOB_RESULTS, get(jobs::results))
        .route(routes::JOB_SAMPLES, get(jobs::samples))
        .route(routes::JOB_FAILURES, get(jobs::failures))
        .route(routes::RESCORE, post(jobs::rescore_spec))
        .route(routes::RESCORE_SAMPLES, post(jobs::rescore_samples))
        .route(
            routes::SCHEDULES,
            post(schedules::create).get(schedules::list),
        )
        .route(
            routes::SCHEDULE,
            get(schedules::get).merge(delete(schedules::delete)),
        )
        .route(routes::SCHEDULE_PAUSE, post(schedules::pause))
        .route(routes::SCHEDULE_RESUME, post(schedules::resume))
        .route(routes::SCHEDULE_RUN, post(schedules::run_now))
        .route(routes::LEASES_CLAIM, post(leases::claim))
        .route(routes::LEASES_HEARTBEAT, post(leases::heartbeat))
        .route(routes::LEASES_COMPLETE, post(leases::complete))
        .route(routes::LEASES_FAIL, post(leases::fail))
        .route(routes::LEASES_RELEASE, post(leases::release))
        .route(routes::LEASES_FLUSH, post(leases::flush))
        .route(routes::BATCHES_RESERVE, post(provider_batch::reserve))
        .route(routes::BATCHES_SUBMIT, post(provider_batch::submit))
        .route(routes::BATCHES_REQUESTS, post(provider_batch::requests))
        .route(routes::BATCHES_CLAIM, post(provider_batch::claim))
        .route(routes::BATCHES_HEARTBEAT, post(provider_batch::heartbeat))
        .route(routes::BATCHES_UPDATE, post(provider_batch::update))
        .route(routes::BATCHES_FINISH, post(provider_batch::finish))
        .route(routes::HEALTHZ, get(public::healthz))
        .route(routes::METRICS, get(public::metrics))
        .route(routes::OPENAPI, get(openapi::serve_document))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(run_to_completion))
        .with_state(coordinator)
}

/// Serves the API on `listener` and runs the planner, the lease reaper and
/// the judge stage (only while this replica holds the leader row, so that
/// several replicas can serve one database) until `shutdown` resolves; then stops accepting,
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
    let judge_stage = {
        let c = coordinator.clone();
        let stop = stop.child_token();
        tokio::spawn(async move { c.run_judge_stage(stop).await })
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
    let _ = judge_stage.await;
    served
}
