//! `CudaExecutor`: the forward pass on one GPU over a paged bf16 KV cache.
//!
//! A step uploads its integer metadata in one copy (`step_meta`), grows the
//! buffer pool to fit (`buffers`), runs the decoder layers (`layers`) and
//! then the LM head on the rows whose logits are wanted (`head`), followed
//! by whichever reduction the caller asked for: full logits (the
//! [`Executor`] contract), log-probabilities of given targets, or sampled
//! tokens, so that scoring and generation copy a few bytes per row back
//! instead of a vocabulary of floats. Kernels are called through typed
//! launchers (`launch`); the KV cache is sized from the memory left after a
//! warm-up step (`kv_cache`).

mod buffers;
mod head;
mod kv_cache;
mod launch;
mod layers;
mod step_meta;

use std::sync::Arc;

use cudarc::driver::{sys::CUdevice_attribute, CudaContext, CudaSlice, CudaStream};

pub use head::{RowSample, TokenScore};

use buffers::Buffers;
use head::Head;
use kv_cache::{KvCache, MemoryBudget};
use launch::{DevPtr, Kernels};
use layers::{LayerKv, StepCtx};
use step_meta::{AttentionShape, StepLayout};

use super::gemm::Gemm;
use super::kernels::{self, KernelSpec};
use super::libs::{self, CudaLib};
use super::model::GpuModel;
use super::settings::CudaSettings;
use crate::config::ModelConfig;
use crate::cpu::ops::rope_inv_freq;
use crate::error::EngineError;
use crate::executor::{Executor, SeqSlice, StepInput, StepOutput};
use crate::weights::Weights;

