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
    /// OpenAI's Batch API (Files + Batches): half the price, results within
    /// 24 hours; settings in `[model.batch]`.
    OpenaiBatch,
    /// Shardline's own inference engine, in the worker's process, on CPU or
    /// GPU; the model is `path` (a GGUF file or a Hugging Face directory).
    Engine,
    /// No inference: score from the cache only.
    None,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Openai => "openai",
            BackendKind::OpenaiBatch => "openai-batch",
            BackendKind::Engine => "engine",
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
    /// `engine`: the model, a GGUF file or a Hugging Face directory. A
    /// relative path is resolved against the job file's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// `engine`: name of an environment variable holding the model path,
    /// read where the model is loaded (each worker); used when `path` is
    /// not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_env: Option<String>,
    /// `engine`: where the model runs, `"cpu"` (default), `"cuda"` or
    /// `"cuda:N"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceSpec>,
    /// `engine`: sha256 of the model's weights, tokenizer and chat template
    /// (64 hex characters), the model's identity in request keys. Filled
    /// from the model file by `shardline run`/`submit`; workers refuse a
    /// model whose digest differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// `engine`: batching and memory settings (`[model.engine]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineSpec>,
    /// Settings of the `openai-batch` backend (`[model.batch]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<crate::batch::BatchSpec>,
    /// Prices per million tokens (`[model.price]`), for the cost shown by
    /// `status`, `results` and `run --dry-run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<crate::cost::PriceSpec>,
}

impl ModelSpec {
    /// The identity that goes into every request key.
    pub fn fingerprint(&self) -> ModelFingerprint {
        match &self.cache_namespace {
            Some(ns) => ModelFingerprint::namespace(ns),
            // `none` keeps an engine job's identity when it names the model,
            // so cache-only scoring finds the engine's outputs.
            None if self.backend == BackendKind::Engine
                || (self.backend == BackendKind::None && self.fingerprint.is_some()) =>
            {
                ModelFingerprint(format!(
                    "engine:{}",
                    self.fingerprint.as_deref().unwrap_or("unfingerprinted")
                ))
            }
            None => ModelFingerprint::api(&self.provider, &self.model),
        }
    }
}

/// Whether `s` is a model fingerprint: 64 lowercase hex characters.
pub fn is_fingerprint(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `extra_body` keys the `engine` backend understands (vLLM's names).
pub const ENGINE_EXTRA_BODY_KEYS: &[&str] = &["top_k", "ignore_eos", "stop_token_ids"];

/// Where an `engine` model runs: `"cpu"`, `"cuda"` (device 0) or
/// `"cuda:N"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    Cuda {
        ordinal: u32,
    },
}

impl DeviceSpec {
    pub const ACCEPTED: &'static str = "\"cpu\", \"cuda\" or \"cuda:N\" (N a device number)";
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda { ordinal: 0 } => f.write_str("cuda"),
            DeviceSpec::Cuda { ordinal } => write!(f, "cuda:{ordinal}"),
        }
    }
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda { ordinal: 0 }),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(|ordinal| DeviceSpec::Cuda { ordinal })
                .ok_or_else(|| {
                    format!(
                        "unknown device {other:?}, expected {}",
                        DeviceSpec::ACCEPTED
                    )
                }),
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `[model.engine]`: the engine's limits, as in vLLM. Unset values take
/// the engine's defaults.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct EngineSpec {
    /// Most sequences in one step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_num_seqs: Option<u32>,
    /// Most tokens computed in one step (longer prompts are prefilled in
    /// chunks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_num_batched_tokens: Option<u32>,
    /// Memory for the KV cache: bytes, or a string such as `"512MiB"` or
    /// `"2GB"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_cache_memory: Option<ByteSize>,
    /// Longest sequence (prompt plus generation); the model's own limit
    /// when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_model_len: Option<u32>,
    /// CPU threads (default: every core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    /// Reuse the KV of shared prompt prefixes (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_prefix_caching: Option<bool>,
}

/// A number of bytes, written as an integer or with a unit (`B`, `KB`,
/// `MB`, `GB`, `KiB`, `MiB`, `GiB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let scale: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            other => {
                return Err(format!(
                    "unknown unit {other:?} in {s:?}: use B, KB, MB, GB, KiB, MiB or GiB"
                ))
            }
        };
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{s:?} is not a size such as 536870912, \"512MiB\" or \"2GB\""))?;
        let bytes = value * scale as f64;
        if !(bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64) {
            return Err(format!("{s:?} is out of range"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("expected a number of bytes or a string such as \"512MiB\"")
        })? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
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
