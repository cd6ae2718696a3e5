//! The buffer pool of a step: activation, metadata, logits and result
//! buffers that grow (never shrink) to the largest step seen, so a steady
//! workload allocates nothing.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DeviceRepr, ValidAsZeroBits};
use half::bf16;

use super::launch::DevPtr;
use super::step_meta::StepLayout;
use crate::config::ModelConfig;
use crate::cuda::CudaSettings;
use crate::error::EngineError;

/// A device buffer of `T` that grows (never shrinks) to the largest size
/// asked for.
pub(super) struct Buf<T> {
    slice: Option<CudaSlice<T>>,
}

impl<T: DeviceRepr + ValidAsZeroBits> Buf<T> {
    fn new() -> Buf<T> {
        Buf { slice: None }
    }

    /// Grows the buffer to at least `len` elements (contents are lost when
    /// it grows).
    pub(super) fn ensure(
        &mut self,
        stream: &Arc<CudaStream>,
        len: usize,
        what: &str,
    ) -> Result<DevPtr<T>, EngineError> {
        let len = len.max(1);
        if self.slice.as_ref().is_none_or(|s| s.len() < len) {
            self.slice = None;
            let s = stream.alloc_zeros::<T>(len).map_err(|e| {
                EngineError::Cuda(format!(
                    "allocating {what} ({} MiB): {e}; lower max_num_batched_tokens or gpu_memory_utilization",
                    (len * std::mem::size_of::<T>()) >> 20
                ))
            })?;
            self.slice = Some(s);
        }
        Ok(self.ptr(stream))
    }

    /// Copies `data` to the start of the buffer, grown to fit.
    pub(super) fn upload(
        &mut self,
        stream: &Arc<CudaStream>,
        data: &[T],
        what: &str,
    ) -> Result<DevPtr<T>, EngineError> {
        let ptr = self.ensure(stream, data.len(), what)?;
        if let Some(dst) = self.slice.as_mut() {
            let mut view = dst.slice_mut(0..data.len());
            stream
                .memcpy_htod(data, &mut view)
                .map_err(|e| EngineError::Cuda(format!("uploading {what}: {e}")))?;
        }
        Ok(ptr)
    }

    /// Copies the first `out.len()` elements back into `out`.
    pub(super) fn download(
        &self,
        stream: &Arc<CudaStream>,
        out: &mut [T],
        what: &str,
    ) -> Result<(), EngineError> {
        if out.is_empty() {
            return Ok(());
        }
        let src = self
            .slice
            .as_ref()
            .ok_or_else(|| EngineError::Cuda(format!("internal: no {what} buffer")))?;
        stream
            .memcpy_dtoh(&src.slice(0..out.len()), out)
            .map_err(|e| EngineError::Cuda(format!("copying {what} back: {e}")))
    }

    pub(super) fn ptr(&self, stream: &CudaStream) -> DevPtr<T> {
        DevPtr::new(self.slice.as_ref().map_or(0, |s| s.device_ptr(stream).0))
    }

    fn bytes(&self) -> usize {
        self.slice
            .as_ref()
            .map_or(0, |s| s.len() * std::mem::size_of::<T>())
    }
}

/// Where a step's buffers are, once grown for it.
#[derive(Clone, Copy)]
pub(super) struct Activations {
    pub x: DevPtr<f32>,
    pub h: DevPtr<bf16>,
    pub qkv: DevPtr<f32>,
    pub q: DevPtr<bf16>,
    pub attn: DevPtr<bf16>,
    pub gate_up: DevPtr<f32>,
    pub act: DevPtr<bf16>,
    pub part_acc: DevPtr<f32>,
    pub part_ml: DevPtr<f32>,
    pub meta: DevPtr<i32>,
    pub rows_h: DevPtr<bf16>,
    pub logits: DevPtr<f32>,
    pub out_f64: DevPtr<f64>,
    pub out_i32: DevPtr<i32>,
}

