//! `shardline serve`: the coordinator's HTTP API over the home folder's store.

use anyhow::Context;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::home::Home;
use super::{interrupted, secret_from_env, CmdResult};
use crate::cli::ServeArgs;
use crate::exit;

pub async fn serve(args: ServeArgs) -> CmdResult {
    let admin_token = secret_from_env(&args.admin_token_env, "admin token")?;
    let worker_token = secret_from_env(&args.worker_token_env, "worker token")?;
    let home = Home::open(&args.home)?;
    let coordinator = coordinator::Coordinator::new(
        home.store().await?,
        home.objects()?,
        coordinator::CoordinatorConfig {
            admin_token,
            worker_token,
            lease_secs: args.lease_secs.max(3),
            heartbeat_interval_secs: (args.lease_secs / 3).max(1),
            reaper_interval: Duration::from_secs(2),
        },
    );
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!(
        "coordinator listening on http://{} (store {}, cache {})",
        listener.local_addr()?,
        home.db_path().display(),
        home.cache_location
    );
    let stop = CancellationToken::new();
    let server = tokio::spawn(coordinator::serve(
        listener,
        coordinator,
        stop.clone().cancelled_owned(),
    ));
    interrupted().await;
    stop.cancel();
    server
        .await
        .context("coordinator task failed")?
        .context("coordinator stopped with an error")?;
    Ok(exit::OK)
}
