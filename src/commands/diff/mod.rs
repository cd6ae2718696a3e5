//! `shardline diff A B`: two runs compared per metric and subset (B − A
//! with a paired bootstrap interval over the documents both scored), the
//! documents whose score flipped, as tables or one JSON object; exit 4
//! with `--fail-on-regression X` when a metric fell by more than X with
//! significance.

mod print;
mod resolve;

use anyhow::Context;

use jobs::diff::{diff_runs, DiffError, DiffOptions, RunDiff};

use super::failure::{CmdResult, Failure};
use crate::cli::DiffArgs;
use crate::exit;

pub async fn diff(args: DiffArgs) -> CmdResult {
    let (a, b) = resolve::runs(&args).await?;
    let options = DiffOptions {
        confidence: args.confidence,
        resamples: args.resamples,
        seed: args.seed,
        flip_threshold: args.flip_threshold,
        metrics: args.metrics.clone(),
        // The JSON lists every flip with its texts; the table the first N.
        flip_texts: (!args.json).then_some(args.flips),
    };
    let (files_a, files_b) = (a.files.clone(), b.files.clone());
    // Reading two large files and resampling is blocking work.
    let result = tokio::task::spawn_blocking(move || diff_runs(&files_a, &files_b, &options))
        .await
        .context("the diff stopped")?;
    let diff = result.map_err(failure)?;

    let regressions: Vec<String> = match args.fail_on_regression {
        Some(x) => diff.regressions(x).iter().map(|m| m.name.clone()).collect(),
        None => Vec::new(),
    };
    let text = if args.json {
        json(&diff, args.fail_on_regression, &regressions)? + "\n"
    } else {
        print::render(&diff, &a.label, &b.label, args.flips)
    };
    write_stdout(&text)?;
    drop((a, b));
    let Some(x) = args.fail_on_regression else {
        return Ok(exit::OK);
    };
    if regressions.is_empty() {
        return Ok(exit::OK);
    }
    for m in diff.regressions(x) {
        eprintln!(
            "error: {} fell by {:.4} (from {:.4} to {:.4} over {} documents), more than {x} with \
             significance ({}% interval [{:+.4}, {:+.4}])",
            crate::terminal::printable(&m.name),
            -m.overall.diff,
            m.overall.mean_a,
            m.overall.mean_b,
            m.overall.n,
            print::percent(diff.confidence),
            m.overall.ci_low.unwrap_or(f64::NAN),
            m.overall.ci_high.unwrap_or(f64::NAN),
        );
    }
    Ok(exit::REGRESSION)
}

/// Prints `text`; a reader that stopped early (`| head`) is no error.
fn write_stdout(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match std::io::Write::write_all(&mut out, text.as_bytes())
        .and_then(|()| std::io::Write::flush(&mut out))
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(anyhow::Error::new(e)
            .context("cannot write to stdout")
            .into()),
        _ => Ok(()),
    }
}

/// The report as one JSON object; with `--fail-on-regression`, also its
/// threshold and the metrics that crossed it.
fn json(diff: &RunDiff, threshold: Option<f64>, regressions: &[String]) -> anyhow::Result<String> {
    let mut value = serde_json::to_value(diff).context("cannot encode the diff")?;
    if let (Some(x), Some(object)) = (threshold, value.as_object_mut()) {
        object.insert(
            "regression".into(),
            serde_json::json!({ "threshold": x, "metrics": regressions }),
        );
    }
    Ok(serde_json::to_string_pretty(&value)?)
}

/// Bad files (a bad line, no shared documents, an unknown metric) are the
/// user's to fix: exit 2, with what to do.
fn failure(error: DiffError) -> Failure {
    let hint = match &error {
        DiffError::Parse { .. } | DiffError::DuplicateDoc { .. } => {
            "; each line must be one document as `shardline run` writes it (doc_id, scores, …): \
             write the results again with `shardline results JOB --output DIR` or `shardline \
             rescore JOB.toml --output DIR`"
        }
        DiffError::NoSharedDocs { .. } => {
            "; the runs must share doc_ids: were they made from the same dataset (with the same \
             id_field)?"
        }
        DiffError::UnknownMetric { .. } => "; pass one of these to --metric, or leave it out",
        DiffError::NoSharedMetrics { .. } => "; runs of the same job spec share their metrics",
        DiffError::Metrics { .. } => "; remove it or write it again with `shardline results`",
        _ => "",
    };
    let bad_input = error.is_bad_input();
    let error = anyhow::anyhow!("{error}{hint}");
    if bad_input {
        Failure::usage(error)
    } else {
        Failure::runtime(error)
    }
}
