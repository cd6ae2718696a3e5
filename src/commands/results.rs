//! Writing a job's results: scores from the cache, `samples.jsonl` and
//! `metrics.json` in the run's results folder (`run_dir`), the metrics
//! table on stdout.

use anyhow::Context;
use std::path::PathBuf;

use coordinator::RescoreOutcome;
use jobs::JobSpec;

use super::failure::{CmdResult, Failure};
use super::home::write_json;
use super::run_dir::ResultsDir;
use crate::exit;

/// A job scored into its results folder.
pub struct Scored {
    pub outcome: RescoreOutcome,
    pub samples: PathBuf,
    pub metrics: PathBuf,
}

/// Scores `spec` from the cache, writes `samples.jsonl` and `metrics.json`
/// into a new results folder of `dest` and makes it the latest. An engine
/// job's samples show each prompt as its model's chat template renders it.
pub async fn score(
    coordinator: &coordinator::Coordinator,
    spec: &JobSpec,
    dest: &ResultsDir,
) -> Result<Scored, Failure> {
    let run = dest.create()?;
    let model_text = worker::backend::engine::EngineText::of(&spec.model)
        .context("cannot read the model's tokenizer and chat template")?;
    let samples_path = run.dir.join("samples.jsonl");
    let file = std::fs::File::create(&samples_path)
        .with_context(|| format!("cannot create {}", samples_path.display()))?;
    let mut samples = std::io::BufWriter::new(file);
    let outcome = coordinator
        .rescore_spec_rendered(spec, Some(&mut samples), model_text)
        .await
        .context("cannot score the job from the cache")?;
    std::io::Write::flush(&mut samples)
        .with_context(|| format!("cannot write {}", samples_path.display()))?;
    let metrics_path = run.dir.join("metrics.json");
    write_json(&metrics_path, &outcome.report)?;
    run.publish()?;
    Ok(Scored {
        outcome,
        samples: samples_path,
        metrics: metrics_path,
    })
}

/// Prints the metrics table, where the files are and what is missing.
/// Returns the exit code: incomplete when any output is missing.
pub fn report(scored: &Scored) -> i32 {
    let outcome = &scored.outcome;
    println!("{}", outcome.report.to_table());
    eprintln!(
        "wrote {} and {}",
        scored.samples.display(),
        scored.metrics.display()
    );

    if outcome.missing_requests > 0 {
        let examples: Vec<String> = outcome
            .missing_examples
            .iter()
            .take(5)
            .map(|m| format!("doc {} (key {})", m.doc_id, short_key(&m.key.0)))
            .collect();
        let n = outcome.missing_requests;
        eprintln!(
            "error: {n} {} failed or {} missing from the cache (e.g. {}); \
             the other docs were scored. Run the same command again to retry only those.",
            if n == 1 { "request" } else { "requests" },
            if n == 1 { "is" } else { "are" },
            examples.join(", ")
        );
        return exit::INCOMPLETE;
    }
    exit::OK
}

/// [`score`], then [`report`].
pub async fn write_results(
    coordinator: &coordinator::Coordinator,
    spec: &JobSpec,
    dest: &ResultsDir,
) -> CmdResult {
    let scored = score(coordinator, spec, dest).await?;
    Ok(report(&scored))
}

/// The first 12 characters of a request key, for messages.
pub fn short_key(key: &str) -> String {
    key.chars().take(12).collect()
}
