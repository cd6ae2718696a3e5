//! The LM head: final norm and output projection over the rows whose logits
//! are wanted, in chunks (so the logits buffer holds `logits_chunk_rows ×
//! vocab` floats however many positions are scored), each chunk followed by
//! the reduction the caller asked for: full logits, log-probabilities of
//! given targets, or sampled tokens.

use std::sync::Arc;

use cudarc::driver::CudaStream;

use super::buffers::Buffers;
use super::launch::{DevPtr, SampleTokens};
use super::layers::StepCtx;
use crate::cuda::gemm::Gemm;
use crate::cuda::model::GpuModel;
use crate::error::EngineError;

/// How to pick the next token of one logits row on the device.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowSample {
    /// `<= 1e-6` picks the argmax.
    pub temperature: f32,
    pub top_p: f32,
    /// `0` keeps all tokens.
    pub top_k: usize,
    /// A uniform draw in `[0, 1)` from the sequence's seeded generator.
    pub u: f64,
}

impl RowSample {
    pub fn greedy() -> RowSample {
        RowSample {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            u: 0.0,
        }
    }
}

/// A target token's log-probability under one logits row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenScore {
    pub logprob: f64,
    /// Whether the target is the row's argmax (the lowest id on ties).
    pub is_argmax: bool,
}

/// What to do with the logits rows of a step.
pub(super) enum Head<'a> {
    Logits(&'a mut Vec<f32>),
    Score(&'a [u32]),
    Sample(&'a [RowSample]),
}

impl Head<'_> {
    /// The per-row integers the head's kernel reads from the step's
    /// metadata: target ids when scoring, top-k when sampling.
    pub(super) fn extra(&self) -> Vec<i32> {
        match self {
            Head::Score(targets) => targets.iter().map(|&t| t as i32).collect(),
            Head::Sample(rows) => rows
                .iter()
                .map(|r| i32::try_from(r.top_k).unwrap_or(i32::MAX))
                .collect(),
            Head::Logits(_) => Vec::new(),
        }
    }
}

/// Per-row sampling parameters on the device.
#[derive(Clone, Copy)]
pub(super) struct SampleParams {
    temps: DevPtr<f32>,
    top_ps: DevPtr<f32>,
    us: DevPtr<f64>,
}

/// The head's reduction, with what it needs on the device.
enum Reduce<'a> {
    Logits(&'a mut Vec<f32>),
    Score,
    Sample(SampleParams),
}

/// Uploads temperatures and top-p values (f32, one array after the other)
/// and uniforms (f64).
pub(super) fn upload_sampling(
    bufs: &mut Buffers,
    s: &Arc<CudaStream>,
    rows: &[RowSample],
) -> Result<SampleParams, EngineError> {
    let f: Vec<f32> = rows
        .iter()
        .map(|r| r.temperature)
        .chain(rows.iter().map(|r| r.top_p))
        .collect();
    let d: Vec<f64> = rows.iter().map(|r| r.u).collect();
    let temps = bufs.sample_f32.upload(s, &f, "sampling parameters")?;
    let us = bufs.sample_f64.upload(s, &d, "sampling parameters")?;
    Ok(SampleParams {
        temps,
        top_ps: temps.add(rows.len()),
        us,
    })
}

/// Final norm and LM head over the logits rows, in chunks of `chunk` rows,
/// then `head`'s reduction per chunk. Targets and sampling parameters went
/// up before the layers (`sample` holds the latter).
pub(super) fn run(
    cx: &StepCtx<'_>,
    gemm: &mut Gemm,
    model: &GpuModel,
    bufs: &Buffers,
    chunk: usize,
    head: Head<'_>,
    sample: Option<SampleParams>,
) -> Result<(), EngineError> {
    let (c, s, b, lay) = (cx.config, cx.stream, &cx.buf, cx.lay);
    let (h, v) = (c.hidden_size, c.vocab_size);
    let final_norm = DevPtr::of(&model.final_norm, s);
    let head_w = model.head_ptr(s);
    let chunk = chunk.max(1);
    let mut reduce = match head {
        Head::Logits(out) => {
            out.clear();
            out.resize(lay.rows * v, 0.0);
            Reduce::Logits(out)
        }
        Head::Score(_) => Reduce::Score,
        Head::Sample(_) => Reduce::Sample(sample.ok_or_else(|| {
            EngineError::Cuda("internal: sampling parameters were not uploaded".into())
        })?),
    };
    let extra = b.meta.add(lay.off_extra);
    let mut r0 = 0;
    while r0 < lay.rows {
        let n = chunk.min(lay.rows - r0);
        cx.kernels.rms_norm(
            s,
            b.rows_h,
            b.x,
            final_norm,
            b.meta.add(lay.off_rows + r0),
            n,
            h,
            c.rms_norm_eps as f32,
        )?;
        // SAFETY: rows_h holds n×h, logits n×v (`Buffers::ensure_step`).
        unsafe { gemm.linear(b.logits.addr(), b.rows_h.addr(), head_w, n, v, h, false)? };
        match &mut reduce {
            Reduce::Logits(out) => {
                bufs.logits
                    .download(s, &mut out[r0 * v..(r0 + n) * v], "logits")?;
            }
            Reduce::Score => cx.kernels.logprob_gather(
                s,
                b.out_f64.add(r0),
                b.out_i32.add(r0),
                b.logits,
                extra.add(r0),
                n,
                v,
            )?,
            Reduce::Sample(p) => cx.kernels.sample_tokens(
                s,
                &SampleTokens {
                    out: b.out_i32.add(r0),
                    logits: b.logits,
                    temps: p.temps.add(r0),
                    top_ps: p.top_ps.add(r0),
                    top_ks: extra.add(r0),
                    us: p.us.add(r0),
                    rows: n,
                    vocab: v,
                },
            )?,
        }
        r0 += n;
    }
    Ok(())
}
