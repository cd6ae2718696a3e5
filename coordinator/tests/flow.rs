//! End-to-end tests of the coordinator over a real SQLite store and a local
//! cache directory: planning, claim-time cache filtering, crash recovery,
//! rescoring, and the HTTP API on 127.0.0.1:0.

use coordinator::store::{SqliteStore, Store};
use coordinator::{Coordinator, CoordinatorConfig, CoordinatorError};
use jobs::protocol::{
    ClaimRequest, ClaimResponse, CompleteRequest, ErrorBody, FailKind, FailRequest, FailResponse,
    FailedRequest, FailureKind, FlushRequest, HeartbeatRequest, JobState, JobStatus, Lease,
    PartialOutputs, ShardState, SubmitJobRequest, WorkerCapabilities,
};
use jobs::spec::BackendKind;
use jobs::{InferenceOutput, InferenceRequest, JobSpec, SegmentRecord, Usage};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const ADMIN: &str = "admin-secret";
const WORKER_TOKEN: &str = "worker-secret";

/// Questions and answers; rows 1 and 3 are identical so they share a key.
const ROWS: &[(&str, &str, &str)] = &[
    ("d0", "2+2?", "4"),
    ("d1", "Capital of France?", "Paris"),
    ("d2", "Colour of the sky?", "blue"),
    ("d3", "Capital of France?", "Paris"),
    ("d4", "3*3?", "9"),
];

struct Env {
    dir: tempfile::TempDir,
    coordinator: Coordinator,
    store: Arc<dyn Store>,
    objects: Arc<dyn cache::ObjectStore>,
}

fn spec_text(backend: &str, shard_size: u32) -> String {
    format!(
        r#"
name = "flow"
[model]
backend = "{backend}"
model = "m"
base_url = "http://127.0.0.1:9/v1"
[dataset]
path = "data.jsonl"
id_field = "id"
[task]
kind = "generate"
prompt = "Q: {{{{ q }}}}\nA:"
target = "{{{{ a }}}}"
[[metrics]]
type = "exact_match"
normalize = ["strip", "lowercase"]
[sharding]
shard_size = {shard_size}
max_attempts = 2
"#
    )
}

async fn env() -> Env {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut data = std::fs::File::create(dir.path().join("data.jsonl")).expect("dataset");
    for (id, q, a) in ROWS {
        writeln!(data, "{}", serde_json::json!({"id": id, "q": q, "a": a})).expect("write");
    }
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("state.db"))
            .await
            .expect("sqlite"),
    );
    let objects: Arc<dyn cache::ObjectStore> =
        Arc::new(cache::LocalDirStore::new(dir.path().join("cache")));
    let mut config = CoordinatorConfig::with_tokens(ADMIN, WORKER_TOKEN);
    config.lease_secs = 2;
    config.heartbeat_interval_secs = 1;
    config.reaper_interval = Duration::from_millis(200);
    config.read = jobs::ReadPolicy::new(
        jobs::DatasetRoots::only([dir.path().to_str().unwrap()]).unwrap(),
        jobs::ReadLimits::default(),
    );
    let coordinator = Coordinator::new(store.clone(), objects.clone(), config);
    Env {
        dir,
        coordinator,
        store,
        objects,
    }
}

fn spec(dir: &Path, backend: &str, shard_size: u32) -> JobSpec {
    JobSpec::from_toml_str(&spec_text(backend, shard_size), "job.toml", Some(dir))
        .expect("valid spec")
}

/// Every request of the spec, in document order (duplicates included).
fn planned_requests(spec: &JobSpec) -> Vec<InferenceRequest> {
    let planner = jobs::Planner::new(spec, &jobs::ReadPolicy::unrestricted()).expect("planner");
    jobs::DatasetReader::open(&spec.dataset, &jobs::ReadPolicy::unrestricted())
        .expect("dataset")
        .flat_map(|doc| planner.plan_doc(&doc.expect("doc")).expect("plan").requests)
        .collect()
}

/// A correct answer for a request (the worker side, faked).
fn answer(req: &InferenceRequest) -> SegmentRecord {
    let text = ROWS[req.doc_index as usize].2;
    SegmentRecord {
        key: req.key.clone(),
        model: jobs::ModelFingerprint::api("openai", "m"),
        request_type: req.request_type,
        sample_index: req.sample_index,
        output: Some(InferenceOutput {
            text: Some(format!(" {text}")),
            finish_reason: Some("stop".into()),
            loglikelihood: None,
            usage: Usage {
                prompt_tokens: 5,
                completion_tokens: 1,
            },
            latency_ms: 3,
            attempts: 1,
        }),
        error: None,
        created_at: "2026-01-01T00:00:00Z".into(),
    }
}

async fn write_answers(env: &Env, lease: &Lease, reqs: &[InferenceRequest]) -> String {
    let path = cache::segment_path(lease.job_id, lease.shard_id, lease.attempt);
    let records: Vec<_> = reqs.iter().map(answer).collect();
    cache::write_segment(env.objects.as_ref(), &path, &records)
        .await
        .expect("write segment");
    path
}

