//! CPU execution path: f32 forward pass of Llama/Mistral/Qwen2/Qwen3 over a
//! paged KV cache, matmuls via `gemm`, attention parallelised with rayon.

mod attention;
mod model;
pub mod ops;
mod packed;

use rayon::prelude::*;

pub use model::{kv_bytes_per_token, CpuModel};

use crate::config::ModelConfig;
use crate::error::EngineError;
use crate::executor::{Executor, StepInput, StepOutput};
use packed::PackedModel;

/// Reused activation buffers: grown to the largest batch seen, never shrunk,
/// so steady-state steps do not allocate.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    qkv: Vec<f32>,
    attn: Vec<f32>,
    gate_up: Vec<f32>,
    act: Vec<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
    last: Vec<f32>,
    items: Vec<attention::Item>,
}

fn sized(buf: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if buf.len() < n {
        buf.resize(n, 0.0);
    }
    &mut buf[..n]
}

/// The CPU executor: model weights plus a paged f32 KV cache.
pub struct CpuExecutor {
    model: PackedModel,
    inv_freq: Vec<f32>,
    block_size: usize,
    num_blocks: usize,
    /// Per layer, `[slot][kv_head][head_dim]`.
    k_cache: Vec<Vec<f32>>,
    v_cache: Vec<Vec<f32>>,
    scratch: Scratch,
}

