//! `CudaExecutor`: the forward pass on one GPU over a paged bf16 KV cache.
//!
//! A step uploads the batch's integer metadata in one copy, then runs per
//! layer: RMSNorm → QKV GEMM → q/k norm + RoPE + KV write → attention
//! (tensor-core FlashAttention-2 tiles for prefill chunks, GQA-grouped paged
//! attention with optional split-K for decodes) → O GEMM into the residual
//! → RMSNorm → gate/up GEMM → SwiGLU → down GEMM into the residual. The LM
//! head runs only on the rows whose logits are wanted, in chunks, followed
//! by whichever reduction the caller asked for: full logits (the
//! [`Executor`] contract), log-probabilities of given targets, or sampled
//! tokens, so that scoring and generation copy a few bytes per row back
//! instead of a vocabulary of floats.

use std::sync::Arc;

use cudarc::driver::{
    sys::CUdevice_attribute, sys::CUfunction_attribute_enum, CudaContext, CudaFunction, CudaModule,
    CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use half::bf16;

use super::gemm::Gemm;
use super::kernels::{self, KernelSpec};
use super::libs::{self, CudaLib};
use super::model::GpuModel;
use super::CudaSettings;
use crate::config::{ModelConfig, RopeStyle};
use crate::cpu::ops::rope_inv_freq;
use crate::error::EngineError;
use crate::executor::{Executor, StepInput, StepOutput};
use crate::weights::Weights;

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

fn cuda_err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> EngineError + '_ {
    move |e| EngineError::Cuda(format!("{what}: {e}"))
}

/// Kernel argument: a device pointer, an int or a float.
#[derive(Clone, Copy)]
enum Arg {
    P(u64),
    I(i32),
    F(f32),
    L(i64),
}

struct Kernels {
    embed_gather: CudaFunction,
    rms_norm: CudaFunction,
    qkv_rope: CudaFunction,
    swiglu: CudaFunction,
    paged_attention: CudaFunction,
    paged_reduce: CudaFunction,
    flash_prefill: Option<CudaFunction>,
    logprob_gather: CudaFunction,
    sample_tokens: CudaFunction,
    _module: Arc<CudaModule>,
}

/// A device buffer of `T` that grows (never shrinks) to the largest size
/// asked for.
struct Buf<T> {
    slice: Option<CudaSlice<T>>,
}

impl<T: DeviceRepr + ValidAsZeroBits> Buf<T> {
    fn new() -> Buf<T> {
        Buf { slice: None }
    }

