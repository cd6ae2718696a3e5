//! GGUF model files (llama.cpp's format): the container reader, ggml
//! dequantisation, and the mapping of a llama-family GGUF model onto the
//! engine's [`ModelConfig`] and Hugging Face-named f32 [`Weights`].
//!
//! Q/K layout: llama.cpp's converter permutes the rows of `q_proj`/`k_proj`
//! (and their biases) of `llama`-architecture models so that ggml can apply
//! RoPE to adjacent pairs `(2i, 2i+1)`. [`load_gguf`] undoes that
//! permutation, so the weights are exactly Hugging Face's and the config says
//! [`RopeStyle::Neox`]: the forward pass is the same code for safetensors and
//! GGUF models. `qwen2`/`qwen3` files are not permuted by the converter (ggml
//! runs them in NEOX mode), so nothing is undone for them.

mod quant;
mod reader;
#[cfg(test)]
pub(crate) mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use quant::{dequantize, GgmlType};
pub use reader::{GgufFile, MetaValue, TensorInfo, DEFAULT_ALIGNMENT};

use crate::config::{Architecture, ModelConfig, RopeScaling, RopeStyle};
use crate::weights::{Tensor, Weights};

/// Everything that can go wrong reading a GGUF model. Each variant names the
/// file and, where there is one, the tensor or metadata key.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read GGUF file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a GGUF file (first bytes {found:02x?}, expected \"GGUF\")")]
    BadMagic { path: PathBuf, found: Vec<u8> },
    #[error("{path}: GGUF version {version} is not supported: {hint}")]
    UnsupportedVersion {
        path: PathBuf,
        version: u32,
        hint: &'static str,
    },
    #[error("{path} is truncated: {what} lies past the end of the file (re-download it)")]
    Truncated { path: PathBuf, what: String },
    #[error("{path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "{path}: tensor {tensor:?} has type {ggml_type}, which this engine cannot dequantise \
         (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K); \
         use a file quantised to one of those"
    )]
    UnsupportedType {
        path: PathBuf,
        tensor: String,
        ggml_type: String,
    },
    #[error(
        "{path}: architecture {architecture:?} is not supported (supported: llama, qwen2, qwen3)"
    )]
    UnsupportedArchitecture { path: PathBuf, architecture: String },
    #[error("{path}: metadata key {key:?} is missing")]
    MissingMetadata { path: PathBuf, key: String },
    #[error("{path}: metadata key {key:?} should be {expected}, found {found}")]
    BadMetadata {
        path: PathBuf,
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("{path}: tensor {tensor:?} is missing")]
    MissingTensor { path: PathBuf, tensor: String },
    #[error("{path}: tensor {tensor:?} is not part of a supported {architecture} model")]
    UnexpectedTensor {
        path: PathBuf,
        tensor: String,
        architecture: String,
    },
    #[error(
        "{path}: tensor {tensor:?} has shape {found:?}, expected {expected:?} from the metadata"
    )]
    ShapeMismatch {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{path}: unsupported RoPE scaling: {detail}")]
    UnsupportedRopeScaling { path: PathBuf, detail: String },
}

/// ggml token types (`tokenizer.ggml.token_type`).
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// The tokenizer as GGUF metadata describes it (`tokenizer.ggml.*`); turned
/// into a runnable tokenizer by [`crate::tokenizer::Tokenizer::from_gguf`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GgufTokenizerData {
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE), `llama` (SentencePiece), ...
    pub model: String,
    /// `tokenizer.ggml.pre`: the pre-tokenizer flavour, e.g. `smollm`, `llama-bpe`.
    pub pre: Option<String>,
    /// Token strings by id (byte-level encoded for `gpt2`).
    pub tokens: Vec<String>,
    /// [`token_type`] by id; empty when the file has none.
    pub token_types: Vec<i32>,
    /// SentencePiece scores by id; empty when the file has none.
    pub scores: Vec<f32>,
    /// BPE merges, `"left right"`, highest priority first.
    pub merges: Vec<String>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    pub unknown_token_id: Option<u32>,
    pub padding_token_id: Option<u32>,
    /// End of turn (e.g. `<|eot_id|>`), when it differs from EOS.
    pub eot_token_id: Option<u32>,
    /// End of message (Llama 3.1 `<|eom_id|>`).
    pub eom_token_id: Option<u32>,
    pub add_bos_token: Option<bool>,
    pub add_eos_token: Option<bool>,
    pub add_space_prefix: Option<bool>,
}