/// Submits and plans the test spec over `dataset`, which must fail the job
/// as its input's fault; the job's error.
async fn planning_fails_for_its_input(env: &Env, dataset: std::path::PathBuf) -> String {
    let mut spec = spec(env.dir.path(), "openai", 2);
    spec.dataset.path = dataset;
    let job = env.coordinator.submit(spec).await.unwrap();
    assert_eq!(
        env.coordinator.plan_job(job.id).await.unwrap(),
        JobState::Failed
    );
    let status = env.coordinator.job_status(job.id).await.unwrap();
    assert_eq!(status.error_kind, Some(FailureKind::Input), "{status:?}");
    status.error.unwrap_or_default()
}

fn claim_req(worker: &str, max: u32) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.into(),
        capabilities: WorkerCapabilities {
            backends: vec![BackendKind::Openai],
            models: vec![],
        },
        max_shards: max,
    }
}

fn completion(worker: &str, lease: &Lease, segment: String) -> CompleteRequest {
    CompleteRequest {
        worker_id: worker.into(),
        shard_id: lease.shard_id,
        attempt: lease.attempt,
        segment,
        written: lease.requests.iter().map(|r| r.key.clone()).collect(),
        failed: vec![],
        usage: Usage {
            prompt_tokens: 5,
            completion_tokens: 1,
        },
    }
}

