//! CUDA execution path (cudarc, dynamically loaded): bf16 weights with fp32
//! accumulation, cuBLASLt GEMMs, NVRTC-compiled kernels and a paged bf16 KV
//! cache sized from free GPU memory. It implements the same [`Executor`]
//! trait as the CPU path, so the scheduler and block manager are shared.
//!
//! Nothing of CUDA is needed to build or start: on a machine without a
//! driver, [`CudaExecutor::new`] returns [`EngineError::CudaUnavailable`].
//!
//! [`Executor`]: crate::executor::Executor
//! [`EngineError::CudaUnavailable`]: crate::error::EngineError::CudaUnavailable

mod executor;
mod gemm;
pub mod kernels;
pub mod libs;
mod model;
mod settings;

pub use executor::{CudaExecutor, RowSample, TokenScore};
pub use settings::CudaSettings;
