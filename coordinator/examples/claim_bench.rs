//! Claim + complete throughput of the stores: 16 concurrent workers lease
//! shards in batches and complete each one (indexing its output keys), first
//! against Postgres, then against SQLite. A worker completes the shards of
//! its batch concurrently, as a worker running them side by side does
//! (`--sequential`: one at a time). Prints shards/s, the coordinator
//! process's CPU time per shard (getrusage), and ratios against River's
//! published ~46k jobs/s (8-core laptop) and Shardline's 5,000 shards/s target.
//!
//! Run: `cargo run --release -p coordinator --example claim_bench -- [--shards N]
//! [--workers N] [--batch N] [--keys N] [--sequential] [--only postgres|sqlite]`.
//! Postgres: the server of `SHARDLINE_TEST_DATABASE_URL` (default
//! postgres://postgres@127.0.0.1:5432/postgres); the bench creates its own
//! database there and drops it afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use coordinator::store::{
    Completion, NewJob, NewShard, PlanTotals, PostgresOptions, PostgresStore, ScratchDatabase,
    SqliteStore, Store,
};
use jobs::spec::BackendKind;
use jobs::{RequestKey, Usage};
use uuid::Uuid;

const RIVER_JOBS_PER_SEC: f64 = 46_000.0;
const TARGET_SHARDS_PER_SEC: f64 = 5_000.0;

struct Args {
    shards: u64,
    workers: usize,
    batch: u32,
    keys: usize,
    sequential: bool,
    only: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        shards: 40_000,
        workers: 16,
        batch: 16,
        keys: 4,
        sequential: false,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--shards" => args.shards = number(value()?)?.max(1),
            "--workers" => args.workers = number(value()?)?.clamp(1, 256) as usize,
            "--batch" => args.batch = number(value()?)?.clamp(1, 1024) as u32,
            "--keys" => args.keys = number(value()?)?.min(1000) as usize,
            "--only" => args.only = Some(value()?),
            "--sequential" => args.sequential = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct we pass, which is zeroed and
    // sized for it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn key(shard: u64, i: usize) -> RequestKey {
    RequestKey(format!("{shard:032x}{i:032x}"))
}

struct Figures {
    shards: u64,
    wall: Duration,
    cpu: Duration,
}