impl GgufTokenizerData {
    /// The token string of `id`, if in range.
    pub fn token(&self, id: Option<u32>) -> Option<&str> {
        id.and_then(|i| self.tokens.get(i as usize))
            .map(String::as_str)
    }
}

/// What the file says about itself, for logs and reports.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufSummary {
    pub path: PathBuf,
    pub version: u32,
    pub architecture: String,
    /// `general.name`.
    pub name: Option<String>,
    /// `general.file_type` (llama.cpp's `LLAMA_FTYPE_*`).
    pub file_type: Option<u32>,
    pub alignment: u64,
    pub tensor_count: usize,
    /// Tensor count by ggml type name, e.g. `{"F32": 61, "Q4_1": 210, "Q8_0": 1}`.
    pub tensor_types: BTreeMap<String, usize>,
    /// Whether the Q/K row permutation of the llama converter was undone.
    pub qk_unpermuted: bool,
}

/// A GGUF model loaded into the engine's formats.
#[derive(Clone, Debug)]
pub struct GgufModel {
    pub config: ModelConfig,
    /// f32 tensors under Hugging Face names, `[out, in]` for linear layers.
    pub weights: Weights,
    pub tokenizer: GgufTokenizerData,
    /// `tokenizer.chat_template`, when the file has one.
    pub chat_template: Option<String>,
    pub summary: GgufSummary,
}

/// Reads only the tokenizer metadata and chat template of a GGUF file: no
/// tensor is decoded, so this is cheap even for large models.
pub fn load_gguf_tokenizer(path: &Path) -> Result<(GgufTokenizerData, Option<String>), GgufError> {
    let file = GgufFile::open(path)?;
    let meta = Meta { file: &file };
    let tokenizer = tokenizer_data(&meta)?;
    let chat_template = meta.str_opt("tokenizer.chat_template")?.map(str::to_string);
    Ok((tokenizer, chat_template))
}

/// Loads a llama-family GGUF model: parses the file, builds the config from
/// its metadata, dequantises every tensor to f32 under its Hugging Face name
/// (undoing the llama Q/K permutation) and checks every shape against the
/// config.
pub fn load_gguf(path: &Path) -> Result<GgufModel, GgufError> {
    let file = GgufFile::open(path)?;
    let meta = Meta { file: &file };
    let arch_name = meta.str_req("general.architecture")?.to_string();
    let architecture = match arch_name.as_str() {
        "llama" => Architecture::Llama,
        "qwen2" => Architecture::Qwen2,
        "qwen3" => Architecture::Qwen3,
        _ => {
            return Err(GgufError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                architecture: arch_name,
            })
        }
    };
    let tokenizer = tokenizer_data(&meta)?;
    let mut config = model_config(&meta, &arch_name, architecture, &tokenizer)?;

    let unpermute = architecture == Architecture::Llama;
    let mut weights = Weights::default();
    let mut tensor_types = BTreeMap::new();
    for info in file.tensors() {
        *tensor_types.entry(info.ggml_type.name()).or_insert(0) += 1;
        if info.name == "rope_freqs.weight" {
            // Llama 3.1-style scaling stored as per-frequency factors.
            let factors = file.dequantize(info)?;
            config.rope_scaling = Some(rope_scaling_from_factors(
                path,
                &factors,
                config.rope_theta,
                config.head_dim,
            )?);
            continue;
        }
        let hf = hf_name(&info.name).ok_or_else(|| GgufError::UnexpectedTensor {
            path: path.to_path_buf(),
            tensor: info.name.clone(),
            architecture: arch_name.clone(),
        })?;
        let shape = info.shape();
        let mut data = file.dequantize(info)?;
        if unpermute && is_q_or_k(&hf) {
            unpermute_rows(&mut data, &shape, config.head_dim).ok_or_else(|| {
                GgufError::ShapeMismatch {
                    path: path.to_path_buf(),
                    tensor: info.name.clone(),
                    expected: vec![config.num_attention_heads * config.head_dim],
                    found: shape.clone(),
                }
            })?;
        }
        let tensor = Tensor::new(shape, data).ok_or_else(|| GgufError::Corrupt {
            path: path.to_path_buf(),
            detail: format!(
                "tensor {:?}: element count does not match its dims",
                info.name
            ),
        })?;
        weights.tensors.insert(hf, tensor);
    }
    config.tie_word_embeddings = !weights.tensors.contains_key("lm_head.weight");
    if let Some(embed) = weights.tensors.get("model.embed_tokens.weight") {
        // The embedding matrix is the authority on the vocabulary size (the
        // tokenizer may list fewer tokens than the padded embedding).
        if let Some(&rows) = embed.shape.first() {
            if let Some(declared) = meta.u64_opt(&format!("{arch_name}.vocab_size"))? {
                if declared as usize != rows {
                    return Err(GgufError::ShapeMismatch {
                        path: path.to_path_buf(),
                        tensor: "token_embd.weight".into(),
                        expected: vec![declared as usize, config.hidden_size],
                        found: embed.shape.clone(),
                    });
                }
            }
            config.vocab_size = rows;
        }
    }
    check_shapes(path, &config, &weights)?;

    let summary = GgufSummary {
        path: path.to_path_buf(),
        version: file.version(),
        architecture: arch_name,
        name: meta.str_opt("general.name")?.map(str::to_string),
        file_type: meta.u64_opt("general.file_type")?.map(|v| v as u32),
        alignment: file.alignment(),
        tensor_count: file.tensors().len(),
        tensor_types,
        qk_unpermuted: unpermute,
    };
    let chat_template = meta.str_opt("tokenizer.chat_template")?.map(str::to_string);
    Ok(GgufModel {
        config,
        weights,
        tokenizer,
        chat_template,
        summary,
    })
}

