//! The CPU executor's weights: every linear layer (the LM head included) as
//! a [`PackedMatrix`], made once from a [`CpuModel`] when the executor is
//! built, so that no matmul re-arranges weights at run time.

use super::model::CpuModel;
use super::ops::PackedMatrix;
use crate::config::ModelConfig;

pub(crate) struct PackedLayer {
    pub attn_norm: Vec<f32>,
    pub wqkv: PackedMatrix,
    pub bqkv: Option<Vec<f32>>,
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    pub wo: PackedMatrix,
    pub mlp_norm: Vec<f32>,
    pub w_gate_up: PackedMatrix,
    pub w_down: PackedMatrix,
}

pub(crate) struct PackedModel {
    pub config: ModelConfig,
    /// Row-major `[vocab, hidden]` embeddings, kept only when the LM head is
    /// a separate matrix; tied models read embedding rows out of `lm_head`.
    embed: Option<Vec<f32>>,
    pub lm_head: PackedMatrix,
    pub layers: Vec<PackedLayer>,
    pub final_norm: Vec<f32>,
}

impl PackedModel {
    /// Packs `model`'s matrices, releasing each source matrix as soon as it
    /// is packed so peak memory stays near one copy of the model.
    pub fn new(model: CpuModel) -> PackedModel {
        let CpuModel {
            config,
            embed,
            layers,
            final_norm,
            lm_head,
        } = model;
        let (h, v) = (config.hidden_size, config.vocab_size);
        let (qd, kvd, inter) = (config.q_dim(), config.kv_dim(), config.intermediate_size);
        let (embed, lm_head) = match lm_head {
            Some(head) => (Some(embed), PackedMatrix::from_rows(&head, v, h)),
            None => (None, PackedMatrix::from_rows(&embed, v, h)),
        };
        let layers = layers
            .into_iter()
            .map(|l| PackedLayer {
                wqkv: PackedMatrix::from_rows(&l.wqkv, qd + 2 * kvd, h),
                wo: PackedMatrix::from_rows(&l.wo, h, qd),
                w_gate_up: PackedMatrix::from_rows(&l.w_gate_up, 2 * inter, h),
                w_down: PackedMatrix::from_rows(&l.w_down, h, inter),
                attn_norm: l.attn_norm,
                bqkv: l.bqkv,
                q_norm: l.q_norm,
                k_norm: l.k_norm,
                mlp_norm: l.mlp_norm,
            })
            .collect();
        PackedModel {
            config,
            embed,
            lm_head,
            layers,
            final_norm,
        }
    }

    /// Writes token `t`'s embedding into `out` (`hidden_size` values).
    pub fn embed_row(&self, t: usize, out: &mut [f32]) {
        let h = self.config.hidden_size;
        match &self.embed {
            Some(e) => out.copy_from_slice(&e[t * h..(t + 1) * h]),
            None => self.lm_head.copy_row(t, out),
        }
    }
}
