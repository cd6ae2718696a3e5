//! `submit`, `status`, `results`, `cancel` against a running coordinator.

use anyhow::Context;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use jobs::protocol::JobStatus;

use super::home::write_json;
use super::run::load_spec;
use super::{secret_from_env, CmdResult, Failure};
use crate::cli::{CancelArgs, RemoteArgs, ResultsArgs, StatusArgs, SubmitArgs};
use crate::exit;

fn client(remote: &RemoteArgs) -> Result<worker::CoordinatorClient, Failure> {
    let token = secret_from_env(&remote.token_env, "coordinator token")?;
    Ok(worker::CoordinatorClient::new(&remote.coordinator, token)?)
}

fn parse_id(text: &str) -> Result<Uuid, Failure> {
    Uuid::parse_str(text).map_err(|e| {
        Failure::usage(anyhow::anyhow!(
            "{text:?} is not a job id ({e}); `shardline status` lists them"
        ))
    })
}

pub async fn submit(args: SubmitArgs) -> CmdResult {
    let spec = load_spec(&args.job, None, None)?;
    let status = client(&args.remote)?
        .submit(&spec)
        .await
        .context("cannot submit the job")?;
    println!("{}", status.id);
    eprintln!(
        "submitted {} as job {} ({:?})",
        spec.name, status.id, status.state
    );
    Ok(exit::OK)
}

pub async fn status(args: StatusArgs) -> CmdResult {
    let c = client(&args.remote)?;
    let jobs = match &args.job_id {
        Some(id) => vec![c.job(parse_id(id)?).await.context("cannot read the job")?],
        None => c.list_jobs().await.context("cannot list jobs")?,
    };
    println!(
        "{:<36}  {:<20}  {:<9}  {:>9}  {:>9}  {:>9}  {:>7}",
        "id", "name", "state", "requests", "cached", "done", "failed"
    );
    for job in &jobs {
        print_row(job);
    }
    Ok(exit::OK)
}

fn print_row(job: &JobStatus) {
    let c = &job.counts;
    println!(
        "{:<36}  {:<20}  {:<9}  {:>9}  {:>9}  {:>9}  {:>7}",
        job.id,
        job.name,
        format!("{:?}", job.state).to_lowercase(),
        c.requests,
        c.cached,
        c.completed,
        c.failed
    );
    if let Some(error) = &job.error {
        println!("    error: {error}");
    }
}

pub async fn results(args: ResultsArgs) -> CmdResult {
    let c = client(&args.remote)?;
    let id = parse_id(&args.job_id)?;
    let report = c.results(id).await.context("cannot fetch the results")?;
    match &args.output {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            write_json(&dir.join("metrics.json"), &report)?;
            let path = dir.join("samples.jsonl");
            let mut file = tokio::fs::File::create(&path)
                .await
                .with_context(|| format!("cannot create {}", path.display()))?;
            // Streamed: a million-row job's samples never sit in memory.
            let mut stream = c
                .samples_stream(id)
                .await
                .context("cannot fetch the samples")?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.context("the samples download broke off")?;
                file.write_all(&chunk)
                    .await
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            file.flush().await?;
            eprintln!(
                "wrote {} and {}",
                dir.join("metrics.json").display(),
                path.display()
            );
        }
        None => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    let missing = report
        .get("missing_requests")
        .and_then(|m| m.as_u64())
        .unwrap_or(0);
    if missing > 0 {
        eprintln!(
            "error: {missing} requests of job {id} failed or are missing from the cache; \
             the other docs were scored"
        );
        return Ok(exit::INCOMPLETE);
    }
    Ok(exit::OK)
}

pub async fn cancel(args: CancelArgs) -> CmdResult {
    let c = client(&args.remote)?;
    let status = c
        .cancel(parse_id(&args.job_id)?)
        .await
        .context("cannot cancel the job")?;
    print_row(&status);
    Ok(exit::OK)
}
