//! The worker loop and the coordinator client against a mock coordinator
//! (lease routes only) and testkit's fake OpenAI server.

mod common;

use client::{Backoff, ClientError, CoordinatorClient, LeaseOutcome, RetryPolicy};
use common::{lease, model, prompt_request, MockCoordinator, WORKER_TOKEN};
use jobs::protocol::{ClaimRequest, CompleteRequest, WorkerCapabilities};
use jobs::spec::BackendKind;
use jobs::Usage;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::{FakeConfig, FakeOpenAi};
use tokio_util::sync::CancellationToken;
use worker::{BackendCache, Worker, WorkerConfig, WorkerStats};

fn client(base_url: &str) -> CoordinatorClient {
    CoordinatorClient::new(base_url, WORKER_TOKEN.into())
        .unwrap()
        .with_retry_policy(RetryPolicy {
            backoff: Backoff::full_jitter(Duration::from_millis(5), Duration::from_millis(20)),
            max_elapsed: Duration::from_secs(2),
        })
}

struct Running {
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<Result<WorkerStats, worker::WorkerError>>,
    _cache: tempfile::TempDir,
    store: Arc<cache::LocalDirStore>,
}

impl Running {
    /// Stops the worker; the cache directory lives on in the returned guard.
    async fn stop(self) -> (WorkerStats, tempfile::TempDir) {
        self.shutdown.cancel();
        let stats = tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("worker stops promptly")
            .expect("worker task joins")
            .expect("worker returns stats");
        (stats, self._cache)
    }
}

fn start_worker(coordinator: &MockCoordinator) -> Running {
    start_worker_with(coordinator, 2, None)
}

/// A worker with a shard cap and, optionally, a backend cache shared with
/// other workers.
fn start_worker_with(
    coordinator: &MockCoordinator,
    max_concurrent_shards: usize,
    shared: Option<Arc<BackendCache>>,
) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(cache::LocalDirStore::new(dir.path().to_path_buf()));
    let mut worker = Worker::new(
        WorkerConfig {
            worker_id: "w-test".into(),
            backends: vec![BackendKind::Openai],
            max_concurrent_shards,
            poll_interval: Duration::from_millis(200),
        },
        client(&coordinator.base_url),
        store.clone(),
    );
    if let Some(cache) = shared {
        worker = worker.with_shared_backends(cache);
    }
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(worker.run(shutdown.clone()));
    Running {
        shutdown,
        handle,
        _cache: dir,
        store,
    }
}

