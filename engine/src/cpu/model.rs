//! Model weights arranged for the CPU forward pass: q/k/v and gate/up
//! projections fused into single matrices so each is one gemm call.

use crate::config::ModelConfig;
use crate::error::EngineError;
use crate::layout::check_weights;
use crate::weights::{Tensor, Weights};

pub(crate) struct Layer {
    pub attn_norm: Vec<f32>,
    /// `[q_dim + 2 * kv_dim, hidden]`: q, k and v projections stacked.
    pub wqkv: Vec<f32>,
    pub bqkv: Option<Vec<f32>>,
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    /// `[hidden, q_dim]`.
    pub wo: Vec<f32>,
    pub mlp_norm: Vec<f32>,
    /// `[2 * intermediate, hidden]`: gate then up.
    pub w_gate_up: Vec<f32>,
    /// `[hidden, intermediate]`.
    pub w_down: Vec<f32>,
}

/// A model ready for [`super::CpuExecutor`].
pub struct CpuModel {
    pub(crate) config: ModelConfig,
    pub(crate) embed: Vec<f32>,
    pub(crate) layers: Vec<Layer>,
    pub(crate) final_norm: Vec<f32>,
    /// `None` when tied to `embed`.
    pub(crate) lm_head: Option<Vec<f32>>,
}

impl CpuModel {
    /// Takes the tensors out of `weights` after checking names and shapes
    /// against `config`.
    pub fn new(config: ModelConfig, mut weights: Weights) -> Result<CpuModel, EngineError> {
        check_weights(&config, &weights, None)?;
        let mut take = |name: &str| -> Result<Vec<f32>, EngineError> {
            weights
                .tensors
                .remove(name)
                .map(|t: Tensor| t.data)
                .ok_or_else(|| EngineError::MissingTensor {
                    tensor: name.to_string(),
                    file: None,
                    hint: "required by the model config".into(),
                })
        };
        let embed = take("model.embed_tokens.weight")?;
        let final_norm = take("model.norm.weight")?;
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(take("lm_head.weight")?)
        };
        let (qd, kvd) = (config.q_dim(), config.kv_dim());
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let mut wqkv = take(&format!("{p}.self_attn.q_proj.weight"))?;
            wqkv.extend_from_slice(&take(&format!("{p}.self_attn.k_proj.weight"))?);
            wqkv.extend_from_slice(&take(&format!("{p}.self_attn.v_proj.weight"))?);
            let biases = [("q_proj", qd), ("k_proj", kvd), ("v_proj", kvd)]
                .map(|(proj, n)| (take(&format!("{p}.self_attn.{proj}.bias")).ok(), n));
            let bqkv = biases.iter().any(|(b, _)| b.is_some()).then(|| {
                biases
                    .iter()
                    .flat_map(|(b, n)| b.clone().unwrap_or_else(|| vec![0.0; *n]))
                    .collect()
            });
            let mut w_gate_up = take(&format!("{p}.mlp.gate_proj.weight"))?;
            w_gate_up.extend_from_slice(&take(&format!("{p}.mlp.up_proj.weight"))?);
            layers.push(Layer {
                attn_norm: take(&format!("{p}.input_layernorm.weight"))?,
                wqkv,
                bqkv,
                q_norm: take(&format!("{p}.self_attn.q_norm.weight")).ok(),
                k_norm: take(&format!("{p}.self_attn.k_norm.weight")).ok(),
                wo: take(&format!("{p}.self_attn.o_proj.weight"))?,
                mlp_norm: take(&format!("{p}.post_attention_layernorm.weight"))?,
                w_gate_up,
                w_down: take(&format!("{p}.mlp.down_proj.weight"))?,
            });
        }
        Ok(CpuModel {
            config,
            embed,
            layers,
            final_norm,
            lm_head,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Bytes of KV cache one token takes (K and V, all layers, f32).
    pub fn kv_bytes_per_token(&self) -> usize {
        kv_bytes_per_token(&self.config)
    }
}

/// Bytes of f32 KV cache one token takes for `config`.
pub fn kv_bytes_per_token(config: &ModelConfig) -> usize {
    2 * config.num_hidden_layers * config.kv_dim() * std::mem::size_of::<f32>()
}
