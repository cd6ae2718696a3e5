//! The one-process cluster: a coordinator serving its HTTP API on
//! 127.0.0.1, with in-process workers that talk to it over that same
//! protocol. `shardline run` and the tests start this one thing.

use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use client::CoordinatorClient;
use jobs::spec::BackendKind;
use jobs::{DatasetRoots, ReadLimits, ReadPolicy};
use worker::backend::KeyPolicy;
use worker::{BackendCache, Worker, WorkerConfig, WorkerError, WorkerStats};

use crate::config::{default_heartbeat_secs, CoordinatorConfig, DEFAULT_REAPER_INTERVAL};
use crate::coordinator::Coordinator;
use crate::limits::JobLimits;
use crate::reaper::RecoveryStats;
use crate::server::Server;
use crate::store::Store;

/// Embedded leases are short: a crashed in-process worker cannot exist
/// without the whole process dying, so this only bounds heartbeat chatter.
pub const EMBEDDED_LEASE_SECS: u64 = 30;
/// How long `shutdown` waits for each worker to hand its shards back.
const WORKER_STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `shutdown` waits for the HTTP server to drain.
const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// What an embedded cluster runs on.
pub struct ClusterConfig {
    pub store: Arc<dyn Store>,
    pub objects: Arc<dyn cache::ObjectStore>,
    /// In-process workers (at least one is started).
    pub workers: usize,
    /// Each worker's bound on shards at once; 0 is the worker's default.
    pub shards_per_worker: usize,
    /// How often an idle worker asks for work.
    pub poll_interval: Duration,
    /// Where jobs' data files may be read from (`shardline run`: the job
    /// file's folder and the roots its user adds).
    pub read: ReadPolicy,
}

impl ClusterConfig {
    pub fn new(store: Arc<dyn Store>, objects: Arc<dyn cache::ObjectStore>) -> Self {
        ClusterConfig {
            store,
            objects,
            workers: 1,
            shards_per_worker: 0,
            poll_interval: Duration::from_millis(200),
            read: ReadPolicy::new(DatasetRoots::none(), ReadLimits::default()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot recover the state left by a previous run: {0}")]
    Recover(#[source] Box<crate::CoordinatorError>),
    #[error("cannot listen on 127.0.0.1: {0}")]
    Listen(#[source] std::io::Error),
    #[error("cannot create a client for the embedded coordinator: {0}")]
    Client(#[source] Box<client::ClientError>),
}

/// A running embedded cluster. Stop it with [`Cluster::shutdown`]; dropping
/// it cancels its tasks without waiting for them.
pub struct Cluster {
    coordinator: Coordinator,
    url: String,
    admin_token: String,
    recovered: RecoveryStats,
    server: Option<Server>,
    workers_stop: CancellationToken,
    workers: Vec<JoinHandle<Result<WorkerStats, WorkerError>>>,
}

impl Cluster {
    /// Recovers what a killed earlier process left (leases, unindexed
    /// segments), serves the API on a free port of 127.0.0.1 and starts the
    /// workers, which share one backend per model so that the spec's
    /// concurrency and rate limits hold for the process.
    pub async fn start(config: ClusterConfig) -> Result<Cluster, ClusterError> {
        let admin_token = random_token();
        let worker_token = random_token();
        let coordinator = Coordinator::new(
            config.store,
            config.objects.clone(),
            CoordinatorConfig {
                admin_token: admin_token.clone(),
                worker_token: worker_token.clone(),
                lease_secs: EMBEDDED_LEASE_SECS,
                heartbeat_interval_secs: default_heartbeat_secs(EMBEDDED_LEASE_SECS),
                reaper_interval: DEFAULT_REAPER_INTERVAL,
                limits: JobLimits::default(),
                read: config.read,
            },
        );
        let recovered = coordinator
            .recover_after_crash()
            .await
            .map_err(|e| ClusterError::Recover(Box::new(e)))?;
        if recovered.leases_returned > 0 || recovered.index.segments > 0 {
            tracing::info!(
                leases = recovered.leases_returned,
                segments = recovered.index.segments,
                "recovered the state left by a previous run"
            );
        }

        let server = Server::bind("127.0.0.1:0", coordinator.clone())
            .await
            .map_err(ClusterError::Listen)?;
        let url = server.url();

        let workers_stop = CancellationToken::new();
        // One user runs their own job here: any key variable may be named
        // (the tokens never are: they are not variables of this process).
        let backends = Arc::new(BackendCache::with_key_policy(KeyPolicy::any_except(
            Vec::new(),
        )));
        let mut workers = Vec::new();
        for i in 0..config.workers.max(1) {
            let client = CoordinatorClient::new(&url, worker_token.clone())
                .map_err(|e| ClusterError::Client(Box::new(e)))?;
            let worker_config = WorkerConfig {
                worker_id: format!("embedded-{}-{i}", std::process::id()),
                backends: vec![
                    BackendKind::Openai,
                    BackendKind::Engine,
                    BackendKind::OpenaiBatch,
                ],
                max_concurrent_shards: config.shards_per_worker,
                poll_interval: config.poll_interval,
            };
            let w = Worker::new(worker_config, client, config.objects.clone())
                .with_shared_backends(backends.clone());
            let stop = workers_stop.clone();
            workers.push(tokio::spawn(async move { w.run(stop).await }));
        }
        Ok(Cluster {
            coordinator,
            url,
            admin_token,
            recovered,
            server: Some(server),
            workers_stop,
            workers,
        })
    }

    pub fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    /// The API's base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What recovery found at start.
    pub fn recovered(&self) -> &RecoveryStats {
        &self.recovered
    }

    /// A client with the admin token, for the job API.
    pub fn admin_client(&self) -> Result<CoordinatorClient, ClusterError> {
        CoordinatorClient::new(&self.url, self.admin_token.clone())
            .map_err(|e| ClusterError::Client(Box::new(e)))
    }

    /// Stops the workers: each hands its unfinished shards back (fenced)
    /// and stops within [`WORKER_STOP_TIMEOUT`]. The API keeps serving.
    pub async fn stop_workers(&mut self) {
        self.workers_stop.cancel();
        for handle in self.workers.drain(..) {
            match tokio::time::timeout(WORKER_STOP_TIMEOUT, handle).await {
                Ok(Ok(Ok(_stats))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "worker stopped with an error"),
                Ok(Err(e)) => tracing::warn!(error = %e, "worker task failed"),
                Err(_) => tracing::warn!(
                    "a worker did not stop within {} s",
                    WORKER_STOP_TIMEOUT.as_secs()
                ),
            }
        }
    }

    /// Stops the workers, then the API server and its background loops.
    pub async fn shutdown(mut self) {
        self.stop_workers().await;
        if let Some(server) = self.server.take() {
            match tokio::time::timeout(SERVER_STOP_TIMEOUT, server.shutdown()).await {
                Ok(Err(e)) => tracing::warn!(error = %e, "coordinator stopped with an error"),
                Err(_) => tracing::warn!(
                    "the coordinator did not stop within {} s",
                    SERVER_STOP_TIMEOUT.as_secs()
                ),
                Ok(Ok(())) => {}
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.workers_stop.cancel();
    }
}

/// A bearer token for this process only: 256 random bits.
fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}
