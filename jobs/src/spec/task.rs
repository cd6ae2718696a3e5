//! `[task]`: what each dataset row becomes (prompt or chat turns, target,
//! choices, few-shot examples) and the generation parameters.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::PathBuf;
use utoipa::ToSchema;

#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Generate,
    MultipleChoice,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    #[default]
    Auto,
    Text,
    Index,
    Letter,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MessageTemplate {
    pub role: String,
    pub content: String,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FewshotSpec {
    /// JSONL file of examples with the same fields as the dataset.
    #[schema(value_type = String)]
    pub path: PathBuf,
    /// How many examples to prepend (the first `k` of the file).
    pub k: u32,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GenerationSpec {
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    #[serde(default)]
    pub temperature: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Samples per document; each is its own request and cache entry.
    #[serde(default = "default_n")]
    pub n: u32,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub extra_body: Map<String, Value>,
}

impl GenerationSpec {
    /// The parameters every request of these settings carries (all but
    /// `n`, which makes one request per sample).
    pub fn params(&self) -> crate::request::GenerationParams {
        crate::request::GenerationParams {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            stop: self.stop.clone(),
            seed: self.seed,
            extra_body: self.extra_body.clone(),
        }
    }
}

impl Default for GenerationSpec {
    fn default() -> Self {
        GenerationSpec {
            max_tokens: default_max_tokens(),
            temperature: 0.0,
            top_p: None,
            stop: Vec::new(),
            seed: None,
            n: default_n(),
            extra_body: Map::new(),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub kind: TaskKind,
    /// A plain prompt template (for `/v1/completions`, or sent as one user
    /// message on the chat endpoint). Exactly one of `prompt` and `messages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Chat turns; each `content` is a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<MessageTemplate>>,
    /// Template for the reference answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// For `multiple_choice`: a minijinja expression evaluating to the list
    /// of choices, e.g. `choices` or `[A, B, C, D]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choices: Option<String>,
    /// Put between a prompt and its answer: before each choice when
    /// scoring multiple choice, and between a few-shot example's prompt and
    /// its target in prompt mode (lm-eval's `target_delimiter`).
    #[serde(default = "default_target_delimiter")]
    pub target_delimiter: String,
    /// How a multiple-choice target names the gold choice. `auto` accepts a
    /// choice's text, a 0-based index or a letter, and refuses ambiguous
    /// rows.
    #[serde(default)]
    pub target_kind: TargetKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fewshot: Option<FewshotSpec>,
    /// Between few-shot examples in prompt mode.
    #[serde(default = "default_fewshot_separator")]
    pub fewshot_separator: String,
    #[serde(default)]
    pub generation: GenerationSpec,
}

fn default_max_tokens() -> u32 {
    256
}
fn default_n() -> u32 {
    1
}
fn default_target_delimiter() -> String {
    " ".to_string()
}
fn default_fewshot_separator() -> String {
    "\n\n".to_string()
}
