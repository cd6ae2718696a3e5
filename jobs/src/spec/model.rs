//! `[model]`: which backend serves the model, how it is reached, and the
//! identity that goes into every request key.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use utoipa::ToSchema;

use super::engine::{DeviceSpec, EngineSpec};
use super::price::PriceSpec;
use super::prompt_format::PromptFormat;
use super::provider_batch::ProviderBatchSpec;
use crate::request::ModelFingerprint;

#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `/v1/chat/completions`
    #[default]
    Chat,
    /// `/v1/completions`
    Completions,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SystemRole {
    /// Send the system message as its own turn.
    #[default]
    Keep,
    /// Merge each system turn into the next user turn, for chat templates
    /// without a system role (e.g. Gemma); a system turn with no user turn
    /// after it is refused.
    Fold,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
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
    /// Verify the endpoint's TLS certificate (`https://`). Turning it off
    /// trusts any server, including an impostor: prefer `ca_cert`.
    #[serde(default = "default_true")]
    pub ssl_verify: bool,
    /// A PEM file of CA certificates to trust besides the built-in roots,
    /// for an endpoint whose certificate comes from a private CA. A
    /// relative path is resolved against the job file's folder; workers
    /// read the file when they build the HTTP client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub ca_cert: Option<PathBuf>,
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
    #[schema(value_type = Option<String>)]
    pub path: Option<PathBuf>,
    /// `engine`: name of an environment variable holding the model path,
    /// read where the model is loaded (each worker); used when `path` is
    /// not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_env: Option<String>,
    /// `engine`: where the model is when the variable `path_env` names is
    /// not set on the machine loading it; a leading `~/` is that machine's
    /// home folder, a relative path is resolved against the job file's
    /// folder. Lets an example job find a model fetched to a known place
    /// without the variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub path_default: Option<PathBuf>,
    /// `engine`: where the model runs, `"cpu"` (default), `"cuda"` or
    /// `"cuda:N"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = "^(cpu|cuda(:[0-9]+)?)$")]
    pub device: Option<DeviceSpec>,
    /// `engine`: sha256 of the model's weights, tokenizer and chat template
    /// (64 hex characters), the model's identity in request keys. Filled
    /// from the model file by `shardline run`/`submit`; workers refuse a
    /// model whose digest differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// `engine`: a chat template file (Jinja) used instead of the model's
    /// own, as vLLM's `--chat-template`. A relative path is resolved
    /// against the job file's folder; workers read the file when they load
    /// the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub chat_template: Option<PathBuf>,
    /// `engine`: sha256 of the `chat_template` file (64 hex characters),
    /// part of the model's identity in request keys. Filled from the file
    /// by `shardline run`/`submit`; workers refuse a file whose digest
    /// differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template_sha256: Option<String>,
    /// How chat messages become one prompt for a model without a chat
    /// template (`[model.prompt_format]`): an `engine` model, or an API
    /// model on `endpoint = "completions"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_format: Option<PromptFormat>,
    /// `engine`: batching and memory settings (`[model.engine]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineSpec>,
    /// Settings of the `openai-batch` backend (`[model.batch]`; the TOML
    /// and JSON key stays `batch`, so existing job files keep working).
    #[serde(default, rename = "batch", skip_serializing_if = "Option::is_none")]
    pub provider_batch: Option<ProviderBatchSpec>,
    /// Prices per million tokens (`[model.price]`), for the cost shown by
    /// `status`, `results` and `run --dry-run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<PriceSpec>,
}

impl ModelSpec {
    /// The identity that goes into every request key.
    pub fn fingerprint(&self) -> ModelFingerprint {
        match &self.cache_namespace {
            // A namespace names the model, not what it reads: a replacement
            // template still changes the identity.
            Some(ns) => match &self.chat_template_sha256 {
                Some(template) => ModelFingerprint(format!(
                    "{}+chat_template:{template}",
                    ModelFingerprint::namespace(ns)
                )),
                None => ModelFingerprint::namespace(ns),
            },
            // `none` keeps an engine job's identity when it names the model,
            // so cache-only scoring finds the engine's outputs.
            None if self.backend == BackendKind::Engine
                || (self.backend == BackendKind::None && self.fingerprint.is_some()) =>
            {
                let mut id = format!(
                    "engine:{}",
                    self.fingerprint.as_deref().unwrap_or("unfingerprinted")
                );
                // A replacement template changes every prompt the model
                // reads, so it is part of the model's identity; without one
                // the identity is what it always was, and cached outputs
                // keep their keys.
                if let Some(template) = &self.chat_template_sha256 {
                    id.push_str(&format!("+chat_template:{template}"));
                }
                ModelFingerprint(id)
            }
            None => ModelFingerprint::api(&self.provider, &self.model),
        }
    }
}

impl ProviderBatchSpec {
    /// The settings of `model`, defaults when it has no `[model.batch]`.
    pub fn of(model: &ModelSpec) -> ProviderBatchSpec {
        model.provider_batch.clone().unwrap_or_default()
    }
}

/// Whether `s` is a model fingerprint: 64 lowercase hex characters.
pub fn is_fingerprint(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `extra_body` keys the `engine` backend understands (vLLM's names).
pub const ENGINE_EXTRA_BODY_KEYS: &[&str] = &["top_k", "ignore_eos", "stop_token_ids"];

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
