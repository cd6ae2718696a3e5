//! End-to-end tests of the `openai-batch` backend with real processes against the fake Batch
//! API (Files + Batches) running in the test: `shardline serve` and `shardline worker`
//! processes, a worker SIGKILLed after the upload, after creating a batch (before recording
//! it), while polling and while downloading; an expired batch; failed and missing lines;
//! a shard split over several input files and fed in waves under an enqueued-token cap; a
//! cancelled job; and the embedded `shardline run` with `--dry-run` and cost. In each, the
//! results hold one output per request and the fake saw exactly one batch per request set.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use jobs::protocol::{JobState, JobStatus};
use support::cluster::{free_port, Proc};
use support::*;
use testkit::{FakeBatchApi, FakeBatchConfig, FakeBatchStats, FakeConfig, LineError};
use uuid::Uuid;

const ADMIN: &str = "batch-admin-token";
const WORKER: &str = "batch-worker-token";
const KEY: &str = "test-key";

/// A job of `rows` questions on the Batch API backend; `batch` is the body
/// of `[model.batch]`.
fn batch_job(
    dir: &Path,
    name: &str,
    rows: usize,
    shard_size: u32,
    base_url: &str,
    batch: &str,
) -> PathBuf {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).unwrap();
    let (dataset, _) = write_dataset(&sub, rows);
    let job = format!(
        r#"name = "{name}"

[model]
backend = "openai-batch"
model = "fake-model"
base_url = "{base_url}"
api_key_env = "SHARDLINE_KEY_E2E"
max_retries = 3
timeout_secs = 10

[model.batch]
poll_interval_secs = 0.2
max_poll_interval_secs = 0.5
{batch}

[model.price]
input_per_million = 0.15
output_per_million = 0.60

[dataset]
path = "{dataset}"
id_field = "id"

[task]
kind = "generate"
messages = [{{ role = "user", content = "{{{{ question }}}}" }}]
target = "{{{{ answer }}}}"

[task.generation]
max_tokens = 16

[[metrics]]
type = "exact_match"

[sharding]
shard_size = {shard_size}
max_attempts = 5
"#,
        dataset = dataset.display()
    );
    let path = sub.join("job.toml");
    std::fs::write(&path, job).unwrap();
    path
}

async fn fake(batch: FakeBatchConfig) -> FakeBatchApi {
    FakeBatchApi::start(
        FakeConfig {
            api_key: Some(KEY.into()),
            ..FakeConfig::default()
        },
        batch,
    )
    .await
    .unwrap()
}

/// `shardline serve` over a home folder, with short leases, and its workers.
struct Cluster {
    dir: PathBuf,
    home: PathBuf,
    url: String,
    serve: Proc,
    workers: Vec<Proc>,
}

fn shardline(args: &[&str]) -> Command {
    let mut cmd = Command::new(shardline_bin());
    cmd.args(args)
        .env("SHARDLINE_ADMIN_TOKEN", ADMIN)
        .env("SHARDLINE_WORKER_TOKEN", WORKER)
        .env("SHARDLINE_KEY_E2E", KEY)
        .env("SHARDLINE_LOG", "info")
        .env_remove("SHARDLINE_FAULT");
    cmd
}

impl Cluster {
    async fn start(dir: &Path) -> Cluster {
        let home = dir.join("home");
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let listen = format!("127.0.0.1:{port}");
        let serve = Proc::spawn(
            "serve",
            shardline(&[
                "serve",
                "--listen",
                &listen,
                "--home",
                home.to_str().unwrap(),
                "--lease-secs",
                "3",
                "--reaper-interval-ms",
                "300",
                "--dataset-root",
                dir.to_str().unwrap(),
            ]),
            dir,
        );
        let cluster = Cluster {
            dir: dir.to_path_buf(),
            home,
            url,
            serve,
            workers: Vec::new(),
        };
        let client = cluster.client();
        let start = Instant::now();
        while client.healthz().await.is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the coordinator did not start\n{}",
                cluster.serve.titled_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cluster
    }

    fn client(&self) -> client::CoordinatorClient {
        client::CoordinatorClient::new(&self.url, ADMIN.to_string()).unwrap()
    }

