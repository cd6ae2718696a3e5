//! Model weights on the GPU: bf16 matrices (q/k/v and gate/up merged, as the
//! CPU path merges them) and f32 norm weights and biases.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use half::bf16;
use rayon::prelude::*;

use crate::config::ModelConfig;
use crate::cpu::CpuModel;
use crate::error::EngineError;
use crate::weights::Weights;

pub(crate) struct GpuLayer {
    pub attn_norm: CudaSlice<f32>,
    /// `[q_dim + 2 kv_dim, hidden]`.
    pub wqkv: CudaSlice<bf16>,
    pub bqkv: Option<CudaSlice<f32>>,
    pub q_norm: Option<CudaSlice<f32>>,
    pub k_norm: Option<CudaSlice<f32>>,
    /// `[hidden, q_dim]`.
    pub wo: CudaSlice<bf16>,
    pub mlp_norm: CudaSlice<f32>,
    /// `[2 intermediate, hidden]`: gate rows then up rows.
    pub w_gate_up: CudaSlice<bf16>,
    /// `[hidden, intermediate]`.
    pub w_down: CudaSlice<bf16>,
}

pub(crate) struct GpuModel {
    pub embed: CudaSlice<bf16>,
    pub layers: Vec<GpuLayer>,
    pub final_norm: CudaSlice<f32>,
    /// `None` when tied to `embed`.
    pub lm_head: Option<CudaSlice<bf16>>,
    /// Bytes of weights on the device.
    pub bytes: usize,
}

fn oom(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Cuda(format!(
        "copying {what} to the GPU: {e} (the model may not fit in GPU memory)"
    ))
}

struct Uploader<'a> {
    stream: &'a Arc<CudaStream>,
    bytes: usize,
}

impl Uploader<'_> {
    fn bf16(&mut self, what: &str, data: Vec<f32>) -> Result<CudaSlice<bf16>, EngineError> {
        let host: Vec<bf16> = data.par_iter().map(|&v| bf16::from_f32(v)).collect();
        drop(data);
        self.bytes += host.len() * 2;
        self.stream.clone_htod(&host).map_err(|e| oom(what, e))
    }

    fn f32(&mut self, what: &str, data: &[f32]) -> Result<CudaSlice<f32>, EngineError> {
        self.bytes += data.len() * 4;
        self.stream.clone_htod(data).map_err(|e| oom(what, e))
    }
}

impl GpuModel {
    /// Checks `weights` against `config`, merges projections (through the
    /// CPU model's loader, so both paths agree on the layout) and uploads
    /// layer by layer, freeing host memory as it goes.
    pub(crate) fn upload(
        stream: &Arc<CudaStream>,
        config: &ModelConfig,
        weights: Weights,
    ) -> Result<GpuModel, EngineError> {
        let cpu = CpuModel::new(config.clone(), weights)?;
        let CpuModel {
            embed,
            layers,
            final_norm,
            lm_head,
            ..
        } = cpu;
        let mut up = Uploader { stream, bytes: 0 };
        let embed = up.bf16("model.embed_tokens.weight", embed)?;
        let lm_head = match lm_head {
            Some(h) => Some(up.bf16("lm_head.weight", h)?),
            None => None,
        };
        let final_norm = up.f32("model.norm.weight", &final_norm)?;
        let mut gpu_layers = Vec::with_capacity(layers.len());
        for (l, layer) in layers.into_iter().enumerate() {
            let p = format!("model.layers.{l}");
            gpu_layers.push(GpuLayer {
                attn_norm: up.f32(&format!("{p}.input_layernorm"), &layer.attn_norm)?,
                wqkv: up.bf16(&format!("{p}.self_attn.qkv"), layer.wqkv)?,
                bqkv: match &layer.bqkv {
                    Some(b) => Some(up.f32(&format!("{p}.self_attn.qkv bias"), b)?),
                    None => None,
                },
                q_norm: match &layer.q_norm {
                    Some(w) => Some(up.f32(&format!("{p}.self_attn.q_norm"), w)?),
                    None => None,
                },
                k_norm: match &layer.k_norm {
                    Some(w) => Some(up.f32(&format!("{p}.self_attn.k_norm"), w)?),
                    None => None,
                },
                wo: up.bf16(&format!("{p}.self_attn.o_proj"), layer.wo)?,
                mlp_norm: up.f32(&format!("{p}.post_attention_layernorm"), &layer.mlp_norm)?,
                w_gate_up: up.bf16(&format!("{p}.mlp.gate_up"), layer.w_gate_up)?,
                w_down: up.bf16(&format!("{p}.mlp.down_proj"), layer.w_down)?,
            });
        }
        Ok(GpuModel {
            embed,
            layers: gpu_layers,
            final_norm,
            lm_head,
            bytes: up.bytes,
        })
    }

    /// The output projection (the embedding matrix when tied).
    pub(crate) fn head_ptr(&self, stream: &CudaStream) -> u64 {
        match &self.lm_head {
            Some(h) => h.device_ptr(stream).0,
            None => self.embed.device_ptr(stream).0,
        }
    }
}
