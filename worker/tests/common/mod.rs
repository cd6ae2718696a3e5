//! Test helpers: a mock coordinator serving the lease routes, and builders
//! for model specs and requests.
#![allow(dead_code)]

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use jobs::protocol::{
    ClaimRequest, ClaimResponse, CompleteRequest, CompleteResponse, ErrorBody, FailRequest,
    FailResponse, HeartbeatRequest, HeartbeatResponse, Lease, ReleaseRequest, ReleaseResponse,
    ShardState,
};
use jobs::spec::ModelSpec;
use jobs::{GenerationParams, InferenceRequest, RenderedInput, RequestType};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const WORKER_TOKEN: &str = "worker-secret";

#[derive(Default)]
pub struct MockState {
    pub leases: VecDeque<Lease>,
    pub claims: u64,
    /// Status codes to answer the next claims with before serving them.
    pub claim_failures: VecDeque<u16>,
    pub heartbeats: Vec<HeartbeatRequest>,
    pub keep_going: bool,
    pub completes: Vec<CompleteRequest>,
    /// Answer completes with 409.
    pub fence_completes: bool,
    pub fails: Vec<FailRequest>,
    pub releases: Vec<ReleaseRequest>,
    /// Leases handed out so far.
    pub handed_out: u64,
    /// Most leases held at once (handed out, not yet completed, failed or
    /// released), as seen at claim time.
    pub max_outstanding: u64,
}

pub struct MockCoordinator {
    pub base_url: String,
    pub state: Arc<Mutex<MockState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockCoordinator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Shared = Arc<Mutex<MockState>>;
type Reply<T> = Result<Json<T>, (StatusCode, Json<ErrorBody>)>;

fn authorised(headers: &HeaderMap) -> Result<(), (StatusCode, Json<ErrorBody>)> {
    let expected = format!("Bearer {WORKER_TOKEN}");
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(v) if v == expected => Ok(()),
        _ => Err((
            StatusCode::UNAUTHORIZED,
            Json(ErrorBody {
                error: "missing or wrong bearer token".into(),
            }),
        )),
    }
}

async fn claim(
    State(s): State<Shared>,
    h: HeaderMap,
    Json(req): Json<ClaimRequest>,
) -> Reply<ClaimResponse> {
    authorised(&h)?;
    let mut s = s.lock().unwrap();
    s.claims += 1;
    if let Some(code) = s.claim_failures.pop_front() {
        return Err((
            StatusCode::from_u16(code).unwrap(),
            Json(ErrorBody {
                error: "injected".into(),
            }),
        ));
    }
    let n = req.max_shards as usize;
    let mut leases = Vec::new();
    while leases.len() < n {
        match s.leases.pop_front() {
            Some(l) => leases.push(l),
            None => break,
        }
    }
    s.handed_out += leases.len() as u64;
    let finished = (s.completes.len() + s.fails.len() + s.releases.len()) as u64;
    s.max_outstanding = s.max_outstanding.max(s.handed_out.saturating_sub(finished));
    Ok(Json(ClaimResponse { leases }))
}

async fn heartbeat(
    State(s): State<Shared>,
    h: HeaderMap,
    Json(req): Json<HeartbeatRequest>,
) -> Reply<HeartbeatResponse> {
    authorised(&h)?;
    let mut s = s.lock().unwrap();
    s.heartbeats.push(req);
    Ok(Json(HeartbeatResponse {
        keep_going: s.keep_going,
        lease_expires_at: None,
        cancelled: !s.keep_going,
    }))
}

async fn complete(
    State(s): State<Shared>,
    h: HeaderMap,
    Json(req): Json<CompleteRequest>,
) -> Reply<CompleteResponse> {
    authorised(&h)?;
    let mut s = s.lock().unwrap();
    s.completes.push(req);
    if s.fence_completes {
        return Err((
            StatusCode::CONFLICT,
            Json(ErrorBody {
                error: "attempt 1 is stale; attempt 2 owns the shard".into(),
            }),
        ));
    }
    Ok(Json(CompleteResponse { accepted: true }))
}

async fn fail(
    State(s): State<Shared>,
    h: HeaderMap,
    Json(req): Json<FailRequest>,
) -> Reply<FailResponse> {
    authorised(&h)?;
    s.lock().unwrap().fails.push(req);
    Ok(Json(FailResponse {
        state: ShardState::Available,
    }))
}

async fn release(
    State(s): State<Shared>,
    h: HeaderMap,
    Json(req): Json<ReleaseRequest>,
) -> Reply<ReleaseResponse> {
    authorised(&h)?;
    s.lock().unwrap().releases.push(req);
    Ok(Json(ReleaseResponse { accepted: true }))
}

async fn samples(h: HeaderMap) -> Result<String, (StatusCode, Json<ErrorBody>)> {
    authorised(&h)?;
    Ok("{\"doc\":0}\n{\"doc\":1}\n".to_string())
}

async fn missing_job(h: HeaderMap) -> (StatusCode, Json<ErrorBody>) {
    if let Err(e) = authorised(&h) {
        return e;
    }
    (
        StatusCode::NOT_FOUND,
        Json(ErrorBody {
            error: "no job with that id".into(),
        }),
    )
}

impl MockCoordinator {
    pub async fn start(leases: Vec<Lease>) -> MockCoordinator {
        let state = Arc::new(Mutex::new(MockState {
            leases: leases.into(),
            keep_going: true,
            ..MockState::default()
        }));
        let app = Router::new()
            .route("/v1/leases/claim", post(claim))
            .route("/v1/leases/heartbeat", post(heartbeat))
            .route("/v1/leases/complete", post(complete))
            .route("/v1/leases/fail", post(fail))
            .route("/v1/leases/release", post(release))
            .route("/v1/jobs/{id}/samples", axum::routing::get(samples))
            .route("/v1/jobs/{id}", axum::routing::get(missing_job))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockCoordinator {
            base_url: format!("http://{addr}"),
            state,
            task,
        }
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut MockState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Polls until `pred` holds, failing the test after `timeout`.
    pub async fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&MockState) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(&self.state.lock().unwrap()) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// An `openai` model spec for `base_url`, with overrides merged in.
pub fn model(base_url: &str, overrides: Value) -> ModelSpec {
    let mut spec = json!({
        "backend": "openai",
        "model": "fake-model",
        "base_url": base_url,
        "max_retries": 2,
        "timeout_secs": 10,
        "concurrency": 4,
    });
    if let (Some(obj), Some(extra)) = (spec.as_object_mut(), overrides.as_object()) {
        for (k, v) in extra {
            obj.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(spec).expect("valid model spec")
}

pub fn params() -> GenerationParams {
    GenerationParams {
        max_tokens: 32,
        temperature: 0.0,
        top_p: None,
        stop: vec![],
        seed: None,
        extra_body: serde_json::Map::new(),
    }
}

pub fn prompt_request(model: &ModelSpec, doc: u64, prompt: &str) -> InferenceRequest {
    InferenceRequest::new(
        &model.fingerprint(),
        doc,
        RequestType::Generate,
        RenderedInput::Prompt {
            prompt: prompt.into(),
        },
        None,
        params(),
        0,
    )
}

pub fn lease(model: &ModelSpec, requests: Vec<InferenceRequest>, heartbeat_secs: u64) -> Lease {
    Lease {
        shard_id: uuid::Uuid::new_v4(),
        job_id: uuid::Uuid::new_v4(),
        attempt: 1,
        lease_expires_at: "2030-01-01T00:00:00Z".into(),
        heartbeat_interval_secs: heartbeat_secs,
        model: model.clone(),
        requests,
    }
}
