//! Model hyper-parameters, read from a Hugging Face `config.json` or from a
//! GGUF file's metadata.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::EngineError;

/// The architectures the engine runs. All are decoder-only transformers of
/// the Llama family; they differ in biases, q/k norms and RoPE details.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// Llama 1/2/3, Mistral, SmolLM.
    Llama,
    /// Qwen2 / Qwen2.5: biases on the q, k and v projections.
    Qwen2,
    /// Qwen3: RMSNorm on q and k per head, no qkv bias.
    Qwen3,
}

/// RoPE frequency scaling (Llama 3.1 style), when the model uses it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

/// How RoPE pairs dimensions: `Neox` rotates `(i, i + d/2)` (Hugging Face
/// layout), `Interleaved` rotates `(2i, 2i + 1)` (GGUF/llama.cpp layout).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RopeStyle {
    Neox,
    Interleaved,
}

/// Everything the forward pass needs to know about a model's shape.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub rope_style: RopeStyle,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    /// Every token id that ends generation.
    pub eos_token_ids: Vec<u32>,
}

impl ModelConfig {
    /// Number of query heads times head size: the width of the attention
    /// output before `o_proj`.
    pub fn q_dim(&self) -> usize {
        self.num_attention_heads * self.head_dim
    }

    /// Number of key/value heads times head size.
    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }

    /// Reads a Hugging Face `config.json` (Llama, Mistral, SmolLM, Qwen2,
    /// Qwen3).
    pub fn from_hf_config_json(path: &Path) -> Result<ModelConfig, EngineError> {
        let text = std::fs::read_to_string(path).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        ModelConfig::from_hf_config_str(&text, path)
    }

    /// Parses the text of a Hugging Face `config.json`; `path` is only used
    /// in error messages.
    pub fn from_hf_config_str(text: &str, path: &Path) -> Result<ModelConfig, EngineError> {
        let err = |message: String| EngineError::Config {
            path: path.to_path_buf(),
            message,
        };
        let raw: HfConfig =
            serde_json::from_str(text).map_err(|e| err(format!("not valid JSON: {e}")))?;

        let arch_name = raw
            .architectures
            .as_ref()
            .and_then(|a| a.first().cloned())
            .or_else(|| raw.model_type.clone())
            .ok_or_else(|| err("neither `architectures` nor `model_type` is set".into()))?;
        let architecture = match arch_name.as_str() {
            "LlamaForCausalLM" | "MistralForCausalLM" | "llama" | "mistral" => Architecture::Llama,
            "Qwen2ForCausalLM" | "qwen2" => Architecture::Qwen2,
            "Qwen3ForCausalLM" | "qwen3" => Architecture::Qwen3,
            _ => {
                return Err(EngineError::UnsupportedArchitecture {
                    path: path.to_path_buf(),
                    name: arch_name,
                })
            }
        };
        if let Some(act) = &raw.hidden_act {
            if act != "silu" {
                return Err(err(format!(
                    "hidden_act {act:?} is not supported; only \"silu\" (SwiGLU) is"
                )));
            }
        }
        if raw.use_sliding_window == Some(true) {
            return Err(err(
                "use_sliding_window = true is not supported; the engine attends to the full context"
                    .into(),
            ));
        }

        let need = |v: Option<usize>, field: &str| {
            v.filter(|&n| n > 0)
                .ok_or_else(|| err(format!("`{field}` is missing or zero")))
        };
        let hidden_size = need(raw.hidden_size, "hidden_size")?;
        let num_attention_heads = need(raw.num_attention_heads, "num_attention_heads")?;
        let num_key_value_heads = raw.num_key_value_heads.unwrap_or(num_attention_heads);
        if num_key_value_heads == 0 || num_attention_heads % num_key_value_heads != 0 {
            return Err(err(format!(
                "num_attention_heads ({num_attention_heads}) must be a multiple of num_key_value_heads ({num_key_value_heads})"
            )));
        }
        let head_dim = match raw.head_dim {
            Some(d) if d > 0 => d,
            _ => {
                if hidden_size % num_attention_heads != 0 {
                    return Err(err(format!(
                        "hidden_size ({hidden_size}) is not a multiple of num_attention_heads ({num_attention_heads}) and head_dim is not set"
                    )));
                }
                hidden_size / num_attention_heads
            }
        };
        if head_dim % 2 != 0 {
            return Err(err(format!("head_dim ({head_dim}) must be even for RoPE")));
        }

        // transformers >= 5 writes `rope_parameters` (theta and scaling in
        // one object) instead of `rope_theta` and `rope_scaling`.
        let rope_params = raw.rope_parameters.as_ref().filter(|v| v.is_object());
        let rope_theta = raw
            .rope_theta
            .or_else(|| rope_params.and_then(|p| p.get("rope_theta")?.as_f64()));
        let rope_scaling = match raw.rope_scaling.as_ref().or(rope_params) {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => parse_rope_scaling(v).map_err(err)?,
        };

        Ok(ModelConfig {
            architecture,
            vocab_size: need(raw.vocab_size, "vocab_size")?,
            hidden_size,
            intermediate_size: need(raw.intermediate_size, "intermediate_size")?,
            num_hidden_layers: need(raw.num_hidden_layers, "num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta: rope_theta.unwrap_or(10000.0),
            rope_scaling,
            rope_style: RopeStyle::Neox,
            max_position_embeddings: mistral_window_cap(
                &arch_name,
                raw.sliding_window,
                raw.max_position_embeddings.unwrap_or(2048),
            ),
            // Llama, Mistral, Qwen2 and Qwen3 configs all default to untied.
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            bos_token_id: raw.bos_token_id,
            eos_token_ids: match raw.eos_token_id {
                None => Vec::new(),
                Some(OneOrMany::One(id)) => vec![id],
                Some(OneOrMany::Many(ids)) => ids,
            },
        })
    }
}

