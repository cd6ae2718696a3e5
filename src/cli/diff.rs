//! Arguments of `shardline diff`: two runs, where to find them when they
//! are jobs rather than folders, and how to compare them.

use clap::Args;

use super::remote::{LocalHomeArgs, RemoteArgs};

#[derive(Args, Debug)]
#[command(after_long_help = "\
Each run is a results folder (holding samples.jsonl, and metrics.json for \
its labels, e.g. .shardline/results/JOB/latest or a --output folder) or a \
samples.jsonl file; else a job id or job name (a name means its newest \
completed job) in the local home (--home) or on the coordinator \
(--coordinator) named, scored again from the cache as `results` does.

Documents are paired by doc_id. The means, the difference B − A and its \
interval are over the documents both runs scored; documents found in one \
run only, or missing an output in one, are counted and never compared. \
The interval is a seeded paired bootstrap, or the normal interval of the \
mean difference when one would take over 20 million draws (resamples × \
documents whose score changed: over 10,000 changed documents at 2000 \
resamples); a difference is significant when its interval leaves out 0.

Exit codes: 0 compared; 2 bad input (a missing folder, a bad line, no \
shared documents, an unknown metric); 4 with --fail-on-regression, a \
metric fell by more than X with significance.")]
pub struct DiffArgs {
    /// The baseline run (A): a results folder, a samples.jsonl, or a job
    /// id or name.
    pub a: String,
    /// The run compared with it (B): differences are B − A.
    pub b: String,
    #[command(flatten)]
    pub remote: RemoteArgs,
    #[command(flatten)]
    pub local: LocalHomeArgs,
    /// Compare only this metric (repeatable); default: every metric both
    /// runs scored.
    #[arg(long = "metric", value_name = "NAME")]
    pub metrics: Vec<String>,
    /// Confidence level of the intervals.
    #[arg(long, default_value_t = 0.95, value_parser = confidence)]
    pub confidence: f64,
    /// Bootstrap resamples per interval.
    #[arg(long, default_value_t = 2000,
          value_parser = clap::value_parser!(u32).range(100..=100_000))]
    pub resamples: u32,
    /// Seed of the bootstrap: the same seed gives the same intervals.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Flipped documents shown per metric, with prompt and both outputs
    /// (--json lists all of them).
    #[arg(long = "flips", value_name = "N", default_value_t = 10)]
    pub flips: usize,
    /// A score that moves by more than this between the runs is a flip:
    /// any change of a 0/1 metric; for graded ones (F1, a judge's mean),
    /// a change beyond this.
    #[arg(long, value_name = "DELTA", default_value_t = 0.5, value_parser = non_negative)]
    pub flip_threshold: f64,
    /// Print one JSON object (described in docs/diff.md) instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Exit with 4 when any metric's overall mean fell from A to B by more
    /// than X with significance. X is absolute, in the metric's own units:
    /// 0.02 is 2 points of a 0–1 metric such as exact_match.
    #[arg(long, value_name = "X", value_parser = non_negative)]
    pub fail_on_regression: Option<f64>,
}

fn confidence(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(c) if c > 0.0 && c < 1.0 => Ok(c),
        _ => Err(format!(
            "{text:?} is not a confidence level: give a number between 0 and 1, e.g. 0.95"
        )),
    }
}

fn non_negative(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x >= 0.0 && x.is_finite() => Ok(x),
        _ => Err(format!("{text:?} is not a number of 0 or more, e.g. 0.02")),
    }
}
