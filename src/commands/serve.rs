//! `shardline serve`: the coordinator's HTTP API over Postgres (many
//! machines, several replicas) or SQLite (one machine), with the cache in S3
//! or a directory.

use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

use super::failure::{CmdResult, Failure};
use super::home::Home;
use super::signal::interrupted;
use crate::cli::{HomeArgs, ServeArgs};
use crate::config::{self, ConfigFile};
use crate::exit;

pub async fn serve(args: ServeArgs) -> CmdResult {
    let file = ConfigFile::load(args.config.path.as_deref()).map_err(Failure::usage)?;
    let settings = config::resolve_serve(&args.flags(), &config::process_env, &file)
        .map_err(Failure::usage)?;
    if args.print_settings {
        println!("{}", settings.to_json());
        return Ok(exit::OK);
    }

    // The home folder (and its lock) only when something lives in it.
    let home = if settings.database_url.is_none() || settings.cache.is_none() {
        Some(Home::open(&HomeArgs {
            home: settings.home.clone(),
            cache: settings.cache.clone(),
        })?)
    } else {
        None
    };
    let (store, store_name): (Arc<dyn coordinator::Store>, String) =
        match (&settings.database_url, &home) {
            (Some(url), _) => (
                coordinator::store::open(url)
                    .await
                    .context("cannot open the store")?,
                coordinator::store::postgres::redact_url(url),
            ),
            (None, Some(home)) => (home.store().await?, home.db_path().display().to_string()),
            (None, None) => unreachable_home()?,
        };
    let cache_location = match (&settings.cache, &home) {
        (Some(c), _) => c.clone(),
        (None, Some(home)) => home.cache_location.clone(),
        (None, None) => unreachable_home()?,
    };
    let objects =
        cache::open_store_with(&cache_location, settings.s3.clone()).map_err(Failure::usage)?;
    objects
        .check_access()
        .await
        .with_context(|| format!("cannot use the cache {}", objects.describe()))?;

    let coordinator = coordinator::Coordinator::new(
        store,
        objects.clone(),
        coordinator::CoordinatorConfig {
            admin_token: settings.admin_token.expose().to_string(),
            worker_token: settings.worker_token.expose().to_string(),
            lease_secs: settings.lease_secs,
            heartbeat_interval_secs: settings.heartbeat_secs,
            reaper_interval: Duration::from_millis(settings.reaper_interval_ms),
            limits: settings.limits,
            // `s3://` datasets with the cache's S3 settings; the roots say
            // which buckets and prefixes jobs may name.
            read: settings
                .read
                .clone()
                .with_objects(Arc::new(cache::S3Datasets::new(settings.s3.clone()))),
        },
    );
    if settings.read.roots == jobs::DatasetRoots::none() {
        eprintln!(
            "note: no --dataset-root given; jobs that read a dataset will be refused (403) \
             until this coordinator is started with one"
        );
    }
    let mut server = coordinator::Server::bind(&settings.listen, coordinator)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    eprintln!(
        "coordinator listening on {} (store {store_name}, cache {}, leases {} s)",
        server.url(),
        objects.describe(),
        settings.lease_secs
    );
    let ended = tokio::select! {
        _ = interrupted() => None,
        // The server ends by itself only on an error.
        ended = server.stopped() => Some(ended),
    };
    match ended {
        Some(ended) => ended,
        None => server.shutdown().await,
    }
    .context("coordinator stopped with an error")?;
    Ok(exit::OK)
}

fn unreachable_home<T>() -> Result<T, Failure> {
    Err(Failure::runtime(anyhow::anyhow!(
        "internal error: no home folder opened for the SQLite store or the cache"
    )))
}