async fn run(store: Arc<dyn Store>, args: &Args) -> Result<Figures, String> {
    let job_id = Uuid::now_v7();
    let now = Utc::now();
    store
        .create_job(NewJob {
            id: job_id,
            name: "claim-bench".into(),
            spec_json: "{}".into(),
            spec_hash: format!("bench-{job_id}"),
            backend: BackendKind::Openai,
            model: "m".into(),
            priority: 0,
            created_at: now,
        })
        .await
        .map_err(|e| format!("create job: {e}"))?;
    let shards: Vec<NewShard> = (0..args.shards)
        .map(|seq| NewShard {
            id: Uuid::now_v7(),
            seq,
            requests_json: "[]".into(),
            request_count: args.keys as u64,
            max_attempts: 3,
        })
        .collect();
    for chunk in shards.chunks(5_000) {
        store
            .insert_shards(job_id, chunk, now)
            .await
            .map_err(|e| format!("insert shards: {e}"))?;
    }
    store
        .finish_planning(job_id, PlanTotals::default(), now)
        .await
        .map_err(|e| format!("finish planning: {e}"))?;

    let cpu_before = cpu_time();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.workers {
        let store = store.clone();
        let (batch, keys, sequential) = (args.batch, args.keys, args.sequential);
        tasks.push(tokio::spawn(async move {
            let worker = format!("bench-worker-{w}");
            let mut done = 0u64;
            loop {
                let claimed = store
                    .claim(
                        &worker,
                        &[BackendKind::Openai],
                        batch,
                        Duration::from_secs(60),
                        Utc::now(),
                    )
                    .await
                    .map_err(|e| format!("claim: {e}"))?;
                if claimed.is_empty() {
                    return Ok::<u64, String>(done);
                }
                let work: Vec<_> = claimed
                    .iter()
                    .map(|shard| {
                        let tag = shard.shard_id.as_u128() as u64;
                        let completion = Completion {
                            segment: Some(format!(
                                "segments/{}/{}-{}.jsonl.zst",
                                job_id, shard.shard_id, shard.attempt
                            )),
                            written: (0..keys).map(|i| key(tag, i)).collect(),
                            failed: vec![],
                            usage: Usage {
                                prompt_tokens: 100,
                                completion_tokens: 10,
                            },
                        };
                        (shard.fence(&worker), completion)
                    })
                    .collect();
                let outcomes =
                    if sequential {
                        let mut outcomes = Vec::with_capacity(work.len());
                        for (fence, completion) in &work {
                            outcomes.push(store.complete(fence, completion, Utc::now()).await);
                        }
                        outcomes
                    } else {
                        futures::future::join_all(work.iter().map(|(fence, completion)| {
                            store.complete(fence, completion, Utc::now())
                        }))
                        .await
                    };
                for ((fence, _), outcome) in work.iter().zip(outcomes) {
                    match outcome {
                        Ok(true) => done += 1,
                        Ok(false) => {
                            return Err(format!("completion of {} was fenced", fence.shard_id))
                        }
                        Err(e) => return Err(format!("complete: {e}")),
                    }
                }
            }
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.map_err(|e| format!("worker task: {e}"))??;
    }
    let wall = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    let job = store
        .get_job(job_id)
        .await
        .map_err(|e| format!("read job: {e}"))?;
    if total != args.shards || job.counts.shards_completed != args.shards {
        return Err(format!(
            "expected {} completed shards, workers completed {total}, the store counts {}",
            args.shards, job.counts.shards_completed
        ));
    }
    Ok(Figures {
        shards: total,
        wall,
        cpu,
    })
}

fn report(name: &str, f: &Figures) -> f64 {
    let rate = f.shards as f64 / f.wall.as_secs_f64().max(1e-9);
    let cpu_us = f.cpu.as_secs_f64() * 1e6 / f.shards.max(1) as f64;
    println!(
        "{name:<9} {shards:>7} shards in {wall:>6.2} s = {rate:>8.0} shards/s | coordinator CPU {cpu_us:>6.1} µs/shard | {river:>5.1}% of River's ~46k jobs/s | {target:>5.2}x the 5,000/s target",
        shards = f.shards,
        wall = f.wall.as_secs_f64(),
        river = 100.0 * rate / RIVER_JOBS_PER_SEC,
        target = rate / TARGET_SHARDS_PER_SEC,
    );
    rate
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "claim+complete: {} workers, claim batches of {}, completions {}, {} output keys per shard, {} cores",
        args.workers,
        args.batch,
        if args.sequential { "one at a time" } else { "of a batch concurrent" },
        args.keys,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut failed = false;
    if args.only.as_deref() != Some("sqlite") {
        let admin = ScratchDatabase::admin_url_from_env();
        match ScratchDatabase::create(&admin, "shardline_bench").await {
            Err(e) => {
                eprintln!("postgres: {e}; run scripts/ensure-postgres.sh first");
                failed = true;
            }
            Ok(db) => {
                let options = PostgresOptions {
                    max_connections: args.workers as u32 + 2,
                    ..PostgresOptions::default()
                };
                let outcome = match PostgresStore::connect_with(db.url(), options).await {
                    Ok(store) => {
                        let store = Arc::new(store);
                        let result = run(store.clone(), &args).await;
                        store.close().await;
                        result
                    }
                    Err(e) => Err(e.to_string()),
                };
                match outcome {
                    Ok(f) => {
                        report("postgres", &f);
                    }
                    Err(e) => {
                        eprintln!("postgres: {e}");
                        failed = true;
                    }
                }
                if let Err(e) = db.drop_now().await {
                    eprintln!("warning: could not drop the bench database: {e}");
                }
            }
        }
    }
    if args.only.as_deref() != Some("postgres") {
        let outcome = async {
            let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
            let store = SqliteStore::open(&dir.path().join("bench.db"))
                .await
                .map_err(|e| e.to_string())?;
            run(Arc::new(store), &args).await
        }
        .await;
        match outcome {
            Ok(f) => {
                report("sqlite", &f);
            }
            Err(e) => {
                eprintln!("sqlite: {e}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