impl CpuExecutor {
    /// Allocates a KV cache of `num_blocks` blocks of `block_size` tokens.
    pub fn new(
        model: CpuModel,
        num_blocks: usize,
        block_size: usize,
    ) -> Result<CpuExecutor, EngineError> {
        if num_blocks == 0 || block_size == 0 {
            return Err(EngineError::Settings(
                "num_kv_blocks and block_size must be positive".into(),
            ));
        }
        let c = &model.config;
        let per_layer = num_blocks
            .checked_mul(block_size)
            .and_then(|s| s.checked_mul(c.kv_dim()))
            .ok_or_else(|| EngineError::Settings("KV cache size overflows".into()))?;
        let layers = c.num_hidden_layers;
        Ok(CpuExecutor {
            inv_freq: ops::rope_inv_freq(c),
            k_cache: (0..layers).map(|_| vec![0.0; per_layer]).collect(),
            v_cache: (0..layers).map(|_| vec![0.0; per_layer]).collect(),
            model: PackedModel::new(model),
            block_size,
            num_blocks,
            scratch: Scratch::default(),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.model.config
    }
}

impl Executor for CpuExecutor {
    fn num_kv_blocks(&self) -> usize {
        self.num_blocks
    }

    fn block_size(&self) -> usize {
        self.block_size
    }

    fn forward(&mut self, batch: &StepInput) -> Result<StepOutput, EngineError> {
        // Run the step on a rayon worker: the ~7 parallel regions per layer
        // are then forked inside the pool, where idle workers pick them up
        // by stealing, instead of each being injected from outside and the
        // caller's thread sleeping and waking for every one of them.
        rayon::scope(|_| self.forward_step(batch))
    }
}

impl CpuExecutor {
    fn forward_step(&mut self, batch: &StepInput) -> Result<StepOutput, EngineError> {
        let c = &self.model.config;
        batch.validate(self.num_blocks, self.block_size, c.vocab_size)?;
        let t_n = batch.num_tokens();
        let (h, qd, kvd, hd) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.head_dim);
        let (n_heads, n_kv) = (c.num_attention_heads, c.num_key_value_heads);
        let inter = c.intermediate_size;
        let qkv_w = qd + 2 * kvd;
        let eps = c.rms_norm_eps as f32;
        let bs = self.block_size;
        let style = c.rope_style;
        let half = hd / 2;
        let s = &mut self.scratch;

        attention::plan(batch, n_heads, &mut s.items);
        let geometry = attention::Geometry {
            head_dim: hd,
            group: n_heads / n_kv,
            qkv_width: qkv_w,
            q_dim: qd,
            kv_dim: kvd,
            block_size: bs,
            scale: 1.0 / (hd as f32).sqrt(),
        };
        ops::rope_tables(&self.inv_freq, &batch.positions, &mut s.cos, &mut s.sin);

        let x = sized(&mut s.x, t_n * h);
        for (row, &tok) in x.chunks_exact_mut(h).zip(&batch.token_ids) {
            self.model.embed_row(tok as usize, row);
        }

        for (l, layer) in self.model.layers.iter().enumerate() {
            // Attention block.
            let hbuf = sized(&mut s.h, t_n * h);
            ops::rms_norm(hbuf, x, &layer.attn_norm, h, eps);
            let qkv = sized(&mut s.qkv, t_n * qkv_w);
            let with_bias = if let Some(b) = &layer.bqkv {
                for row in qkv.chunks_exact_mut(qkv_w) {
                    row.copy_from_slice(b);
                }
                true
            } else {
                false
            };
            ops::matmul_packed(qkv, hbuf, &layer.wqkv, t_n, with_bias);

            // Per-head q/k norm (Qwen3) and RoPE, in parallel over tokens.
            let (cos, sin) = (&s.cos, &s.sin);
            qkv.par_chunks_exact_mut(qkv_w)
                .enumerate()
                .for_each(|(t, row)| {
                    let (c_t, s_t) = (
                        &cos[t * half..(t + 1) * half],
                        &sin[t * half..(t + 1) * half],
                    );
                    let (q, rest) = row.split_at_mut(qd);
                    let k = &mut rest[..kvd];
                    for head in q.chunks_exact_mut(hd) {
                        if let Some(w) = &layer.q_norm {
                            ops::rms_norm_in_place(head, w, eps);
                        }
                        ops::apply_rope(head, c_t, s_t, style);
                    }
                    for head in k.chunks_exact_mut(hd) {
                        if let Some(w) = &layer.k_norm {
                            ops::rms_norm_in_place(head, w, eps);
                        }
                        ops::apply_rope(head, c_t, s_t, style);
                    }
                });

            // Write this step's K/V into the cache before attending, so a
            // token sees itself and the earlier tokens of its chunk.
            let (kc, vc) = (&mut self.k_cache[l], &mut self.v_cache[l]);
            for (row, &slot) in qkv.chunks_exact(qkv_w).zip(&batch.slot_mapping) {
                kc[slot * kvd..(slot + 1) * kvd].copy_from_slice(&row[qd..qd + kvd]);
                vc[slot * kvd..(slot + 1) * kvd].copy_from_slice(&row[qd + kvd..]);
            }

            // Causal attention with GQA through the block table.
            let attn = sized(&mut s.attn, t_n * qd);
            attention::attention(
                attn,
                qkv,
                &self.k_cache[l],
                &self.v_cache[l],
                batch,
                &s.items,
                geometry,
            );
            // Residual add fused into the output projection.
            ops::matmul_packed(x, attn, &layer.wo, t_n, true);

            // MLP block.
            let hbuf = sized(&mut s.h, t_n * h);
            ops::rms_norm(hbuf, x, &layer.mlp_norm, h, eps);
            let gate_up = sized(&mut s.gate_up, t_n * 2 * inter);
            ops::matmul_packed(gate_up, hbuf, &layer.w_gate_up, t_n, false);
            let act = sized(&mut s.act, t_n * inter);
            ops::swiglu(act, gate_up, inter);
            ops::matmul_packed(x, act, &layer.w_down, t_n, true);
        }

        // Final norm and LM head only for the rows whose logits are wanted.
        let rows = batch.logits_indices.len();
        let last = sized(&mut s.last, rows * h);
        for (out, &i) in last.chunks_exact_mut(h).zip(&batch.logits_indices) {
            ops::rms_norm_row(out, &x[i * h..(i + 1) * h], &self.model.final_norm, eps);
        }
        let v = c.vocab_size;
        let mut logits = vec![0.0f32; rows * v];
        ops::matmul_packed(&mut logits, last, &self.model.lm_head, rows, false);
        Ok(StepOutput {
            vocab_size: v,
            logits,
        })
    }
}
