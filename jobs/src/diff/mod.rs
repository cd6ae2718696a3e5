//! Diffs between two runs of an eval: per metric and per subset, both
//! means over the documents both runs scored (matched by `doc_id`), the
//! difference B − A with a seeded paired-bootstrap confidence interval and
//! whether it is significant, and the documents whose score flipped.
//!
//! Memory stays proportional to the number of documents times the number
//! of metrics (a few bytes each), never to their texts: run A is indexed
//! compactly, run B streamed against it, and the flipped documents' texts
//! read back afterwards for the flips that will be shown.

mod bootstrap;
mod error;
mod flips;
mod names;
mod pairing;
mod report;
mod samples;
mod sign_test;

use std::path::{Path, PathBuf};

pub use bootstrap::{normal_quantile, paired_interval, CiMethod, Interval, BOOTSTRAP_MAX_DRAWS};
pub use error::DiffError;
pub use report::{
    Comparison, Direction, DocCounts, Flip, FlipTexts, MetricDiff, RunDiff, RunSide, SubsetDiff,
};

use pairing::{Cell, Pairer};
use samples::MetricsLabels;

/// One run's files: `samples.jsonl` and, when there is one, the
/// `metrics.json` beside it (its job, model and metric order label the
/// diff).
#[derive(Clone, Debug)]
pub struct RunFiles {
    pub samples: PathBuf,
    pub metrics: Option<PathBuf>,
}

impl RunFiles {
    /// The files of a results folder.
    pub fn in_folder(dir: &Path) -> RunFiles {
        RunFiles {
            samples: dir.join("samples.jsonl"),
            metrics: Some(dir.join("metrics.json")),
        }
    }
}

/// How to compare.
#[derive(Clone, Debug)]
pub struct DiffOptions {
    /// Confidence level of the intervals, in (0, 1).
    pub confidence: f64,
    pub resamples: u32,
    pub seed: u64,
    /// A score moving by more than this is a flip (any change of a 0/1
    /// metric, below 1).
    pub flip_threshold: f64,
    /// Only these metrics (all scored by both runs when empty).
    pub metrics: Vec<String>,
    /// Texts for the first this many flips of each metric; all when `None`.
    pub flip_texts: Option<usize>,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            confidence: 0.95,
            resamples: 2000,
            seed: 0,
            flip_threshold: 0.5,
            metrics: Vec::new(),
            flip_texts: Some(10),
        }
    }
}

/// Compares run `b` with run `a`.
pub fn diff_runs(a: &RunFiles, b: &RunFiles, options: &DiffOptions) -> Result<RunDiff, DiffError> {
    let labels_a = MetricsLabels::read(a.metrics.as_deref())?;
    let labels_b = MetricsLabels::read(b.metrics.as_deref())?;
    let mut pairer = Pairer::new(options.flip_threshold);
    // metrics.json's order (the spec's) first, then any other metric.
    for m in labels_a.metrics.iter().chain(&labels_b.metrics) {
        pairer.metrics.id(&m.name);
    }
    pairer.index_a(&a.samples)?;
    pairer.pair_b(&b.samples)?;
    pairer.drop_index();

    let metric_names = &pairer.metrics.list;
    let scored_by = |totals: &pairing::RunTotals| -> Vec<String> {
        (0..metric_names.len() as u32)
            .filter(|&id| totals.has(id))
            .map(|id| metric_names[id as usize].clone())
            .collect()
    };
    let (in_a, in_b) = (scored_by(&pairer.totals_a), scored_by(&pairer.totals_b));
    for name in &options.metrics {
        if !in_a.contains(name) && !in_b.contains(name) {
            let mut known = in_a.clone();
            known.extend(in_b.iter().filter(|m| !in_a.contains(m)).cloned());
            return Err(DiffError::UnknownMetric {
                name: name.clone(),
                known,
            });
        }
    }
    if pairer.counts.paired == 0 {
        return Err(DiffError::NoSharedDocs {
            a: a.samples.clone(),
            b: b.samples.clone(),
            a_docs: pairer.totals_a.lines,
            b_docs: pairer.totals_b.lines,
            shared: pairer.counts.shared,
        });
    }
    let chosen = |name: &String| options.metrics.is_empty() || options.metrics.contains(name);
    let in_both: Vec<u32> = (0..metric_names.len() as u32)
        .filter(|&id| {
            let name = &metric_names[id as usize];
            in_a.contains(name) && in_b.contains(name) && chosen(name)
        })
        .collect();
    // A metric both runs scored, but never on the same document, has
    // nothing to compare: named, not compared.
    let (compared, unpaired): (Vec<u32>, Vec<u32>) = in_both.into_iter().partition(|&id| {
        pairer
            .pairs
            .get(id as usize)
            .is_some_and(|p| p.cells.iter().any(|c| !c.diffs.is_empty()))
    });
    if compared.is_empty() && unpaired.is_empty() {
        return Err(DiffError::NoSharedMetrics {
            a: a.samples.clone(),
            b: b.samples.clone(),
            a_metrics: in_a,
            b_metrics: in_b,
        });
    }

    let metrics: Vec<MetricDiff> = compared
        .iter()
        .map(|&id| metric_diff(&pairer, id, options))
        .collect();
    let mut flips: Vec<Flip> = Vec::new();
    for &id in &compared {
        flips.extend(
            pairer
                .flips
                .iter()
                .filter(|f| f.metric == id)
                .map(|f| Flip {
                    metric: pairer.metrics.name(id).to_string(),
                    doc_id: f.doc_id.to_string(),
                    subset: pairer.subset_of_slot(f.slot).map(str::to_string),
                    a: f64::from(f.a),
                    b: f64::from(f.b),
                    direction: if f.b < f.a {
                        Direction::Worse
                    } else {
                        Direction::Better
                    },
                    line_a: f.line_a,
                    line_b: f.line_b,
                    texts: None,
                }),
        );
    }
    flips::attach_texts(&mut flips, &a.samples, &b.samples, options.flip_texts)?;

    let side = |files: &RunFiles, labels: MetricsLabels, totals: &pairing::RunTotals| RunSide {
        samples: files.samples.display().to_string(),
        job: labels.job,
        model: labels.model,
        docs: totals.lines,
        docs_missing: totals.missing,
    };
    let only = |mine: &[String], theirs: &[String]| -> Vec<String> {
        mine.iter()
            .filter(|m| !theirs.contains(m) && chosen(m))
            .cloned()
            .collect()
    };
    Ok(RunDiff {
        a: side(a, labels_a, &pairer.totals_a),
        b: side(b, labels_b, &pairer.totals_b),
        confidence: options.confidence,
        resamples: options.resamples,
        seed: options.seed,
        flip_threshold: options.flip_threshold,
        docs: pairer.counts.clone(),
        metrics_only_in_a: only(&in_a, &in_b),
        metrics_only_in_b: only(&in_b, &in_a),
        metrics_unpaired: unpaired
            .iter()
            .map(|&id| metric_names[id as usize].clone())
            .collect(),
        metrics,
        flips,
    })
}