/// Typed access to metadata with errors that name the key.
struct Meta<'a> {
    file: &'a GgufFile,
}

impl Meta<'_> {
    fn path(&self) -> PathBuf {
        self.file.path().to_path_buf()
    }

    fn bad(&self, key: &str, expected: &'static str, v: &MetaValue) -> GgufError {
        GgufError::BadMetadata {
            path: self.path(),
            key: key.to_string(),
            expected,
            found: match v {
                MetaValue::Array(a) => format!("an array of {} values", a.len()),
                MetaValue::String(s) => format!("string {s:?}"),
                other => format!("{} {other:?}", other.type_name()),
            },
        }
    }

    fn missing(&self, key: &str) -> GgufError {
        GgufError::MissingMetadata {
            path: self.path(),
            key: key.to_string(),
        }
    }

    fn u64_opt(&self, key: &str) -> Result<Option<u64>, GgufError> {
        match self.file.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.bad(key, "a non-negative integer", v)),
        }
    }

    fn usize_req(&self, key: &str) -> Result<usize, GgufError> {
        self.u64_opt(key)?
            .map(|v| v as usize)
            .ok_or_else(|| self.missing(key))
    }

    fn u32_opt(&self, key: &str) -> Result<Option<u32>, GgufError> {
        match self.u64_opt(key)? {
            None => Ok(None),
            Some(v) => u32::try_from(v)
                .map(Some)
                .map_err(|_| GgufError::BadMetadata {
                    path: self.path(),
                    key: key.to_string(),
                    expected: "a 32-bit token id",
                    found: v.to_string(),
                }),
        }
    }

    fn f64_opt(&self, key: &str) -> Result<Option<f64>, GgufError> {
        match self.file.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.bad(key, "a number", v)),
        }
    }

    fn bool_opt(&self, key: &str) -> Result<Option<bool>, GgufError> {
        match self.file.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.bad(key, "a bool", v)),
        }
    }

    fn str_opt(&self, key: &str) -> Result<Option<&str>, GgufError> {
        match self.file.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.bad(key, "a string", v)),
        }
    }

    fn str_req(&self, key: &str) -> Result<&str, GgufError> {
        self.str_opt(key)?.ok_or_else(|| self.missing(key))
    }

    fn array_opt(&self, key: &str) -> Result<Option<&[MetaValue]>, GgufError> {
        match self.file.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_array()
                .map(Some)
                .ok_or_else(|| self.bad(key, "an array", v)),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, GgufError> {
        let Some(items) = self.array_opt(key)? else {
            return Ok(Vec::new());
        };
        items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| self.bad(key, "an array of strings", v))
            })
            .collect()
    }
}

