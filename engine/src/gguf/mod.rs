//! GGUF model files (llama.cpp's format): the container reader, ggml
//! dequantisation, and the mapping of a llama-family GGUF model onto the
//! engine's [`ModelConfig`] and Hugging Face-named f32 [`Weights`].
//!
//! Q/K layout: llama.cpp's converter permutes the rows of `q_proj`/`k_proj`
//! (and their biases) of `llama`-architecture models so that ggml can apply
//! RoPE to adjacent pairs `(2i, 2i+1)`. [`load_gguf`] undoes that
//! permutation, so the weights are exactly Hugging Face's and the config says
//! [`RopeStyle::Neox`](crate::config::RopeStyle::Neox): the forward pass is the same code for safetensors and
//! GGUF models. `qwen2`/`qwen3` files are not permuted by the converter (ggml
//! runs them in NEOX mode), so nothing is undone for them.

mod config;
mod error;
mod meta;
mod names;
mod quant;
mod reader;
mod tokenizer;
#[cfg(test)]
pub(crate) mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use error::GgufError;
pub use names::{gguf_name, hf_name, unpermute_rows};
pub use quant::{dequantize, GgmlType};
pub use reader::{GgufFile, MetaValue, TensorInfo, DEFAULT_ALIGNMENT};
pub use tokenizer::{load_gguf_tokenizer, token_type, GgufTokenizerData};

#[cfg(test)]
use config::llama3_rope_factors;
use config::{model_config, rope_scaling_from_factors};
use meta::Meta;
use names::is_q_or_k;
use tokenizer::tokenizer_data;

use crate::config::{Architecture, ModelConfig};
#[cfg(test)]
use crate::config::{RopeScaling, RopeStyle};
use crate::weights::{Tensor, Weights};

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

#[cfg(test)]
pub(crate) mod tests;