/// Metric `id` compared overall and in each subset.
fn metric_diff(pairer: &Pairer, id: u32, options: &DiffOptions) -> MetricDiff {
    let pairs = &pairer.pairs[id as usize];
    let all: Vec<&Cell> = pairs.cells.iter().collect();
    let subsets = pairs
        .cells
        .iter()
        .enumerate()
        .filter(|(slot, cell)| *slot > 0 && !cell.diffs.is_empty())
        .map(|(slot, cell)| SubsetDiff {
            name: pairer
                .subset_of_slot(slot as u32)
                .unwrap_or_default()
                .to_string(),
            comparison: compare(&[cell], options),
        })
        .collect();
    let own_mean = |totals: &pairing::RunTotals| {
        let (sum, n) = totals.metrics.get(id as usize).copied().unwrap_or((0.0, 0));
        ((n > 0).then(|| sum / n as f64), n)
    };
    let (mean_a_all, n_a_all) = own_mean(&pairer.totals_a);
    let (mean_b_all, n_b_all) = own_mean(&pairer.totals_b);
    MetricDiff {
        name: pairer.metrics.name(id).to_string(),
        overall: compare(&all, options),
        mean_a_all,
        n_a_all,
        mean_b_all,
        n_b_all,
        unscored_in_a: pairs.unscored_in_a,
        unscored_in_b: pairs.unscored_in_b,
        subsets,
    }
}

/// The comparison over the documents of `cells` together.
fn compare(cells: &[&Cell], options: &DiffOptions) -> Comparison {
    let n: usize = cells.iter().map(|c| c.diffs.len()).sum();
    let sum_a: f64 = cells.iter().map(|c| c.sum_a).sum();
    let sum_b: f64 = cells.iter().map(|c| c.sum_b).sum();
    let interval = if cells.len() == 1 {
        paired_interval(
            &cells[0].diffs,
            options.confidence,
            options.resamples,
            options.seed,
        )
    } else {
        let diffs: Vec<f32> = cells.iter().flat_map(|c| c.diffs.iter().copied()).collect();
        paired_interval(&diffs, options.confidence, options.resamples, options.seed)
    };
    let (mean_a, mean_b) = if n == 0 {
        (0.0, 0.0)
    } else {
        (sum_a / n as f64, sum_b / n as f64)
    };
    // A 0/1 metric (every difference -1, 0 or 1) also needs the exact sign
    // test to agree: the bootstrap alone calls a handful of flips
    // significant (sign_test.rs).
    let binary = cells
        .iter()
        .flat_map(|c| c.diffs.iter())
        .all(|d| *d == 0.0 || d.abs() == 1.0);
    let sign_test_p = binary.then(|| {
        let count = |sign: f32| -> u64 {
            cells
                .iter()
                .flat_map(|c| c.diffs.iter())
                .filter(|d| **d == sign)
                .count() as u64
        };
        sign_test::sign_test_p(count(-1.0), count(1.0))
    });
    let alpha = 1.0 - options.confidence;
    Comparison {
        n: n as u64,
        mean_a,
        mean_b,
        diff: mean_b - mean_a,
        ci_low: interval.map(|i| i.low),
        ci_high: interval.map(|i| i.high),
        method: interval.map(|i| i.method),
        significant: interval.is_some_and(|i| i.excludes_zero())
            && sign_test_p.is_none_or(|p| p < alpha),
        sign_test_p,
        flips_worse: cells.iter().map(|c| c.worse).sum(),
        flips_better: cells.iter().map(|c| c.better).sum(),
    }
}

#[cfg(test)]
mod tests;