fn cuda_err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> EngineError + '_ {
    move |e| EngineError::Cuda(format!("{what}: {e}"))
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
    kv: KvCache,
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
        let flash = spec.has_flash_prefill() && settings.flash_prefill;
        let kernels = Kernels::load(&module, flash, config.head_dim)?;

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
            kv: KvCache::empty(settings.block_size),
            bufs: Buffers::new(),
            host_meta: Vec::new(),
            sm_count,
            device_name,
        };
        exec.size_kv_cache()?;
        tracing::info!(
            device = %exec.device_name,
            weights_mib = exec.model.bytes >> 20,
            kv_blocks = exec.kv.num_blocks(),
            block_size = exec.kv.block_size(),
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
        self.kv.num_blocks() * self.kv.block_size() * self.kv_bytes_per_token()
    }

    /// Bytes of bf16 KV cache per token (K and V, all layers).
    pub fn kv_bytes_per_token(&self) -> usize {
        kv_cache::bytes_per_token(&self.config)
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The kernel specialisation this executor compiled.
    pub fn kernel_spec(&self) -> KernelSpec {
        self.spec
    }

    /// Waits for all queued GPU work (for timing).
    pub fn synchronize(&self) -> Result<(), EngineError> {
        self.stream.synchronize().map_err(cuda_err("synchronize"))
    }

    /// Runs the step and returns, per logits row, the log-probability of
    /// `targets[row]` and whether it is the argmax: prompt scoring without
    /// copying logits to the host.
    pub fn forward_score(
        &mut self,
        step: &StepInput,
        targets: &[u32],
    ) -> Result<Vec<TokenScore>, EngineError> {
        if targets.len() != step.logits_indices.len() {
            return Err(EngineError::InvalidStep(format!(
                "{} targets for {} logits rows",
                targets.len(),
                step.logits_indices.len()
            )));
        }
        let v = self.config.vocab_size;
        if let Some(t) = targets.iter().find(|&&t| t as usize >= v) {
            return Err(EngineError::InvalidStep(format!(
                "target token {t} is outside the vocabulary of {v}"
            )));
        }
        let rows = targets.len();
        self.step(step, Head::Score(targets))?;
        let mut lp = vec![0.0f64; rows];
        self.bufs
            .out_f64
            .download(&self.stream, &mut lp, "scores")?;
        let mut greedy = vec![0i32; rows];
        self.bufs
            .out_i32
            .download(&self.stream, &mut greedy, "results")?;
        Ok(lp
            .into_iter()
            .zip(greedy)
            .map(|(logprob, g)| TokenScore {
                logprob,
                is_argmax: g != 0,
            })
            .collect())
    }

    /// Runs the step and picks one token per logits row on the device.
    pub fn forward_sample(
        &mut self,
        step: &StepInput,
        rows: &[RowSample],
    ) -> Result<Vec<u32>, EngineError> {
        if rows.len() != step.logits_indices.len() {
            return Err(EngineError::InvalidStep(format!(
                "{} sampling parameters for {} logits rows",
                rows.len(),
                step.logits_indices.len()
            )));
        }
        if let Some(r) = rows.iter().find(|r| {
            !(r.temperature >= 0.0 && r.top_p > 0.0 && r.top_p <= 1.0 && (0.0..1.0).contains(&r.u))
        }) {
            return Err(EngineError::InvalidStep(format!(
                "bad sampling parameters {r:?}: temperature >= 0, top_p in (0, 1], u in [0, 1)"
            )));
        }
        self.step(step, Head::Sample(rows))?;
        let mut out = vec![0i32; rows.len()];
        self.bufs
            .out_i32
            .download(&self.stream, &mut out, "results")?;
        Ok(out.into_iter().map(|t| t.max(0) as u32).collect())
    }

    /// [`forward_sample`](Self::forward_sample) with argmax for every row.
    pub fn forward_greedy(&mut self, step: &StepInput) -> Result<Vec<u32>, EngineError> {
        let rows = vec![RowSample::greedy(); step.logits_indices.len()];
        self.forward_sample(step, &rows)
    }

    /// Allocates the KV cache: `num_kv_blocks` when set, otherwise what fits
    /// in `gpu_memory_utilization` of the GPU after a warm-up step at the
    /// largest step.
    fn size_kv_cache(&mut self) -> Result<(), EngineError> {
        let bs = self.kv.block_size();
        let per_block = self.kv_bytes_per_token() * bs;
        // Warm-up: one sequence of max_num_batched_tokens tokens in a small
        // temporary cache, so activation buffers, cuBLASLt plans and the
        // logits path reach their peak size before measuring free memory.
        let warm_tokens = self
            .settings
            .max_num_batched_tokens
            .min(self.config.max_position_embeddings.max(1));
        let warm_blocks = warm_tokens.div_ceil(bs) + 1;
        self.kv.alloc(&self.stream, &self.config, warm_blocks)?;
        let rows = self.settings.logits_chunk_rows.min(warm_tokens).max(1);
        let warm = StepInput {
            token_ids: vec![0; warm_tokens],
            positions: (0..warm_tokens).collect(),
            slot_mapping: (0..warm_tokens).collect(),
            seqs: vec![SeqSlice {
                token_range: 0..warm_tokens,
                block_table: (0..warm_blocks as u32).collect(),
            }],
            logits_indices: (warm_tokens - rows..warm_tokens).collect(),
        };
        self.step(&warm, Head::Sample(&vec![RowSample::greedy(); rows]))?;
        // Also size the split-K buffers: splits are only used while the
        // items leave the GPU idle (see `step_meta`), so for few items.
        let split_items = (4 * self.sm_count).div_ceil(self.config.num_key_value_heads.max(1));
        self.bufs.ensure_partials(
            &self.stream,
            &self.config,
            split_items.min(self.settings.max_num_batched_tokens),
            self.max_splits(),
        )?;
        self.synchronize()?;
        self.kv.free();
        self.synchronize()?;

        let blocks = match self.settings.num_kv_blocks {
            Some(n) => n,
            None => {
                let (free, total) = self
                    .ctx
                    .mem_get_info()
                    .map_err(cuda_err("reading free GPU memory"))?;
                let budget = MemoryBudget {
                    free,
                    total,
                    gpu_memory_utilization: self.settings.gpu_memory_utilization,
                };
                let blocks = budget.blocks(per_block);
                tracing::info!(
                    free_mib = free >> 20,
                    total_mib = total >> 20,
                    reserve_mib = budget.reserve() >> 20,
                    activations_mib = self.bufs.bytes() >> 20,
                    "sizing the KV cache"
                );
                if blocks < warm_blocks {
                    return Err(EngineError::Settings(format!(
                        "only {} MiB of GPU memory left for the KV cache after loading {} MiB of weights ({} blocks of {bs} tokens; a step of {warm_tokens} tokens needs {warm_blocks}); raise gpu_memory_utilization (now {}), lower max_num_batched_tokens, or use a GPU with more memory",
                        budget.for_kv() >> 20,
                        self.model.bytes >> 20,
                        blocks,
                        self.settings.gpu_memory_utilization
                    )));
                }
                blocks
            }
        };
        self.kv.alloc(&self.stream, &self.config, blocks)
    }

    fn max_splits(&self) -> usize {
        let max_ctx = self.config.max_position_embeddings.max(1);
        max_ctx
            .div_ceil(self.settings.attention_partition.max(1))
            .clamp(1, 64)
    }

    /// One forward step, then `head` on the logits rows.
    fn step(&mut self, step: &StepInput, head: Head<'_>) -> Result<(), EngineError> {
        step.validate(
            self.kv.num_blocks(),
            self.kv.block_size(),
            self.config.vocab_size,
        )?;
        self.ctx
            .bind_to_thread()
            .map_err(cuda_err("binding the CUDA context"))?;
        let lay = self.upload_meta(step, &head.extra())?;
        self.bufs
            .ensure_step(&self.stream, &self.config, &self.settings, &lay)?;
        // Copies from pageable memory wait for the stream, so everything
        // goes up before the first kernel of the step.
        let sample = match &head {
            Head::Sample(rows) => Some(head::upload_sampling(&mut self.bufs, &self.stream, rows)?),
            _ => None,
        };
        let cx = StepCtx {
            stream: &self.stream,
            kernels: &self.kernels,
            config: &self.config,
            lay: &lay,
            buf: self.bufs.activations(&self.stream),
            inv_freq: DevPtr::of(&self.inv_freq, &self.stream),
            block_size: self.kv.block_size(),
        };
        if lay.tokens > 0 {
            let (kv, stream) = (&self.kv, &self.stream);
            layers::forward(&cx, &mut self.gemm, &self.model, |l| {
                let (k, v) = kv.layer(stream, l);
                LayerKv { k, v }
            })?;
        }
        let chunk = self.settings.logits_chunk_rows;
        head::run(
            &cx,
            &mut self.gemm,
            &self.model,
            &self.bufs,
            chunk,
            head,
            sample,
        )
    }

    /// Builds the step's metadata and uploads it in one copy.
    fn upload_meta(&mut self, step: &StepInput, extra: &[i32]) -> Result<StepLayout, EngineError> {
        let shape = AttentionShape {
            flash: self.kernels.has_flash_prefill(),
            attention_partition: self.settings.attention_partition,
            num_kv_heads: self.config.num_key_value_heads,
            sm_count: self.sm_count,
        };
        let lay = step_meta::build(step, shape, extra, &mut self.host_meta)?;
        self.bufs
            .meta
            .upload(&self.stream, &self.host_meta, "step metadata")?;
        Ok(lay)
    }
}

/// The engine boxes executors as `dyn Executor + Send`.
const _: fn() = || {
    fn is_send<T: Send>() {}
    is_send::<CudaExecutor>();
};

impl Executor for CudaExecutor {
    fn forward(&mut self, step: &StepInput) -> Result<StepOutput, EngineError> {
        let mut logits = Vec::new();
        self.step(step, Head::Logits(&mut logits))?;
        Ok(StepOutput {
            vocab_size: self.config.vocab_size,
            logits,
        })
    }

    fn num_kv_blocks(&self) -> usize {
        self.kv.num_blocks()
    }

    fn block_size(&self) -> usize {
        self.kv.block_size()
    }
}
