//! Shardline's own inference engine: model formats, tokenizer, chat
//! templates, a continuous-batching scheduler over a paged KV cache, and the
//! CPU execution path (the reference the CUDA path is checked against).

pub mod chat;
pub mod config;
pub mod cpu;
pub mod cuda;
pub mod engine;
pub mod error;
pub mod executor;
pub mod fingerprint;
pub mod hf;
pub mod kv;
pub mod layout;
pub mod loader;
pub mod sampling;
pub mod scheduler;
/// Test support: skipped tests said out loud.
pub mod skip_log;
/// Test support: tiny random models and a naive reference forward pass.
pub mod testing;
pub mod text;
pub mod weights;

pub use chat::{ChatMessage, SystemRole};
pub use config::{Architecture, ModelConfig, RopeScaling, RopeStyle};
pub use engine::{
    BoxedExecutor, DynEngine, EngineOutput, EngineSettings, EngineStats, FinishReason, Finished,
    GenerateOutput, GenerateRequest, LlmEngine, LoglikelihoodRequest, LoglikelihoodScore,
    RequestId, TokenAction,
};
pub use error::EngineError;
pub use executor::{Executor, StepInput, StepOutput};
pub use fingerprint::{fingerprint_model, DigestCache, FingerprintError, ModelFormat};
pub use loader::{
    load_model, load_text_model, probe_model, Device, LoadError, LoadOptions, LoadedModel,
    ModelInfo, TemplateOverride,
};
pub use text::{
    GeneratedText, Prompt, ScoredContinuation, StopChecker, TextError, TextModel, TextParams,
};
pub use weights::{Tensor, Weights};

pub mod chat_template;
pub mod gguf;
#[cfg(test)]
mod tests;
pub mod tokenizer;