#[tokio::test]
async fn completes_a_shard_with_written_and_failed_keys() {
    let fake = FakeOpenAi::start(FakeConfig {
        fail_prompts_containing: vec!["poison".into()],
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let spec = model(&fake.base_url(), json!({}));
    let requests = vec![
        prompt_request(&spec, 0, "first"),
        prompt_request(&spec, 1, "a poison pill"),
        prompt_request(&spec, 2, "third"),
    ];
    let the_lease = lease(&spec, requests.clone(), 30);
    let coordinator = MockCoordinator::start(vec![the_lease.clone()]).await;
    let running = start_worker(&coordinator);
    coordinator
        .wait_for("complete", Duration::from_secs(10), |s| {
            !s.completes.is_empty()
        })
        .await;
    let store = running.store.clone();
    let (stats, _dir) = running.stop().await;
    assert_eq!(
        stats,
        WorkerStats {
            shards_completed: 1,
            requests_ok: 2,
            requests_failed: 1,
            fenced: 0
        }
    );

    let complete: CompleteRequest = coordinator.with(|s| s.completes[0].clone());
    assert_eq!(complete.worker_id, "w-test");
    assert_eq!(complete.shard_id, the_lease.shard_id);
    assert_eq!(complete.attempt, 1);
    let expected_path = cache::segment_path(the_lease.job_id, the_lease.shard_id, 1);
    assert_eq!(complete.segment, expected_path);
    let written: BTreeSet<_> = complete.written.iter().cloned().collect();
    let expected: BTreeSet<_> = [requests[0].key.clone(), requests[2].key.clone()].into();
    assert_eq!(written, expected);
    assert_eq!(complete.failed.len(), 1);
    assert_eq!(complete.failed[0].key, requests[1].key);
    assert!(
        complete.failed[0].error.contains("400"),
        "{}",
        complete.failed[0].error
    );

    let records = cache::read_segment(store.as_ref(), &expected_path)
        .await
        .unwrap();
    assert_eq!(records.len(), 3);
    let mut usage = Usage::default();
    for r in &records {
        assert_eq!(r.model, spec.fingerprint());
        if let Some(out) = &r.output {
            usage.add(out.usage);
        }
    }
    assert_eq!(records.iter().filter(|r| r.is_success()).count(), 2);
    assert_eq!(complete.usage, usage);
    assert!(usage.prompt_tokens > 0);
    assert!(
        coordinator.with(|s| s.claims) >= 2,
        "claims again after the lease"
    );
    assert!(coordinator.with(|s| s.releases.is_empty() && s.fails.is_empty()));
}

#[tokio::test]
async fn heartbeat_keep_going_false_stops_the_shard_without_completing() {
    let fake = FakeOpenAi::start(FakeConfig {
        latency: Duration::from_millis(100),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let spec = model(&fake.base_url(), json!({"concurrency": 1}));
    let requests: Vec<_> = (0..60)
        .map(|i| prompt_request(&spec, i, &format!("q{i}")))
        .collect();
    let the_lease = lease(&spec, requests, 1);
    let coordinator = MockCoordinator::start(vec![the_lease.clone()]).await;
    coordinator.with(|s| s.keep_going = false);
    let running = start_worker(&coordinator);
    coordinator
        .wait_for("heartbeat", Duration::from_secs(10), |s| {
            !s.heartbeats.is_empty()
        })
        .await;
    let path = cache::segment_path(the_lease.job_id, the_lease.shard_id, 1);
    // The partial segment appears shortly after the shard stops.
    let deadline = Instant::now() + Duration::from_secs(5);
    let records = loop {
        if let Ok(records) = cache::read_segment(running.store.as_ref(), &path).await {
            break records;
        }
        assert!(Instant::now() < deadline, "no partial segment written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let served_at_stop = fake.stats().total;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        fake.stats().total,
        served_at_stop,
        "requests continued after keep_going=false"
    );
    let (stats, _dir) = running.stop().await;
    assert!(
        !records.is_empty() && records.len() < 60,
        "{}",
        records.len()
    );
    assert!(served_at_stop < 60);
    assert_eq!(stats.shards_completed, 0);
    assert_eq!(stats.requests_ok, records.len() as u64);
    coordinator.with(|s| {
        assert!(s.completes.is_empty());
        // What was paid for is handed back (a real coordinator refuses the
        // release, the lease being gone, but indexes the outputs).
        assert_eq!(s.releases.len(), 1);
        let partial = s.releases[0].partial.as_ref().expect("partial outputs");
        assert_eq!(partial.segment, path);
        assert_eq!(partial.written.len(), records.len());
        assert_eq!(s.heartbeats[0].shard_id, the_lease.shard_id);
    });
}

#[tokio::test]
async fn shutdown_releases_running_shards_with_partial_outputs() {
    let fake = FakeOpenAi::start(FakeConfig {
        latency: Duration::from_millis(100),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let spec = model(&fake.base_url(), json!({"concurrency": 2}));
    let requests: Vec<_> = (0..60)
        .map(|i| prompt_request(&spec, i, &format!("q{i}")))
        .collect();
    let the_lease = lease(&spec, requests, 30);
    let coordinator = MockCoordinator::start(vec![the_lease.clone()]).await;
    let running = start_worker(&coordinator);
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.stats().ok < 4 {
        assert!(Instant::now() < deadline, "requests never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let store = running.store.clone();
    let stopping = Instant::now();
    let (stats, _dir) = running.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "{:?}",
        stopping.elapsed()
    );
    assert!(fake.stats().total < 60);

    let release = coordinator.with(|s| {
        assert!(s.completes.is_empty());
        assert_eq!(s.releases.len(), 1);
        s.releases[0].clone()
    });
    assert_eq!(release.shard_id, the_lease.shard_id);
    let partial = release.partial.expect("partial outputs");
    assert_eq!(
        partial.segment,
        cache::segment_path(the_lease.job_id, the_lease.shard_id, 1)
    );
    let records = cache::read_segment(store.as_ref(), &partial.segment)
        .await
        .unwrap();
    assert!(records.len() >= 4 && records.len() < 60);
    assert_eq!(partial.written.len(), records.len());
    assert_eq!(stats.requests_ok, records.len() as u64);
    assert_eq!(stats.shards_completed, 0);
}

#[tokio::test]
async fn backend_build_errors_fail_the_lease_with_the_message() {
    let spec = model(
        "http://127.0.0.1:9/v1",
        json!({"api_key_env": "SHARDLINE_KEY_WORKER_LOOP_UNSET"}),
    );
    let the_lease = lease(&spec, vec![prompt_request(&spec, 0, "x")], 30);
    let coordinator = MockCoordinator::start(vec![the_lease]).await;
    let running = start_worker(&coordinator);
    coordinator
        .wait_for("fail", Duration::from_secs(10), |s| !s.fails.is_empty())
        .await;
    running.stop().await;
    let error = coordinator.with(|s| s.fails[0].error.clone());
    assert!(error.contains("SHARDLINE_KEY_WORKER_LOOP_UNSET"), "{error}");
}

#[tokio::test]
async fn client_maps_statuses_and_retries_transient_errors() {
    let coordinator = MockCoordinator::start(vec![]).await;
    let claim = ClaimRequest {
        worker_id: "w".into(),
        capabilities: WorkerCapabilities {
            backends: vec![BackendKind::Openai],
            models: vec![],
        },
        max_shards: 1,
    };

    // 503 twice, then served: retried transparently.
    coordinator.with(|s| s.claim_failures = [503, 503].into());
    let answer = client(&coordinator.base_url).claim(&claim).await.unwrap();
    assert!(answer.leases.is_empty());
    assert_eq!(coordinator.with(|s| s.claims), 3);

    // 400 is not retried and carries the server's message.
    coordinator.with(|s| s.claim_failures = [400].into());
    match client(&coordinator.base_url)
        .claim(&claim)
        .await
        .unwrap_err()
    {
        ClientError::Http {
            status, message, ..
        } => {
            assert_eq!(status, 400);
            assert_eq!(message, "injected");
        }
        other => panic!("expected HTTP 400, got {other}"),
    }

    // Wrong token: 401 names what to check, and never the token.
    let wrong = CoordinatorClient::new(&coordinator.base_url, "nope-secret".into()).unwrap();
    let err = wrong.claim(&claim).await.unwrap_err();
    assert!(matches!(err, ClientError::Unauthorized { .. }));
    let text = err.to_string();
    assert!(
        text.contains("SHARDLINE_WORKER_TOKEN") && !text.contains("nope-secret"),
        "{text}"
    );
    assert!(!format!("{wrong:?}").contains("nope-secret"));

    // 409 on complete is an outcome, not an error.
    coordinator.with(|s| s.fence_completes = true);
    let complete = CompleteRequest {
        worker_id: "w".into(),
        shard_id: uuid::Uuid::new_v4(),
        attempt: 1,
        segment: "segments/x".into(),
        written: vec![],
        failed: vec![],
        usage: Usage::default(),
    };
    match client(&coordinator.base_url)
        .complete(&complete)
        .await
        .unwrap()
    {
        LeaseOutcome::Fenced { message } => assert!(message.contains("stale"), "{message}"),
        other => panic!("expected fenced, got {other:?}"),
    }

    // Job API routes (the mock accepts the worker token everywhere).
    let c = client(&coordinator.base_url);
    let id = uuid::Uuid::new_v4();
    assert_eq!(c.samples(id).await.unwrap(), "{\"doc\":0}\n{\"doc\":1}\n");
    match c.job(id).await.unwrap_err() {
        ClientError::NotFound { message, route } => {
            assert_eq!(message, "no job with that id");
            assert_eq!(route, format!("/v1/jobs/{id}"));
        }
        other => panic!("expected not found, got {other}"),
    }

    // Nobody listening: retried for the bounded time, then a retryable error.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = CoordinatorClient::new(&format!("http://127.0.0.1:{port}/"), "t".into())
        .unwrap()
        .with_retry_policy(RetryPolicy {
            backoff: Backoff::full_jitter(Duration::from_millis(5), Duration::from_millis(20)),
            max_elapsed: Duration::from_millis(200),
        });
    let started = Instant::now();
    let err = gone.claim(&claim).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(matches!(err, ClientError::Connect { .. }));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn fenced_completion_is_counted() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await.unwrap();
    let spec = model(&fake.base_url(), json!({}));
    let the_lease = lease(&spec, vec![prompt_request(&spec, 0, "x")], 30);
    let coordinator = MockCoordinator::start(vec![the_lease]).await;
    coordinator.with(|s| s.fence_completes = true);
    let running = start_worker(&coordinator);
    coordinator
        .wait_for("complete", Duration::from_secs(10), |s| {
            !s.completes.is_empty()
        })
        .await;
    let (stats, _dir) = running.stop().await;
    assert_eq!(stats.fenced, 1);
    assert_eq!(stats.shards_completed, 0);
}

/// Average requests in flight at the fake server over its busy span.
fn average_in_flight(fake: &FakeOpenAi) -> f64 {
    let requests = fake.requests();
    let start = requests.iter().map(|r| r.received_at).min().unwrap();
    let end = requests
        .iter()
        .map(|r| r.received_at + r.duration)
        .max()
        .unwrap();
    let busy: f64 = requests.iter().map(|r| r.duration.as_secs_f64()).sum();
    busy / end.duration_since(start).unwrap().as_secs_f64()
}

#[tokio::test]
async fn claims_adaptively_to_keep_the_backend_busy() {
    // 50 ms per request, concurrency 64, 16-request shards: four shards at a
    // time cannot fill the backend; the worker must claim more (about
    // 2 x 64 / 16 = 8) but not everything in sight.
    let fake = FakeOpenAi::start(FakeConfig {
        latency: Duration::from_millis(50),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let spec = model(&fake.base_url(), json!({"concurrency": 64}));
    let leases: Vec<_> = (0..40)
        .map(|s| {
            let requests = (0..16)
                .map(|i| prompt_request(&spec, s * 16 + i, &format!("q{s}-{i}")))
                .collect();
            lease(&spec, requests, 30)
        })
        .collect();
    let coordinator = MockCoordinator::start(leases).await;
    let started = Instant::now();
    // 0: no fixed cap beyond the default; claiming is adaptive.
    let running = start_worker_with(&coordinator, 0, None);
    coordinator
        .wait_for("all completions", Duration::from_secs(60), |s| {
            s.completes.len() == 40
        })
        .await;
    let elapsed = started.elapsed();
    let (stats, _dir) = running.stop().await;
    assert_eq!(stats.shards_completed, 40);
    assert_eq!(stats.requests_ok, 640);

    let fake_stats = fake.stats();
    let average = average_in_flight(&fake);
    let max_outstanding = coordinator.with(|s| s.max_outstanding);
    eprintln!(
        "640 requests in {elapsed:?}: max in flight {}, average {average:.1}, \
         most leases held {max_outstanding}",
        fake_stats.max_in_flight
    );
    assert!(
        fake_stats.max_in_flight >= 58 && fake_stats.max_in_flight <= 64,
        "max in flight {} (want >= 0.9 x 64)",
        fake_stats.max_in_flight
    );
    // Claim-ahead, not claim-everything: about 8 shards pending plus a few
    // finishing ones.
    assert!(
        (6..=20).contains(&max_outstanding),
        "most leases held at once: {max_outstanding}"
    );
    // Generous for a loaded 2-core debug build: ideal is 0.5 s at 64.
    assert!(average >= 16.0, "average in flight {average:.1}");
}

#[tokio::test]
async fn workers_sharing_a_backend_cache_share_its_concurrency() {
    let fake = FakeOpenAi::start(FakeConfig {
        latency: Duration::from_millis(30),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let spec = model(&fake.base_url(), json!({"concurrency": 6}));
    let leases: Vec<_> = (0..12)
        .map(|s| {
            let requests = (0..8)
                .map(|i| prompt_request(&spec, s * 8 + i, &format!("s{s}-{i}")))
                .collect();
            lease(&spec, requests, 30)
        })
        .collect();
    let coordinator = MockCoordinator::start(leases).await;
    let shared = Arc::new(BackendCache::default());
    let a = start_worker_with(&coordinator, 0, Some(shared.clone()));
    let b = start_worker_with(&coordinator, 0, Some(shared.clone()));
    coordinator
        .wait_for("all completions", Duration::from_secs(60), |s| {
            s.completes.len() == 12
        })
        .await;
    let (sa, _da) = a.stop().await;
    let (sb, _db) = b.stop().await;
    assert_eq!(sa.shards_completed + sb.shards_completed, 12);
    assert!(
        sa.shards_completed > 0 && sb.shards_completed > 0,
        "both workers ran shards: {sa:?} {sb:?}"
    );
    let max = fake.stats().max_in_flight;
    // One semaphore for both workers: never 2 x 6.
    assert!((4..=6).contains(&max), "max in flight {max}");
}

#[tokio::test]
async fn unreachable_endpoint_fails_the_shard_once_and_fast() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}/v1");
    let spec = model(&base, json!({"max_retries": 8, "concurrency": 4}));
    let requests: Vec<_> = (0..500)
        .map(|i| prompt_request(&spec, i, &format!("q{i}")))
        .collect();
    let the_lease = lease(&spec, requests, 30);
    let coordinator = MockCoordinator::start(vec![the_lease.clone()]).await;
    let started = Instant::now();
    let running = start_worker(&coordinator);
    coordinator
        .wait_for("fail", Duration::from_secs(30), |s| !s.fails.is_empty())
        .await;
    let elapsed = started.elapsed();
    let (stats, _dir) = running.stop().await;
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    coordinator.with(|s| {
        assert_eq!(s.fails.len(), 1);
        assert!(s.completes.is_empty() && s.releases.is_empty());
        let error = &s.fails[0].error;
        assert_eq!(s.fails[0].shard_id, the_lease.shard_id);
        assert!(
            error.contains(&base) && error.contains("unreachable"),
            "{error}"
        );
    });
    assert_eq!(stats.shards_completed, 0);
    assert!(stats.requests_failed < 50, "{stats:?}");
}

/// The reviewer's scenario at full size: concurrency 256, 100-request
/// shards, 50 ms. Ignored by default (CPU-bound on a 2-core debug build);
/// run with `cargo test -p worker --release -- --ignored`.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn keeps_256_in_flight_with_100_request_shards() {
    let fake = FakeOpenAi::start(FakeConfig {
        latency: Duration::from_millis(50),
        record_requests: false,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let spec = model(&fake.base_url(), json!({"concurrency": 256}));
    let leases: Vec<_> = (0..40)
        .map(|s| {
            let requests = (0..100)
                .map(|i| prompt_request(&spec, s * 100 + i, &format!("q{s}-{i}")))
                .collect();
            lease(&spec, requests, 30)
        })
        .collect();
    let coordinator = MockCoordinator::start(leases).await;
    let started = Instant::now();
    let running = start_worker_with(&coordinator, 0, None);
    coordinator
        .wait_for("all completions", Duration::from_secs(120), |s| {
            s.completes.len() == 40
        })
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    running.stop().await;
    let rate = 4000.0 / elapsed;
    let ideal = 256.0 / 0.05;
    let max = fake.stats().max_in_flight;
    eprintln!(
        "4000 requests in {elapsed:.2}s: {rate:.0}/s of {ideal:.0}/s ideal, max in flight {max}"
    );
    assert!(max >= 230, "max in flight {max}");
}
