//! The diff of two runs as data: the object `shardline diff --json` prints
//! (docs/diff.md describes it field by field) and its table is drawn from.

use serde::{Deserialize, Serialize};

use super::bootstrap::CiMethod;

/// Two runs compared.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunDiff {
    pub a: RunSide,
    pub b: RunSide,
    /// The confidence level of every interval, e.g. 0.95.
    pub confidence: f64,
    pub resamples: u32,
    pub seed: u64,
    /// A score that moves by more than this is a flip.
    pub flip_threshold: f64,
    pub docs: DocCounts,
    pub metrics: Vec<MetricDiff>,
    /// Metrics scored by one run only: not compared.
    pub metrics_only_in_a: Vec<String>,
    pub metrics_only_in_b: Vec<String>,
    /// Metrics both runs scored, but never on the same document.
    pub metrics_unpaired: Vec<String>,
    /// Every flipped document, by metric in the order of `metrics`, then in
    /// B's file order; with texts where they were asked for.
    pub flips: Vec<Flip>,
}

/// One run's files and totals.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunSide {
    pub samples: String,
    /// From `metrics.json`, when the folder has one.
    pub job: Option<String>,
    pub model: Option<String>,
    /// Lines of samples.jsonl, and those marked missing among them.
    pub docs: u64,
    pub docs_missing: u64,
}

/// Where each run's documents went.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct DocCounts {
    /// In both runs (by `doc_id`).
    pub shared: u64,
    /// In both runs and scored in both: the documents compared.
    pub paired: u64,
    pub only_in_a: u64,
    pub only_in_b: u64,
    /// In both runs, but missing an output in A (in B): not compared.
    pub missing_in_a: u64,
    pub missing_in_b: u64,
    /// The first few of each, by `doc_id`.
    pub only_in_a_examples: Vec<String>,
    pub only_in_b_examples: Vec<String>,
    pub missing_in_a_examples: Vec<String>,
    pub missing_in_b_examples: Vec<String>,
}

/// Both runs' means over the same documents, and their difference.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Comparison {
    /// Documents compared.
    pub n: u64,
    pub mean_a: f64,
    pub mean_b: f64,
    /// `mean_b - mean_a`: negative when B is worse.
    pub diff: f64,
    /// The paired interval of `diff`; absent with fewer than two documents.
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub method: Option<CiMethod>,
    /// The interval leaves out 0 (and, for a 0/1 metric, the exact sign
    /// test's p-value is below 1 − confidence).
    pub significant: bool,
    /// For a 0/1 metric: the exact two-sided sign test (McNemar) of the
    /// documents that went wrong against those that went right.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_test_p: Option<f64>,
    /// Documents whose score fell (rose) by more than the flip threshold.
    pub flips_worse: u64,
    pub flips_better: u64,
}

/// One metric compared, overall and per subset.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MetricDiff {
    pub name: String,
    #[serde(flatten)]
    pub overall: Comparison,
    /// Each run's own mean over every document it scored (what its
    /// metrics.json says), beside the paired means above.
    pub mean_a_all: Option<f64>,
    pub n_a_all: u64,
    pub mean_b_all: Option<f64>,
    pub n_b_all: u64,
    /// Paired documents with this metric's score in one run only.
    pub unscored_in_a: u64,
    pub unscored_in_b: u64,
    /// Empty when no document has a subset.
    pub subsets: Vec<SubsetDiff>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SubsetDiff {
    pub name: String,
    #[serde(flatten)]
    pub comparison: Comparison,
}

/// Which way a flipped score went.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// B scored lower (right → wrong for a 0/1 metric).
    Worse,
    /// B scored higher (wrong → right).
    Better,
}

/// A document whose score moved by more than the flip threshold.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Flip {
    pub metric: String,
    pub doc_id: String,
    pub subset: Option<String>,
    pub a: f64,
    pub b: f64,
    pub direction: Direction,
    /// The document's lines in A's and B's samples.jsonl.
    pub line_a: u64,
    pub line_b: u64,
    /// The texts, as the samples files have them (absent for flips beyond
    /// those asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub texts: Option<FlipTexts>,
}

/// What a flipped document showed in each run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FlipTexts {
    /// A's prompt: a string, or chat messages.
    pub prompt: serde_json::Value,
    pub target: Option<String>,
    pub choices: Option<Vec<String>>,
    /// Each run's `outputs`: texts per sample, or per-choice
    /// log-likelihoods.
    pub output_a: serde_json::Value,
    pub output_b: serde_json::Value,
}

impl RunDiff {
    /// The metrics whose overall mean fell by more than `threshold`
    /// (absolute, in the metric's units) with an interval that leaves out 0.
    pub fn regressions(&self, threshold: f64) -> Vec<&MetricDiff> {
        self.metrics
            .iter()
            .filter(|m| m.overall.significant && m.overall.diff < -threshold)
            .collect()
    }
}