fn parse_rope_scaling(v: &serde_json::Value) -> Result<Option<RopeScaling>, String> {
    let kind = v
        .get("rope_type")
        .or_else(|| v.get("type"))
        .and_then(|t| t.as_str())
        .unwrap_or("default");
    match kind {
        "default" => Ok(None),
        "llama3" => {
            let num = |field: &str| {
                v.get(field)
                    .and_then(|x| x.as_f64())
                    .ok_or_else(|| format!("rope_scaling.{field} is missing or not a number"))
            };
            let original = num("original_max_position_embeddings")?;
            if original <= 0.0 {
                return Err(
                    "rope_scaling.original_max_position_embeddings must be positive".into(),
                );
            }
            let scaling = RopeScaling {
                factor: num("factor")?,
                low_freq_factor: num("low_freq_factor")?,
                high_freq_factor: num("high_freq_factor")?,
                original_max_position_embeddings: original as usize,
            };
            if scaling.high_freq_factor <= scaling.low_freq_factor || scaling.factor <= 0.0 {
                return Err(
                    "rope_scaling needs factor > 0 and high_freq_factor > low_freq_factor".into(),
                );
            }
            Ok(Some(scaling))
        }
        other => Err(format!(
            "rope_scaling type {other:?} is not supported (only \"llama3\" and \"default\")"
        )),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

/// The fields of a Hugging Face `config.json` the engine reads; everything
/// else is ignored.
#[derive(Deserialize)]
struct HfConfig {
    architectures: Option<Vec<String>>,
    model_type: Option<String>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    hidden_act: Option<String>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<serde_json::Value>,
    rope_parameters: Option<serde_json::Value>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    use_sliding_window: Option<bool>,
    sliding_window: Option<usize>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<OneOrMany>,
}

/// Mistral's configs attend within `sliding_window` positions (v0.1: 4096
/// of 32768) without a `use_sliding_window` switch. The engine attends to
/// the whole context, which is the same computation as long as no sequence
/// is longer than the window, so the usable length is capped at the window
/// instead of silently scoring long inputs differently.
fn mistral_window_cap(arch_name: &str, sliding_window: Option<usize>, max_len: usize) -> usize {
    let is_mistral = matches!(arch_name, "MistralForCausalLM" | "mistral");
    match sliding_window {
        Some(window) if is_mistral && window > 0 && window < max_len => {
            tracing::info!(
                window,
                max_position_embeddings = max_len,
                "Mistral sliding window: sequences are limited to the window"
            );
            window
        }
        _ => max_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistral_sliding_window_caps_the_sequence_length() {
        let base = r#""hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "vocab_size": 100, "max_position_embeddings": 32768,
            "sliding_window": 4096"#;
        let mistral = format!(r#"{{"architectures": ["MistralForCausalLM"], {base}}}"#);
        let c = ModelConfig::from_hf_config_str(&mistral, Path::new("config.json")).unwrap();
        assert_eq!(c.max_position_embeddings, 4096);
        // Qwen2 carries `sliding_window` but only uses it when
        // `use_sliding_window` is true.
        let qwen = format!(r#"{{"architectures": ["Qwen2ForCausalLM"], {base}}}"#);
        let c = ModelConfig::from_hf_config_str(&qwen, Path::new("config.json")).unwrap();
        assert_eq!(c.max_position_embeddings, 32768);
        let null_window = mistral.replace("4096", "null");
        let c = ModelConfig::from_hf_config_str(&null_window, Path::new("config.json")).unwrap();
        assert_eq!(c.max_position_embeddings, 32768);
    }

    #[test]
    fn parses_llama31_with_rope_scaling_and_eos_list() {
        let text = r#"{
            "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": 100, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
            "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192, "rope_type": "llama3"},
            "max_position_embeddings": 131072, "bos_token_id": 1, "eos_token_id": [2, 3],
            "hidden_act": "silu", "head_dim": null
        }"#;
        let c = ModelConfig::from_hf_config_str(text, Path::new("config.json")).unwrap();
        assert_eq!(c.architecture, Architecture::Llama);
        assert_eq!(c.head_dim, 16);
        assert_eq!(c.eos_token_ids, vec![2, 3]);
        assert!(!c.tie_word_embeddings);
        let rs = c.rope_scaling.unwrap();
        assert_eq!(rs.factor, 8.0);
        assert_eq!(rs.original_max_position_embeddings, 8192);
    }

    #[test]
    fn reads_transformers5_rope_parameters() {
        let text = r#"{"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
            "vocab_size": 10, "intermediate_size": 8, "num_hidden_layers": 1,
            "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64}}"#;
        let c = ModelConfig::from_hf_config_str(text, Path::new("config.json")).unwrap();
        assert_eq!(c.rope_theta, 500000.0);
        assert_eq!(c.rope_scaling.unwrap().original_max_position_embeddings, 64);
        let text = r#"{"model_type": "qwen2", "hidden_size": 64, "num_attention_heads": 4,
            "vocab_size": 10, "intermediate_size": 8, "num_hidden_layers": 1,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}}"#;
        let c = ModelConfig::from_hf_config_str(text, Path::new("config.json")).unwrap();
        assert_eq!(c.rope_theta, 1000000.0);
        assert!(c.rope_scaling.is_none());
    }

    #[test]
    fn parses_qwen3_with_explicit_head_dim_and_single_eos() {
        let text = r#"{"architectures": ["Qwen3ForCausalLM"], "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 100,
            "tie_word_embeddings": true, "eos_token_id": 7, "rope_scaling": null}"#;
        let c = ModelConfig::from_hf_config_str(text, Path::new("c.json")).unwrap();
        assert_eq!(c.architecture, Architecture::Qwen3);
        assert_eq!(c.head_dim, 32);
        assert!(c.tie_word_embeddings);
        assert_eq!(c.eos_token_ids, vec![7]);
        assert_eq!(c.bos_token_id, None);
    }

    #[test]
    fn rejects_unknown_architecture_and_bad_fields() {
        let e = ModelConfig::from_hf_config_str(
            r#"{"architectures": ["GPT2LMHeadModel"]}"#,
            Path::new("x/config.json"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("GPT2LMHeadModel"), "{e}");
        assert!(e.to_string().contains("x/config.json"), "{e}");
        let e = ModelConfig::from_hf_config_str(
            r#"{"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4}"#,
            Path::new("config.json"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("vocab_size"), "{e}");
        let e = ModelConfig::from_hf_config_str(
            r#"{"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 10,
                "intermediate_size": 8, "num_hidden_layers": 1,
                "rope_scaling": {"type": "yarn", "factor": 4.0}}"#,
            Path::new("config.json"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("yarn"), "{e}");
    }
}
