//! Loading a model for serving: a GGUF file or a Hugging Face directory
//! becomes an engine on a device, the model's text side (tokenizer, chat
//! template, end-of-generation ids) and its fingerprint.
//!
//! The fingerprint is computed (or read from the digest cache) before any
//! weight is decoded, so a caller that expects a given model learns of a
//! different file at once, not after a long load.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::chat_template::{ChatTemplate, ChatTemplateError};
use crate::config::{Architecture, ModelConfig};
use crate::cpu::{CpuExecutor, CpuModel};
use crate::engine::{BoxedExecutor, DynEngine, EngineSettings, LlmEngine};
use crate::error::EngineError;
pub use crate::fingerprint::ModelFormat;
use crate::fingerprint::{detect_format, fingerprint_model, DigestCache, FingerprintError};
use crate::gguf::{load_gguf, load_gguf_tokenizer, GgufError};
use crate::text::TextModel;
use crate::tokenizer::{Tokenizer, TokenizerError};
use crate::weights::Weights;

/// Where a model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Cpu,
    Cuda {
        ordinal: usize,
    },
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda { ordinal } => write!(f, "cuda:{ordinal}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Fingerprint(#[from] FingerprintError),
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{path}: tokenizer: {source}")]
    Tokenizer {
        path: PathBuf,
        #[source]
        source: TokenizerError,
    },
    #[error("{path}: chat template: {source}")]
    ChatTemplate {
        path: PathBuf,
        #[source]
        source: ChatTemplateError,
    },
    #[error(
        "{path}: the tokenizer has {tokenizer} tokens but the model's vocabulary has only {model}; \
         the tokenizer does not belong to these weights"
    )]
    VocabMismatch {
        path: PathBuf,
        tokenizer: usize,
        model: usize,
    },
    /// The model at `path` is not the one the caller expects.
    #[error(
        "model {path} has fingerprint {found}, but the job expects {expected}: the file changed \
         (or another model is at this path) since the job was submitted; restore that model or \
         submit the job again to score this one"
    )]
    FingerprintMismatch {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("device {device}: {message}")]
    DeviceUnavailable { device: Device, message: String },
}

/// How to load a model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub device: Device,
    pub settings: EngineSettings,
    pub digest_cache: DigestCache,
    /// When set, a model with another fingerprint is refused before its
    /// weights are read.
    pub expected_fingerprint: Option<String>,
    /// A chat template replacing the model's own (vLLM's `--chat-template`).
    pub chat_template: Option<TemplateOverride>,
}

/// A chat template given beside a model, used instead of the model's own
/// (or where it has none). The model's fingerprint does not cover it: a
/// caller that keys outputs by model keys them by this text too.
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateOverride {
    /// The file it came from, for errors.
    pub path: PathBuf,
    pub source: String,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            device: Device::Cpu,
            settings: EngineSettings::default(),
            digest_cache: DigestCache::default_location(),
            expected_fingerprint: None,
            chat_template: None,
        }
    }
}

/// What was loaded, for logs.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub format: ModelFormat,
    pub architecture: Architecture,
    /// `general.name` of a GGUF file, the directory name of an HF model.
    pub name: Option<String>,
    pub num_parameters: usize,
    pub device: Device,
    pub num_kv_blocks: usize,
    pub block_size: usize,
    pub load_time: Duration,
}

