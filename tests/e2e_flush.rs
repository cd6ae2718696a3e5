//! A worker SIGKILLed in the middle of a long shard loses only the requests
//! in flight and those since its last flush: the shard's outputs are
//! flushed to the cache (S3) and indexed while it runs, and the next
//! attempt skips them. Measured against a worker that does not flush, on
//! the same cluster (real `shardline serve` on Postgres, real workers, the
//! fake OpenAI server answering in 100 ms).

mod support;

use std::time::Duration;

use support::cluster::*;
use support::cluster_jobs::*;

/// Rows of each job: one shard of this many requests.
const ROWS: u64 = 200;
/// The job's `model.concurrency` (from `support::write_job`).
const CONCURRENCY: u64 = 4;
/// The fake server's answer time.
const LATENCY_MS: u64 = 100;
/// The flushing worker's `--flush-ms`.
const FLUSH_MS: u64 = 500;
/// Answers seen before the kill: well inside the shard.
const KILL_AFTER: u64 = 150;

/// Runs one single-shard job on worker `victim` (started with `flags`),
/// SIGKILLs it after [`KILL_AFTER`] answers, lets `rescuer` finish the
/// shard, and returns how many requests the fake server answered twice.
async fn requests_repeated_after_kill(
    c: &mut Cluster,
    name: &str,
    victim: &str,
    rescuer: &str,
    flags: &[&str],
) -> u64 {
    let url = c.coordinator_url.clone();
    let job_file = cluster_job(
        c.dir.path(),
        name,
        ROWS as usize,
        ROWS as u32,
        &c.fake.base_url,
    );
    // A prompt of its own, so that no job finds another's outputs cached.
    support::edit_file(
        &job_file,
        "content = \"{{ question }}\"",
        &format!("content = \"{name}: {{{{ question }}}}\""),
    );
    let before = c.fake.ok().await;
    c.start_worker(victim, &url, flags);
    let id = submit(c, &job_file);
    let fake = &c.fake;
    wait_for(
        c,
        "the victim to be inside its shard",
        Duration::from_secs(60),
        async || (fake.ok().await >= before + KILL_AFTER).then_some(()),
    )
    .await;
    c.worker(victim).kill();
    // The killed attempt's lease expires (3 s) and the rescuer takes over.
    c.start_worker(rescuer, &url, flags);
    assert_completed_once(c, id, &job_file, ROWS).await;
    // The next round's victim must be the only worker when its job comes.
    c.worker(rescuer).kill();
    c.fake.ok().await - before - ROWS
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_repeats_only_what_it_had_not_flushed() {
    let mut c = Cluster::start(&["--latency-ms", &LATENCY_MS.to_string()], &[]).await;
    c.start_coordinator().await;

    let unflushed = requests_repeated_after_kill(
        &mut c,
        "unflushed",
        "w-off-1",
        "w-off-2",
        &["--flush-ms", "0", "--flush-outputs", "0"],
    )
    .await;
    let flush_ms = FLUSH_MS.to_string();
    let flushed = requests_repeated_after_kill(
        &mut c,
        "flushed",
        "w-on-1",
        "w-on-2",
        &["--flush-ms", &flush_ms],
    )
    .await;

    // What a kill may cost with flushing: the requests in flight, plus the
    // outputs of one interval, plus one more when the kill lands while a
    // flush is on its way.
    let rate_per_interval = CONCURRENCY * FLUSH_MS / LATENCY_MS;
    let bound = CONCURRENCY + 2 * rate_per_interval;
    eprintln!(
        "SIGKILL after {KILL_AFTER} of {ROWS} answers (concurrency {CONCURRENCY}, \
         {LATENCY_MS} ms each): {unflushed} requests sent twice without flushing, \
         {flushed} with --flush-ms {FLUSH_MS} (bound {bound})"
    );
    assert!(
        flushed <= bound,
        "{flushed} requests sent twice with flushing; at most {bound} expected\n{}",
        c.logs()
    );
    assert!(
        unflushed >= KILL_AFTER,
        "without flushing, everything the victim did is repeated: {unflushed}\n{}",
        c.logs()
    );
    let metrics = c.client().metrics().await.expect("metrics");
    let indexed: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("shardline_outputs_flushed_total ")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no shardline_outputs_flushed_total in:\n{metrics}"));
    assert!(
        indexed >= (KILL_AFTER - bound) as f64,
        "{indexed} outputs flushed\n{}",
        c.logs()
    );
}