fn tokenizer_data(meta: &Meta<'_>) -> Result<GgufTokenizerData, GgufError> {
    let tokens = meta.strings("tokenizer.ggml.tokens")?;
    let token_types = match meta.array_opt("tokenizer.ggml.token_type")? {
        None => Vec::new(),
        Some(items) => items
            .iter()
            .map(|v| {
                v.as_i64()
                    .and_then(|t| i32::try_from(t).ok())
                    .ok_or_else(|| meta.bad("tokenizer.ggml.token_type", "an array of i32", v))
            })
            .collect::<Result<_, _>>()?,
    };
    let scores = match meta.array_opt("tokenizer.ggml.scores")? {
        None => Vec::new(),
        Some(items) => items
            .iter()
            .map(|v| {
                v.as_f64()
                    .map(|s| s as f32)
                    .ok_or_else(|| meta.bad("tokenizer.ggml.scores", "an array of f32", v))
            })
            .collect::<Result<_, _>>()?,
    };
    let data = GgufTokenizerData {
        model: meta
            .str_opt("tokenizer.ggml.model")?
            .unwrap_or_default()
            .to_string(),
        pre: meta.str_opt("tokenizer.ggml.pre")?.map(str::to_string),
        merges: meta.strings("tokenizer.ggml.merges")?,
        bos_token_id: meta.u32_opt("tokenizer.ggml.bos_token_id")?,
        eos_token_id: meta.u32_opt("tokenizer.ggml.eos_token_id")?,
        unknown_token_id: meta.u32_opt("tokenizer.ggml.unknown_token_id")?,
        padding_token_id: meta.u32_opt("tokenizer.ggml.padding_token_id")?,
        eot_token_id: meta.u32_opt("tokenizer.ggml.eot_token_id")?,
        eom_token_id: meta.u32_opt("tokenizer.ggml.eom_token_id")?,
        add_bos_token: meta.bool_opt("tokenizer.ggml.add_bos_token")?,
        add_eos_token: meta.bool_opt("tokenizer.ggml.add_eos_token")?,
        add_space_prefix: meta.bool_opt("tokenizer.ggml.add_space_prefix")?,
        tokens,
        token_types,
        scores,
    };
    if !data.token_types.is_empty() && data.token_types.len() != data.tokens.len() {
        return Err(GgufError::BadMetadata {
            path: meta.path(),
            key: "tokenizer.ggml.token_type".into(),
            expected: "one entry per token",
            found: format!(
                "{} entries for {} tokens",
                data.token_types.len(),
                data.tokens.len()
            ),
        });
    }
    for (key, id) in [
        ("tokenizer.ggml.bos_token_id", data.bos_token_id),
        ("tokenizer.ggml.eos_token_id", data.eos_token_id),
        ("tokenizer.ggml.eot_token_id", data.eot_token_id),
        ("tokenizer.ggml.eom_token_id", data.eom_token_id),
    ] {
        if let Some(id) = id {
            if !data.tokens.is_empty() && id as usize >= data.tokens.len() {
                return Err(GgufError::BadMetadata {
                    path: meta.path(),
                    key: key.into(),
                    expected: "a token id below the vocabulary size",
                    found: format!("{id} with {} tokens", data.tokens.len()),
                });
            }
        }
    }
    Ok(data)
}

/// Token texts llama.cpp treats as end of generation when they are control
/// tokens.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|eom_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<EOT>",
    "<|end_of_text|>",
];