/// A model ready to serve.
pub struct LoadedModel {
    pub engine: DynEngine,
    pub text: TextModel,
    /// sha256 of weights, tokenizer and chat template (64 hex characters).
    pub fingerprint: String,
    pub info: ModelInfo,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("fingerprint", &self.fingerprint)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Everything but the engine: what [`probe_model`] checks and
/// [`load_model`] builds on.
struct TextSide {
    text: TextModel,
}

/// Checks cheaply that `path` is a model the engine can load (format,
/// architecture, tokenizer, chat template) without decoding weights, so a
/// wrong path fails before a job is submitted.
pub fn probe_model(path: &Path) -> Result<ModelFormat, LoadError> {
    let format = detect_format(path)?;
    match format {
        ModelFormat::Gguf => {
            // Opening checks the header, metadata and every tensor's bounds
            // (a truncated file fails here).
            let file = crate::gguf::GgufFile::open(path)?;
            let arch = file
                .get("general.architecture")
                .and_then(|v| match v {
                    crate::gguf::MetaValue::String(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            if !matches!(arch.as_str(), "llama" | "qwen2" | "qwen3") {
                return Err(GgufError::UnsupportedArchitecture {
                    path: path.to_path_buf(),
                    architecture: arch,
                }
                .into());
            }
            let (data, template) = load_gguf_tokenizer(path)?;
            gguf_text(path, &data, template.as_deref(), Vec::new(), None)?;
        }
        ModelFormat::HfDir => {
            let config = ModelConfig::from_hf_config_json(&path.join("config.json"))?;
            crate::hf::weight_file_paths(path)?;
            hf_text(path, &config, None)?;
        }
    }
    Ok(format)
}

/// The text side alone of the model at `path` (tokenizer, chat template,
/// BOS), read without decoding any weight: what a model's prompts look
/// like and how many tokens they are, for reports and estimates. The end
/// of generation ids are left out (nothing is generated with it).
/// `chat_template`, when given, replaces the model's own.
pub fn load_text_model(
    path: &Path,
    chat_template: Option<&TemplateOverride>,
) -> Result<TextModel, LoadError> {
    let side = match detect_format(path)? {
        ModelFormat::Gguf => {
            let (data, template) = load_gguf_tokenizer(path)?;
            gguf_text(path, &data, template.as_deref(), Vec::new(), chat_template)?
        }
        ModelFormat::HfDir => {
            let config = ModelConfig::from_hf_config_json(&path.join("config.json"))?;
            hf_text(path, &config, chat_template)?
        }
    };
    Ok(side.text)
}

/// Loads the model at `path` onto `options.device`.
pub fn load_model(path: &Path, options: &LoadOptions) -> Result<LoadedModel, LoadError> {
    let started = Instant::now();
    let format = detect_format(path)?;
    let fingerprint = fingerprint_model(path, &options.digest_cache)?;
    if let Some(expected) = &options.expected_fingerprint {
        if *expected != fingerprint {
            return Err(LoadError::FingerprintMismatch {
                path: path.to_path_buf(),
                expected: expected.clone(),
                found: fingerprint,
            });
        }
    }
    let (config, weights, side, name) = match format {
        ModelFormat::Gguf => {
            let model = load_gguf(path)?;
            let side = gguf_text(
                path,
                &model.tokenizer,
                model.chat_template.as_deref(),
                model.config.eos_token_ids.clone(),
                options.chat_template.as_ref(),
            )?;
            let name = model.summary.name.clone();
            (model.config, model.weights, side, name)
        }
        ModelFormat::HfDir => {
            let (mut config, weights) = crate::hf::load_hf_model(path)?;
            let side = hf_text(path, &config, options.chat_template.as_ref())?;
            config.eos_token_ids = side.text.eos_token_ids().to_vec();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            (config, weights, side, name)
        }
    };
    let tokenizer_vocab = side.text.tokenizer().vocab_size();
    if tokenizer_vocab > config.vocab_size {
        return Err(LoadError::VocabMismatch {
            path: path.to_path_buf(),
            tokenizer: tokenizer_vocab,
            model: config.vocab_size,
        });
    }
    let num_parameters = weights.tensors.values().map(|t| t.numel()).sum();
    let engine = build_engine(config.clone(), weights, options)?;
    let info = ModelInfo {
        path: path.to_path_buf(),
        format,
        architecture: config.architecture,
        name,
        num_parameters,
        device: options.device,
        num_kv_blocks: engine.scheduler_config().num_kv_blocks,
        block_size: engine.scheduler_config().block_size,
        load_time: started.elapsed(),
    };
    Ok(LoadedModel {
        engine,
        text: side.text,
        fingerprint,
        info,
    })
}

/// The engine on the chosen device. Each device is one arm: the CUDA
/// executor slots in beside the CPU one behind the same scheduler.
fn build_engine(
    config: ModelConfig,
    weights: Weights,
    options: &LoadOptions,
) -> Result<DynEngine, LoadError> {
    let settings = &options.settings;
    let executor: BoxedExecutor = match options.device {
        Device::Cpu => {
            let blocks = settings.resolve_num_kv_blocks(&config);
            let model = CpuModel::new(config.clone(), weights)?;
            Box::new(CpuExecutor::new(model, blocks, settings.block_size)?)
        }
        Device::Cuda { ordinal } => {
            let cuda_settings = crate::cuda::CudaSettings::from_engine(settings);
            match crate::cuda::CudaExecutor::new(&config, weights, &cuda_settings, ordinal) {
                Ok(executor) => Box::new(executor),
                // No driver or library on this machine: say so as a device
                // problem, which the worker reports once for the shard.
                Err(EngineError::CudaUnavailable(message)) => {
                    return Err(LoadError::DeviceUnavailable {
                        device: options.device,
                        message,
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    Ok(LlmEngine::with_executor(executor, config, settings)?)
}

fn gguf_text(
    path: &Path,
    data: &crate::gguf::GgufTokenizerData,
    template: Option<&str>,
    eos_token_ids: Vec<u32>,
    replacement: Option<&TemplateOverride>,
) -> Result<TextSide, LoadError> {
    let tokenizer = Tokenizer::from_gguf(data).map_err(|source| LoadError::Tokenizer {
        path: path.to_path_buf(),
        source,
    })?;
    let (template, path) = match replacement {
        Some(r) => (Some(r.source.as_str()), r.path.as_path()),
        None => (template, path),
    };
    let chat_template = template
        .map(|t| {
            ChatTemplate::new(
                t,
                data.token(data.bos_token_id),
                data.token(data.eos_token_id),
            )
        })
        .transpose()
        .map_err(|source| LoadError::ChatTemplate {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(TextSide {
        text: TextModel::new(tokenizer, chat_template, data.bos_token_id, eos_token_ids),
    })
}

/// Tokenizer, chat template and end-of-generation ids of a Hugging Face
/// directory: `config.json`'s EOS ids, `generation_config.json`'s and the
/// tokenizer's `eos_token`, together (vLLM stops on all of them too).
fn hf_text(
    dir: &Path,
    config: &ModelConfig,
    replacement: Option<&TemplateOverride>,
) -> Result<TextSide, LoadError> {
    let tokenizer_path = dir.join("tokenizer.json");
    let tokenizer =
        Tokenizer::from_file(&tokenizer_path).map_err(|source| LoadError::Tokenizer {
            path: tokenizer_path.clone(),
            source,
        })?;
    let extra = crate::hf::read_text_config(dir)?;
    let mut eos = config.eos_token_ids.clone();
    let from_tokenizer = extra
        .eos_token
        .as_deref()
        .and_then(|t| tokenizer.token_to_id(t));
    for id in extra
        .generation_eos_token_ids
        .iter()
        .copied()
        .chain(from_tokenizer)
    {
        if !eos.contains(&id) {
            eos.push(id);
        }
    }
    let bos = config.bos_token_id.or_else(|| {
        extra
            .bos_token
            .as_deref()
            .and_then(|t| tokenizer.token_to_id(t))
    });
    let (template, template_path) = match replacement {
        Some(r) => (Some(r.source.as_str()), r.path.clone()),
        None => (
            extra.chat_template.as_deref(),
            dir.join("tokenizer_config.json"),
        ),
    };
    let chat_template = template
        .map(|t| ChatTemplate::new(t, extra.bos_token.as_deref(), extra.eos_token.as_deref()))
        .transpose()
        .map_err(|source| LoadError::ChatTemplate {
            path: template_path,
            source,
        })?;
    Ok(TextSide {
        text: TextModel::new(tokenizer, chat_template, bos, eos),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Architecture;
    use crate::testing::{random_weights, tiny_config};

    /// A tiny HF directory: random Llama weights in safetensors, a
    /// word-level tokenizer.json covering the vocabulary, and the text-side
    /// files.
    fn tiny_hf_dir(dir: &Path) -> ModelConfig {
        let config = tiny_config(Architecture::Llama);
        let weights = random_weights(&config, 3);
        let config_json = serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "vocab_size": config.vocab_size,
            "hidden_size": config.hidden_size,
            "intermediate_size": config.intermediate_size,
            "num_hidden_layers": config.num_hidden_layers,
            "num_attention_heads": config.num_attention_heads,
            "num_key_value_heads": config.num_key_value_heads,
            "head_dim": config.head_dim,
            "max_position_embeddings": config.max_position_embeddings,
            "tie_word_embeddings": config.tie_word_embeddings,
            "eos_token_id": 2,
            "hidden_act": "silu"
        });
        std::fs::write(dir.join("config.json"), config_json.to_string()).unwrap();
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = weights
            .tensors
            .iter()
            .map(|(name, t)| {
                let data = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
                (name.clone(), t.shape.clone(), data)
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
            .iter()
            .map(|(name, shape, data)| {
                let view = safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    shape.clone(),
                    data,
                )
                .unwrap();
                (name.clone(), view)
            })
            .collect();
        let file = safetensors::serialize(views, &None).unwrap();
        std::fs::write(dir.join("model.safetensors"), file).unwrap();
        let vocab: serde_json::Map<String, serde_json::Value> = (0..config.vocab_size)
            .map(|i| (format!("w{i}"), serde_json::json!(i)))
            .collect();
        let tokenizer = serde_json::json!({
            "version": "1.0",
            "added_tokens": [
                {"id": 1, "content": "w1", "single_word": false, "lstrip": false,
                 "rstrip": false, "normalized": false, "special": true},
                {"id": 2, "content": "w2", "single_word": false, "lstrip": false,
                 "rstrip": false, "normalized": false, "special": true}
            ],
            "normalizer": null,
            "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": null,
            "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "w0"}
        });
        std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
        std::fs::write(
            dir.join("tokenizer_config.json"),
            serde_json::json!({
                "bos_token": "w1",
                "eos_token": {"content": "w2"},
                "chat_template": [
                    {"name": "tool_use", "template": "tools"},
                    {"name": "default", "template":
                        "{% for m in messages %}{{ m.content }} {% endfor %}w5"}
                ]
            })
            .to_string(),
        )
        .unwrap();
        std::fs::write(
            dir.join("generation_config.json"),
            r#"{"eos_token_id": [2, 9]}"#,
        )
        .unwrap();
        config
    }

    #[test]
    fn hf_directory_loads_with_its_text_side_and_fingerprint() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tiny_hf_dir(tmp.path());
        assert_eq!(probe_model(tmp.path()).unwrap(), ModelFormat::HfDir);
        let options = LoadOptions {
            digest_cache: DigestCache::new(tmp.path().join("digests")),
            settings: EngineSettings {
                num_kv_blocks: Some(32),
                ..EngineSettings::default()
            },
            ..LoadOptions::default()
        };
        let mut loaded = load_model(tmp.path(), &options).unwrap();
        assert_eq!(loaded.info.format, ModelFormat::HfDir);
        assert!(crate::fingerprint::is_digest(&loaded.fingerprint));
        // EOS ids from config.json, generation_config.json and the
        // tokenizer's eos_token, once each.
        let mut eos = loaded.text.eos_token_ids().to_vec();
        eos.sort();
        assert_eq!(eos, vec![2, 9]);
        assert_eq!(loaded.engine.config().eos_token_ids.len(), 2);
        let prompt = crate::text::Prompt::Chat(vec![crate::chat::ChatMessage {
            role: "user".into(),
            content: "w7 w8".into(),
        }]);
        let ids = loaded
            .text
            .encode_prompt(&prompt, crate::chat::SystemRole::Keep)
            .unwrap();
        assert_eq!(ids, vec![7, 8, 5]);
        // The text side alone, without decoding the weights: the same prompt.
        let text = load_text_model(tmp.path(), None).unwrap();
        assert_eq!(
            text.render(&prompt, crate::chat::SystemRole::Keep).unwrap(),
            "w7 w8 w5"
        );
        // A template given beside the model replaces its own; one that does
        // not compile is named by its file.
        let replacement = TemplateOverride {
            path: tmp.path().join("other.jinja"),
            source: "w6 {{ messages[0].content }}".into(),
        };
        let replaced = load_text_model(tmp.path(), Some(&replacement)).unwrap();
        let keep = crate::chat::SystemRole::Keep;
        assert_eq!(replaced.render(&prompt, keep).unwrap(), "w6 w7 w8");
        let broken = TemplateOverride {
            source: "{% if %}".into(),
            ..replacement
        };
        let e = load_text_model(tmp.path(), Some(&broken)).unwrap_err();
        assert!(e.to_string().contains("other.jinja"), "{e}");
        assert_eq!(
            text.encode_prompt(&prompt, crate::chat::SystemRole::Keep)
                .unwrap(),
            ids
        );
        let out = loaded
            .engine
            .generate(vec![crate::engine::GenerateRequest {
                prompt_tokens: ids,
                max_tokens: 3,
                ignore_eos: true,
                ..Default::default()
            }])
            .unwrap();
        assert_eq!(out[0].tokens.len(), 3);
        assert_eq!(loaded.info.num_parameters, {
            random_weights(&config, 3)
                .tensors
                .values()
                .map(|t| t.numel())
                .sum::<usize>()
        });

        // The expected fingerprint is checked before the weights are read.
        let wrong = LoadOptions {
            expected_fingerprint: Some("0".repeat(64)),
            ..options.clone()
        };
        let e = load_model(tmp.path(), &wrong).unwrap_err().to_string();
        assert!(
            e.contains(&loaded.fingerprint) && e.contains(&"0".repeat(64)),
            "{e}"
        );
        let cuda = LoadOptions {
            device: Device::Cuda { ordinal: 0 },
            ..options.clone()
        };
        let e = load_model(tmp.path(), &cuda).unwrap_err();
        assert!(matches!(e, LoadError::DeviceUnavailable { .. }), "{e}");
    }

    #[test]
    fn broken_models_are_reported_with_their_file() {
        let tmp = tempfile::tempdir().unwrap();
        tiny_hf_dir(tmp.path());
        std::fs::write(tmp.path().join("tokenizer.json"), "{not json").unwrap();
        let e = probe_model(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("tokenizer.json"), "{e}");

        let gguf = tmp.path().join("cut.gguf");
        std::fs::write(&gguf, b"GGUF\x03\x00\x00\x00\x05").unwrap();
        let e = probe_model(&gguf).unwrap_err().to_string();
        assert!(e.contains("cut.gguf") && e.contains("truncated"), "{e}");
    }
}
