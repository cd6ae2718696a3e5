//! The engine's [`ModelConfig`] from a GGUF file's metadata, and the RoPE
//! scaling llama.cpp stores as per-frequency factors.

use std::path::Path;

use super::error::GgufError;
use super::meta::Meta;
use super::tokenizer::{token_type, GgufTokenizerData};
use crate::config::{Architecture, ModelConfig, RopeScaling, RopeStyle};

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

/// The model config from `{arch}.*` metadata and the tokenizer's special ids.
pub(super) fn model_config(
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

/// Recovers Llama 3.1-style RoPE scaling from the `rope_freqs` factors that
/// llama.cpp's converter stores instead of the parameters: the largest
/// factor is `factor`, and the remaining parameters are found among the
/// values Meta's models use by recomputing the factors and comparing.
pub(super) fn rope_scaling_from_factors(
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
pub(super) fn llama3_rope_factors(s: &RopeScaling, theta: f64, head_dim: usize) -> Vec<f64> {
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
