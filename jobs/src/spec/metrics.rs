//! `[[metrics]]`: how outputs are scored, by rule or by a judge model.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

use super::model::ModelSpec;
use super::task::GenerationSpec;

#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    ExactMatch,
    Contains,
    Regex,
    ChoiceLetter,
    F1,
    Acc,
    AccNorm,
    /// Graded by another model (LLM-as-judge): `template`, a grade
    /// extraction (`labels`, `range`, `pattern`), `[metrics.model]`.
    Judge,
}

/// How a judge metric turns a document's grades into its score.
#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum JudgeAggregate {
    /// The mean of the grades: numbers, or labels through `label_scores`.
    Mean,
    /// The share of grades equal to `share_label`.
    Share,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    Strip,
    Lowercase,
    RemovePunctuation,
    RemoveArticles,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    #[serde(rename = "type")]
    pub kind: MetricKind,
    /// Name in reports; defaults to the type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Applied to output and target before comparing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub normalize: Vec<Normalization>,
    /// For `regex`: the first capture group is extracted from the output.
    /// For `judge`: the first capture group of the verdict is its grade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// `judge`: the grading prompt, a template over the document's fields
    /// (and `doc`), `output`, `target`, `prompt` and `choices`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// `judge`: a system message sent before the grading prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// `judge`: the grades a verdict may give; the grade is the label the
    /// verdict (or `pattern`'s group) names, the last one when several.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// `judge`: a numeric grade and its bounds, inclusive, e.g. `[1, 10]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<[f64; 2]>,
    /// `judge`: `mean` (default for `range`, or labels with `label_scores`)
    /// or `share` (default for `labels`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<JudgeAggregate>,
    /// `judge`, `aggregate = "share"`: the label counted; defaults to the
    /// first of `labels`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_label: Option<String>,
    /// `judge`, `aggregate = "mean"` with `labels`: each label's value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub label_scores: BTreeMap<String, f64>,
    /// `judge`: the judge model (`[metrics.model]`, the same settings as
    /// `[model]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Box<ModelSpec>>,
    /// `judge`: the judge's sampling (`[metrics.generation]`); `n` verdicts
    /// per output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<GenerationSpec>,
}

impl MetricSpec {
    /// A metric of `kind` with every option at its default.
    pub fn of_kind(kind: MetricKind) -> MetricSpec {
        MetricSpec {
            kind,
            name: None,
            normalize: Vec::new(),
            pattern: None,
            template: None,
            system: None,
            labels: Vec::new(),
            range: None,
            aggregate: None,
            share_label: None,
            label_scores: BTreeMap::new(),
            model: None,
            generation: None,
        }
    }

    /// How a judge's grades become a score: as written, else `share` for
    /// labels without `label_scores`, else `mean`.
    pub fn judge_aggregate(&self) -> JudgeAggregate {
        match self.aggregate {
            Some(a) => a,
            None if !self.labels.is_empty() && self.label_scores.is_empty() => {
                JudgeAggregate::Share
            }
            None => JudgeAggregate::Mean,
        }
    }

    pub fn display_name(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => serde_json::to_value(self.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        }
    }
}

/// The name a metric kind is written with in a spec.
pub(crate) fn metric_kind_name(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::ExactMatch => "exact_match",
        MetricKind::Contains => "contains",
        MetricKind::Regex => "regex",
        MetricKind::ChoiceLetter => "choice_letter",
        MetricKind::F1 => "f1",
        MetricKind::Acc => "acc",
        MetricKind::AccNorm => "acc_norm",
        MetricKind::Judge => "judge",
    }
}
