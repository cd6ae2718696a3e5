//! The decoder's layers on the GPU, one function per block: the embedding
//! gather, then per layer RMSNorm → QKV GEMM → q/k norm + RoPE + KV write →
//! attention (FlashAttention-2 tiles for prefill chunks, GQA-grouped paged
//! attention with optional split-K for decodes) → O GEMM into the residual,
//! and RMSNorm → gate/up GEMM → SwiGLU → down GEMM into the residual.

use std::sync::Arc;

use cudarc::driver::CudaStream;
use half::bf16;

use super::buffers::Activations;
use super::launch::{DevPtr, FlashPrefill, Kernels, PagedAttention, PagedKv, QkvRope};
use super::step_meta::StepLayout;
use crate::config::{ModelConfig, RopeStyle};
use crate::cuda::gemm::Gemm;
use crate::cuda::model::{GpuLayer, GpuModel};
use crate::error::EngineError;

/// What every layer of one step reads: the model, the kernels, the step's
/// shape and its buffers.
pub(super) struct StepCtx<'a> {
    pub stream: &'a Arc<CudaStream>,
    pub kernels: &'a Kernels,
    pub config: &'a ModelConfig,
    pub lay: &'a StepLayout,
    pub buf: Activations,
    /// RoPE inverse frequencies.
    pub inv_freq: DevPtr<f32>,
    pub block_size: usize,
}

/// One layer's K and V cache.
#[derive(Clone, Copy)]
pub(super) struct LayerKv {
    pub k: DevPtr<bf16>,
    pub v: DevPtr<bf16>,
}

/// Every layer of the model over the step's tokens, leaving the residual
/// stream in `x`. `kv(l)` gives layer `l`'s cache.
pub(super) fn forward(
    cx: &StepCtx<'_>,
    gemm: &mut Gemm,
    model: &GpuModel,
    kv: impl Fn(usize) -> LayerKv,
) -> Result<(), EngineError> {
    embed(cx, model)?;
    for (l, layer) in model.layers.iter().enumerate() {
        attention_block(cx, gemm, layer, kv(l))?;
        mlp_block(cx, gemm, layer)?;
    }
    Ok(())
}

/// `x = embed[ids]`.
fn embed(cx: &StepCtx<'_>, model: &GpuModel) -> Result<(), EngineError> {
    let s = cx.stream;
    cx.kernels.embed_gather(
        s,
        cx.buf.x,
        DevPtr::of(&model.embed, s),
        cx.buf.meta.add(cx.lay.off_ids),
        cx.lay.tokens,
        cx.config.hidden_size,
    )
}

/// `h = rmsnorm(x) · w` over every token.
fn norm(cx: &StepCtx<'_>, w: DevPtr<f32>) -> Result<(), EngineError> {
    let c = cx.config;
    cx.kernels.rms_norm(
        cx.stream,
        cx.buf.h,
        cx.buf.x,
        w,
        DevPtr::null(),
        cx.lay.tokens,
        c.hidden_size,
        c.rms_norm_eps as f32,
    )
}

/// Self-attention with its pre-norm, added into the residual.
fn attention_block(
    cx: &StepCtx<'_>,
    gemm: &mut Gemm,
    layer: &GpuLayer,
    kv: LayerKv,
) -> Result<(), EngineError> {
    let (c, s, b, t) = (cx.config, cx.stream, &cx.buf, cx.lay.tokens);
    let (h, qd, kvd) = (c.hidden_size, c.q_dim(), c.kv_dim());
    let opt = |w: &Option<_>| w.as_ref().map_or(DevPtr::null(), |w| DevPtr::of(w, s));
    norm(cx, DevPtr::of(&layer.attn_norm, s))?;
    let wqkv = DevPtr::of(&layer.wqkv, s);
    // SAFETY: buffers sized by `Buffers::ensure_step` for t tokens.
    unsafe {
        gemm.linear(
            b.qkv.addr(),
            b.h.addr(),
            wqkv.addr(),
            t,
            qd + 2 * kvd,
            h,
            false,
        )?
    };
    cx.kernels.qkv_rope_kv_write(
        s,
        &QkvRope {
            qkv: b.qkv,
            bias: opt(&layer.bqkv),
            q_norm: opt(&layer.q_norm),
            k_norm: opt(&layer.k_norm),
            inv_freq: cx.inv_freq,
            positions: b.meta.add(cx.lay.off_pos),
            slots: b.meta.add(cx.lay.off_slots),
            q_out: b.q,
            k_cache: kv.k,
            v_cache: kv.v,
            tokens: t,
            num_heads: c.num_attention_heads,
            num_kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
            eps: c.rms_norm_eps as f32,
            interleaved: c.rope_style == RopeStyle::Interleaved,
        },
    )?;
    attention(cx, kv)?;
    let wo = DevPtr::of(&layer.wo, s);
    // SAFETY: as above; x is t×h f32, accumulated in place.
    unsafe { gemm.linear(b.x.addr(), b.attn.addr(), wo.addr(), t, h, qd, true) }
}

