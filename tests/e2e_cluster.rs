//! A cluster of real processes on loopback, disturbed the way production
//! disturbs it: `shardline serve` on Postgres with an S3 (moto) cache,
//! three `shardline worker`s and the fake OpenAI server, running a job of
//! thousands of requests while a worker is SIGKILLed, the coordinator is
//! SIGKILLed and restarted, and Postgres restarts; a worker cut off from
//! the coordinator completes late and is refused; a job is cancelled under
//! running workers. In every case the results hold exactly one output per
//! request and the fake server saw no request twice beyond the one shard
//! that was lost.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coordinator::store::CacheIndexStore;
use jobs::protocol::{JobState, ShardState};
use support::cluster::*;
use support::cluster_jobs::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

/// The cluster tests run one at a time: their timing (3 s leases) must not
/// compete with another cluster for the machine's cores. (A tokio mutex: it
/// is held across awaits, and a failed test does not poison it.)
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_survives_killed_worker_restarted_coordinator_and_restarted_postgres() {
    let _serial = SERIAL.lock().await;
    const ROWS: u64 = 4000;
    const SHARD: u32 = 50;
    let mut c = Cluster::start(&["--latency-ms", "40"], &[]).await;
    c.start_coordinator().await;
    let url = c.coordinator_url.clone();
    for w in ["w1", "w2", "w3"] {
        c.start_worker(w, &url, &[]);
    }
    let job_file = cluster_job(
        c.dir.path(),
        "survivor",
        ROWS as usize,
        SHARD,
        &c.fake.base_url,
    );
    let id = submit(&c, &job_file);
    let store = c.store().await;

    // 1. SIGKILL w1 in the middle of a shard.
    let victim = wait_for(
        &c,
        "w1 to run a shard",
        Duration::from_secs(60),
        async || {
            let running = shards(&store, id).await.into_iter().find(|s| {
                s.state == ShardState::Running && s.lease_owner.as_deref() == Some("w1")
            })?;
            // Well inside the shard (a shard takes about half a second).
            tokio::time::sleep(Duration::from_millis(150)).await;
            shards(&store, id)
                .await
                .into_iter()
                .find(|s| s.id == running.id && s.attempt == running.attempt)
                .filter(|s| s.state == ShardState::Running)
        },
    )
    .await;
    c.worker("w1").kill();
    let before_kill = job(&c, id).await.expect("job");
    assert!(
        !before_kill.state.is_terminal(),
        "the job ended before the disruptions; make it bigger"
    );
    // Its lease expires (3 s) and another worker takes the shard over.
    wait_for(
        &c,
        "the killed shard to be claimed again",
        Duration::from_secs(30),
        async || {
            shards(&store, id)
                .await
                .into_iter()
                .find(|s| s.id == victim.id && s.attempt > victim.attempt)
        },
    )
    .await;

    // 2. SIGKILL the coordinator and start it again.
    let done_before = job(&c, id).await.expect("job").counts.shards_completed;
    let mut old = c.coordinator.take().expect("coordinator");
    old.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.start_coordinator().await;
    let status = wait_for(
        &c,
        "progress after the restart",
        Duration::from_secs(60),
        async || {
            job(&c, id)
                .await
                .filter(|s| s.counts.shards_completed >= done_before + 3 || s.state.is_terminal())
        },
    )
    .await;
    assert!(
        !status.state.is_terminal(),
        "the job ended before Postgres restarted; make it bigger"
    );

    // 3. Restart Postgres under the coordinator and the workers.
    let done_before = status.counts.shards_completed;
    c.pg.restart();
    wait_for(
        &c,
        "progress after Postgres restarted",
        Duration::from_secs(60),
        async || {
            job(&c, id)
                .await
                .filter(|s| s.counts.shards_completed >= done_before + 3 || s.state.is_terminal())
        },
    )
    .await;

    let status = assert_completed_once(&c, id, &job_file, ROWS).await;
    let store = c.store().await;
    let killed = shards(&store, id)
        .await
        .into_iter()
        .find(|s| s.id == victim.id)
        .expect("the killed shard");
    assert_eq!(killed.state, ShardState::Completed);
    // Each worker said at start which key variables jobs may name there.
    let log = c.worker("w2").log();
    assert!(
        log.lines()
            .any(|l| l.starts_with("API keys jobs may name here:")
                && l.contains("SHARDLINE_KEY_E2E")),
        "{log}"
    );
    assert!(killed.attempt > victim.attempt);
    assert!(
        killed.attempts_used >= 1,
        "the expired lease spent an attempt"
    );
    // A spec rescored on the coordinator, from the cache alone.
    let out = c
        .shardline(&[
            "rescore",
            job_file.to_str().unwrap(),
            "--coordinator",
            &c.coordinator_url,
        ])
        .output()
        .expect("run shardline rescore");
    assert!(out.status.success(), "{}", describe(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    assert_eq!(report["missing_requests"], 0, "{report}");
    assert_eq!(report["docs_scored"], ROWS, "{report}");
    // Only the killed shard's requests may have been sent twice.
    let sent = c.fake.ok().await;
    assert!(
        sent >= ROWS && sent <= ROWS + u64::from(SHARD),
        "the fake server answered {sent} requests for {ROWS} (at most {SHARD} twice)\n{}",
        c.logs()
    );
    eprintln!(
        "cluster survived: {} requests, {} answered twice by the fake server, {} shards",
        status.counts.requests,
        sent - ROWS,
        status.counts.shards_total
    );
}

/// A TCP proxy that can cut a worker off from the coordinator without
/// closing anything: while blocked, a connection that carries a request is
/// frozen for good (the request hangs, as behind a dead network link);
/// once unblocked, other connections pass again.
struct Proxy {
    url: String,
    blocked: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let blocked = Arc::new(AtomicBool::new(false));
        let flag = blocked.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let down = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    });
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if flag.load(Ordering::SeqCst) {
                            // Frozen: hold the sockets, forward nothing.
                            std::future::pending::<()>().await;
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    down.abort();
                });
            }
        });
        Proxy { url, blocked, task }
    }

    fn block(&self, on: bool) {
        self.blocked.store(on, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Questions that the fake server answers slowly (`slowjob` in the prompt).
fn slow_job(dir: &Path, rows: usize, base_url: &str) -> PathBuf {
    let sub = dir.join("slow");
    std::fs::create_dir_all(&sub).unwrap();
    let path = sub.join("data.jsonl");
    let mut text = String::new();
    for i in 0..rows {
        let row = serde_json::json!({
            "id": format!("s{i}"), "question": format!("slowjob question {i}"),
            "answer": "x", "subset": "slow"
        });
        text.push_str(&format!("{row}\n"));
    }
    std::fs::write(&path, text).unwrap();
    let job = write_job(&sub, &path, base_url, "");
    edit_file(&job, "name = \"e2e\"", "name = \"slow\"");
    edit_file(&job, "shard_size = 10", "shard_size = 20");
    job
}

async fn metric(c: &Cluster, name: &str) -> f64 {
    let text = c.client().metrics().await.expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_completion_is_fenced_and_cancellation_reaches_workers() {
    let _serial = SERIAL.lock().await;
    const ROWS: u64 = 600;
    const SHARD: u32 = 20;
    // "(item 7)" is in shard 0 only; it takes 6 s, twice the lease.
    let mut c = Cluster::start(
        &[
            "--latency-ms",
            "10",
            "--slow-prompt",
            "(item 7)=6000",
            "--slow-prompt",
            "slowjob=250",
        ],
        &[],
    )
    .await;
    c.start_coordinator().await;
    let target: SocketAddr = c
        .coordinator_url
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let proxy = Proxy::start(target).await;
    c.start_worker("late", &proxy.url, &[]);
    let job_file = cluster_job(
        c.dir.path(),
        "fenced",
        ROWS as usize,
        SHARD,
        &c.fake.base_url,
    );
    let id = submit(&c, &job_file);
    let store = c.store().await;

    // The worker holds shard 0 (with the slow request), then loses the
    // coordinator: its heartbeats hang, its lease expires and is reaped.
    let first = wait_for(
        &c,
        "the late worker to run shard 0",
        Duration::from_secs(60),
        async || {
            shards(&store, id)
                .await
                .into_iter()
                .find(|s| s.seq == 0 && s.state == ShardState::Running)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.block(true);
    wait_for(
        &c,
        "the lease of shard 0 to be reaped",
        Duration::from_secs(30),
        async || {
            shards(&store, id).await.into_iter().find(|s| {
                s.id == first.id && (s.state != ShardState::Running || s.attempt > first.attempt)
            })
        },
    )
    .await;
    // Other workers take over; the late one is reachable again and its slow
    // request finishes: its completion must be refused.
    let url = c.coordinator_url.clone();
    c.start_worker("b1", &url, &[]);
    c.start_worker("b2", &url, &[]);
    proxy.block(false);
    wait_for(
        &c,
        "the late completion to be refused",
        Duration::from_secs(30),
        async || (metric(&c, "shardline_completions_fenced_total").await >= 1.0).then_some(()),
    )
    .await;
    assert_completed_once(&c, id, &job_file, ROWS).await;
    let shard0 = shards(&store, id)
        .await
        .into_iter()
        .find(|s| s.id == first.id)
        .unwrap();
    assert_eq!(shard0.state, ShardState::Completed);
    assert!(
        shard0.attempt > first.attempt,
        "completed by a later attempt"
    );
    let late_log = c.worker("late").log();
    assert!(late_log.contains("completion fenced"), "{late_log}");
    let sent = c.fake.ok().await;
    assert!(
        sent >= ROWS && sent <= ROWS + u64::from(SHARD),
        "the fake server answered {sent} requests for {ROWS} (at most shard 0's twice)"
    );

    // Cancellation: a job whose requests take 250 ms, cancelled while the
    // three workers run its shards.
    let slow_file = slow_job(c.dir.path(), 300, &c.fake.base_url);
    let keys: Vec<jobs::RequestKey> = keys_to_questions(&slow_file)
        .into_keys()
        .map(jobs::RequestKey)
        .collect();
    let before = c.fake.ok().await;
    let slow = submit(&c, &slow_file);
    wait_for(
        &c,
        "the slow job to be under way",
        Duration::from_secs(60),
        async || {
            let running = shards(&store, slow)
                .await
                .iter()
                .filter(|s| s.state == ShardState::Running)
                .count();
            (running >= 2 && c.fake.ok().await >= before + 10).then_some(())
        },
    )
    .await;
    let completed_before: HashSet<Uuid> = shards(&store, slow)
        .await
        .into_iter()
        .filter(|s| s.state == ShardState::Completed)
        .map(|s| s.id)
        .collect();
    let out = c
        .shardline(&[
            "cancel",
            &slow.to_string(),
            "--coordinator",
            &c.coordinator_url,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cancelled"));
    // Workers learn at their next heartbeat (1 s) and stop their requests.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let settled = c.fake.ok().await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        c.fake.ok().await,
        settled,
        "requests went on after the cancel"
    );
    let after = shards(&store, slow).await;
    assert!(
        after.iter().all(|s| s.state == ShardState::Cancelled
            || (s.state == ShardState::Completed && completed_before.contains(&s.id))),
        "no shard runs or completes after the cancel: {after:?}"
    );
    let status = job(&c, slow).await.unwrap();
    assert_eq!(status.state, JobState::Cancelled);
    // `status --watch` ends at once on ended jobs: 0 for a completed one,
    // 1 for a cancelled one.
    for (watched, code) in [(id, 0), (slow, 1)] {
        let out = c
            .shardline(&[
                "status",
                &watched.to_string(),
                "--watch",
                "--interval",
                "0.2",
                "--coordinator",
                &c.coordinator_url,
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{}", describe(&out));
    }
    // What the workers had paid for is kept: indexed beyond the completed
    // shards' requests.
    let indexed = store.lookup_keys(&keys).await.unwrap().len() as u64;
    let completed_requests: u64 = after
        .iter()
        .filter(|s| s.state == ShardState::Completed)
        .map(|s| s.request_count)
        .sum();
    assert!(
        indexed > completed_requests,
        "partial outputs of cancelled shards are indexed ({indexed} indexed, {completed_requests} \
         in completed shards)\n{}",
        c.logs()
    );
    let logs: String = ["late", "b1", "b2"]
        .iter()
        .map(|w| c.worker(w).log())
        .collect();
    assert!(logs.contains("job cancelled"), "{logs}");
}
