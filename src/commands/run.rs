//! `shardline run JOB.toml`: coordinator and workers in one process, talking
//! over the same HTTP protocol as a cluster, on 127.0.0.1.

use anyhow::Context;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use jobs::protocol::{JobState, JobStatus};
use jobs::JobSpec;

use super::home::Home;
use super::rescore::write_results;
use super::{interrupted, CmdResult, Failure};
use crate::cli::RunArgs;
use crate::exit;
use crate::progress::Progress;

/// Embedded leases are short: a crashed in-process worker cannot exist
/// without the whole process dying, so this only bounds heartbeat chatter.
const EMBEDDED_LEASE_SECS: u64 = 30;

pub async fn run(args: RunArgs) -> CmdResult {
    let spec = load_spec(&args.job, args.model.as_deref(), args.limit).await?;
    if args.dry_run {
        return super::dry_run::dry_run(&args, &spec).await;
    }
    let home = Home::open(&args.home)?;
    let store = home.store().await?;
    let objects = home.objects()?;

    let admin_token = random_token();
    let worker_token = random_token();
    let coordinator = coordinator::Coordinator::new(
        store,
        objects.clone(),
        coordinator::CoordinatorConfig {
            admin_token: admin_token.clone(),
            worker_token: worker_token.clone(),
            lease_secs: EMBEDDED_LEASE_SECS,
            heartbeat_interval_secs: EMBEDDED_LEASE_SECS / 3,
            reaper_interval: Duration::from_secs(5),
        },
    );
    // A previous run of this home may have been killed: its leases belong to
    // no one, and segments it wrote may not be indexed yet.
    let recovered = coordinator
        .recover_after_crash()
        .await
        .context("cannot recover the state left by a previous run")?;
    if recovered.leases_returned > 0 || recovered.index.segments > 0 {
        tracing::info!(
            leases = recovered.leases_returned,
            segments = recovered.index.segments,
            "recovered the state left by a previous run"
        );
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on 127.0.0.1")?;
    let url = format!("http://{}", listener.local_addr()?);
    let server_stop = CancellationToken::new();
    let server = tokio::spawn(coordinator::serve(
        listener,
        coordinator.clone(),
        server_stop.clone().cancelled_owned(),
    ));

    let outcome = drive(
        &args,
        &spec,
        &home,
        &coordinator,
        objects,
        &url,
        &admin_token,
        &worker_token,
    )
    .await;
    server_stop.cancel();
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "coordinator stopped with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "coordinator task failed"),
        _ => {}
    }
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    args: &RunArgs,
    spec: &JobSpec,
    home: &Home,
    coordinator: &coordinator::Coordinator,
    objects: Arc<dyn cache::ObjectStore>,
    url: &str,
    admin_token: &str,
    worker_token: &str,
) -> CmdResult {
    let client = worker::CoordinatorClient::new(url, admin_token.to_string())?;
    let submitted = client.submit(spec).await.context("cannot submit the job")?;
    let job_id = submitted.id;
    cancel_stale_jobs(&client, job_id).await?;

    let workers_stop = CancellationToken::new();
    let mut workers = Vec::new();
    // One backend per model for the whole process, so `concurrency` and the
    // rate limits in the spec hold however many worker tasks run.
    let backends = Arc::new(worker::BackendCache::default());
    for i in 0..args.workers.max(1) {
        let worker_client = worker::CoordinatorClient::new(url, worker_token.to_string())?;
        let config = worker::WorkerConfig {
            worker_id: format!("embedded-{}-{i}", std::process::id()),
            backends: vec![
                jobs::spec::BackendKind::Openai,
                jobs::spec::BackendKind::Engine,
                jobs::spec::BackendKind::OpenaiBatch,
            ],
            max_concurrent_shards: args.shards_per_worker,
            poll_interval: Duration::from_millis(200),
        };
        let w = worker::Worker::new(config, worker_client, objects.clone())
            .with_shared_backends(backends.clone());
        let stop = workers_stop.clone();
        workers.push(tokio::spawn(async move { w.run(stop).await }));
    }

    let mut progress = Progress::new(&spec.name, !args.no_progress);
    let mut status = submitted;
    let interrupt = interrupted();
    tokio::pin!(interrupt);
    let mut was_interrupted = false;
    loop {
        progress.update(&status);
        if status.state.is_terminal() {
            break;
        }
        tokio::select! {
            _ = &mut interrupt => { was_interrupted = true; break; }
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        status = client
            .job(job_id)
            .await
            .context("cannot read the job's progress")?;
    }

    workers_stop.cancel();
    for handle in workers {
        match tokio::time::timeout(Duration::from_secs(15), handle).await {
            Ok(Ok(Ok(_stats))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "worker stopped with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "worker task failed"),
            Err(_) => tracing::warn!("a worker did not stop within 15 s"),
        }
    }
    progress.finish();

    if was_interrupted {
        let status = client.job(job_id).await.unwrap_or(status);
        eprintln!(
            "stopped: {} of {} requests done ({} from the cache). Everything finished is kept; \
             run the same command again to resume.",
            status.counts.completed + status.counts.cached,
            status.counts.requests,
            status.counts.cached
        );
        return Ok(exit::INTERRUPTED);
    }

    match status.state {
        JobState::Completed => {}
        JobState::Failed => {
            return Err(Failure::runtime(anyhow::anyhow!(
                "job {} failed: {}",
                spec.name,
                status.error.as_deref().unwrap_or("no reason recorded")
            )))
        }
        JobState::Cancelled => {
            return Err(Failure::runtime(anyhow::anyhow!(
                "job {} was cancelled",
                spec.name
            )))
        }
        JobState::Planning | JobState::Running => unreachable_state(&status)?,
    }

    let out_dir = args
        .output
        .clone()
        .unwrap_or_else(|| home.results_dir(&spec.name));
    print_counts(&status);
    if status.counts.failed > 0 {
        // Say why, with the endpoint's own words, before the summary line.
        let failures = coordinator.failures(job_id, 3).await.unwrap_or_default();
        for f in failures {
            eprintln!("failed request {}: {}", short_key(&f.key.0), f.error);
        }
    }
    let code = write_results(coordinator, spec, &out_dir).await?;
    Ok(code)
}

/// Embedded workers claim from every running job in the home. A job left
/// running by an earlier, killed run of a *different* spec (an edited file,
/// another job) would otherwise be run too, silently spending money on a
/// spec the user moved away from. Its finished outputs stay in the cache.
async fn cancel_stale_jobs(
    client: &worker::CoordinatorClient,
    current: uuid::Uuid,
) -> Result<(), Failure> {
    let jobs = client
        .list_jobs()
        .await
        .context("cannot list the home's jobs")?;
    for job in jobs {
        if job.id == current || job.state.is_terminal() {
            continue;
        }
        client
            .cancel(job.id)
            .await
            .with_context(|| format!("cannot cancel stale job {}", job.id))?;
        eprintln!(
            "cancelled job {} ({}) left unfinished by an earlier run; its finished outputs stay in the cache",
            job.id, job.name
        );
    }
    Ok(())
}

fn unreachable_state(status: &JobStatus) -> Result<(), Failure> {
    Err(Failure::runtime(anyhow::anyhow!(
        "job {} stopped in state {:?}",
        status.id,
        status.state
    )))
}

fn print_counts(status: &JobStatus) {
    let c = &status.counts;
    eprintln!(
        "{} docs, {} requests: {} from the cache, {} run, {} failed; tokens: {} prompt, {} completion{}",
        c.docs,
        c.requests,
        c.cached,
        c.completed,
        c.failed,
        c.usage.prompt_tokens,
        c.usage.completion_tokens,
        if c.bad_rows > 0 {
            format!("; {} bad rows skipped", c.bad_rows)
        } else {
            String::new()
        }
    );
    if let Some(cost) = &status.cost {
        eprintln!("cost: {}", cost.describe());
    }
}

/// Loads a job spec and applies the command-line overrides.
/// Loads and checks a job file. Runs on a blocking thread: an engine job's
/// first run hashes its model file, which may take a while for a large one.
pub async fn load_spec(
    path: &Path,
    model: Option<&str>,
    limit: Option<u64>,
) -> Result<JobSpec, Failure> {
    let path = path.to_path_buf();
    let model = model.map(str::to_string);
    tokio::task::spawn_blocking(move || load_spec_blocking(&path, model.as_deref(), limit))
        .await
        .map_err(|e| Failure::runtime(anyhow::anyhow!("loading the job spec stopped: {e}")))?
}

fn load_spec_blocking(
    path: &Path,
    model: Option<&str>,
    limit: Option<u64>,
) -> Result<JobSpec, Failure> {
    let mut spec = JobSpec::from_toml_file(path).map_err(Failure::usage)?;
    if let Some(m) = model {
        spec.model.model = m.to_string();
    }
    if let Some(l) = limit {
        spec.dataset.limit = Some(l);
    }
    // An engine job's outputs are keyed by its model's fingerprint: compute
    // it here (hashing runs once per model file; later runs read a cached
    // digest), so a wrong or broken model path fails before submitting.
    match worker::backend::engine::resolve_model(&mut spec.model) {
        Ok(Some(model)) => eprintln!(
            "model {} (fingerprint {})",
            model.path.display(),
            &model.fingerprint[..12]
        ),
        Ok(None) => {}
        Err(e) => return Err(Failure::usage(anyhow::anyhow!("{}: {e}", path.display()))),
    }
    spec.validate().map_err(Failure::usage)?;
    Ok(spec)
}

fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The first 12 characters of a request key, for messages.
pub fn short_key(key: &str) -> String {
    key.chars().take(12).collect()
}