    fn ensure(
        &mut self,
        stream: &Arc<CudaStream>,
        len: usize,
        what: &str,
    ) -> Result<u64, EngineError> {
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

    fn ptr(&self, stream: &CudaStream) -> u64 {
        self.slice.as_ref().map_or(0, |s| s.device_ptr(stream).0)
    }

    fn bytes(&self) -> usize {
        self.slice
            .as_ref()
            .map_or(0, |s| s.len() * std::mem::size_of::<T>())
    }
}

/// Activation and metadata buffers.
struct Buffers {
    x: Buf<f32>,
    h: Buf<bf16>,
    qkv: Buf<f32>,
    q: Buf<bf16>,
    attn: Buf<bf16>,
    gate_up: Buf<f32>,
    act: Buf<bf16>,
    part_acc: Buf<f32>,
    part_ml: Buf<f32>,
    meta: Buf<i32>,
    rows_h: Buf<bf16>,
    logits: Buf<f32>,
    out_f64: Buf<f64>,
    out_i32: Buf<i32>,
    sample_f32: Buf<f32>,
    sample_f64: Buf<f64>,
}

impl Buffers {
    fn new() -> Buffers {
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

    fn bytes(&self) -> usize {
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
}

/// Where each metadata array of a step lives in the uploaded `meta` buffer
/// (offsets in i32 elements).
#[derive(Clone, Copy, Debug, Default)]
struct StepLayout {
    tokens: usize,
    table_stride: usize,
    num_items: usize,
    splits: usize,
    partition: usize,
    num_tiles: usize,
    rows: usize,
    off_ids: usize,
    off_pos: usize,
    off_slots: usize,
    off_tables: usize,
    off_q_rows: usize,
    off_item_seq: usize,
    off_ctx: usize,
    off_tiles: usize,
    off_rows: usize,
    off_extra: usize,
}

/// What to do with the logits rows of a step.
enum Head<'a> {
    Logits(&'a mut Vec<f32>),
    Score(&'a [u32]),
    Sample(&'a [RowSample]),
}

/// The CUDA executor: weights, KV cache, kernels and buffers of one GPU.
pub struct CudaExecutor {
    config: ModelConfig,
    settings: CudaSettings,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    gemm: Gemm,
    kernels: Kernels,
    spec: KernelSpec,
    model: GpuModel,
    inv_freq: CudaSlice<f32>,
    k_cache: Option<CudaSlice<bf16>>,
    v_cache: Option<CudaSlice<bf16>>,
    num_blocks: usize,
    block_size: usize,
    bufs: Buffers,
    host_meta: Vec<i32>,
    sm_count: usize,
    device_name: String,
}

impl CudaExecutor {
    /// Loads `weights` (checked against `config`) onto GPU `ordinal` as
    /// bf16, compiles the kernels for this model, runs a warm-up step of
    /// `max_num_batched_tokens` tokens and sizes the KV cache from the
    /// memory left (`gpu_memory_utilization`), unless `num_kv_blocks` is
    /// set. On a machine without CUDA this returns
    /// [`EngineError::CudaUnavailable`].
    pub fn new(
        config: &ModelConfig,
        weights: Weights,
        settings: &CudaSettings,
        ordinal: usize,
    ) -> Result<CudaExecutor, EngineError> {
        settings.validate()?;
        libs::ensure(CudaLib::Driver)?;
        let ctx = CudaContext::new(ordinal).map_err(|e| {
            let count = CudaContext::device_count().unwrap_or(0);
            EngineError::CudaUnavailable(format!(
                "cannot open CUDA device {ordinal} ({count} device(s) visible): {e}"
            ))
        })?;
        libs::ensure(CudaLib::Nvrtc)?;
        libs::ensure(CudaLib::CublasLt)?;
        // One stream, so cudarc's per-buffer event tracking only costs time.
        // SAFETY: no buffer of this context is used on another stream.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let (major, minor) = ctx
            .compute_capability()
            .map_err(cuda_err("reading the compute capability"))?;
        let arch = kernels::arch_for(major, minor)?;
        let device_name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let sm_count = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .unwrap_or(100)
            .max(1) as usize;

        let spec = KernelSpec::new(
            config.head_dim,
            config.num_attention_heads / config.num_key_value_heads.max(1),
        )?;
        let ptx = kernels::compile(spec, arch, None)?;
        let module = ctx
            .load_module(ptx)
            .map_err(cuda_err("loading the compiled kernels"))?;
        let load = |name: &str| {
            module
                .load_function(name)
                .map_err(|e| EngineError::Cuda(format!("kernel {name} missing: {e}")))
        };
        let kernels = Kernels {
            embed_gather: load("embed_gather")?,
            rms_norm: load("rms_norm_bf16")?,
            qkv_rope: load("qkv_rope_kv_write")?,
            swiglu: load("swiglu_bf16")?,
            paged_attention: load("paged_attention")?,
            paged_reduce: load("paged_attention_reduce")?,
            flash_prefill: if spec.has_flash_prefill() && settings.flash_prefill {
                Some(load(kernels::FLASH_PREFILL)?)
            } else {
                None
            },
            logprob_gather: load("logprob_gather")?,
            sample_tokens: load("sample_tokens")?,
            _module: module.clone(),
        };
        // The RoPE kernel's per-warp head buffer may exceed the default
        // 48 KiB only for huge heads; set the limit explicitly anyway.
        let _ = kernels.qkv_rope.set_attribute(
            CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            (4 * config.head_dim * 4) as i32,
        );

        let model = GpuModel::upload(&stream, config, weights)?;
        let inv_freq = stream
            .clone_htod(&rope_inv_freq(config))
            .map_err(cuda_err("copying RoPE frequencies"))?;
        let gemm = Gemm::new(stream.clone())?;

        let mut exec = CudaExecutor {
            config: config.clone(),
            settings: settings.clone(),
            ctx,
            stream,
            gemm,
            kernels,
            spec,
            model,
            inv_freq,
            k_cache: None,
            v_cache: None,
            num_blocks: 0,
            block_size: settings.block_size,
            bufs: Buffers::new(),
            host_meta: Vec::new(),
            sm_count,
            device_name,
        };
        exec.size_kv_cache()?;
        tracing::info!(
            device = %exec.device_name,
            weights_mib = exec.model.bytes >> 20,
            kv_blocks = exec.num_blocks,
            block_size = exec.block_size,
            "CUDA executor ready"
        );
        Ok(exec)
    }

    /// The GPU's name, e.g. "NVIDIA H100 80GB HBM3".
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// Bytes of model weights on the GPU.
    pub fn weight_bytes(&self) -> usize {
        self.model.bytes
    }

    /// Bytes of KV cache (K and V, all layers).
    pub fn kv_cache_bytes(&self) -> usize {
        self.num_blocks * self.block_size * self.kv_bytes_per_token()
    }

    /// Bytes of bf16 KV cache per token (K and V, all layers).
    pub fn kv_bytes_per_token(&self) -> usize {
        2 * self.config.num_hidden_layers * self.config.kv_dim() * 2
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Waits for all queued GPU work (for timing).
    pub fn synchronize(&self) -> Result<(), EngineError> {
        self.stream.synchronize().map_err(cuda_err("synchronize"))
    }

    /// Runs the batch and returns, per logits row, the log-probability of
    /// `targets[row]` and whether it is the argmax: prompt scoring without
    /// copying logits to the host.
    pub fn forward_score(
        &mut self,
        batch: &StepInput,
        targets: &[u32],
    ) -> Result<Vec<TokenScore>, EngineError> {
        if targets.len() != batch.logits_indices.len() {
            return Err(EngineError::InvalidBatch(format!(
                "{} targets for {} logits rows",
                targets.len(),
                batch.logits_indices.len()
            )));
        }
        let v = self.config.vocab_size;
        if let Some(t) = targets.iter().find(|&&t| t as usize >= v) {
            return Err(EngineError::InvalidBatch(format!(
                "target token {t} is outside the vocabulary of {v}"
            )));
        }
        let rows = targets.len();
        self.step(batch, Head::Score(targets))?;
        let lp = self.download_f64(rows)?;
        let greedy = self.download_i32(rows)?;
        Ok(lp
            .into_iter()
            .zip(greedy)
            .map(|(logprob, g)| TokenScore {
                logprob,
                is_argmax: g != 0,
            })
            .collect())
    }

    /// Runs the batch and picks one token per logits row on the device.
    pub fn forward_sample(
        &mut self,
        batch: &StepInput,
        rows: &[RowSample],
    ) -> Result<Vec<u32>, EngineError> {
        if rows.len() != batch.logits_indices.len() {
            return Err(EngineError::InvalidBatch(format!(
                "{} sampling parameters for {} logits rows",
                rows.len(),
                batch.logits_indices.len()
            )));
        }
        if let Some(r) = rows.iter().find(|r| {
            !(r.temperature >= 0.0 && r.top_p > 0.0 && r.top_p <= 1.0 && (0.0..1.0).contains(&r.u))
        }) {
            return Err(EngineError::InvalidBatch(format!(
                "bad sampling parameters {r:?}: temperature >= 0, top_p in (0, 1], u in [0, 1)"
            )));
        }
        self.step(batch, Head::Sample(rows))?;
        let n = rows.len();
        Ok(self
            .download_i32(n)?
            .into_iter()
            .map(|t| t.max(0) as u32)
            .collect())
    }

    /// [`forward_sample`](Self::forward_sample) with argmax for every row.
    pub fn forward_greedy(&mut self, batch: &StepInput) -> Result<Vec<u32>, EngineError> {
        let rows = vec![RowSample::greedy(); batch.logits_indices.len()];
        self.forward_sample(batch, &rows)
    }

    fn download_f64(&mut self, n: usize) -> Result<Vec<f64>, EngineError> {
        let mut out = vec![0.0f64; n];
        if n > 0 {
            let src = self
                .bufs
                .out_f64
                .slice
                .as_ref()
                .ok_or_else(|| EngineError::Cuda("internal: no score buffer".into()))?;
            self.stream
                .memcpy_dtoh(&src.slice(0..n), &mut out[..])
                .map_err(cuda_err("copying scores back"))?;
        }
        Ok(out)
    }

    fn download_i32(&mut self, n: usize) -> Result<Vec<i32>, EngineError> {
        let mut out = vec![0i32; n];
        if n > 0 {
            let src = self
                .bufs
                .out_i32
                .slice
                .as_ref()
                .ok_or_else(|| EngineError::Cuda("internal: no result buffer".into()))?;
            self.stream
                .memcpy_dtoh(&src.slice(0..n), &mut out[..])
                .map_err(cuda_err("copying results back"))?;
        }
        Ok(out)
    }

    fn launch(
        &self,
        f: &CudaFunction,
        grid: (u32, u32, u32),
        block: u32,
        shared: u32,
        args: &[Arg],
    ) -> Result<(), EngineError> {
        let mut b = self.stream.launch_builder(f);
        for a in args {
            match a {
                Arg::P(v) => b.arg(v),
                Arg::I(v) => b.arg(v),
                Arg::F(v) => b.arg(v),
                Arg::L(v) => b.arg(v),
            };
        }
        let cfg = LaunchConfig {
            grid_dim: grid,
            block_dim: (block, 1, 1),
            shared_mem_bytes: shared,
        };
        // SAFETY: every kernel's arguments are listed in its .cu signature
        // order with matching types; pointers come from live buffers sized
        // for this step by `ensure_buffers`.
        unsafe { b.launch(cfg) }
            .map(|_| ())
            .map_err(|e| EngineError::Cuda(format!("kernel launch: {e}")))
    }

    /// Allocates the KV cache: `num_kv_blocks` when set, otherwise what fits
    /// in `gpu_memory_utilization` of the GPU after a warm-up step at the
    /// largest batch.
    fn size_kv_cache(&mut self) -> Result<(), EngineError> {
        let bs = self.block_size;
        let per_block = self.kv_bytes_per_token() * bs;
        // Warm-up: one sequence of max_num_batched_tokens tokens in a small
        // temporary cache, so activation buffers, cuBLASLt plans and the
        // logits path reach their peak size before measuring free memory.
        let warm_tokens = self
            .settings
            .max_num_batched_tokens
            .min(self.config.max_position_embeddings.max(1));
        let warm_blocks = warm_tokens.div_ceil(bs) + 1;
        self.alloc_kv(warm_blocks)?;
        let rows = self.settings.logits_chunk_rows.min(warm_tokens).max(1);
        let batch = StepInput {
            token_ids: vec![0; warm_tokens],
            positions: (0..warm_tokens).collect(),
            slot_mapping: (0..warm_tokens).collect(),
            seqs: vec![crate::executor::SeqSlice {
                token_range: 0..warm_tokens,
                block_table: (0..warm_blocks as u32).collect(),
            }],
            logits_indices: (warm_tokens - rows..warm_tokens).collect(),
        };
        self.step(&batch, Head::Sample(&vec![RowSample::greedy(); rows]))?;
        // Also size the split-K buffers: splits are only used while the
        // items leave the GPU idle (see `upload_meta`), so for few items.
        let split_items = (4 * self.sm_count).div_ceil(self.config.num_key_value_heads.max(1));
        self.ensure_partials(
            split_items.min(self.settings.max_num_batched_tokens),
            self.max_splits(),
        )?;
        self.synchronize()?;
        self.k_cache = None;
        self.v_cache = None;
        self.synchronize()?;

        let blocks = match self.settings.num_kv_blocks {
            Some(n) => n,
            None => {
                let (free, total) = self
                    .ctx
                    .mem_get_info()
                    .map_err(cuda_err("reading free GPU memory"))?;
                let reserve =
                    (total as f64 * (1.0 - self.settings.gpu_memory_utilization)) as usize;
                let budget = free.saturating_sub(reserve);
                let blocks = budget / per_block.max(1);
                tracing::info!(
                    free_mib = free >> 20,
                    total_mib = total >> 20,
                    reserve_mib = reserve >> 20,
                    activations_mib = self.bufs.bytes() >> 20,
                    "sizing the KV cache"
                );
                if blocks < warm_blocks {
                    return Err(EngineError::Settings(format!(
                        "only {} MiB of GPU memory left for the KV cache after loading {} MiB of weights ({} blocks of {bs} tokens; a step of {warm_tokens} tokens needs {warm_blocks}); raise gpu_memory_utilization (now {}), lower max_num_batched_tokens, or use a GPU with more memory",
                        budget >> 20,
                        self.model.bytes >> 20,
                        blocks,
                        self.settings.gpu_memory_utilization
                    )));
                }
                blocks
            }
        };
        self.alloc_kv(blocks)
    }

    fn alloc_kv(&mut self, blocks: usize) -> Result<(), EngineError> {
        self.k_cache = None;
        self.v_cache = None;
        let elems = blocks
            .checked_mul(self.block_size)
            .and_then(|s| s.checked_mul(self.config.kv_dim()))
            .and_then(|s| s.checked_mul(self.config.num_hidden_layers))
            .ok_or_else(|| EngineError::Settings("KV cache size overflows".into()))?;
        let alloc = |what: &str| {
            self.stream.alloc_zeros::<bf16>(elems).map_err(|e| {
                EngineError::Cuda(format!(
                    "allocating the {what} cache ({} MiB): {e}; lower num_kv_blocks or gpu_memory_utilization",
                    (elems * 2) >> 20
                ))
            })
        };
        let k = alloc("K")?;
        let v = alloc("V")?;
        self.k_cache = Some(k);
        self.v_cache = Some(v);
        self.num_blocks = blocks;
        Ok(())
    }

    fn max_splits(&self) -> usize {
        let max_ctx = self.config.max_position_embeddings.max(1);
        max_ctx
            .div_ceil(self.settings.attention_partition.max(1))
            .clamp(1, 64)
    }

    fn ensure_partials(&mut self, items: usize, splits: usize) -> Result<(), EngineError> {
        if splits <= 1 {
            return Ok(());
        }
        let nh = self.config.num_attention_heads;
        let hd = self.config.head_dim;
        self.bufs
            .part_acc
            .ensure(&self.stream, items * nh * splits * hd, "attention partials")?;
        self.bufs
            .part_ml
            .ensure(&self.stream, items * nh * splits * 2, "attention partials")?;
        Ok(())
    }

    /// Builds the step's metadata, uploads it and returns where each array
    /// is. Work for attention: sequences computing one token become paged
    /// attention items; longer chunks become 64-row flash tiles (or items,
    /// one per token, when the flash kernel is unavailable).
    fn upload_meta(&mut self, batch: &StepInput, extra: &[i32]) -> Result<StepLayout, EngineError> {
        let t = batch.num_tokens();
        let mut m = std::mem::take(&mut self.host_meta);
        m.clear();
        let mut lay = StepLayout {
            tokens: t,
            rows: batch.logits_indices.len(),
            ..Default::default()
        };
        let to_i32 = |v: usize, what: &str| {
            i32::try_from(v).map_err(|_| {
                EngineError::InvalidBatch(format!("{what} {v} does not fit in 32 bits"))
            })
        };
        lay.off_ids = m.len();
        m.extend(batch.token_ids.iter().map(|&x| x as i32));
        lay.off_pos = m.len();
        for &p in &batch.positions {
            m.push(to_i32(p, "position")?);
        }
        lay.off_slots = m.len();
        for &s in &batch.slot_mapping {
            m.push(to_i32(s, "slot")?);
        }
        lay.table_stride = batch
            .seqs
            .iter()
            .map(|s| s.block_table.len())
            .max()
            .unwrap_or(1)
            .max(1);
        lay.off_tables = m.len();
        for s in &batch.seqs {
            m.extend(s.block_table.iter().map(|&b| b as i32));
            m.extend(std::iter::repeat_n(
                0,
                lay.table_stride - s.block_table.len(),
            ));
        }
        // Attention work.
        let flash = self.kernels.flash_prefill.is_some();
        let mut q_rows = Vec::new();
        let mut item_seq = Vec::new();
        let mut ctx = Vec::new();
        let mut tiles = Vec::new();
        let mut max_ctx = 0usize;
        for (si, s) in batch.seqs.iter().enumerate() {
            let r = s.token_range.clone();
            if r.len() > 1 && flash {
                let mut start = r.start;
                while start < r.end {
                    let n = (r.end - start).min(64);
                    tiles.extend([
                        si as i32,
                        start as i32,
                        n as i32,
                        to_i32(batch.positions[start], "position")?,
                    ]);
                    start += n;
                }
            } else {
                for row in r {
                    let c = batch.positions[row] + 1;
                    max_ctx = max_ctx.max(c);
                    q_rows.push(row as i32);
                    item_seq.push(si as i32);
                    ctx.push(to_i32(c, "context length")?);
                }
            }
        }
        lay.num_items = q_rows.len();
        lay.num_tiles = tiles.len() / 4;
        // Split long contexts only when the items alone leave the GPU idle.
        let part = self.settings.attention_partition.max(16);
        let kv_blocks = lay.num_items * self.config.num_key_value_heads;
        lay.splits = if kv_blocks >= 4 * self.sm_count {
            1
        } else {
            max_ctx.div_ceil(part).clamp(1, 64)
        };
        lay.partition = if lay.splits == 1 {
            max_ctx.max(1)
        } else {
            max_ctx.div_ceil(lay.splits)
        };
        lay.off_q_rows = m.len();
        m.extend_from_slice(&q_rows);
        lay.off_item_seq = m.len();
        m.extend_from_slice(&item_seq);
        lay.off_ctx = m.len();
        m.extend_from_slice(&ctx);
        lay.off_tiles = m.len();
        m.extend_from_slice(&tiles);
        lay.off_rows = m.len();
        for &i in &batch.logits_indices {
            m.push(i as i32);
        }
        lay.off_extra = m.len();
        m.extend_from_slice(extra);

        self.bufs
            .meta
            .ensure(&self.stream, m.len(), "step metadata")?;
        if let Some(dst) = self.bufs.meta.slice.as_mut() {
            let mut view = dst.slice_mut(0..m.len());
            self.stream
                .memcpy_htod(&m[..], &mut view)
                .map_err(cuda_err("uploading step metadata"))?;
        }
        self.host_meta = m;
        Ok(lay)
    }

    fn ensure_buffers(&mut self, lay: &StepLayout) -> Result<(), EngineError> {
        let c = &self.config;
        let t = lay.tokens;
        let (h, qd, kvd, inter) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size);
        let s = &self.stream;
        let b = &mut self.bufs;
        b.x.ensure(s, t * h, "hidden states")?;
        b.h.ensure(s, t * h, "normalised hidden states")?;
        b.qkv.ensure(s, t * (qd + 2 * kvd), "qkv")?;
        b.q.ensure(s, t * qd, "queries")?;
        b.attn.ensure(s, t * qd, "attention output")?;
        b.gate_up.ensure(s, t * 2 * inter, "gate/up")?;
        b.act.ensure(s, t * inter, "MLP activations")?;
        let chunk = self.settings.logits_chunk_rows.min(lay.rows).max(1);
        b.rows_h.ensure(s, chunk * h, "LM head input")?;
        b.logits.ensure(s, chunk * c.vocab_size, "logits")?;
        b.out_f64.ensure(s, lay.rows, "scores")?;
        b.out_i32.ensure(s, lay.rows, "results")?;
        let (items, splits) = (lay.num_items, lay.splits);
        self.ensure_partials(items, splits)
    }

    /// One forward step, then `head` on the logits rows.
    fn step(&mut self, batch: &StepInput, head: Head<'_>) -> Result<(), EngineError> {
        batch.validate(self.num_blocks, self.block_size, self.config.vocab_size)?;
        self.ctx
            .bind_to_thread()
            .map_err(cuda_err("binding the CUDA context"))?;
        let extra: Vec<i32> = match &head {
            Head::Score(targets) => targets.iter().map(|&t| t as i32).collect(),
            Head::Sample(rows) => rows
                .iter()
                .map(|r| i32::try_from(r.top_k).unwrap_or(i32::MAX))
                .collect(),
            Head::Logits(_) => Vec::new(),
        };
        let lay = self.upload_meta(batch, &extra)?;
        self.ensure_buffers(&lay)?;
        // Copies from pageable memory wait for the stream, so everything
        // goes up before the first kernel of the step.
        let sample_ptrs = match &head {
            Head::Sample(rows) => self.upload_sampling(rows)?,
            _ => (0, 0, 0),
        };
        if lay.tokens > 0 {
            self.layers(&lay)?;
        }
        self.head(&lay, head, sample_ptrs)
    }

    /// Uploads temperatures and top-p values (f32, one array after the
    /// other) and uniforms (f64); returns their device pointers.
    fn upload_sampling(&mut self, rows: &[RowSample]) -> Result<(u64, u64, u64), EngineError> {
        let s = self.stream.clone();
        let f: Vec<f32> = rows
            .iter()
            .map(|r| r.temperature)
            .chain(rows.iter().map(|r| r.top_p))
            .collect();
        let d: Vec<f64> = rows.iter().map(|r| r.u).collect();
        self.bufs
            .sample_f32
            .ensure(&s, f.len(), "sampling parameters")?;
        self.bufs
            .sample_f64
            .ensure(&s, d.len(), "sampling parameters")?;
        if let Some(dst) = self.bufs.sample_f32.slice.as_mut() {
            let mut view = dst.slice_mut(0..f.len());
            s.memcpy_htod(&f[..], &mut view)
                .map_err(cuda_err("uploading sampling parameters"))?;
        }
        if let Some(dst) = self.bufs.sample_f64.slice.as_mut() {
            let mut view = dst.slice_mut(0..d.len());
            s.memcpy_htod(&d[..], &mut view)
                .map_err(cuda_err("uploading sampling parameters"))?;
        }
        let base = self.bufs.sample_f32.ptr(&s);
        Ok((
            base,
            base + (rows.len() * 4) as u64,
            self.bufs.sample_f64.ptr(&s),
        ))
    }

    fn layers(&mut self, lay: &StepLayout) -> Result<(), EngineError> {
        let c = self.config.clone();
        let s = self.stream.clone();
        let t = lay.tokens;
        let (h, qd, kvd, inter) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size);
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let eps = c.rms_norm_eps as f32;
        let meta = self.bufs.meta.ptr(&s);
        let at = |off: usize| meta + (off * 4) as u64;
        let x = self.bufs.x.ptr(&s);
        let hb = self.bufs.h.ptr(&s);
        let qkv = self.bufs.qkv.ptr(&s);
        let q = self.bufs.q.ptr(&s);
        let attn = self.bufs.attn.ptr(&s);
        let gate_up = self.bufs.gate_up.ptr(&s);
        let act = self.bufs.act.ptr(&s);
        let part_acc = self.bufs.part_acc.ptr(&s);
        let part_ml = self.bufs.part_ml.ptr(&s);
        let inv_freq = self.inv_freq.device_ptr(&s).0;
        let k_base = self.k_cache.as_ref().map_or(0, |k| k.device_ptr(&s).0);
        let v_base = self.v_cache.as_ref().map_or(0, |v| v.device_ptr(&s).0);
        let layer_bytes = (self.num_blocks * self.block_size * kvd * 2) as u64;
        let t32 = t as u32;
        let scale = 1.0 / (hd as f32).sqrt();
        let interleaved = i32::from(c.rope_style == RopeStyle::Interleaved);
        let norm_block = 256u32;

        self.launch(
            &self.kernels.embed_gather,
            (t32, 1, 1),
            256,
            0,
            &[
                Arg::P(x),
                Arg::P(self.model.embed.device_ptr(&s).0),
                Arg::P(at(lay.off_ids)),
                Arg::I(h as i32),
            ],
        )?;
        for l in 0..c.num_hidden_layers {
            let layer = &self.model.layers[l];
            let ptr = |b: &CudaSlice<f32>| b.device_ptr(&s).0;
            let wptr = |b: &CudaSlice<bf16>| b.device_ptr(&s).0;
            let (attn_norm, mlp_norm) = (ptr(&layer.attn_norm), ptr(&layer.mlp_norm));
            let (wqkv, wo, wgu, wd) = (
                wptr(&layer.wqkv),
                wptr(&layer.wo),
                wptr(&layer.w_gate_up),
                wptr(&layer.w_down),
            );
            let bqkv = layer.bqkv.as_ref().map_or(0, ptr);
            let qn = layer.q_norm.as_ref().map_or(0, ptr);
            let kn = layer.k_norm.as_ref().map_or(0, ptr);
            let kc = k_base + layer_bytes * l as u64;
            let vc = v_base + layer_bytes * l as u64;

            self.launch(
                &self.kernels.rms_norm,
                (t32, 1, 1),
                norm_block,
                0,
                &[
                    Arg::P(hb),
                    Arg::P(x),
                    Arg::P(attn_norm),
                    Arg::P(0),
                    Arg::I(h as i32),
                    Arg::F(eps),
                ],
            )?;
            // SAFETY: buffers sized by ensure_buffers for t tokens.
            unsafe { self.gemm.linear(qkv, hb, wqkv, t, qd + 2 * kvd, h, false)? };
            self.launch(
                &self.kernels.qkv_rope,
                (t32, 1, 1),
                128,
                (4 * hd * 4) as u32,
                &[
                    Arg::P(qkv),
                    Arg::P(bqkv),
                    Arg::P(qn),
                    Arg::P(kn),
                    Arg::P(inv_freq),
                    Arg::P(at(lay.off_pos)),
                    Arg::P(at(lay.off_slots)),
                    Arg::P(q),
                    Arg::P(kc),
                    Arg::P(vc),
                    Arg::I(nh as i32),
                    Arg::I(nkv as i32),
                    Arg::F(eps),
                    Arg::I(interleaved),
                ],
            )?;
            if lay.num_items > 0 {
                self.launch(
                    &self.kernels.paged_attention,
                    (lay.num_items as u32, nkv as u32, lay.splits as u32),
                    128,
                    0,
                    &[
                        Arg::P(attn),
                        Arg::P(part_acc),
                        Arg::P(part_ml),
                        Arg::P(q),
                        Arg::P(kc),
                        Arg::P(vc),
                        Arg::P(at(lay.off_tables)),
                        Arg::I(lay.table_stride as i32),
                        Arg::P(at(lay.off_q_rows)),
                        Arg::P(at(lay.off_item_seq)),
                        Arg::P(at(lay.off_ctx)),
                        Arg::I(nh as i32),
                        Arg::I(nkv as i32),
                        Arg::I(self.block_size as i32),
                        Arg::I(lay.partition as i32),
                        Arg::F(scale),
                    ],
                )?;
                if lay.splits > 1 {
                    self.launch(
                        &self.kernels.paged_reduce,
                        (lay.num_items as u32, nh as u32, 1),
                        128,
                        0,
                        &[
                            Arg::P(attn),
                            Arg::P(part_acc),
                            Arg::P(part_ml),
                            Arg::P(at(lay.off_q_rows)),
                            Arg::I(nh as i32),
                            Arg::I(lay.splits as i32),
                        ],
                    )?;
                }
            }
            if lay.num_tiles > 0 {
                let f = self.kernels.flash_prefill.as_ref().ok_or_else(|| {
                    EngineError::Cuda("internal: prefill tiles without the flash kernel".into())
                })?;
                self.launch(
                    f,
                    (lay.num_tiles as u32, nh as u32, 1),
                    128,
                    0,
                    &[
                        Arg::P(attn),
                        Arg::P(q),
                        Arg::P(kc),
                        Arg::P(vc),
                        Arg::P(at(lay.off_tables)),
                        Arg::I(lay.table_stride as i32),
                        Arg::P(at(lay.off_tiles)),
                        Arg::I(nh as i32),
                        Arg::I(nkv as i32),
                        Arg::I(self.block_size as i32),
                        Arg::F(scale * std::f32::consts::LOG2_E),
                    ],
                )?;
            }
            // SAFETY: as above; x is t×h f32, accumulated in place.
            unsafe { self.gemm.linear(x, attn, wo, t, h, qd, true)? };
            self.launch(
                &self.kernels.rms_norm,
                (t32, 1, 1),
                norm_block,
                0,
                &[
                    Arg::P(hb),
                    Arg::P(x),
                    Arg::P(mlp_norm),
                    Arg::P(0),
                    Arg::I(h as i32),
                    Arg::F(eps),
                ],
            )?;
            // SAFETY: as above.
            unsafe { self.gemm.linear(gate_up, hb, wgu, t, 2 * inter, h, false)? };
            let total = (t * inter) as i64;
            let grid = ((total as u64).div_ceil(256)).min(1 << 20) as u32;
            self.launch(
                &self.kernels.swiglu,
                (grid, 1, 1),
                256,
                0,
                &[
                    Arg::P(act),
                    Arg::P(gate_up),
                    Arg::I(inter as i32),
                    Arg::L(total),
                ],
            )?;
            // SAFETY: as above.
            unsafe { self.gemm.linear(x, act, wd, t, h, inter, true)? };
        }
        Ok(())
    }

    /// Final norm and LM head over the logits rows, in chunks, then the
    /// requested reduction per chunk.
    fn head(
        &mut self,
        lay: &StepLayout,
        head: Head<'_>,
        sample_ptrs: (u64, u64, u64),
    ) -> Result<(), EngineError> {
        let c = self.config.clone();
        let s = self.stream.clone();
        let (h, v) = (c.hidden_size, c.vocab_size);
        let eps = c.rms_norm_eps as f32;
        let meta = self.bufs.meta.ptr(&s);
        let at = |off: usize| meta + (off * 4) as u64;
        let x = self.bufs.x.ptr(&s);
        let rows_h = self.bufs.rows_h.ptr(&s);
        let logits = self.bufs.logits.ptr(&s);
        let final_norm = self.model.final_norm.device_ptr(&s).0;
        let head_w = self.model.head_ptr(&s);
        let out_f64 = self.bufs.out_f64.ptr(&s);
        let out_i32 = self.bufs.out_i32.ptr(&s);
        let chunk = self.settings.logits_chunk_rows.max(1);

        #[derive(Clone, Copy)]
        enum Mode {
            Logits,
            Score,
            Sample,
        }
        let mut full = None;
        let mode = match head {
            Head::Logits(out) => {
                out.clear();
                out.resize(lay.rows * v, 0.0);
                full = Some(out);
                Mode::Logits
            }
            // Targets and sampling parameters went up before the layers.
            Head::Score(_) => Mode::Score,
            Head::Sample(_) => Mode::Sample,
        };
        let (temps, top_ps, us) = sample_ptrs;

        let mut r0 = 0;
        while r0 < lay.rows {
            let n = chunk.min(lay.rows - r0);
            self.launch(
                &self.kernels.rms_norm,
                (n as u32, 1, 1),
                256,
                0,
                &[
                    Arg::P(rows_h),
                    Arg::P(x),
                    Arg::P(final_norm),
                    Arg::P(at(lay.off_rows + r0)),
                    Arg::I(h as i32),
                    Arg::F(eps),
                ],
            )?;
            // SAFETY: rows_h holds n×h, logits n×v (ensure_buffers).
            unsafe { self.gemm.linear(logits, rows_h, head_w, n, v, h, false)? };
            match mode {
                Mode::Logits => {
                    if let (Some(out), Some(src)) =
                        (full.as_deref_mut(), self.bufs.logits.slice.as_ref())
                    {
                        s.memcpy_dtoh(&src.slice(0..n * v), &mut out[r0 * v..(r0 + n) * v])
                            .map_err(cuda_err("copying logits back"))?;
                    }
                }
                Mode::Score => {
                    self.launch(
                        &self.kernels.logprob_gather,
                        (n as u32, 1, 1),
                        1024,
                        0,
                        &[
                            Arg::P(out_f64 + (r0 * 8) as u64),
                            Arg::P(out_i32 + (r0 * 4) as u64),
                            Arg::P(logits),
                            Arg::P(at(lay.off_extra + r0)),
                            Arg::I(v as i32),
                        ],
                    )?;
                }
                Mode::Sample => {
                    self.launch(
                        &self.kernels.sample_tokens,
                        (n as u32, 1, 1),
                        1024,
                        0,
                        &[
                            Arg::P(out_i32 + (r0 * 4) as u64),
                            Arg::P(logits),
                            Arg::P(temps + (r0 * 4) as u64),
                            Arg::P(top_ps + (r0 * 4) as u64),
                            Arg::P(at(lay.off_extra + r0)),
                            Arg::P(us + (r0 * 8) as u64),
                            Arg::I(v as i32),
                        ],
                    )?;
                }
            }
            r0 += n;
        }
        Ok(())
    }

    /// The kernel specialisation this executor compiled.
    pub fn kernel_spec(&self) -> KernelSpec {
        self.spec
    }
}

/// The engine boxes executors as `dyn Executor + Send`.
const _: fn() = || {
    fn is_send<T: Send>() {}
    is_send::<CudaExecutor>();
};

impl Executor for CudaExecutor {
    fn forward(&mut self, batch: &StepInput) -> Result<StepOutput, EngineError> {
        let mut logits = Vec::new();
        self.step(batch, Head::Logits(&mut logits))?;
        Ok(StepOutput {
            vocab_size: self.config.vocab_size,
            logits,
        })
    }

    fn num_kv_blocks(&self) -> usize {
        self.num_blocks
    }

    fn block_size(&self) -> usize {
        self.block_size
    }
}
