//! `shardline run JOB.toml`: coordinator and workers in one process, talking
//! over the same HTTP protocol as a cluster, on 127.0.0.1.

use anyhow::Context;
use std::time::Duration;

use coordinator::embedded::{Cluster, ClusterConfig};
use jobs::protocol::{JobState, JobStatus};
use jobs::spec::{BackendKind, MetricKind};
use jobs::JobSpec;

use super::failure::{client_failure, job_failed, CmdResult, Failure};
use super::home::Home;
use super::job_file::{check_ca_cert, load_spec, read_policy};
use super::results::{report, score, short_key, write_table};
use super::signal::interrupted;
use super::summary::{counts_lines, judge_lines};
use crate::cli::RunArgs;
use crate::exit;
use crate::progress::Progress;
use crate::terminal::printable;

pub async fn run(args: RunArgs) -> CmdResult {
    let spec = load_spec(&args.job, args.model.as_deref(), args.limit).await?;
    check_ca_cert(&args.job, &spec)?;
    // The workers run in this process and read the variables the spec
    // names when they build its backend: one unset here would fail every
    // shard, after its retries. Say so now, before anything runs.
    let env = spec
        .model
        .check_env(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()));
    if args.dry_run {
        return super::dry_run::dry_run(&args, &spec, env.err()).await;
    }
    env.map_err(|e| Failure::usage(anyhow::anyhow!("{}: {e}", args.job.display())))?;
    // Judges run unless the job makes no inference at all.
    let judges = spec
        .judge_models()
        .filter(|_| spec.model.backend != BackendKind::None);
    for (i, judge) in judges {
        let in_judge = |e: &dyn std::fmt::Display| {
            Failure::usage(anyhow::anyhow!(
                "{}: the judge of metrics[{i}]: {e}",
                args.job.display()
            ))
        };
        judge
            .check_env(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
            .map_err(|e| in_judge(&e))?;
        worker::backend::tls::check_ca_cert(judge).map_err(|e| in_judge(&e))?;
    }
    let home = Home::open(&args.home)?;
    let mut config = ClusterConfig::new(home.store().await?, home.objects()?);
    config.read = read_policy(&args.job, &args.dataset_roots)?;
    config.workers = args.workers;
    config.shards_per_worker = args.shards_per_worker;
    let mut cluster = Cluster::start(config).await?;
    let outcome = drive(&args, &spec, &home, &mut cluster).await;
    cluster.shutdown().await;
    outcome
}

async fn drive(args: &RunArgs, spec: &JobSpec, home: &Home, cluster: &mut Cluster) -> CmdResult {
    let client = cluster.admin_client()?;
    let submitted = client
        .submit(spec)
        .await
        .map_err(|e| client_failure(e, "cannot submit the job"))?;
    let job_id = submitted.id;
    cancel_stale_jobs(&client, job_id).await?;

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

    cluster.stop_workers().await;
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
        JobState::Failed => return Err(job_failed(&status)),
        JobState::Cancelled => {
            return Err(Failure::runtime(anyhow::anyhow!(
                "job {} was cancelled",
                spec.name
            )))
        }
        JobState::Planning | JobState::Running => unreachable_state(&status)?,
    }

    let dest = home.results_for(&spec.name, args.output.as_deref());
    let scored = score(cluster.coordinator(), spec, &dest).await?;
    if let Some(dir) = scored.samples.parent() {
        write_table(dir, args.format)?;
    }
    for line in counts_lines(spec, &status, &scored.outcome) {
        eprintln!("{line}");
    }
    if spec.metrics.iter().any(|m| m.kind == MetricKind::Judge) {
        let judges: Vec<JobStatus> = client
            .list_jobs()
            .await
            .context("cannot list the job's judges")?
            .into_iter()
            .filter(|j| j.parent_id == Some(job_id))
            .collect();
        for line in judge_lines(&judges) {
            eprintln!("{line}");
        }
    }
    if status.counts.failed > 0 {
        // Say why, with the endpoint's own words, before the summary line.
        let failures = cluster
            .coordinator()
            .failures(job_id, 3)
            .await
            .unwrap_or_default();
        for f in failures {
            eprintln!(
                "failed request {}: {}",
                short_key(&f.key.0),
                printable(&f.error)
            );
        }
    }
    Ok(report(
        &scored,
        spec,
        "Run the same command again to retry only those",
    ))
}

/// Embedded workers claim from every running job in the home. A job left
/// running by an earlier, killed run of a *different* spec (an edited file,
/// another job) would otherwise be run too, silently spending money on a
/// spec the user moved away from. Its finished outputs stay in the cache.
async fn cancel_stale_jobs(
    client: &client::CoordinatorClient,
    current: uuid::Uuid,
) -> Result<(), Failure> {
    let jobs = client
        .list_jobs()
        .await
        .context("cannot list the home's jobs")?;
    for job in jobs {
        // The current job's judges run as its child jobs.
        if job.id == current || job.parent_id == Some(current) || job.state.is_terminal() {
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
