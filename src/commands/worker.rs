//! `shardline worker`: pulls shards from a coordinator and runs them,
//! writing outputs to the shared cache.

use anyhow::Context;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::failure::{CmdResult, Failure};
use super::signal::interrupted;
use crate::cli::WorkerArgs;
use crate::config::{self, ConfigFile};
use crate::exit;

pub async fn worker(args: WorkerArgs) -> CmdResult {
    let file = ConfigFile::load(args.config.path.as_deref()).map_err(Failure::usage)?;
    let settings = config::resolve_worker(&args.flags(), &config::process_env, &file)
        .map_err(Failure::usage)?;
    if args.print_settings {
        println!("{}", settings.to_json());
        return Ok(exit::OK);
    }
    let objects =
        cache::open_store_with(&settings.cache, settings.s3.clone()).map_err(Failure::usage)?;
    objects
        .check_access()
        .await
        .with_context(|| format!("cannot use the cache {}", objects.describe()))?;
    let client =
        client::CoordinatorClient::new(&settings.coordinator, settings.token.expose().to_string())
            .map_err(Failure::usage)?;
    let worker_id = settings.id.clone().unwrap_or_else(default_worker_id);
    let config = worker::WorkerConfig {
        worker_id: worker_id.clone(),
        backends: settings.backends.clone(),
        max_concurrent_shards: settings.shards,
        poll_interval: Duration::from_millis(settings.poll_ms.max(100)),
    };
    let models = if settings.models.is_empty() {
        "any model".to_string()
    } else {
        format!("models {}", settings.models.join(", "))
    };
    let backends: Vec<&str> = settings.backends.iter().map(|b| b.as_str()).collect();
    eprintln!(
        "worker {worker_id} pulling shards from {} (backends {}, {models}; cache {})",
        settings.coordinator,
        backends.join(", "),
        objects.describe()
    );
    let stop = CancellationToken::new();
    // A job is untrusted: its key may come only from the variables the
    // operator allows, never from the one holding this worker's token.
    let mut keys = worker::backend::KeyPolicy::only(
        settings.allow_key_env.clone(),
        vec![settings.token.var().to_string()],
    );
    if let Some(endpoints) = &settings.allow_endpoints {
        keys = keys.with_endpoints(endpoints.clone());
    }
    if settings
        .backends
        .iter()
        .any(|b| *b != jobs::spec::BackendKind::Engine)
    {
        eprintln!("{}", key_report(&keys));
    }
    let flush = worker::backend::FlushPolicy {
        every: Duration::from_millis(settings.flush_ms),
        outputs: settings.flush_outputs,
    };
    let w = worker::Worker::new(config, client, objects)
        .with_flush(flush)
        .with_key_policy(keys)
        .with_models(settings.models.clone());
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
        "worker stopped: {} shards completed, {} requests ok, {} failed, {} lease calls fenced",
        stats.shards_completed, stats.requests_ok, stats.requests_failed, stats.fenced
    );
    Ok(if stop.is_cancelled() {
        exit::INTERRUPTED
    } else {
        exit::OK
    })
}

/// Which API key variables jobs may name on this worker, said at start so
/// that an operator sees a missing key before a job fails on it.
fn key_report(keys: &worker::backend::KeyPolicy) -> String {
    let available = keys.available();
    let allowed = keys.allowed().map(|a| a.join(", ")).unwrap_or_default();
    if available.is_empty() {
        format!(
            "no API key variable is set on this worker (allowed: {allowed}): jobs that name one \
             in model.api_key_env fail here; export the key before starting the worker"
        )
    } else {
        format!(
            "API keys jobs may name here: {} (allowed: {allowed})",
            available.join(", ")
        )
    }
}

/// `host-pid`: readable in the shards table, unique per process.
fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_string());
    format!("{host}-{}", std::process::id())
}
