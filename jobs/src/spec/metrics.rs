//! `[[metrics]]`: how outputs are scored.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

impl MetricSpec {
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
    }
}
