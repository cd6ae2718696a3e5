//! `shardline results JOB_ID --home DIR`: a job of a local home scored
//! from its cache, answered as a coordinator's results route would (the
//! same JSON), with `--output` writing `metrics.json` and `samples.jsonl`.

use anyhow::Context;
use std::path::Path;
use uuid::Uuid;

use coordinator::http::ResultsBody;
use coordinator::{Coordinator, CoordinatorError, RescoreOutcome};

use super::failure::Failure;
use super::home::write_json;

/// The results of job `id` of the home `coordinator` reads, as JSON;
/// written into `output` with the samples when given (saying so is the
/// caller's: `diff` writes into a folder of its own).
pub async fn local_report(
    coordinator: &Coordinator,
    home: &Path,
    id: Uuid,
    output: Option<&Path>,
) -> Result<serde_json::Value, Failure> {
    let status = coordinator.job_status(id).await.map_err(|e| match e {
        CoordinatorError::JobNotFound(_) => Failure::usage(anyhow::anyhow!(
            "no job {id} in the home {}; `shardline status --home {}` lists its jobs",
            home.display(),
            home.display()
        )),
        other => Failure::runtime(anyhow::Error::new(other).context("cannot read the job")),
    })?;
    let spec = coordinator
        .job_spec(id)
        .await
        .context("cannot read the job's spec")?;
    let outcome = match output {
        Some(dir) => {
            // A model that is gone since the run leaves the prompts as
            // planned; the scores do not need it.
            let model_text = worker::backend::engine::EngineText::of(&spec.model)
                .ok()
                .flatten();
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let path = dir.join("samples.jsonl");
            let file = std::fs::File::create(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut samples = std::io::BufWriter::new(file);
            let outcome = rescore(coordinator, &spec, Some(&mut samples), model_text).await?;
            std::io::Write::flush(&mut samples)
                .with_context(|| format!("cannot write {}", path.display()))?;
            outcome
        }
        None => rescore(coordinator, &spec, None, None).await?,
    };
    let body = ResultsBody {
        report: outcome.report,
        missing_requests: outcome.missing_requests,
        missing_examples: outcome.missing_examples,
        failed_requests: outcome.failed_requests,
        missing_verdicts: outcome.missing_verdicts,
        usage: Some(status.counts.usage),
        cost: status.cost,
    };
    let value = serde_json::to_value(&body).context("cannot encode the results")?;
    if let Some(dir) = output {
        write_json(&dir.join("metrics.json"), &value)?;
    }
    Ok(value)
}

async fn rescore(
    coordinator: &Coordinator,
    spec: &jobs::JobSpec,
    samples: Option<&mut (dyn std::io::Write + Send)>,
    model_text: Option<std::sync::Arc<dyn jobs::ModelText>>,
) -> Result<RescoreOutcome, Failure> {
    Ok(coordinator
        .rescore_spec_with(spec, samples, None, model_text)
        .await
        .context("cannot score the job from the cache")?)
}
