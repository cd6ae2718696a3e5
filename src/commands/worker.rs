//! `shardline worker`: pulls shards from a coordinator and runs them.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::{interrupted, secret_from_env, CmdResult, Failure};
use crate::cli::WorkerArgs;
use crate::exit;

pub async fn worker(args: WorkerArgs) -> CmdResult {
    let token = secret_from_env(&args.token_env, "worker token")?;
    let objects = cache::open_store(&args.cache).map_err(Failure::usage)?;
    let client = worker::CoordinatorClient::new(&args.coordinator, token)?;
    let worker_id = args.id.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_string());
        format!("{host}-{}", std::process::id())
    });
    let config = worker::WorkerConfig {
        worker_id: worker_id.clone(),
        backends: vec![jobs::spec::BackendKind::Openai],
        max_concurrent_shards: args.shards,
        poll_interval: Duration::from_secs(2),
    };
    eprintln!(
        "worker {worker_id} pulling shards from {}",
        args.coordinator
    );
    let stop = CancellationToken::new();
    let w = worker::Worker::new(config, client, objects);
    let handle = tokio::spawn({
        let stop = stop.clone();
        async move { w.run(stop).await }
    });
    let stopper = tokio::spawn({
        let stop = stop.clone();
        async move {
            interrupted().await;
            stop.cancel();
        }
    });
    let stats = handle.await.map_err(anyhow::Error::from)??;
    stopper.abort();
    eprintln!(
        "worker stopped: {} shards completed, {} requests ok, {} failed",
        stats.shards_completed, stats.requests_ok, stats.requests_failed
    );
    Ok(if stop.is_cancelled() {
        exit::INTERRUPTED
    } else {
        exit::OK
    })
}