/// Activation and metadata buffers.
pub(super) struct Buffers {
    /// The residual stream, t × hidden.
    pub x: Buf<f32>,
    /// Normalised hidden states, the GEMMs' input.
    pub h: Buf<bf16>,
    pub qkv: Buf<f32>,
    pub q: Buf<bf16>,
    pub attn: Buf<bf16>,
    pub gate_up: Buf<f32>,
    pub act: Buf<bf16>,
    /// Split-K partials of the decode attention.
    pub part_acc: Buf<f32>,
    pub part_ml: Buf<f32>,
    /// The step's integer metadata (see `step_meta`).
    pub meta: Buf<i32>,
    /// The LM head's input and output, one chunk of rows.
    pub rows_h: Buf<bf16>,
    pub logits: Buf<f32>,
    pub out_f64: Buf<f64>,
    pub out_i32: Buf<i32>,
    pub sample_f32: Buf<f32>,
    pub sample_f64: Buf<f64>,
}

impl Buffers {
    pub(super) fn new() -> Buffers {
        Buffers {
            x: Buf::new(),
            h: Buf::new(),
            qkv: Buf::new(),
            q: Buf::new(),
            attn: Buf::new(),
            gate_up: Buf::new(),
            act: Buf::new(),
            part_acc: Buf::new(),
            part_ml: Buf::new(),
            meta: Buf::new(),
            rows_h: Buf::new(),
            logits: Buf::new(),
            out_f64: Buf::new(),
            out_i32: Buf::new(),
            sample_f32: Buf::new(),
            sample_f64: Buf::new(),
        }
    }

    /// Bytes of the activation buffers (for the KV sizing log line).
    pub(super) fn bytes(&self) -> usize {
        self.x.bytes()
            + self.h.bytes()
            + self.qkv.bytes()
            + self.q.bytes()
            + self.attn.bytes()
            + self.gate_up.bytes()
            + self.act.bytes()
            + self.part_acc.bytes()
            + self.part_ml.bytes()
            + self.meta.bytes()
            + self.rows_h.bytes()
            + self.logits.bytes()
    }

    pub(super) fn activations(&self, s: &CudaStream) -> Activations {
        Activations {
            x: self.x.ptr(s),
            h: self.h.ptr(s),
            qkv: self.qkv.ptr(s),
            q: self.q.ptr(s),
            attn: self.attn.ptr(s),
            gate_up: self.gate_up.ptr(s),
            act: self.act.ptr(s),
            part_acc: self.part_acc.ptr(s),
            part_ml: self.part_ml.ptr(s),
            meta: self.meta.ptr(s),
            rows_h: self.rows_h.ptr(s),
            logits: self.logits.ptr(s),
            out_f64: self.out_f64.ptr(s),
            out_i32: self.out_i32.ptr(s),
        }
    }

    /// Grows every buffer the step `lay` uses.
    pub(super) fn ensure_step(
        &mut self,
        s: &Arc<CudaStream>,
        c: &ModelConfig,
        settings: &CudaSettings,
        lay: &StepLayout,
    ) -> Result<(), EngineError> {
        let t = lay.tokens;
        let (h, qd, kvd, inter) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size);
        self.x.ensure(s, t * h, "hidden states")?;
        self.h.ensure(s, t * h, "normalised hidden states")?;
        self.qkv.ensure(s, t * (qd + 2 * kvd), "qkv")?;
        self.q.ensure(s, t * qd, "queries")?;
        self.attn.ensure(s, t * qd, "attention output")?;
        self.gate_up.ensure(s, t * 2 * inter, "gate/up")?;
        self.act.ensure(s, t * inter, "MLP activations")?;
        let chunk = settings.logits_chunk_rows.min(lay.rows).max(1);
        self.rows_h.ensure(s, chunk * h, "LM head input")?;
        self.logits.ensure(s, chunk * c.vocab_size, "logits")?;
        self.out_f64.ensure(s, lay.rows, "scores")?;
        self.out_i32.ensure(s, lay.rows, "results")?;
        self.ensure_partials(s, c, lay.num_items, lay.splits)
    }

    /// Grows the split-K partials for `items` attention items in `splits`.
    pub(super) fn ensure_partials(
        &mut self,
        s: &Arc<CudaStream>,
        c: &ModelConfig,
        items: usize,
        splits: usize,
    ) -> Result<(), EngineError> {
        if splits <= 1 {
            return Ok(());
        }
        let (nh, hd) = (c.num_attention_heads, c.head_dim);
        self.part_acc
            .ensure(s, items * nh * splits * hd, "attention partials")?;
        self.part_ml
            .ensure(s, items * nh * splits * 2, "attention partials")?;
        Ok(())
    }
}
