//! The CUDA executor's settings: memory share, KV block size, step limits
//! and kernel choices.

use serde::{Deserialize, Serialize};

use crate::engine::EngineSettings;
use crate::error::EngineError;

/// Settings of the CUDA executor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CudaSettings {
    /// Fraction of the GPU's memory the engine may use in all (weights,
    /// activations, KV cache), as in vLLM.
    pub gpu_memory_utilization: f64,
    /// Tokens per KV-cache block (must match the scheduler's).
    pub block_size: usize,
    /// KV-cache size in blocks; when `None`, as many as fit.
    pub num_kv_blocks: Option<usize>,
    /// Largest step the warm-up pass sizes activations for.
    pub max_num_batched_tokens: usize,
    /// Most sequences in one step.
    pub max_num_seqs: usize,
    /// Logits rows computed at once: bounds the logits buffer to
    /// `logits_chunk_rows × vocab` floats however many positions are scored.
    pub logits_chunk_rows: usize,
    /// Context positions per split of the paged decode attention when a
    /// step has too few sequences to fill the GPU.
    pub attention_partition: usize,
    /// Use the tensor-core prefill kernel where the head size allows; off
    /// runs every token through the paged attention kernel (reference).
    pub flash_prefill: bool,
}

impl Default for CudaSettings {
    fn default() -> Self {
        CudaSettings {
            gpu_memory_utilization: 0.9,
            block_size: 16,
            num_kv_blocks: None,
            max_num_batched_tokens: 8192,
            max_num_seqs: 256,
            logits_chunk_rows: 256,
            attention_partition: 512,
            flash_prefill: true,
        }
    }
}

impl CudaSettings {
    /// The CUDA settings matching the engine's (block size, batch limits,
    /// an explicit KV block count), other fields at their defaults.
    pub fn from_engine(settings: &EngineSettings) -> CudaSettings {
        CudaSettings {
            block_size: settings.block_size,
            num_kv_blocks: settings.num_kv_blocks,
            max_num_batched_tokens: settings.max_num_batched_tokens,
            max_num_seqs: settings.max_num_seqs,
            ..CudaSettings::default()
        }
    }

    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |m: &str| Err(EngineError::Settings(m.to_string()));
        if !(self.gpu_memory_utilization > 0.0 && self.gpu_memory_utilization <= 1.0) {
            return bad("gpu_memory_utilization must be in (0, 1]");
        }
        if self.block_size == 0 || self.max_num_batched_tokens == 0 || self.max_num_seqs == 0 {
            return bad("block_size, max_num_batched_tokens and max_num_seqs must be positive");
        }
        if self.num_kv_blocks == Some(0) {
            return bad("num_kv_blocks must be positive when set");
        }
        if self.logits_chunk_rows == 0 || self.attention_partition == 0 {
            return bad("logits_chunk_rows and attention_partition must be positive");
        }
        Ok(())
    }
}
