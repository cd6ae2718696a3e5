//! `submit`, `status`, `results`, `rescore` and `cancel` against a running
//! coordinator; `status`, `results` and `cancel` also on a local home, read
//! directly (`job_source`).

use anyhow::Context;
use futures::stream::BoxStream;
use futures::StreamExt;
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use jobs::protocol::{FailureKind, JobState, JobStatus};

use super::failure::{client_failure, CmdResult, Failure};
use super::home::write_json;
use super::job_file::load_spec;
use super::job_source::{local_home, JobSource};
use super::local_results::local_report;
use super::results::missing_verdicts_message;
use super::results::write_table;
use super::signal::interrupted;
use crate::cli::{
    CancelArgs, ConfigArg, LocalHomeArgs, RemoteArgs, RescoreArgs, ResultsArgs, SamplesFormat,
    StatusArgs, SubmitArgs,
};
use crate::config::{self, ClientFlags, ConfigFile};
use crate::exit;
use crate::terminal::printable;

fn connect(flags: &ClientFlags, config: &ConfigArg) -> Result<client::CoordinatorClient, Failure> {
    let file = ConfigFile::load(config.path.as_deref()).map_err(Failure::usage)?;
    let settings =
        config::resolve_client(flags, &config::process_env, &file).map_err(Failure::usage)?;
    client::CoordinatorClient::new(&settings.coordinator, settings.token.expose().to_string())
        .map_err(Failure::usage)
}

pub(super) fn client(remote: &RemoteArgs) -> Result<client::CoordinatorClient, Failure> {
    connect(&remote.flags(), &remote.config)
}

/// The coordinator or local home `status`, `results` and `cancel` read. A
/// coordinator that nobody named and that cannot be reached for want of a
/// token gets a hint about local homes.
pub(super) async fn source(
    remote: &RemoteArgs,
    local: &LocalHomeArgs,
) -> Result<JobSource, Failure> {
    if let Some(home) = local_home(remote, local)? {
        return JobSource::home(&home, local).await;
    }
    client(remote)
        .map(JobSource::Coordinator)
        .map_err(|mut failure| {
            if !remote.given.is_set("coordinator") {
                failure.error = failure.error.context(format!(
                    "no coordinator was named, so {} was asked; for the jobs of `shardline run`, \
                 pass --home DIR (the folder it used)",
                    remote.coordinator
                ));
            }
            failure
        })
}

pub(super) fn parse_id(text: &str) -> Result<Uuid, Failure> {
    Uuid::parse_str(text).map_err(|e| {
        Failure::usage(anyhow::anyhow!(
            "{text:?} is not a job id ({e}); `shardline status` lists them"
        ))
    })
}

pub async fn submit(args: SubmitArgs) -> CmdResult {
    let spec = load_spec(&args.job, None, None).await?;
    let c = client(&args.remote)?;
    let status = c
        .submit_with_priority(&spec, args.priority)
        .await
        .map_err(|e| client_failure(e, "cannot submit the job"))?;
    println!("{}", status.id);
    eprintln!(
        "submitted {} as job {} ({})",
        spec.name,
        status.id,
        state_name(status.state)
    );
    if args.watch {
        let c = JobSource::Coordinator(c);
        return watch(&c, Some(status.id), Duration::from_secs(2)).await;
    }
    Ok(exit::OK)
}

pub async fn status(args: StatusArgs) -> CmdResult {
    let c = source(&args.remote, &args.local).await?;
    let id = args.job_id.as_deref().map(parse_id).transpose()?;
    if args.watch {
        let every = Duration::from_secs_f64(args.interval.clamp(0.2, 3600.0));
        return watch(&c, id, every).await;
    }
    print_table(&fetch(&c, id).await?);
    Ok(exit::OK)
}

async fn fetch(c: &JobSource, id: Option<Uuid>) -> Result<Vec<JobStatus>, Failure> {
    Ok(match id {
        Some(id) => vec![c.job(id).await?],
        None => c.list().await?,
    })
}

