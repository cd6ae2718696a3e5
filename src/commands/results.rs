//! Writing a job's results: scores from the cache, `samples.jsonl`,
//! `metrics.json` and (when outputs are missing) `missing.jsonl` in the
//! run's results folder (`run_dir`), the per-sample table when asked for
//! (`samples.csv`, `samples.parquet`), the metrics table on stdout.

use anyhow::Context;
use std::path::{Path, PathBuf};

use coordinator::RescoreOutcome;
use jobs::spec::BackendKind;
use jobs::JobSpec;

use super::failure::{coordinator_failure, CmdResult, Failure};
use super::home::write_json;
use super::run_dir::{ResultsDir, MISSING_FILE};
use crate::cli::SamplesFormat;
use crate::exit;

/// A job scored into its results folder.
pub struct Scored {
    pub outcome: RescoreOutcome,
    pub samples: PathBuf,
    pub metrics: PathBuf,
    /// `missing.jsonl`, written only when outputs are missing.
    pub missing: PathBuf,
}

/// Scores `spec` from the cache, writes `samples.jsonl`, `metrics.json`
/// and, when outputs are missing, `missing.jsonl` into a new results folder
/// of `dest` and makes it the latest. An engine job's samples show each
/// prompt as its model's chat template renders it.
pub async fn score(
    coordinator: &coordinator::Coordinator,
    spec: &JobSpec,
    dest: &ResultsDir,
) -> Result<Scored, Failure> {
    let run = dest.create()?;
    let model_text = worker::backend::engine::EngineText::of(&spec.model)
        .context("cannot read the model's tokenizer and chat template")?;
    let samples_path = run.dir.join("samples.jsonl");
    let mut samples = create(&samples_path)?;
    // Written as scoring goes, so that a million missing requests never sit
    // in memory; removed again when nothing is missing.
    let missing_path = run.dir.join(MISSING_FILE);
    let mut missing = create(&missing_path)?;
    let outcome = coordinator
        .rescore_spec_with(spec, Some(&mut samples), Some(&mut missing), model_text)
        .await
        .map_err(|e| coordinator_failure(e, "cannot score the job from the cache"))?;
    std::io::Write::flush(&mut samples)
        .with_context(|| format!("cannot write {}", samples_path.display()))?;
    std::io::Write::flush(&mut missing)
        .with_context(|| format!("cannot write {}", missing_path.display()))?;
    drop(missing);
    if outcome.missing_requests == 0 {
        std::fs::remove_file(&missing_path)
            .with_context(|| format!("cannot remove {}", missing_path.display()))?;
    }
    let metrics_path = run.dir.join("metrics.json");
    write_json(&metrics_path, &outcome.report)?;
    run.publish()?;
    Ok(Scored {
        outcome,
        samples: samples_path,
        metrics: metrics_path,
        missing: missing_path,
    })
}

/// Prints the metrics table, where the files are and what is missing.
/// Returns the exit code: incomplete when any output is missing, after
/// saying how many, where they are listed, and `retry` (what to do about
/// them).
pub fn report(scored: &Scored, spec: &JobSpec, retry: &str) -> i32 {
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
        let retry = if spec.model.backend == BackendKind::None {
            "backend = \"none\" runs nothing: run the job with a real backend first, or check \
             that the model and generation settings match the run that filled the cache"
        } else {
            retry
        };
        eprintln!(
            "error: {n} {} failed or {} missing from the cache (e.g. {}); {} listed in {}, and \
             their docs are marked `\"missing\": true` in samples.jsonl; the other docs were \
             scored. {retry}.",
            if n == 1 { "request" } else { "requests" },
            if n == 1 { "is" } else { "are" },
            examples.join(", "),
            if n == 1 { "it is" } else { "all are" },
            scored.missing.display()
        );
        return exit::INCOMPLETE;
    }
    if outcome.missing_verdicts > 0 {
        eprintln!(
            "error: {}",
            missing_verdicts_message(outcome.missing_verdicts)
        );
        return exit::INCOMPLETE;
    }
    exit::OK
}

/// What to say when judge verdicts are missing from the cache.
pub fn missing_verdicts_message(n: u64) -> String {
    format!(
        "{n} judge {} no verdict in the cache (a judge request failed, or the judge's template, \
         model or sampling changed since it ran); those docs have no score from that judge in \
         samples.jsonl and metrics.json. `shardline run` the job file to make only the missing \
         judge requests: the outputs they grade are cached",
        if n == 1 {
            "request has"
        } else {
            "requests have"
        }
    )
}

/// [`score`], the per-sample table `format` asks for, then [`report`].
pub async fn write_results(
    coordinator: &coordinator::Coordinator,
    spec: &JobSpec,
    dest: &ResultsDir,
    format: SamplesFormat,
    retry: &str,
) -> CmdResult {
    let scored = score(coordinator, spec, dest).await?;
    if let Some(dir) = scored.samples.parent() {
        write_table(dir, format)?;
    }
    Ok(report(&scored, spec, retry))
}

/// The per-sample table `format` asks for, written from the folder's
/// samples.jsonl.
pub fn write_table(dir: &Path, format: SamplesFormat) -> Result<(), Failure> {
    let samples = dir.join("samples.jsonl");
    let (table, rows) = match format {
        SamplesFormat::Jsonl => return Ok(()),
        SamplesFormat::Csv => {
            let table = dir.join(jobs::results::CSV_FILE);
            (table.clone(), jobs::results::write_csv(&samples, &table))
        }
        SamplesFormat::Parquet => {
            let table = dir.join(jobs::results::PARQUET_FILE);
            (
                table.clone(),
                jobs::results::write_parquet(&samples, &table),
            )
        }
    };
    let rows = rows.map_err(anyhow::Error::from)?;
    eprintln!("wrote {} ({rows} rows)", table.display());
    Ok(())
}

fn create(path: &Path) -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(std::io::BufWriter::new(file))
}

/// The first 12 characters of a request key, for messages.
pub fn short_key(key: &str) -> String {
    key.chars().take(12).collect()
}
