//! Jobs on a [`Cluster`]: job files, `shardline submit`, waiting on the
//! coordinator, and the check that a job completed with every request
//! done exactly once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use coordinator::store::{CacheIndexStore, JobStore};
use jobs::protocol::{JobState, JobStatus};
use uuid::Uuid;

use super::cluster::Cluster;
use super::*;

/// A job file over a fresh dataset of `rows` questions.
pub fn cluster_job(
    dir: &Path,
    name: &str,
    rows: usize,
    shard_size: u32,
    base_url: &str,
) -> PathBuf {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).unwrap();
    let (dataset, _) = write_dataset(&sub, rows);
    let job = write_job(&sub, &dataset, base_url, "");
    edit_file(&job, "name = \"e2e\"", &format!("name = \"{name}\""));
    edit_file(
        &job,
        "shard_size = 10",
        &format!("shard_size = {shard_size}"),
    );
    job
}

/// `shardline submit JOB`, returning the job id it prints.
pub fn submit(c: &Cluster, job: &Path) -> Uuid {
    let out = c
        .shardline(&[
            "submit",
            job.to_str().unwrap(),
            "--coordinator",
            &c.coordinator_url,
        ])
        .output()
        .expect("run shardline submit");
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    Uuid::parse_str(text.trim()).unwrap_or_else(|e| panic!("submit printed {text:?}: {e}"))
}

/// The job's status, riding out a coordinator that is restarting.
pub async fn job(c: &Cluster, id: Uuid) -> Option<JobStatus> {
    c.client().job(id).await.ok()
}

pub async fn wait_for<T>(
    c: &Cluster,
    what: &str,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}\n{}", c.logs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn shards(
    store: &coordinator::PostgresStore,
    id: Uuid,
) -> Vec<coordinator::store::ShardRecord> {
    // The store may be restarting: an error is "not yet".
    store.list_shards(id).await.unwrap_or_default()
}

/// Waits for the job to end, and checks that it completed with every
/// request done exactly once: counts, the cache index, and the results
/// the CLI downloads (one sample per document, nothing missing).
pub async fn assert_completed_once(c: &Cluster, id: Uuid, job_file: &Path, rows: u64) -> JobStatus {
    let status = wait_for(c, "the job to end", Duration::from_secs(180), async || {
        job(c, id).await.filter(|s| s.state.is_terminal())
    })
    .await;
    assert_eq!(
        status.state,
        JobState::Completed,
        "{status:?}\n{}",
        c.logs()
    );
    let counts = &status.counts;
    assert_eq!(counts.requests, rows);
    assert_eq!(
        counts.completed, rows,
        "every request counted once, none twice: {counts:?}"
    );
    assert_eq!(counts.failed, 0);
    assert_eq!(counts.shards_completed, counts.shards_total);

    let keys: Vec<jobs::RequestKey> = keys_to_questions(job_file)
        .into_keys()
        .map(jobs::RequestKey)
        .collect();
    assert_eq!(keys.len() as u64, rows);
    let store = c.store().await;
    let indexed = store.lookup_keys(&keys).await.expect("index look-up");
    assert_eq!(indexed.len() as u64, rows, "one indexed output per request");

    let out_dir = c.dir.path().join(format!("results-{id}"));
    let out = c
        .shardline(&[
            "results",
            &id.to_string(),
            "--coordinator",
            &c.coordinator_url,
            "--output",
            out_dir.to_str().unwrap(),
        ])
        .output()
        .expect("run shardline results");
    assert!(out.status.success(), "{}", describe(&out));
    let samples = read_lines(&out_dir.join("samples.jsonl"));
    assert_eq!(samples.len() as u64, rows, "one sample per document");
    let docs: HashSet<&str> = samples
        .iter()
        .map(|s| s["doc_id"].as_str().expect("doc_id"))
        .collect();
    assert_eq!(docs.len() as u64, rows, "no document twice");
    let metrics = read_json(&out_dir.join("metrics.json"));
    assert_eq!(metrics["missing_requests"], 0, "{metrics}");
    store.close().await;
    status
}
