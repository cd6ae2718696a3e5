//! The paged bf16 KV cache on the GPU: its size per token, the number of
//! blocks a memory budget holds, and the K and V allocations (all layers in
//! one buffer each, layer after layer).

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use half::bf16;

use super::launch::DevPtr;
use crate::config::ModelConfig;
use crate::error::EngineError;

/// Bytes of bf16 KV cache per token (K and V, all layers).
pub(super) fn bytes_per_token(c: &ModelConfig) -> usize {
    2 * c.num_hidden_layers * c.kv_dim() * 2
}

/// GPU memory as the driver reports it, and the share the engine may use.
#[derive(Clone, Copy, Debug)]
pub(super) struct MemoryBudget {
    pub free: usize,
    pub total: usize,
    pub gpu_memory_utilization: f64,
}

impl MemoryBudget {
    /// Memory kept free for others: `1 - gpu_memory_utilization` of all.
    pub(super) fn reserve(&self) -> usize {
        (self.total as f64 * (1.0 - self.gpu_memory_utilization)) as usize
    }

    /// Bytes the KV cache may take.
    pub(super) fn for_kv(&self) -> usize {
        self.free.saturating_sub(self.reserve())
    }

    /// Blocks of `per_block` bytes the budget holds.
    pub(super) fn blocks(&self, per_block: usize) -> usize {
        self.for_kv() / per_block.max(1)
    }
}

/// K and V of every layer, `num_blocks × block_size` slots each.
pub(super) struct KvCache {
    k: Option<CudaSlice<bf16>>,
    v: Option<CudaSlice<bf16>>,
    num_blocks: usize,
    block_size: usize,
    /// Elements of one layer's K (or V).
    layer_elems: usize,
}

impl KvCache {
    /// No cache yet: [`Self::alloc`] makes one.
    pub(super) fn empty(block_size: usize) -> KvCache {
        KvCache {
            k: None,
            v: None,
            num_blocks: 0,
            block_size,
            layer_elems: 0,
        }
    }

    pub(super) fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    pub(super) fn block_size(&self) -> usize {
        self.block_size
    }

    /// Frees the cache (the block count stays until the next allocation).
    pub(super) fn free(&mut self) {
        self.k = None;
        self.v = None;
    }

    /// Replaces the cache with one of `blocks` blocks, zeroed.
    pub(super) fn alloc(
        &mut self,
        stream: &Arc<CudaStream>,
        c: &ModelConfig,
        blocks: usize,
    ) -> Result<(), EngineError> {
        self.free();
        let layer_elems = blocks
            .checked_mul(self.block_size)
            .and_then(|s| s.checked_mul(c.kv_dim()))
            .ok_or_else(|| EngineError::Settings("KV cache size overflows".into()))?;
        let elems = layer_elems
            .checked_mul(c.num_hidden_layers)
            .ok_or_else(|| EngineError::Settings("KV cache size overflows".into()))?;
        let alloc = |what: &str| {
            stream.alloc_zeros::<bf16>(elems).map_err(|e| {
                EngineError::Cuda(format!(
                    "allocating the {what} cache ({} MiB): {e}; lower num_kv_blocks or gpu_memory_utilization",
                    (elems * 2) >> 20
                ))
            })
        };
        let k = alloc("K")?;
        let v = alloc("V")?;
        self.k = Some(k);
        self.v = Some(v);
        self.num_blocks = blocks;
        self.layer_elems = layer_elems;
        Ok(())
    }

    /// Layer `l`'s K and V.
    pub(super) fn layer(&self, stream: &CudaStream, l: usize) -> (DevPtr<bf16>, DevPtr<bf16>) {
        let base = |s: &Option<CudaSlice<bf16>>| {
            DevPtr::<bf16>::new(s.as_ref().map_or(0, |s| s.device_ptr(stream).0))
        };
        let off = self.layer_elems * l;
        (base(&self.k).add(off), base(&self.v).add(off))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_keeps_the_unused_share_free() {
        let b = MemoryBudget {
            free: 70 << 30,
            total: 80 << 30,
            gpu_memory_utilization: 0.75,
        };
        assert_eq!(b.reserve(), 20 << 30);
        assert_eq!(b.for_kv(), 50 << 30);
        assert_eq!(b.blocks(1 << 20), 50 << 10);
        let full = MemoryBudget { free: 4 << 30, ..b };
        assert_eq!(full.blocks(1 << 20), 0);
    }
}