#[tokio::test]
async fn planner_dedupes_and_skips_cached_keys() {
    let env = env().await;
    let spec = spec(env.dir.path(), "openai", 2);
    let all = planned_requests(&spec);
    assert_eq!(all.len(), 5);
    // Pre-cache the request of d0.
    env.store
        .index_segment(
            &coordinator::store::SegmentEntry {
                path: "segments/earlier.jsonl.zst".into(),
                job_id: None,
                shard_id: None,
                attempt: None,
                keys: vec![all[0].key.clone()],
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let submitted = env.coordinator.submit(spec.clone()).await.unwrap();
    assert_eq!(submitted.state, JobState::Planning);
    let again = env.coordinator.submit(spec.clone()).await.unwrap();
    assert_eq!(again.id, submitted.id, "submission is idempotent");
    assert_eq!(
        env.coordinator.plan_job(submitted.id).await.unwrap(),
        JobState::Running
    );
    let status = env.coordinator.job_status(submitted.id).await.unwrap();
    assert_eq!(status.counts.docs, 5);
    assert_eq!(status.counts.requests, 4, "d1 and d3 share a key");
    assert_eq!(status.counts.cached, 1);
    assert_eq!(status.counts.shards_total, 2);
    let shards = env.store.list_shards(submitted.id).await.unwrap();
    let counts: Vec<u64> = shards.iter().map(|s| s.request_count).collect();
    assert_eq!(counts, vec![2, 1]);
    // The cached request is in no shard.
    let lease = env.coordinator.claim(&claim_req("w", 8)).await.unwrap();
    let leased: Vec<_> = lease
        .leases
        .iter()
        .flat_map(|l| l.requests.iter().map(|r| r.key.clone()))
        .collect();
    assert_eq!(leased.len(), 3);
    assert!(!leased.contains(&all[0].key));
}

#[tokio::test]
async fn invalid_spec_and_bad_rows_are_reported() {
    let env = env().await;
    let mut bad = spec(env.dir.path(), "openai", 2);
    bad.name = String::new();
    assert!(matches!(
        env.coordinator.submit(bad).await,
        Err(CoordinatorError::Spec(_))
    ));

    let broken = env.dir.path().join("broken.jsonl");
    std::fs::write(
        &broken,
        "{\"id\": \"a\", \"q\": \"x\", \"a\": \"y\"}\n{not json\n",
    )
    .unwrap();
    let error = planning_fails_for_its_input(&env, broken).await;
    assert!(error.contains("broken.jsonl:2"), "{error}");

    // Two documents with one id: the job's fault too, both lines named.
    let twice = env.dir.path().join("twice.jsonl");
    std::fs::write(
        &twice,
        "{\"id\": \"a\", \"q\": \"x\", \"a\": \"y\"}\n{\"id\": \"a\", \"q\": \"z\", \"a\": \"y\"}\n",
    )
    .unwrap();
    let error = planning_fails_for_its_input(&env, twice).await;
    assert!(
        error.contains("twice.jsonl:2: id \"a\"") && error.contains("line 1"),
        "{error}"
    );
}

#[tokio::test]
async fn crash_resume_never_resends_written_outputs() {
    let env = env().await;
    let spec = spec(env.dir.path(), "openai", 10);
    let job = env.coordinator.submit(spec.clone()).await.unwrap();
    env.coordinator.plan_job(job.id).await.unwrap();
    let first = env.coordinator.claim(&claim_req("w1", 1)).await.unwrap();
    let lease = &first.leases[0];
    assert_eq!(lease.requests.len(), 4);
    // Two outputs reach the cache, then the process dies before completing.
    write_answers(&env, lease, &lease.requests[..2]).await;

    let stats = env.coordinator.recover_after_crash().await.unwrap();
    assert_eq!(stats.leases_returned, 1);
    assert_eq!(stats.index.segments, 1);
    assert_eq!(stats.index.keys_indexed, 2);
    let shard = &env.store.list_shards(job.id).await.unwrap()[0];
    assert_eq!(shard.state, ShardState::Available);
    assert_eq!(shard.attempts_used, 0);

    let second = env.coordinator.claim(&claim_req("w2", 1)).await.unwrap();
    let lease2 = &second.leases[0];
    assert_eq!(lease2.attempt, 2);
    assert_eq!(lease2.requests, lease.requests[2..].to_vec());
    let segment = write_answers(&env, lease2, &lease2.requests).await;
    let done = env
        .coordinator
        .complete(&completion("w2", lease2, segment))
        .await
        .unwrap();
    assert!(done.accepted);
    // The first worker's late completion is refused.
    let late = env
        .coordinator
        .complete(&completion("w1", lease, "segments/late.jsonl.zst".into()))
        .await
        .unwrap();
    assert!(!late.accepted);
    let status = env.coordinator.job_status(job.id).await.unwrap();
    assert_eq!(status.state, JobState::Completed);
    assert_eq!(status.counts.completed, 4);

    let mut samples = Vec::new();
    let outcome = env
        .coordinator
        .rescore(job.id, Some(&mut samples))
        .await
        .unwrap();
    assert_eq!(outcome.missing_requests, 0);
    assert_eq!(outcome.report.docs_scored, 5);
    assert_eq!(outcome.report.metrics[0].mean, Some(1.0));
    let lines: Vec<jobs::SampleRecord> = String::from_utf8(samples)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[3].doc_id, "d3");
    assert_eq!(lines[3].scores["exact_match"], 1.0);

    // A second run of the same spec finds everything cached.
    let rerun = env.coordinator.submit(spec).await.unwrap();
    assert_ne!(rerun.id, job.id);
    assert_eq!(
        env.coordinator.plan_job(rerun.id).await.unwrap(),
        JobState::Completed
    );
}

#[tokio::test]
async fn fully_cached_shard_completes_at_claim() {
    let env = env().await;
    let spec = spec(env.dir.path(), "openai", 10);
    let job = env.coordinator.submit(spec.clone()).await.unwrap();
    env.coordinator.plan_job(job.id).await.unwrap();
    let lease = env
        .coordinator
        .claim(&claim_req("w", 1))
        .await
        .unwrap()
        .leases
        .remove(0);
    // Another process wrote all outputs and crashed.
    write_answers(&env, &lease, &lease.requests).await;
    env.coordinator.recover_after_crash().await.unwrap();
    let again = env.coordinator.claim(&claim_req("w", 1)).await.unwrap();
    assert!(again.leases.is_empty());
    let status = env.coordinator.job_status(job.id).await.unwrap();
    assert_eq!(status.state, JobState::Completed);
}

#[tokio::test]
async fn backend_none_and_rescore_report_missing() {
    let env = env().await;
    let none_spec = spec(env.dir.path(), "none", 10);
    let job = env.coordinator.submit(none_spec.clone()).await.unwrap();
    // Nothing to run: the job completes, and its results say what is
    // missing.
    assert_eq!(
        env.coordinator.plan_job(job.id).await.unwrap(),
        JobState::Completed
    );
    let status = env.coordinator.job_status(job.id).await.unwrap();
    assert_eq!(status.error, None);
    assert_eq!(
        (status.counts.requests, status.counts.cached),
        (4, 0),
        "{status:?}"
    );
    assert_eq!(status.counts.shards_total, 0);
    let outcome = env.coordinator.rescore(job.id, None).await.unwrap();
    assert_eq!(outcome.missing_requests, 4);
    assert_eq!(outcome.missing_examples[0].doc_id, "d0");

    // Fill part of the cache through an openai job, with one failed request.
    let spec = spec(env.dir.path(), "openai", 10);
    let run = env.coordinator.submit(spec.clone()).await.unwrap();
    env.coordinator.plan_job(run.id).await.unwrap();
    let lease = env
        .coordinator
        .claim(&claim_req("w", 1))
        .await
        .unwrap()
        .leases
        .remove(0);
    let segment = write_answers(&env, &lease, &lease.requests[..3]).await;
    let mut done = completion("w", &lease, segment);
    done.written.truncate(3);
    done.failed = vec![FailedRequest {
        key: lease.requests[3].key.clone(),
        error: "HTTP 400: bad request".into(),
    }];
    assert!(env.coordinator.complete(&done).await.unwrap().accepted);
    let failures = env.coordinator.failures(run.id, 10).await.unwrap();
    assert_eq!(failures.len(), 1);

    let outcome = env
        .coordinator
        .rescore_spec(&none_spec, None)
        .await
        .unwrap();
    assert_eq!(outcome.missing_requests, 1);
    assert_eq!(outcome.failed_requests, 1);
    assert_eq!(outcome.missing_examples[0].doc_id, "d4");
    assert_eq!(outcome.report.docs_scored, 4);
    assert_eq!(outcome.report.docs_missing, 1);

    // Reindex rebuilds the same index from the segments alone, and skips a
    // corrupt segment with its reason.
    env.objects
        .put(
            "segments/x/bad-1.jsonl.zst",
            bytes::Bytes::from_static(b"not zstd"),
        )
        .await
        .unwrap();
    let stats = env.coordinator.reindex().await.unwrap();
    assert_eq!(stats.segments, 1);
    assert_eq!(stats.keys_indexed, 3);
    assert_eq!(stats.bad_segments.len(), 1);
    let after = env
        .coordinator
        .rescore_spec(&none_spec, None)
        .await
        .unwrap();
    assert_eq!(after.missing_requests, 1);
}

// ---- HTTP ----

struct Server {
    base: String,
    client: reqwest::Client,
    server: coordinator::Server,
    env: Env,
}

async fn server() -> Server {
    let env = env().await;
    let server = coordinator::Server::bind("127.0.0.1:0", env.coordinator.clone())
        .await
        .unwrap();
    Server {
        base: server.url(),
        client: reqwest::Client::new(),
        server,
        env,
    }
}

impl Server {
    fn post(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
    }
    fn get(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
    }
    async fn shutdown(self) {
        tokio::time::timeout(Duration::from_secs(5), self.server.shutdown())
            .await
            .expect("server stops")
            .expect("serve ok");
    }
}

#[tokio::test]
async fn http_auth_and_errors() {
    let s = server().await;
    let no_token = s
        .client
        .get(format!("{}/v1/jobs", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    let body: ErrorBody = no_token.json().await.unwrap();
    assert!(body.error.contains("bearer"), "{}", body.error);
    assert_eq!(
        s.get("/v1/jobs", "wrong").send().await.unwrap().status(),
        401
    );
    assert_eq!(
        s.get("/v1/jobs", WORKER_TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        401,
        "the worker token is not an admin token"
    );
    assert_eq!(s.get("/v1/jobs", ADMIN).send().await.unwrap().status(), 200);
    let claim = s
        .post("/v1/leases/claim", "wrong")
        .json(&claim_req("w", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(claim.status(), 401);
    let claim = s
        .post("/v1/leases/claim", ADMIN)
        .json(&claim_req("w", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(claim.status(), 200, "admin token works on lease routes");

    let unknown = s
        .get(&format!("/v1/jobs/{}", uuid::Uuid::new_v4()), ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        s.get("/v1/jobs/not-a-uuid", ADMIN)
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    let bad_body = s
        .post("/v1/jobs", ADMIN)
        .json(&serde_json::json!({"spec": {"name": "x", "bogus": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_body.status(), 400);
    let body: ErrorBody = bad_body.json().await.unwrap();
    assert!(body.error.contains("spec"), "{}", body.error);

    let health = s
        .client
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let metrics = s
        .client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("shardline_claims_total 1"), "{metrics}");
    assert!(
        metrics.contains("shardline_jobs{state=\"running\"} 0"),
        "{metrics}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn http_submit_claim_complete_results() {
    let s = server().await;
    let spec = spec(s.env.dir.path(), "openai", 10);
    let submitted = s
        .post("/v1/jobs", ADMIN)
        .json(&SubmitJobRequest {
            spec: spec.clone(),
            priority: 0,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), 201);
    let job: JobStatus = submitted.json().await.unwrap();

    // The background planner picks the job up.
    let mut state = job.state;
    for _ in 0..100 {
        let status: JobStatus = s
            .get(&format!("/v1/jobs/{}", job.id), ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        state = status.state;
        if state != JobState::Planning {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state, JobState::Running);

    let claimed: ClaimResponse = s
        .post("/v1/leases/claim", WORKER_TOKEN)
        .json(&claim_req("w", 4))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(claimed.leases.len(), 1);
    let lease = &claimed.leases[0];
    assert_eq!(lease.model.model, "m");
    assert_eq!(lease.heartbeat_interval_secs, 1);

    let hb = s
        .post("/v1/leases/heartbeat", WORKER_TOKEN)
        .json(&HeartbeatRequest {
            worker_id: "w".into(),
            shard_id: lease.shard_id,
            attempt: lease.attempt,
            done: 2,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(hb.status(), 200);
    let hb: jobs::protocol::HeartbeatResponse = hb.json().await.unwrap();
    assert!(hb.keep_going);

    let segment = write_answers(&s.env, lease, &lease.requests).await;
    let done = s
        .post("/v1/leases/complete", WORKER_TOKEN)
        .json(&completion("w", lease, segment.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);

    // The same completion again is fenced: 409, nothing changes.
    let again = s
        .post("/v1/leases/complete", WORKER_TOKEN)
        .json(&completion("w", lease, segment))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    let body: ErrorBody = again.json().await.unwrap();
    assert!(body.error.contains("no longer held"), "{}", body.error);
    let fail = s
        .post("/v1/leases/fail", WORKER_TOKEN)
        .json(&FailRequest {
            worker_id: "w".into(),
            shard_id: lease.shard_id,
            attempt: lease.attempt,
            error: "late".into(),
            kind: FailKind::Transient,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(fail.status(), 409);

    let status: JobStatus = s
        .get(&format!("/v1/jobs/{}", job.id), ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status.state, JobState::Completed);
    assert_eq!(status.counts.completed, 4);
    assert_eq!(status.counts.usage.prompt_tokens, 5);

    let results: coordinator::http::ResultsBody = s
        .get(&format!("/v1/jobs/{}/results", job.id), ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(results.missing_requests, 0);
    assert_eq!(results.report.docs_scored, 5);
    assert_eq!(results.report.metrics[0].mean, Some(1.0));

    let samples = s
        .get(&format!("/v1/jobs/{}/samples", job.id), ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(samples.status(), 200);
    let text = samples.text().await.unwrap();
    assert_eq!(text.lines().count(), 5);
    assert!(text.lines().all(|l| l.contains("\"doc_hash\"")));

    let failures = s
        .get(&format!("/v1/jobs/{}/failures", job.id), ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(failures.status(), 200);
    let failures: Vec<coordinator::http::FailureBody> = failures.json().await.unwrap();
    assert!(failures.is_empty());

    let jobs: Vec<JobStatus> = s
        .get("/v1/jobs", ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    s.shutdown().await;
}

#[tokio::test]
async fn http_cancel_and_reaper() {
    let s = server().await;
    let spec = spec(s.env.dir.path(), "openai", 2);
    let job = s.env.coordinator.submit(spec).await.unwrap();
    s.env.coordinator.plan_job(job.id).await.unwrap();
    let lease = s
        .env
        .coordinator
        .claim(&claim_req("w", 1))
        .await
        .unwrap()
        .leases
        .remove(0);
    // No heartbeat: the reaper (every 200 ms, 2 s leases) takes it back.
    let mut reaped = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let shards = s.env.store.list_shards(job.id).await.unwrap();
        if shards
            .iter()
            .any(|sh| sh.id == lease.shard_id && sh.state == ShardState::Available)
        {
            reaped = true;
            break;
        }
    }
    assert!(reaped, "expired lease returned by the reaper");

    let again = s
        .env
        .coordinator
        .claim(&claim_req("w2", 1))
        .await
        .unwrap()
        .leases
        .remove(0);
    let cancelled = s
        .post(&format!("/v1/jobs/{}/cancel", job.id), ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 200);
    let status: JobStatus = cancelled.json().await.unwrap();
    assert_eq!(status.state, JobState::Cancelled);
    let hb: jobs::protocol::HeartbeatResponse = s
        .post("/v1/leases/heartbeat", WORKER_TOKEN)
        .json(&HeartbeatRequest {
            worker_id: "w2".into(),
            shard_id: again.shard_id,
            attempt: again.attempt,
            done: 0,
        })
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!hb.keep_going);
    assert!(hb.cancelled);
    s.shutdown().await;
}

#[tokio::test]
async fn completions_naming_foreign_keys_are_refused() {
    let env = env().await;
    let spec = spec(env.dir.path(), "openai", 2);
    let job = env.coordinator.submit(spec.clone()).await.unwrap();
    env.coordinator.plan_job(job.id).await.unwrap();
    let mut leases = env
        .coordinator
        .claim(&claim_req("w", 2))
        .await
        .unwrap()
        .leases;
    assert_eq!(leases.len(), 2);
    let (first, second) = (leases.remove(0), leases.remove(0));
    // Keys of the other shard are not this shard's to report.
    let segment = write_answers(&env, &first, &first.requests).await;
    let mut foreign = completion("w", &first, segment.clone());
    foreign.written.push(second.requests[0].key.clone());
    let err = env.coordinator.complete(&foreign).await.unwrap_err();
    assert!(
        matches!(&err, CoordinatorError::BadRequest(m) if m.contains("is not a request of shard")),
        "{err}"
    );
    let mut failed = completion("w", &first, segment.clone());
    failed.failed.push(FailedRequest {
        key: jobs::RequestKey("0".repeat(64)),
        error: "x".into(),
    });
    assert!(matches!(
        env.coordinator.complete(&failed).await,
        Err(CoordinatorError::BadRequest(_))
    ));
    // Nothing was recorded by the refused calls: the honest one goes through.
    let done = env
        .coordinator
        .complete(&completion("w", &first, segment))
        .await
        .unwrap();
    assert!(done.accepted);
    let foreign_indexed = env
        .store
        .lookup_keys(&[second.requests[0].key.clone()])
        .await
        .unwrap();
    assert!(foreign_indexed.is_empty());
}

#[tokio::test]
async fn flushed_outputs_are_indexed_once_and_skipped_by_the_next_attempt() {
    let env = env().await;
    let spec = spec(env.dir.path(), "openai", 10);
    let job = env.coordinator.submit(spec.clone()).await.unwrap();
    env.coordinator.plan_job(job.id).await.unwrap();
    let lease = env
        .coordinator
        .claim(&claim_req("w1", 1))
        .await
        .unwrap()
        .leases
        .remove(0);
    let total = lease.requests.len();
    assert!(total > 2);
    // The worker flushes its first two outputs while the shard runs.
    let done = &lease.requests[..2];
    let path = cache::partial_segment_path(lease.job_id, lease.shard_id, lease.attempt, 1);
    let records: Vec<_> = done.iter().map(answer).collect();
    cache::write_segment(env.objects.as_ref(), &path, &records)
        .await
        .unwrap();
    let usage = Usage {
        prompt_tokens: 10,
        completion_tokens: 2,
    };
    let flush = |segment: &str| FlushRequest {
        worker_id: "w1".into(),
        shard_id: lease.shard_id,
        attempt: lease.attempt,
        partial: PartialOutputs {
            segment: segment.to_string(),
            written: done.iter().map(|r| r.key.clone()).collect(),
            usage,
        },
    };
    // A segment path of another attempt (or a final one) is refused.
    let elsewhere = cache::partial_segment_path(lease.job_id, lease.shard_id, lease.attempt + 1, 1);
    for bad in [
        elsewhere,
        cache::segment_path(lease.job_id, lease.shard_id, lease.attempt),
    ] {
        assert!(matches!(
            env.coordinator.flush(&flush(&bad)).await,
            Err(CoordinatorError::BadRequest(_))
        ));
    }
    assert_eq!(
        env.coordinator.flush(&flush(&path)).await.unwrap().indexed,
        2
    );
    // A repeated flush (its answer was lost) adds nothing, usage included.
    assert_eq!(
        env.coordinator.flush(&flush(&path)).await.unwrap().indexed,
        0
    );
    let status = env.coordinator.job_status(job.id).await.unwrap();
    assert_eq!(status.counts.usage, usage);
    // The worker hands the shard back with nothing more (as a kill does,
    // once the lease is reaped); the next attempt gets only what was not
    // flushed.
    let released = env
        .coordinator
        .release(&jobs::protocol::ReleaseRequest {
            worker_id: "w1".into(),
            shard_id: lease.shard_id,
            attempt: lease.attempt,
            partial: None,
        })
        .await
        .unwrap();
    assert!(released.accepted);
    let next = env
        .coordinator
        .claim(&claim_req("w2", 1))
        .await
        .unwrap()
        .leases
        .remove(0);
    assert_eq!(next.shard_id, lease.shard_id);
    assert_eq!(next.requests.len(), total - 2);
    assert!(next.requests.iter().all(|r| !done.contains(r)));
}

#[tokio::test]
async fn refused_late_completion_keeps_its_outputs() {
    let env = env().await;
    let spec = spec(env.dir.path(), "openai", 10);
    let job = env.coordinator.submit(spec.clone()).await.unwrap();
    env.coordinator.plan_job(job.id).await.unwrap();
    let lease = env
        .coordinator
        .claim(&claim_req("w1", 1))
        .await
        .unwrap()
        .leases
        .remove(0);
    // The lease expires while w1 still works; the shard goes back.
    let later = chrono::Utc::now() + chrono::Duration::seconds(30);
    let reaped = env
        .store
        .reap_expired(later, &coordinator::store::Backoff::NONE)
        .await
        .unwrap();
    assert_eq!(reaped.returned, 1);
    let segment = write_answers(&env, &lease, &lease.requests).await;
    let late = env
        .coordinator
        .complete(&completion("w1", &lease, segment))
        .await
        .unwrap();
    assert!(!late.accepted, "the late completion is fenced");
    // Its outputs are indexed all the same, so the next attempt (which
    // filters cached keys at claim time) requests none of them again.
    let keys: Vec<_> = lease.requests.iter().map(|r| r.key.clone()).collect();
    let indexed = env.store.lookup_keys(&keys).await.unwrap();
    assert_eq!(indexed.len(), keys.len());
    let status = env.coordinator.job_status(job.id).await.unwrap();
    assert_eq!(status.state, JobState::Running);
    assert_eq!(
        status.counts.completed, 0,
        "the refused completion completes nothing"
    );
    // But its tokens were paid for, so usage counts them.
    let sent = completion("w1", &lease, String::new()).usage;
    assert!(sent.prompt_tokens > 0);
    assert_eq!(status.counts.usage, sent);
}

#[tokio::test]
async fn reaper_indexes_the_segment_of_a_dead_worker() {
    let env = env().await;
    let spec = spec(env.dir.path(), "openai", 10);
    let job = env.coordinator.submit(spec.clone()).await.unwrap();
    env.coordinator.plan_job(job.id).await.unwrap();
    let lease = env
        .coordinator
        .claim(&claim_req("w1", 1))
        .await
        .unwrap()
        .leases
        .remove(0);
    // The worker wrote its segment, then died before completing.
    write_answers(&env, &lease, &lease.requests[..3]).await;
    tokio::time::sleep(Duration::from_millis(2_200)).await; // the 2 s lease ends
    let reaped = env.coordinator.reap_expired().await.unwrap();
    assert_eq!(reaped.expired.len(), 1);
    let keys: Vec<_> = lease.requests.iter().map(|r| r.key.clone()).collect();
    let indexed = env.store.lookup_keys(&keys).await.unwrap();
    assert_eq!(indexed.len(), 3, "the dead worker's outputs are indexed");
    // After the backoff, the next attempt gets only the missing request.
    let mut next = Vec::new();
    for _ in 0..40 {
        next = env
            .coordinator
            .claim(&claim_req("w2", 1))
            .await
            .unwrap()
            .leases;
        if !next.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        next.len(),
        1,
        "the shard is claimable again after its backoff"
    );
    assert_eq!(next[0].requests, lease.requests[3..].to_vec());
}

#[tokio::test]
async fn claims_name_only_valid_model_patterns() {
    let env = env().await;
    let spec = spec(env.dir.path(), "openai", 10);
    let job = env.coordinator.submit(spec.clone()).await.unwrap();
    env.coordinator.plan_job(job.id).await.unwrap();
    let mut other = claim_req("w", 1);
    other.capabilities.models = vec!["gpt-*".into()];
    assert!(env
        .coordinator
        .claim(&other)
        .await
        .unwrap()
        .leases
        .is_empty());
    let mut empty = claim_req("w", 1);
    empty.capabilities.models = vec![" ".into()];
    assert!(matches!(
        env.coordinator.claim(&empty).await,
        Err(CoordinatorError::BadRequest(_))
    ));
    let mut mine = claim_req("w", 1);
    mine.capabilities.models = vec!["gpt-*".into(), "m".into()];
    assert_eq!(env.coordinator.claim(&mine).await.unwrap().leases.len(), 1);
}

/// Reads an HTTP answer's status line and headers from a raw connection.
async fn read_head(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test]
async fn http_refuses_before_reading_the_body_and_caps_what_it_echoes() {
    use tokio::io::AsyncWriteExt;
    let s = server().await;

    // Without a token, a request announcing 60 MB is refused from its
    // headers alone: the answer comes although no byte of the body is sent.
    for (path, token) in [("/v1/jobs", None), ("/v1/leases/claim", Some("wrong"))] {
        let mut stream = tokio::net::TcpStream::connect(s.server.addr())
            .await
            .unwrap();
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: 60000000\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut stream))
            .await
            .expect("answered before the body was sent");
        assert!(head.starts_with("HTTP/1.1 401"), "{path}: {head}");
    }

    // A body over the limit gets the JSON error every other answer has.
    let too_big = vec![b' '; 65 * 1024 * 1024];
    let answer = s
        .post("/v1/jobs", ADMIN)
        .header("content-type", "application/json")
        .body(too_big)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 413);
    let body: ErrorBody = answer.json().await.expect("a JSON error body");
    assert!(body.error.contains("--max-spec-bytes"), "{}", body.error);

    // A bad value, in the body or in the path, is quoted back in part.
    let huge = "y".repeat(1_000_000);
    let bad_id = "z".repeat(4_000);
    for request in [
        s.post("/v1/jobs", ADMIN)
            .json(&serde_json::json!({ "spec": huge })),
        s.get(&format!("/v1/jobs/{bad_id}"), ADMIN),
    ] {
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), 400);
        let error = answer.json::<ErrorBody>().await.unwrap().error;
        assert!(error.len() < 2_000, "{} bytes echoed", error.len());
        assert!(error.contains("more characters"), "{error}");
    }
    s.shutdown().await;
}

#[tokio::test]
async fn jobs_over_the_operators_limits_are_refused_not_planned() {
    let env = env().await;
    let mut huge = spec(env.dir.path(), "openai", 2);
    huge.task.generation.n = 1_000_000_000;
    match env.coordinator.submit(huge.clone()).await {
        Err(CoordinatorError::BadRequest(message)) => {
            assert!(
                message.contains("task.generation.n is 1000000000"),
                "{message}"
            );
            assert!(message.contains("--max-samples-per-doc"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let mut wide = spec(env.dir.path(), "openai", 2);
    wide.sharding.shard_size = u32::MAX;
    match env.coordinator.submit(wide).await {
        Err(CoordinatorError::BadRequest(message)) => {
            assert!(
                message.contains("sharding.shard_size is 4294967295"),
                "{message}"
            );
            assert!(message.contains("--max-shard-size"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let mut long = spec(env.dir.path(), "openai", 2);
    long.task.generation.max_tokens = u32::MAX;
    assert!(matches!(
        env.coordinator.submit(long).await,
        Err(CoordinatorError::BadRequest(_))
    ));

    // A file that is not a regular file, even inside a root, is refused
    // when planning, not read forever.
    let fifo = env.dir.path().join("endless.jsonl");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let error = planning_fails_for_its_input(&env, fifo).await;
    assert!(error.contains("not a regular file"), "{error}");
}

#[tokio::test]
async fn jobs_read_only_under_the_dataset_roots() {
    let env = env().await;
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("private.jsonl"), "{\"id\": 1}\n").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("private.jsonl"),
        env.dir.path().join("link.jsonl"),
    )
    .unwrap();
    let traversal = env.dir.path().join("../../../../../../../../etc/passwd");
    for (field, path) in [
        ("dataset.path", PathBuf::from("/etc/shadow")),
        ("dataset.path", PathBuf::from("/dev/zero")),
        ("dataset.path", traversal.clone()),
        ("dataset.path", env.dir.path().join("link.jsonl")),
        ("task.fewshot.path", traversal),
    ] {
        let mut job = spec(env.dir.path(), "openai", 2);
        if field == "dataset.path" {
            job.dataset.path = path.clone();
        } else {
            job.task.fewshot = Some(jobs::spec::FewshotSpec {
                path: path.clone(),
                k: 1,
            });
        }
        match env.coordinator.submit(job.clone()).await {
            Err(CoordinatorError::Forbidden(message)) => {
                assert!(message.starts_with(field), "{message}");
                assert!(message.contains("outside the dataset roots"), "{message}");
            }
            other => panic!("{path:?}: expected 403, got {other:?}"),
        }
        // Scoring from the cache reads the same files: refused alike.
        assert!(matches!(
            env.coordinator.rescore_spec(&job, None).await,
            Err(CoordinatorError::Forbidden(_))
        ));
    }
    assert!(env.coordinator.list_jobs().await.unwrap().is_empty());

    // Over HTTP: 403 with the rule, on submit and on the samples stream.
    let s = Server {
        base: String::new(),
        client: reqwest::Client::new(),
        server: coordinator::Server::bind("127.0.0.1:0", env.coordinator.clone())
            .await
            .unwrap(),
        env,
    };
    let base = s.server.url();
    let mut shadow = spec(s.env.dir.path(), "openai", 2);
    shadow.dataset.path = "/etc/shadow".into();
    for path in ["/v1/jobs", "/v1/rescore/samples"] {
        let answer = s
            .client
            .post(format!("{base}{path}"))
            .bearer_auth(ADMIN)
            .json(&serde_json::json!({ "spec": shadow }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 403, "{path}");
        let error = answer.json::<ErrorBody>().await.unwrap().error;
        assert!(error.contains("--dataset-root"), "{error}");
    }
    s.shutdown().await;
}

/// A job whose planning took the coordinator down three times (each pass
/// counted, none seen to end) is failed with the reason on the next start,
/// not planned again; one with fewer crashes is planned as usual.
#[tokio::test]
async fn a_job_that_keeps_crashing_the_planner_is_failed_not_retried() {
    let env = env().await;
    let poison = env
        .coordinator
        .submit(spec(env.dir.path(), "openai", 2))
        .await
        .unwrap();
    for _ in 0..3 {
        env.store.count_planning_attempt(poison.id).await.unwrap();
    }
    assert_eq!(
        env.coordinator.plan_job(poison.id).await.unwrap(),
        JobState::Failed
    );
    let status = env.coordinator.job_status(poison.id).await.unwrap();
    assert_eq!(
        status.error_kind,
        Some(FailureKind::Runtime),
        "a crash is not the job's input's fault"
    );
    let error = status.error.unwrap_or_default();
    assert!(
        error.contains("started 3 times and never finished"),
        "{error}"
    );

    let mut other = spec(env.dir.path(), "openai", 2);
    other.name = "survivor".into();
    let survivor = env.coordinator.submit(other).await.unwrap();
    for _ in 0..2 {
        env.store.count_planning_attempt(survivor.id).await.unwrap();
    }
    assert_eq!(
        env.coordinator.plan_job(survivor.id).await.unwrap(),
        JobState::Running
    );
}

/// A worker's `configuration` failure kills its shard at the first attempt
/// and fails the job with the worker's message and kind; a failure without
/// a kind (an older worker's body) spends one attempt as before.
#[tokio::test]
async fn a_configuration_failure_fails_the_job_at_once() {
    let s = server().await;
    let spec = spec(s.env.dir.path(), "openai", 2);
    let submitted: JobStatus = s
        .post("/v1/jobs", ADMIN)
        .json(&SubmitJobRequest { spec, priority: 0 })
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let status = |s: &Server| {
        let url = format!("/v1/jobs/{}", submitted.id);
        let request = s.get(&url, ADMIN);
        async move {
            let status: JobStatus = request.send().await.unwrap().json().await.unwrap();
            status
        }
    };
    for _ in 0..100 {
        if status(&s).await.state != JobState::Planning {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let claimed: ClaimResponse = s
        .post("/v1/leases/claim", WORKER_TOKEN)
        .json(&claim_req("w", 4))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(claimed.leases.len(), 2);
    let (first, second) = (&claimed.leases[0], &claimed.leases[1]);

    // The body of an older worker: no `kind`.
    let old: FailResponse = s
        .post("/v1/leases/fail", WORKER_TOKEN)
        .json(&serde_json::json!({
            "worker_id": "w", "shard_id": first.shard_id,
            "attempt": first.attempt, "error": "endpoint down",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(old.state, ShardState::Available);
    assert_eq!(status(&s).await.state, JobState::Running);

    let fail = FailRequest {
        worker_id: "w".into(),
        shard_id: second.shard_id,
        attempt: second.attempt,
        error: "the server ignores `echo`".into(),
        kind: FailKind::Configuration,
    };
    let body = serde_json::to_value(&fail).unwrap();
    assert_eq!(body["kind"], "configuration");
    let new: FailResponse = s
        .post("/v1/leases/fail", WORKER_TOKEN)
        .json(&fail)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(new.state, ShardState::Dead);
    let job = status(&s).await;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.error_kind, Some(FailureKind::Configuration));
    assert_eq!(job.error.as_deref(), Some("the server ignores `echo`"));
    s.shutdown().await;
}
