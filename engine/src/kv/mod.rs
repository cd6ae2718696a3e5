//! The paged KV cache's bookkeeping (which block holds which tokens); the
//! memory itself belongs to the executor.

pub mod block_manager;

pub use block_manager::{BlockId, BlockManager, BlockTable, PrefixCacheStats};