    /// Starts a worker offering `openai-batch`; `fault` names a point where
    /// it SIGKILLs itself.
    fn worker(&mut self, fault: Option<&str>) -> usize {
        let n = self.workers.len();
        let cache = self.home.join("cache");
        let mut cmd = shardline(&[
            "worker",
            "--coordinator",
            &self.url,
            "--cache",
            cache.to_str().unwrap(),
            "--backend",
            "openai-batch",
            "--poll-ms",
            "200",
            "--id",
            &format!("batch-worker-{n}"),
        ]);
        if let Some(point) = fault {
            cmd.env("SHARDLINE_FAULT", point);
        }
        self.workers
            .push(Proc::spawn(&format!("worker-{n}"), cmd, &self.dir));
        n
    }

    fn logs(&self) -> String {
        let mut out = self.serve.titled_log();
        for w in &self.workers {
            out.push('\n');
            out.push_str(&w.titled_log());
        }
        out
    }

    fn submit(&self, job: &Path) -> Uuid {
        let out = shardline(&["submit", job.to_str().unwrap(), "--coordinator", &self.url])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}\n{}", describe(&out), self.logs());
        Uuid::parse_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
    }

    async fn wait_state(&self, id: Uuid, limit: Duration) -> JobStatus {
        let client = self.client();
        let start = Instant::now();
        loop {
            if let Ok(status) = client.job(id).await {
                if status.state.is_terminal() {
                    return status;
                }
            }
            assert!(
                start.elapsed() < limit,
                "job {id} did not end within {limit:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `shardline results` into a folder; its samples.
    fn results(&self, id: Uuid) -> (std::process::Output, Vec<serde_json::Value>) {
        let out_dir = self.dir.join(format!("results-{id}"));
        let out = shardline(&[
            "results",
            &id.to_string(),
            "--coordinator",
            &self.url,
            "--output",
            out_dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
        let samples = read_lines(&out_dir.join("samples.jsonl"));
        (out, samples)
    }
}

/// Every request has exactly one output in the results and was answered
/// once by the fake, and no request set went into two batches.
fn assert_once(stats: &FakeBatchStats, samples: &[serde_json::Value], rows: usize, logs: &str) {
    assert_eq!(samples.len(), rows, "{logs}");
    for s in samples {
        assert_eq!(s["missing"], false, "{s}\n{logs}");
        assert!(s["outputs"][0].is_string(), "{s}");
    }
    assert_eq!(
        stats.max_batches_per_request_set(),
        1,
        "a request set was sent twice: {:#?}\n{logs}",
        stats.batches_per_request_set()
    );
    assert_eq!(stats.ok_per_custom_id.len(), rows, "{logs}");
    let twice: BTreeMap<&String, &u64> = stats
        .ok_per_custom_id
        .iter()
        .filter(|(_, n)| **n != 1)
        .collect();
    assert!(twice.is_empty(), "answered more than once: {twice:?}");
}

/// A worker killed at `fault` (in a shard of two input files), then a fresh
/// worker: the job completes, one batch per request set.
async fn killed_at(fault: &str, batch: FakeBatchConfig) -> FakeBatchStats {
    let dir = tempfile::tempdir().unwrap();
    let api = fake(batch).await;
    let rows = 16;
    let job = batch_job(
        dir.path(),
        "kill",
        rows,
        16,
        &api.base_url(),
        "max_requests_per_file = 8",
    );
    let mut c = Cluster::start(dir.path()).await;
    let id = c.submit(&job);
    let first = c.worker(Some(fault));
    let status = c.workers[first].wait_death(Duration::from_secs(60));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{status:?}\n{}", c.logs());
    assert!(c.workers[first].log().contains(fault), "{}", c.logs());
    c.worker(None);
    let end = c.wait_state(id, Duration::from_secs(90)).await;
    assert_eq!(end.state, JobState::Completed, "{end:?}\n{}", c.logs());
    assert_eq!(end.counts.completed, rows as u64);
    assert!(end.counts.usage.prompt_tokens > 0);
    assert!(end.cost.is_some());
    let (out, samples) = c.results(id);
    assert!(out.status.success(), "{}", describe(&out));
    let stats = api.batch_stats();
    assert_once(&stats, &samples, rows, &c.logs());
    assert_eq!(stats.creates, 2, "{stats:#?}");
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_after_the_upload_uploads_again_but_creates_once() {
    let stats = killed_at("batch-after-upload", FakeBatchConfig::default()).await;
    assert_eq!(
        stats.uploads, 3,
        "the first upload was lost with the worker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_create_and_record_is_found_by_listing() {
    let stats = killed_at("batch-after-create", FakeBatchConfig::default()).await;
    assert!(stats.lists >= 1, "the next attempt looked the batch up");
    assert_eq!(
        stats.uploads, 2,
        "the found batch's file was not uploaded again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_while_polling_leaves_the_batches_to_another() {
    let stats = killed_at(
        "batch-during-poll",
        FakeBatchConfig {
            in_progress: Duration::from_millis(800),
            ..FakeBatchConfig::default()
        },
    )
    .await;
    assert_eq!(
        stats.lists, 0,
        "the batches were recorded: nothing to look up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_while_downloading_leaves_the_download_to_another() {
    let stats = killed_at("batch-during-download", FakeBatchConfig::default()).await;
    assert!(stats.downloads >= 3, "one result file was downloaded twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_batch_keeps_its_finished_part_and_retries_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let api = fake(FakeBatchConfig {
        in_progress: Duration::from_millis(600),
        expire_first_batches: 1,
        expire_after: Duration::from_millis(300),
        ..FakeBatchConfig::default()
    })
    .await;
    let rows = 20;
    let job = batch_job(dir.path(), "expired", rows, 20, &api.base_url(), "");
    let mut c = Cluster::start(dir.path()).await;
    c.worker(None);
    let id = c.submit(&job);
    let end = c.wait_state(id, Duration::from_secs(90)).await;
    assert_eq!(end.state, JobState::Completed, "{}", c.logs());
    let (out, samples) = c.results(id);
    assert!(out.status.success(), "{}", describe(&out));
    let stats = api.batch_stats();
    assert_once(&stats, &samples, rows, &c.logs());
    assert_eq!(stats.batches.len(), 2, "{stats:#?}");
    assert_eq!(stats.batches[0].status, "expired");
    assert_eq!(stats.batches[0].requests, rows);
    let retried = stats.batches[1].requests;
    assert!(
        retried > 0 && retried < rows,
        "the retry holds only the unfinished part: {retried}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poller_killed_between_creating_a_retry_batch_and_recording_it() {
    let dir = tempfile::tempdir().unwrap();
    let api = fake(FakeBatchConfig {
        in_progress: Duration::from_millis(600),
        expire_first_batches: 1,
        expire_after: Duration::from_millis(300),
        ..FakeBatchConfig::default()
    })
    .await;
    let rows = 12;
    let job = batch_job(dir.path(), "retrykill", rows, 12, &api.base_url(), "");
    let mut c = Cluster::start(dir.path()).await;
    let id = c.submit(&job);
    let first = c.worker(Some("batch-after-retry-create"));
    c.workers[first].wait_death(Duration::from_secs(60));
    assert!(
        c.workers[first].log().contains("batch-after-retry-create"),
        "{}",
        c.logs()
    );
    c.worker(None);
    let end = c.wait_state(id, Duration::from_secs(90)).await;
    assert_eq!(end.state, JobState::Completed, "{}", c.logs());
    let (out, samples) = c.results(id);
    assert!(out.status.success(), "{}", describe(&out));
    let stats = api.batch_stats();
    assert_once(&stats, &samples, rows, &c.logs());
    assert_eq!(
        stats.creates, 2,
        "the expired batch and one retry: {stats:#?}"
    );
    assert_eq!(
        stats.lists, 1,
        "the second poller looked the retry batch up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_missing_lines_are_retried_and_final_errors_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let api = fake(FakeBatchConfig {
        line_errors: vec![
            // A server error once: retried in a new batch.
            LineError {
                needle: "(item 3)".into(),
                status: 500,
                times: 1,
            },
            // A bad request every time: recorded as failed.
            LineError {
                needle: "(item 7)".into(),
                status: 400,
                times: 100,
            },
        ],
        // Missing from both files once: retried.
        drop_lines: vec![("(item 5)".into(), 1)],
        ..FakeBatchConfig::default()
    })
    .await;
    let rows = 12;
    let job = batch_job(dir.path(), "lines", rows, 12, &api.base_url(), "");
    let mut c = Cluster::start(dir.path()).await;
    c.worker(None);
    let id = c.submit(&job);
    let end = c.wait_state(id, Duration::from_secs(90)).await;
    assert_eq!(end.state, JobState::Completed, "{}", c.logs());
    assert_eq!(end.counts.failed, 1, "{end:?}");
    assert_eq!(end.counts.completed, rows as u64 - 1);
    let (out, samples) = c.results(id);
    assert_eq!(
        out.status.code(),
        Some(3),
        "one request has no output: {}",
        describe(&out)
    );
    let stats = api.batch_stats();
    assert_eq!(
        stats.max_batches_per_request_set(),
        1,
        "{:#?}",
        stats.batches_per_request_set()
    );
    // Round 0: all 12; round 1: items 3 (a 500) and 5 (missing). Item 7's
    // 400 would fail again: it is not retried.
    let sizes: Vec<usize> = stats.batches.iter().map(|b| b.requests).collect();
    assert_eq!(sizes, vec![12, 2], "{stats:#?}");
    assert_eq!(stats.ok_per_custom_id.len(), rows - 1);
    assert!(stats.ok_per_custom_id.values().all(|n| *n == 1));
    let missing: Vec<_> = samples.iter().filter(|s| s["missing"] == true).collect();
    assert_eq!(missing.len(), 1);
    // The messages as sent, not a rendering of them.
    assert_eq!(missing[0]["prompt"][0]["role"], "user", "{}", missing[0]);
    let asked = missing[0]["prompt"][0]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(asked.contains("(item 7)"), "{}", missing[0]);
    let failures = reqwest::Client::new()
        .get(format!("{}/v1/jobs/{id}/failures", c.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let error = failures[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("HTTP 400"), "{failures}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_splits_over_files_and_runs_in_waves_under_the_token_cap() {
    let dir = tempfile::tempdir().unwrap();
    // The fake refuses batches beyond 120 enqueued tokens, as OpenAI does;
    // the job's cap keeps the estimate (which counts more tokens than the
    // fake does) under the same number, so no batch is refused.
    let api = fake(FakeBatchConfig {
        enqueued_token_limit: Some(120),
        // The file limits of the API, made small: a file over them fails.
        max_lines: 10,
        max_file_bytes: 1500,
        ..FakeBatchConfig::default()
    })
    .await;
    let rows = 30;
    let job = batch_job(
        dir.path(),
        "split",
        rows,
        30,
        &api.base_url(),
        "max_requests_per_file = 10\nmax_file_bytes = 1500\nmax_enqueued_tokens = 120",
    );
    let mut c = Cluster::start(dir.path()).await;
    c.worker(None);
    let id = c.submit(&job);
    let end = c.wait_state(id, Duration::from_secs(90)).await;
    assert_eq!(end.state, JobState::Completed, "{}", c.logs());
    let (out, samples) = c.results(id);
    assert!(out.status.success(), "{}", describe(&out));
    let stats = api.batch_stats();
    assert_once(&stats, &samples, rows, &c.logs());
    assert!(
        stats.batches.len() >= 4,
        "split by the byte limit too: {stats:#?}"
    );
    assert!(stats
        .batches
        .iter()
        .all(|b| b.requests <= 10 && b.status == "completed"));
    assert!(
        stats.max_enqueued_tokens <= 120,
        "{}",
        stats.max_enqueued_tokens
    );
    // Waves: at most half of the job's tokens were ever in progress at once.
    let total: u64 = stats.batches.iter().map(|b| b.tokens).sum();
    assert!(
        stats.max_enqueued_tokens * 2 <= total,
        "{} of {total} tokens at once",
        stats.max_enqueued_tokens
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_job_cancels_its_batches_and_keeps_the_finished_part() {
    let dir = tempfile::tempdir().unwrap();
    let api = fake(FakeBatchConfig {
        in_progress: Duration::from_secs(3),
        ..FakeBatchConfig::default()
    })
    .await;
    let rows = 20;
    let job = batch_job(dir.path(), "cancel", rows, 10, &api.base_url(), "");
    let mut c = Cluster::start(dir.path()).await;
    c.worker(None);
    let id = c.submit(&job);
    // Cancel once both batches are well into `in_progress`.
    let start = Instant::now();
    loop {
        let stats = api.batch_stats();
        if stats.creates == 2 && stats.lines_ok >= 6 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{}", c.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = shardline(&["cancel", &id.to_string(), "--coordinator", &c.url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let client = c.client();
    let start = Instant::now();
    loop {
        let stats = api.batch_stats();
        let shards_done = client
            .job(id)
            .await
            .map(|j| j.counts.shards_completed)
            .unwrap_or(0);
        let all_cancelled = stats.batches.iter().all(|b| b.status == "cancelled");
        if all_cancelled && segment_outputs(&c.home.join("cache")).len() as u64 == stats.lines_ok {
            assert_eq!(shards_done, 0);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{stats:#?}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = api.batch_stats();
    assert!(first.cancels >= 2);
    let kept = first.lines_ok as usize;
    assert!(
        kept > 0 && kept < rows,
        "{kept} of {rows} finished before the cancel"
    );
    assert_eq!(c.client().job(id).await.unwrap().state, JobState::Cancelled);

    // Running the job again sends only what the cancel cut off.
    api.set_batch_config(|b| b.in_progress = Duration::from_millis(200));
    let again = c.submit(&job);
    assert_ne!(again, id);
    let end = c.wait_state(again, Duration::from_secs(90)).await;
    assert_eq!(end.state, JobState::Completed, "{}", c.logs());
    assert_eq!(end.counts.cached, kept as u64);
    let (out, samples) = c.results(again);
    assert!(out.status.success(), "{}", describe(&out));
    let stats = api.batch_stats();
    assert_once(&stats, &samples, rows, &c.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_run_estimates_then_runs_and_prices_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let api = fake(FakeBatchConfig::default()).await;
    let rows = 10;
    let job = batch_job(dir.path(), "embedded", rows, 10, &api.base_url(), "");
    let home = dir.path().join("home");

    let out = run_job(&job, &home, &["--dry-run"]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("10 to send in 1 shards, at least 1 batch input files"),
        "{text}"
    );
    assert!(text.contains("input tokens:  ~"), "{text}");
    assert!(text.contains("on the synchronous API"), "{text}");
    assert_eq!(api.batch_stats().uploads, 0, "a dry run sends nothing");
    assert_eq!(api.sync_stats().total, 0);

    let out = run_job(&job, &home, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cost: ") && err.contains("(synchronous API: "),
        "{err}"
    );
    let samples = read_lines(&home.join("results").join("embedded").join("samples.jsonl"));
    let stats = api.batch_stats();
    assert_once(&stats, &samples, rows, &err);

    // Everything is cached now: the estimate says so, and what the cached
    // outputs cost when they were made, not "~0 tokens".
    let out = run_job(&job, &home, &["--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("10, all already in the cache: nothing to send"),
        "{text}"
    );
    assert!(
        text.contains("cached:        10 outputs; they cost ") && text.contains(" USD"),
        "{text}"
    );
    assert!(
        !text.contains("~0") && !text.contains("they cost 0 prompt"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_fails_validation_fails_the_job_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let api = fake(FakeBatchConfig {
        fail_validation_containing: vec!["(item 4)".into()],
        ..FakeBatchConfig::default()
    })
    .await;
    let job = batch_job(dir.path(), "invalid", 8, 8, &api.base_url(), "");
    let out = run_job(&job, &dir.path().join("home"), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("failed: batch batch_") && err.contains("line 5: invalid_request"),
        "{err}"
    );
    let stats = api.batch_stats();
    assert_eq!(stats.creates, 1, "a failed batch is not sent again");
    assert_eq!(stats.batches[0].status, "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_can_go_through_the_synchronous_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let api = fake(FakeBatchConfig {
        line_errors: vec![LineError {
            needle: "(item 2)".into(),
            status: 503,
            times: 1,
        }],
        ..FakeBatchConfig::default()
    })
    .await;
    let rows = 6;
    let job = batch_job(
        dir.path(),
        "syncretry",
        rows,
        6,
        &api.base_url(),
        "retry_with = \"sync\"",
    );
    let home = dir.path().join("home");
    let out = run_job(&job, &home, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let stats = api.batch_stats();
    assert_eq!(stats.creates, 1, "{stats:#?}");
    assert_eq!(api.sync_stats().chat, 1, "one synchronous retry");
    assert_eq!(api.sync_count_for_prompt("(item 2)"), 1);
    let samples = read_lines(&home.join("results").join("syncretry").join("samples.jsonl"));
    assert_eq!(samples.len(), rows);
    assert!(samples.iter().all(|s| s["missing"] == false));
}
