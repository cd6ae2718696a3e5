//! What `shardline diff`'s two arguments name: a results folder or a
//! samples file as they are, else a job (by id, or by name: its newest
//! completed job) of a local home or a coordinator, whose samples are
//! written into a temporary folder that lives as long as the diff.

use anyhow::Context;
use std::path::Path;
use uuid::Uuid;

use jobs::diff::RunFiles;
use jobs::protocol::{JobState, JobStatus};

use super::super::failure::{client_failure, Failure};
use super::super::job_source::{local_home, JobSource};
use super::super::local_results::local_report;
use super::super::remote::{parse_id, source, write_outputs};
use crate::cli::DiffArgs;
use crate::config::ConfigFile;

/// One run to compare, and what to call it.
pub struct Run {
    pub files: RunFiles,
    /// The argument, and the job it named when it named one.
    pub label: String,
    /// A job's samples, removed when the diff is done.
    _temp: Option<tempfile::TempDir>,
}

enum Given {
    Files(RunFiles),
    Job(String),
}

/// Both runs, A then B.
pub async fn runs(args: &DiffArgs) -> Result<(Run, Run), Failure> {
    let a = given(&args.a)?;
    let b = given(&args.b)?;
    let jobs = if matches!(a, Given::Job(_)) || matches!(b, Given::Job(_)) {
        let job = [&a, &b]
            .into_iter()
            .find_map(|g| match g {
                Given::Job(text) => Some(text.clone()),
                Given::Files(_) => None,
            })
            .unwrap_or_default();
        Some(job_source(args, &job).await?)
    } else {
        None
    };
    let a = fetch(a, &args.a, jobs.as_ref()).await?;
    let b = fetch(b, &args.b, jobs.as_ref()).await?;
    Ok((a, b))
}

/// A folder or file that exists is a run's results; a text that looks
/// like a path but is not there is a mistake; anything else is a job.
fn given(text: &str) -> Result<Given, Failure> {
    let path = Path::new(text);
    if path.is_dir() {
        let files = RunFiles::in_folder(path);
        if !files.samples.is_file() {
            return Err(Failure::usage(anyhow::anyhow!(
                "{} has no samples.jsonl: give a results folder (such as \
                 .shardline/results/JOB/latest, or a folder `run --output` or `results --output` \
                 wrote) or a samples.jsonl file",
                path.display()
            )));
        }
        return Ok(Given::Files(files));
    }
    if path.is_file() {
        return Ok(Given::Files(RunFiles {
            samples: path.to_path_buf(),
            metrics: path.parent().map(|dir| dir.join("metrics.json")),
        }));
    }
    let looks_like_path = text.contains(['/', '\\'])
        || text.starts_with('.')
        || text.starts_with('~')
        || text.ends_with(".jsonl");
    if looks_like_path || text.trim().is_empty() {
        return Err(Failure::usage(anyhow::anyhow!(
            "no results folder or file {text:?}: check the path (a run's results are in \
             .shardline/results/JOB/latest), or give a job id or name with --home DIR or \
             --coordinator URL"
        )));
    }
    Ok(Given::Job(text.to_string()))
}

/// The home or coordinator the jobs are read from: the one named, as
/// `results` picks it; a clear error when nothing names one.
async fn job_source(args: &DiffArgs, job: &str) -> Result<JobSource, Failure> {
    let named_home = local_home(&args.remote, &args.local)?.is_some();
    let named_coordinator = args.remote.given.is_set("coordinator")
        || ConfigFile::load(args.remote.config.path.as_deref())
            .map_err(Failure::usage)?
            .client
            .coordinator
            .is_some();
    if !named_home && !named_coordinator {
        return Err(Failure::usage(anyhow::anyhow!(
            "{job:?} is not a results folder here; to compare jobs by id or name, pass --home DIR \
             (the folder `shardline run` used) or --coordinator URL"
        )));
    }
    source(&args.remote, &args.local).await
}

async fn fetch(given: Given, text: &str, jobs: Option<&JobSource>) -> Result<Run, Failure> {
    let job = match given {
        Given::Files(files) => {
            return Ok(Run {
                files,
                label: text.to_string(),
                _temp: None,
            })
        }
        Given::Job(job) => job,
    };
    let jobs = jobs.context("a job needs a home or coordinator")?;
    let status = find_job(jobs, &job).await?;
    if status.state != JobState::Completed {
        eprintln!(
            "note: job {} ({}) is {}: comparing the results it has so far",
            status.id,
            crate::terminal::printable(&status.name),
            format!("{:?}", status.state).to_lowercase()
        );
    }
    let temp = tempfile::Builder::new()
        .prefix("shardline-diff-")
        .tempdir()
        .context("cannot create a temporary folder for the job's samples")?;
    let dir = temp.path();
    match jobs {
        JobSource::Home { home, coordinator } => {
            local_report(coordinator, &home.root, status.id, Some(dir)).await?;
        }
        JobSource::Coordinator(c) => {
            let report = c
                .results(status.id)
                .await
                .map_err(|e| client_failure(e, "cannot fetch the results"))?;
            let samples = c
                .samples_stream(status.id)
                .await
                .map_err(|e| client_failure(e, "cannot fetch the samples"))?;
            write_outputs(dir, &report, samples).await?;
        }
    }
    let label = if job == status.id.to_string() {
        format!("job {} ({})", status.id, status.name)
    } else {
        format!("job {} ({})", status.name, status.id)
    };
    Ok(Run {
        files: RunFiles::in_folder(dir),
        label,
        _temp: Some(temp),
    })
}

/// Job `text`: an id, or the newest completed job of that name (judge
/// jobs, which run under a judged job, are not candidates).
async fn find_job(jobs: &JobSource, text: &str) -> Result<JobStatus, Failure> {
    if Uuid::parse_str(text).is_ok() {
        return jobs.job(parse_id(text)?).await;
    }
    let mut named: Vec<JobStatus> = jobs
        .list()
        .await?
        .into_iter()
        .filter(|j| j.name == text && j.parent_id.is_none())
        .collect();
    // RFC 3339 times of one clock: their text sorts as the times do.
    named.sort_by(|x, y| y.created_at.cmp(&x.created_at));
    if let Some(done) = named.iter().find(|j| j.state == JobState::Completed) {
        return Ok(done.clone());
    }
    let listing = match jobs {
        JobSource::Home { home, .. } => {
            format!("`shardline status --home {}`", home.root.display())
        }
        JobSource::Coordinator(_) => "`shardline status`".to_string(),
    };
    Err(Failure::usage(match named.first() {
        Some(newest) => anyhow::anyhow!(
            "job {text:?} has no completed run yet (its newest, {}, is {}); wait for it, or give a \
             job id; {listing} lists the jobs",
            newest.id,
            format!("{:?}", newest.state).to_lowercase()
        ),
        None => anyhow::anyhow!(
            "no job named {text:?} and no results folder of that name; {listing} lists the jobs"
        ),
    }))
}