fn model_config(
    meta: &Meta<'_>,
    arch: &str,
    architecture: Architecture,
    tok: &GgufTokenizerData,
) -> Result<ModelConfig, GgufError> {
    let k = |suffix: &str| format!("{arch}.{suffix}");
    let hidden_size = meta.usize_req(&k("embedding_length"))?;
    let num_attention_heads = meta.usize_req(&k("attention.head_count"))?;
    let num_key_value_heads = meta
        .u64_opt(&k("attention.head_count_kv"))?
        .map(|v| v as usize)
        .unwrap_or(num_attention_heads);
    if num_attention_heads == 0
        || num_key_value_heads == 0
        || num_attention_heads % num_key_value_heads != 0
    {
        return Err(GgufError::BadMetadata {
            path: meta.path(),
            key: k("attention.head_count_kv"),
            expected: "a positive divisor of attention.head_count",
            found: format!("{num_key_value_heads} (head_count {num_attention_heads})"),
        });
    }
    let head_dim = match meta.u64_opt(&k("attention.key_length"))? {
        Some(v) => v as usize,
        None if hidden_size % num_attention_heads == 0 => hidden_size / num_attention_heads,
        None => {
            return Err(GgufError::BadMetadata {
                path: meta.path(),
                key: k("embedding_length"),
                expected: "a multiple of attention.head_count",
                found: format!("{hidden_size} with {num_attention_heads} heads"),
            })
        }
    };
    if let Some(v) = meta.u64_opt(&k("attention.value_length"))? {
        if v as usize != head_dim {
            return Err(GgufError::BadMetadata {
                path: meta.path(),
                key: k("attention.value_length"),
                expected: "equal to the key length",
                found: format!("{v} (key length {head_dim})"),
            });
        }
    }
    if let Some(rot) = meta.u64_opt(&k("rope.dimension_count"))? {
        if rot as usize != head_dim {
            return Err(GgufError::UnsupportedRopeScaling {
                path: meta.path(),
                detail: format!(
                    "partial rotary embedding ({arch}.rope.dimension_count = {rot}, head dim {head_dim})"
                ),
            });
        }
    }
    let rope_theta = meta.f64_opt(&k("rope.freq_base"))?.unwrap_or(10_000.0);
    let scaling_type = meta.str_opt(&k("rope.scaling.type"))?;
    let scaling_factor = meta
        .f64_opt(&k("rope.scaling.factor"))?
        .or(meta.f64_opt(&k("rope.scale_linear"))?);
    let identity = scaling_factor.is_none_or(|f| f == 1.0);
    match (scaling_type, scaling_factor) {
        (Some("none"), _) => {}
        (None | Some("linear"), _) if identity => {}
        (t, f) => {
            return Err(GgufError::UnsupportedRopeScaling {
                path: meta.path(),
                detail: format!(
                    "{arch}.rope.scaling.type = {:?}, factor {:?}; only Llama 3.1-style \
                     (rope_freqs) scaling is implemented",
                    t.unwrap_or("linear"),
                    f
                ),
            });
        }
    }
    // End of generation: EOS, EOT and EOM from the metadata, then, as
    // llama.cpp does, control tokens whose text marks an end of turn or text
    // (converters often record only one of them).
    let by_text = tok
        .tokens
        .iter()
        .enumerate()
        .filter(|(id, t)| {
            EOG_TEXTS.contains(&t.as_str())
                && tok.token_types.get(*id) == Some(&token_type::CONTROL)
        })
        .map(|(id, _)| id as u32);
    let mut eos_token_ids = Vec::new();
    for id in [tok.eos_token_id, tok.eot_token_id, tok.eom_token_id]
        .into_iter()
        .flatten()
        .chain(by_text)
    {
        if !eos_token_ids.contains(&id) {
            eos_token_ids.push(id);
        }
    }
    Ok(ModelConfig {
        architecture,
        // Replaced by the embedding's row count once the tensors are read.
        vocab_size: meta
            .u64_opt(&k("vocab_size"))?
            .map(|v| v as usize)
            .unwrap_or(tok.tokens.len()),
        hidden_size,
        intermediate_size: meta.usize_req(&k("feed_forward_length"))?,
        num_hidden_layers: meta.usize_req(&k("block_count"))?,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        rms_norm_eps: meta
            .f64_opt(&k("attention.layer_norm_rms_epsilon"))?
            .ok_or_else(|| meta.missing(&k("attention.layer_norm_rms_epsilon")))?,
        rope_theta,
        rope_scaling: None,
        rope_style: RopeStyle::Neox,
        max_position_embeddings: meta.usize_req(&k("context_length"))?,
        tie_word_embeddings: true,
        bos_token_id: tok.bos_token_id,
        eos_token_ids,
    })
}