/// Prints the table every `every` until the job (or every job that was
/// live at the start) has ended, then exits as [`ended_code`] says for
/// them. Ctrl-C stops watching (the jobs go on) with 130.
async fn watch(c: &JobSource, id: Option<Uuid>, every: Duration) -> CmdResult {
    let first = fetch(c, id).await?;
    let watched: Vec<Uuid> = first
        .iter()
        .filter(|j| id.is_some() || !j.state.is_terminal())
        .map(|j| j.id)
        .collect();
    let mut jobs = first;
    let interrupt = interrupted();
    tokio::pin!(interrupt);
    loop {
        let shown: Vec<JobStatus> = jobs
            .into_iter()
            .filter(|j| watched.contains(&j.id))
            .collect();
        print_table(&shown);
        if shown.iter().all(|j| j.state.is_terminal()) {
            return Ok(ended_code(&shown));
        }
        tokio::select! {
            _ = &mut interrupt => return Ok(exit::INTERRUPTED),
            _ = tokio::time::sleep(every) => {}
        }
        // A coordinator restarting is not the job failing: keep watching.
        jobs = match fetch(c, id).await {
            Ok(jobs) => jobs,
            Err(e) => {
                eprintln!(
                    "warning: {}; retrying",
                    super::failure::chain_message(&e.error)
                );
                shown
            }
        };
    }
}

/// The exit code for jobs that have ended, the most serious of theirs: 1
/// when one failed at run time or was cancelled, 2 when one failed for its
/// own input, 3 when one finished with requests failed or missing, else 0.
fn ended_code(jobs: &[JobStatus]) -> i32 {
    let code = |j: &JobStatus| match j.state {
        JobState::Failed
            if matches!(
                j.error_kind,
                Some(FailureKind::Input | FailureKind::Configuration)
            ) =>
        {
            exit::USAGE
        }
        JobState::Failed | JobState::Cancelled => exit::RUNTIME,
        JobState::Completed => {
            let c = &j.counts;
            // Counted requests neither cached nor completed never got an
            // output (`backend = "none"` leaves those out of its shards).
            if c.failed > 0 || c.requests > c.cached + c.completed {
                exit::INCOMPLETE
            } else {
                exit::OK
            }
        }
        JobState::Planning | JobState::Running => exit::OK,
    };
    let codes: Vec<i32> = jobs.iter().map(code).collect();
    [exit::RUNTIME, exit::USAGE, exit::INCOMPLETE]
        .into_iter()
        .find(|serious| codes.contains(serious))
        .unwrap_or(exit::OK)
}

pub(super) fn state_name(state: JobState) -> String {
    format!("{state:?}").to_lowercase()
}

fn print_table(jobs: &[JobStatus]) {
    println!(
        "{:<36}  {:<20}  {:<9}  {:>9}  {:>9}  {:>9}  {:>7}  {:>13}",
        "id", "name", "state", "requests", "cached", "done", "failed", "shards"
    );
    for job in jobs {
        let c = &job.counts;
        println!(
            "{:<36}  {:<20}  {:<9}  {:>9}  {:>9}  {:>9}  {:>7}  {:>13}",
            job.id,
            printable(&job.name),
            state_name(job.state),
            c.requests,
            c.cached,
            c.completed,
            c.failed,
            format!("{}/{}", c.shards_completed, c.shards_total)
        );
        if let Some(error) = &job.error {
            println!("    error: {}", printable(error));
        }
        if c.usage != jobs::Usage::default() || job.cost.is_some() {
            println!(
                "    {}",
                jobs::cost::usage_line(&c.usage, job.cost.as_ref())
            );
        }
    }
}

