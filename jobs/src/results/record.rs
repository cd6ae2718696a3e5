//! One document's line of `samples.jsonl`: its outputs and scores.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::judge::Grade;
use crate::request::ChatMessage;

/// Log-likelihood of one choice's continuation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ChoiceLoglikelihood {
    pub logprob: f64,
    pub is_greedy: bool,
}

/// What the model returned for a document: texts per sample (generate) or
/// log-likelihoods per choice (multiple choice). `null` marks a missing
/// output.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum SampleOutputs {
    Generated(Vec<Option<String>>),
    Loglikelihoods(Vec<Option<ChoiceLoglikelihood>>),
}

/// What the model was given for a document, in `samples.jsonl`: the chat
/// messages as sent to an API (a JSON array of `{role, content}`), or the
/// text the model read: a plain prompt, or for an engine model the
/// messages rendered with its chat template.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum SamplePrompt {
    Text(String),
    Messages(Vec<ChatMessage>),
}

/// One line of `samples.jsonl`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SampleRecord {
    pub doc_id: String,
    pub doc_index: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// What the model was given.
    pub prompt: SamplePrompt,
    pub outputs: SampleOutputs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold_index: Option<usize>,
    /// Metric display name → score for this document (mean over samples).
    pub scores: BTreeMap<String, f64>,
    /// Some output was not available; the document is not scored.
    #[serde(default)]
    pub missing: bool,
    /// sha256 of the canonical JSON of the dataset row.
    pub doc_hash: String,
    /// sha256 of the input's one-string form (`[role] content` lines for
    /// messages), the same whatever form `prompt` takes.
    pub prompt_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_hash: Option<String>,
    /// Judge metric name → its verdicts on this document's outputs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub judges: BTreeMap<String, Vec<JudgeVerdict>>,
}

/// One verdict of a judge on one output.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JudgeVerdict {
    /// The graded output's sample index.
    pub output: usize,
    /// The verdict's own sample index (`[metrics.generation] n`).
    pub sample: u32,
    /// The judge's raw answer; `null` when it is not in the cache (not
    /// judged yet, or the judge request failed).
    pub verdict: Option<String>,
    /// The grade read from it; `null` when it gives none the metric accepts.
    pub grade: Option<Grade>,
}