/// The Hugging Face name of a llama.cpp tensor name, or `None` for a tensor
/// outside the supported architectures.
pub fn hf_name(gguf: &str) -> Option<String> {
    match gguf {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, kind) = rest.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    let hf_part = match part {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf_part}.{kind}"))
}

fn is_q_or_k(hf: &str) -> bool {
    hf.contains(".self_attn.q_proj.") || hf.contains(".self_attn.k_proj.")
}

/// Undoes llama.cpp's `permute` of q/k rows: within each head of `head_dim`
/// rows, GGUF row `2i + s` is Hugging Face row `s * head_dim/2 + i`. Works on
/// weights (`[rows, cols]`) and biases (`[rows]`). `None` when the row count
/// is not a whole number of heads.
pub fn unpermute_rows(data: &mut [f32], shape: &[usize], head_dim: usize) -> Option<()> {
    let rows = *shape.first()?;
    let cols: usize = shape[1..].iter().product();
    if head_dim == 0
        || !head_dim.is_multiple_of(2)
        || !rows.is_multiple_of(head_dim)
        || rows * cols != data.len()
    {
        return None;
    }
    let half = head_dim / 2;
    let mut head = vec![0f32; head_dim * cols];
    for h in 0..rows / head_dim {
        let block = &mut data[h * head_dim * cols..(h + 1) * head_dim * cols];
        for i in 0..half {
            for s in 0..2 {
                let src = (2 * i + s) * cols;
                let dst = (s * half + i) * cols;
                head[dst..dst + cols].copy_from_slice(&block[src..src + cols]);
            }
        }
        block.copy_from_slice(&head);
    }
    Some(())
}

/// Recovers Llama 3.1-style RoPE scaling from the `rope_freqs` factors that
/// llama.cpp's converter stores instead of the parameters: the largest
/// factor is `factor`, and the remaining parameters are found among the
/// values Meta's models use by recomputing the factors and comparing.
fn rope_scaling_from_factors(
    path: &Path,
    factors: &[f32],
    rope_theta: f64,
    head_dim: usize,
) -> Result<RopeScaling, GgufError> {
    let unsupported = |detail: String| GgufError::UnsupportedRopeScaling {
        path: path.to_path_buf(),
        detail,
    };
    if factors.len() * 2 != head_dim {
        return Err(unsupported(format!(
            "rope_freqs.weight has {} factors for head dim {head_dim}",
            factors.len()
        )));
    }
    let factor = factors.iter().cloned().fold(f32::MIN, f32::max) as f64;
    if factor <= 1.0 + 1e-6 {
        return Err(unsupported("rope_freqs.weight holds no scaling".into()));
    }
    for original in [8192usize, 4096, 2048, 16384, 32768, 131072] {
        for (low, high) in [(1.0, 4.0), (1.0, 2.0), (2.0, 4.0), (1.0, 8.0)] {
            let candidate = RopeScaling {
                factor,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: original,
            };
            let ok = llama3_rope_factors(&candidate, rope_theta, head_dim)
                .iter()
                .zip(factors)
                .all(|(a, &b)| (a - b as f64).abs() <= 1e-3 * a.abs().max(1.0));
            if ok {
                return Ok(candidate);
            }
        }
    }
    Err(unsupported(
        "rope_freqs.weight does not match Llama 3.1-style scaling with standard parameters".into(),
    ))
}

/// The per-frequency divisors of Llama 3.1 RoPE scaling, as the converter
/// computes them.
fn llama3_rope_factors(s: &RopeScaling, theta: f64, head_dim: usize) -> Vec<f64> {
    let low_wavelen = s.original_max_position_embeddings as f64 / s.low_freq_factor;
    let high_wavelen = s.original_max_position_embeddings as f64 / s.high_freq_factor;
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / theta.powf((2 * i) as f64 / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                s.factor
            } else {
                let smooth = (s.original_max_position_embeddings as f64 / wavelen
                    - s.low_freq_factor)
                    / (s.high_freq_factor - s.low_freq_factor);
                1.0 / ((1.0 - smooth) / s.factor + smooth)
            }
        })
        .collect()
}