/// `attn = softmax(q·kᵀ) · v` over the paged cache: decode items, then
/// prefill tiles.
fn attention(cx: &StepCtx<'_>, kv: LayerKv) -> Result<(), EngineError> {
    let (c, s, b, lay) = (cx.config, cx.stream, &cx.buf, cx.lay);
    let paged = PagedKv {
        k_cache: kv.k,
        v_cache: kv.v,
        block_tables: b.meta.add(lay.off_tables),
        table_stride: lay.table_stride,
        block_size: cx.block_size,
        num_heads: c.num_attention_heads,
        num_kv_heads: c.num_key_value_heads,
    };
    let scale = 1.0 / (c.head_dim as f32).sqrt();
    if lay.num_items > 0 {
        let q_rows = b.meta.add(lay.off_q_rows);
        cx.kernels.paged_attention(
            s,
            &PagedAttention {
                out: b.attn,
                part_acc: b.part_acc,
                part_ml: b.part_ml,
                q: b.q,
                kv: paged,
                q_rows,
                item_seq: b.meta.add(lay.off_item_seq),
                ctx_lens: b.meta.add(lay.off_ctx),
                num_items: lay.num_items,
                splits: lay.splits,
                partition: lay.partition,
                scale,
            },
        )?;
        if lay.splits > 1 {
            cx.kernels.paged_reduce(
                s,
                b.attn,
                b.part_acc,
                b.part_ml,
                q_rows,
                lay.num_items,
                c.num_attention_heads,
                lay.splits,
            )?;
        }
    }
    if lay.num_tiles > 0 {
        cx.kernels.flash_prefill(
            s,
            &FlashPrefill {
                out: b.attn,
                q: b.q,
                kv: paged,
                tiles: b.meta.add(lay.off_tiles),
                num_tiles: lay.num_tiles,
                scale,
            },
        )?;
    }
    Ok(())
}

/// The SwiGLU MLP with its pre-norm, added into the residual.
fn mlp_block(cx: &StepCtx<'_>, gemm: &mut Gemm, layer: &GpuLayer) -> Result<(), EngineError> {
    let (c, s, b, t) = (cx.config, cx.stream, &cx.buf, cx.lay.tokens);
    let (h, inter) = (c.hidden_size, c.intermediate_size);
    norm(cx, DevPtr::of(&layer.mlp_norm, s))?;
    let (wgu, wd) = (
        DevPtr::of(&layer.w_gate_up, s),
        DevPtr::of(&layer.w_down, s),
    );
    // SAFETY: buffers sized by `Buffers::ensure_step` for t tokens.
    unsafe {
        gemm.linear(
            b.gate_up.addr(),
            b.h.addr(),
            wgu.addr(),
            t,
            2 * inter,
            h,
            false,
        )?
    };
    cx.kernels.swiglu(s, b.act, b.gate_up, t, inter)?;
    // SAFETY: as above; x is t×h f32, accumulated in place.
    unsafe { gemm.linear(b.x.addr(), b.act.addr(), wd.addr(), t, h, inter, true) }
}
