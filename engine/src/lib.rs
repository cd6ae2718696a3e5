//! Shardline's own inference engine: model formats, tokenizer, chat
//! templates, a continuous-batching scheduler over a paged KV cache, and the
//! CPU execution path (the reference the CUDA path is checked against).

pub mod config;
pub mod cpu;
pub mod engine;
pub mod error;
pub mod executor;
pub mod hf;
pub mod kv;
pub mod layout;
pub mod sampling;
pub mod scheduler;
pub mod testing;
pub mod weights;

pub use config::{Architecture, ModelConfig, RopeScaling, RopeStyle};
pub use engine::{
    EngineSettings, EngineStats, FinishReason, GenerateOutput, GenerateRequest, LlmEngine,
    LoglikelihoodOutput, LoglikelihoodRequest, TokenAction,
};
pub use error::EngineError;
pub use executor::{BatchInput, BatchOutput, Executor};
pub use weights::{Tensor, Weights};

pub mod chat_template;
pub mod gguf;
#[cfg(test)]
mod tests;
pub mod tokenizer;