/// Checks that every tensor the forward pass reads exists with the shape the
/// config implies.
fn check_shapes(path: &Path, c: &ModelConfig, w: &Weights) -> Result<(), GgufError> {
    let q = c.num_attention_heads * c.head_dim;
    let kv = c.num_key_value_heads * c.head_dim;
    let h = c.hidden_size;
    let i = c.intermediate_size;
    let mut expect: Vec<(String, Vec<usize>, bool)> = vec![
        (
            "model.embed_tokens.weight".into(),
            vec![c.vocab_size, h],
            true,
        ),
        ("model.norm.weight".into(), vec![h], true),
        ("lm_head.weight".into(), vec![c.vocab_size, h], false),
    ];
    for l in 0..c.num_hidden_layers {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        expect.extend([
            (p("input_layernorm.weight"), vec![h], true),
            (p("post_attention_layernorm.weight"), vec![h], true),
            (p("self_attn.q_proj.weight"), vec![q, h], true),
            (p("self_attn.k_proj.weight"), vec![kv, h], true),
            (p("self_attn.v_proj.weight"), vec![kv, h], true),
            (p("self_attn.o_proj.weight"), vec![h, q], true),
            (p("mlp.gate_proj.weight"), vec![i, h], true),
            (p("mlp.up_proj.weight"), vec![i, h], true),
            (p("mlp.down_proj.weight"), vec![h, i], true),
            (
                p("self_attn.q_proj.bias"),
                vec![q],
                c.architecture == Architecture::Qwen2,
            ),
            (
                p("self_attn.k_proj.bias"),
                vec![kv],
                c.architecture == Architecture::Qwen2,
            ),
            (
                p("self_attn.v_proj.bias"),
                vec![kv],
                c.architecture == Architecture::Qwen2,
            ),
            (p("self_attn.o_proj.bias"), vec![h], false),
            (
                p("self_attn.q_norm.weight"),
                vec![c.head_dim],
                c.architecture == Architecture::Qwen3,
            ),
            (
                p("self_attn.k_norm.weight"),
                vec![c.head_dim],
                c.architecture == Architecture::Qwen3,
            ),
        ]);
    }
    let known: std::collections::HashSet<&str> =
        expect.iter().map(|(n, _, _)| n.as_str()).collect();
    for (name, shape, required) in &expect {
        match w.tensors.get(name) {
            None if *required => {
                return Err(GgufError::MissingTensor {
                    path: path.to_path_buf(),
                    tensor: gguf_name(name),
                })
            }
            None => {}
            Some(t) if &t.shape != shape => {
                return Err(GgufError::ShapeMismatch {
                    path: path.to_path_buf(),
                    tensor: gguf_name(name),
                    expected: shape.clone(),
                    found: t.shape.clone(),
                })
            }
            Some(_) => {}
        }
    }
    // A layer index past block_count, or a bias the architecture has no use
    // for, means the metadata and tensors disagree.
    if let Some(extra) = w.tensors.keys().find(|n| !known.contains(n.as_str())) {
        return Err(GgufError::UnexpectedTensor {
            path: path.to_path_buf(),
            tensor: gguf_name(extra),
            architecture: format!("{:?} ({} layers)", c.architecture, c.num_hidden_layers)
                .to_lowercase(),
        });
    }
    Ok(())
}

/// The llama.cpp name of a Hugging Face tensor name (inverse of [`hf_name`]),
/// so that errors use the names the file holds.
pub fn gguf_name(hf: &str) -> String {
    match hf {
        "model.embed_tokens.weight" => return "token_embd.weight".into(),
        "model.norm.weight" => return "output_norm.weight".into(),
        "lm_head.weight" => return "output.weight".into(),
        _ => {}
    }
    let Some(rest) = hf.strip_prefix("model.layers.") else {
        return hf.to_string();
    };
    let Some((layer, rest)) = rest.split_once('.') else {
        return hf.to_string();
    };
    let Some((part, kind)) = rest.rsplit_once('.') else {
        return hf.to_string();
    };
    let g = match part {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return hf.to_string(),
    };
    format!("blk.{layer}.{g}.{kind}")
}

#[cfg(test)]
pub(crate) mod tests;