pub async fn results(args: ResultsArgs) -> CmdResult {
    let id = parse_id(&args.job_id)?;
    table_needs_output(args.format, args.output.as_deref())?;
    let report = match source(&args.remote, &args.local).await? {
        JobSource::Home { home, coordinator } => {
            let report = local_report(&coordinator, &home.root, id, args.output.as_deref()).await?;
            if let Some(dir) = &args.output {
                say_written(dir);
            }
            report
        }
        JobSource::Coordinator(c) => {
            let report = c
                .results(id)
                .await
                .map_err(|e| client_failure(e, "cannot fetch the results"))?;
            if let Some(dir) = &args.output {
                let samples = c
                    .samples_stream(id)
                    .await
                    .map_err(|e| client_failure(e, "cannot fetch the samples"))?;
                write_outputs(dir, &report, samples).await?;
                say_written(dir);
            }
            report
        }
    };
    if let Some(dir) = &args.output {
        write_table(dir, args.format)?;
    }
    if args.output.is_some() {
        if let Some(usage) = report
            .get("usage")
            .and_then(|u| serde_json::from_value::<jobs::Usage>(u.clone()).ok())
        {
            let cost = report.get("cost").and_then(|c| {
                serde_json::from_value::<jobs::protocol::CostSummary>(c.clone()).ok()
            });
            eprintln!("{}", jobs::cost::usage_line(&usage, cost.as_ref()));
        }
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(missing_code(&report, &format!("job {id}")))
}

/// `shardline rescore` on a coordinator: a job id rescores that job, a spec
/// file is scored as given (new metrics over the same outputs), both from
/// the coordinator's cache with zero inference.
pub async fn rescore(args: RescoreArgs) -> CmdResult {
    table_needs_output(args.format, args.output.as_deref())?;
    let c = connect(&args.client_flags(), &args.config)?;
    let text = args.job.to_string_lossy().to_string();
    let (report, samples, what) = match Uuid::parse_str(&text) {
        Ok(id) => {
            let report = c
                .results(id)
                .await
                .map_err(|e| client_failure(e, "cannot rescore the job"))?;
            let samples = match &args.output {
                Some(_) => Some(
                    c.samples_stream(id)
                        .await
                        .map_err(|e| client_failure(e, "cannot fetch the samples"))?,
                ),
                None => None,
            };
            (report, samples, format!("job {id}"))
        }
        Err(_) => {
            let spec = load_spec(&args.job, args.model.as_deref(), args.limit).await?;
            let report = c
                .rescore_spec(&spec)
                .await
                .map_err(|e| client_failure(e, "cannot rescore the spec"))?;
            let samples = match &args.output {
                Some(_) => Some(
                    c.rescore_samples_stream(&spec)
                        .await
                        .map_err(|e| client_failure(e, "cannot fetch the samples"))?,
                ),
                None => None,
            };
            (report, samples, spec.name.clone())
        }
    };
    match (&args.output, samples) {
        (Some(dir), Some(samples)) => {
            write_outputs(dir, &report, samples).await?;
            say_written(dir);
            write_table(dir, args.format)?;
        }
        _ => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(missing_code(&report, &what))
}

/// From a coordinator, results are printed unless `--output` names a
/// folder: a table has nowhere to go without one.
fn table_needs_output(format: SamplesFormat, output: Option<&Path>) -> Result<(), Failure> {
    if format == SamplesFormat::Jsonl || output.is_some() {
        return Ok(());
    }
    Err(Failure::usage(anyhow::anyhow!(
        "--format {} writes a file: add --output DIR",
        clap::ValueEnum::to_possible_value(&format)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    )))
}

/// Writes `metrics.json` and the streamed `samples.jsonl` into `dir`.
pub(super) async fn write_outputs<B: AsRef<[u8]>>(
    dir: &Path,
    report: &serde_json::Value,
    mut samples: BoxStream<'static, Result<B, client::ClientError>>,
) -> Result<(), Failure> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write_json(&dir.join("metrics.json"), report)?;
    let path = dir.join("samples.jsonl");
    let mut file = tokio::fs::File::create(&path)
        .await
        .with_context(|| format!("cannot create {}", path.display()))?;
    // Streamed: a million-row job's samples never sit in memory.
    while let Some(chunk) = samples.next().await {
        let chunk = chunk.context("the samples download broke off")?;
        file.write_all(chunk.as_ref())
            .await
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    file.flush().await.context("cannot write the samples")?;
    Ok(())
}

fn say_written(dir: &Path) {
    eprintln!(
        "wrote {} and {}",
        dir.join("metrics.json").display(),
        dir.join("samples.jsonl").display()
    );
}

/// `INCOMPLETE` when outputs are missing, after saying how many.
fn missing_code(report: &serde_json::Value, what: &str) -> i32 {
    let missing = report
        .get("missing_requests")
        .and_then(|m| m.as_u64())
        .unwrap_or(0);
    if missing > 0 {
        eprintln!(
            "error: {missing} requests of {what} failed or are missing from the cache; \
             the other docs were scored"
        );
        return exit::INCOMPLETE;
    }
    let verdicts = report
        .get("missing_verdicts")
        .and_then(|m| m.as_u64())
        .unwrap_or(0);
    if verdicts > 0 {
        eprintln!("error: {}", missing_verdicts_message(verdicts));
        return exit::INCOMPLETE;
    }
    exit::OK
}

pub async fn cancel(args: CancelArgs) -> CmdResult {
    let id = parse_id(&args.job_id)?;
    let c = source(&args.remote, &args.local).await?;
    let status = c.cancel(id).await?;
    print_table(&[status]);
    Ok(exit::OK)
}
