//! The engine's limits (sequences and tokens per step, KV cache size,
//! context length, prefix caching), as vLLM names them.

use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::cpu::kv_bytes_per_token;

/// Engine limits, as in vLLM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineSettings {
    /// Most sequences in one step.
    pub max_num_seqs: usize,
    /// Most tokens computed in one step; longer prompts are prefilled in
    /// chunks.
    pub max_num_batched_tokens: usize,
    /// Tokens per KV-cache block.
    pub block_size: usize,
    /// KV-cache size in blocks; when `None`, as many as fit in
    /// `kv_cache_bytes`.
    pub num_kv_blocks: Option<usize>,
    pub kv_cache_bytes: usize,
    /// Longest sequence (prompt plus generation); `None` means the model's
    /// `max_position_embeddings`.
    pub max_model_len: Option<usize>,
    pub enable_prefix_caching: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_num_seqs: 32,
            max_num_batched_tokens: 1024,
            block_size: 16,
            num_kv_blocks: None,
            kv_cache_bytes: 512 << 20,
            max_model_len: None,
            enable_prefix_caching: true,
        }
    }
}

impl EngineSettings {
    /// The number of KV blocks these settings give for `config` (f32 cache).
    pub fn resolve_num_kv_blocks(&self, config: &ModelConfig) -> usize {
        self.num_kv_blocks.unwrap_or_else(|| {
            let per_block = kv_bytes_per_token(config) * self.block_size.max(1);
            (self.kv_cache_bytes / per_block.max(1)).max(1)
        })
    }
}
