//! The job spec: what a user writes in `job.toml` (or posts as JSON).
//!
//! Parsing is strict: unknown fields and wrong values are rejected with the
//! field path and, for enumerations, the accepted values. `JobSpec::from_toml_file`
//! (spec_load.rs) then validates what serde cannot (templates compile, regexes compile,
//! metrics fit the task kind) so that a bad spec fails before any work starts.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::PathBuf;

use crate::request::ModelFingerprint;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub name: String,
    pub model: ModelSpec,
    pub dataset: DatasetSpec,
    pub task: TaskSpec,
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
    #[serde(default)]
    pub sharding: ShardingSpec,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// Any OpenAI-compatible HTTP endpoint.
    Openai,
    /// No inference: score from the cache only.
    None,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Openai => "openai",
            BackendKind::None => "none",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `/v1/chat/completions`
    #[default]
    Chat,
    /// `/v1/completions`
    Completions,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SystemRole {
    /// Send the system message as its own turn.
    #[default]
    Keep,
    /// Merge the system message into the first user turn, for chat templates
    /// without a system role (e.g. Gemma).
    Fold,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub backend: BackendKind,
    /// Model name as the endpoint knows it.
    pub model: String,
    /// Who serves the model; part of the cache key, so that the same model
    /// name on two providers never shares outputs. Defaults to `openai`.
    #[serde(default = "default_provider")]
    pub provider: String,
    /// Base URL including `/v1`, e.g. `http://localhost:8000/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Name of an environment variable holding the base URL; used when
    /// `base_url` is not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url_env: Option<String>,
    /// Name of the environment variable holding the API key. The key itself
    /// is never written anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub endpoint: Endpoint,
    #[serde(default = "default_true")]
    pub ssl_verify: bool,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Requests in flight at once per worker.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u32>,
    /// Retries after the first attempt on 429, 5xx, timeouts and connection
    /// errors.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    #[serde(default)]
    pub system_role: SystemRole,
    /// Overrides the model fingerprint in request keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_namespace: Option<String>,
}

impl ModelSpec {
    /// The identity that goes into every request key.
    pub fn fingerprint(&self) -> ModelFingerprint {
        match &self.cache_namespace {
            Some(ns) => ModelFingerprint::namespace(ns),
            None => ModelFingerprint::api(&self.provider, &self.model),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DatasetFormat {
    #[default]
    Jsonl,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnBadRow {
    #[default]
    Fail,
    Skip,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// Relative paths are resolved against the job file's folder when the
    /// spec is loaded from a file.
    pub path: PathBuf,
    #[serde(default)]
    pub format: DatasetFormat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Field holding the document id; the row number when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_field: Option<String>,
    /// Field whose value groups documents for per-subset scores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset_field: Option<String>,
    #[serde(default)]
    pub on_bad_row: OnBadRow,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Generate,
    MultipleChoice,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    #[default]
    Auto,
    Text,
    Index,
    Letter,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MessageTemplate {
    pub role: String,
    pub content: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FewshotSpec {
    /// JSONL file of examples with the same fields as the dataset.
    pub path: PathBuf,
    /// How many examples to prepend (the first `k` of the file).
    pub k: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
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
    pub extra_body: Map<String, Value>,
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

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
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

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    Strip,
    Lowercase,
    RemovePunctuation,
    RemoveArticles,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
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

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShardingSpec {
    /// Requests per shard.
    #[serde(default = "default_shard_size")]
    pub shard_size: u32,
    /// Attempts per shard before it is marked dead.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

impl Default for ShardingSpec {
    fn default() -> Self {
        ShardingSpec {
            shard_size: default_shard_size(),
            max_attempts: default_max_attempts(),
        }
    }
}

fn default_provider() -> String {
    "openai".to_string()
}
fn default_true() -> bool {
    true
}
fn default_timeout_secs() -> u64 {
    120
}
fn default_concurrency() -> u32 {
    16
}
fn default_max_retries() -> u32 {
    6
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
fn default_shard_size() -> u32 {
    100
}
fn default_max_attempts() -> u32 {
    3
}
