//! The engine's error type: every failure names the file, tensor, field or
//! request it concerns and, where there is one, what to do about it.

use std::path::PathBuf;

/// Errors from loading models and running requests.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A `config.json` (or equivalent metadata) that is malformed or
    /// describes something the engine does not run.
    #[error("model config {path}: {message}")]
    Config { path: PathBuf, message: String },

    #[error("unsupported architecture {name:?} in {path}: the engine runs Llama, Mistral, SmolLM, Qwen2/2.5 and Qwen3")]
    UnsupportedArchitecture { path: PathBuf, name: String },

    /// A weights file that cannot be parsed or holds a tensor of a type the
    /// engine cannot convert.
    #[error("weights file {file}: {message}")]
    Weights { file: PathBuf, message: String },

    #[error("tensor {tensor} is missing{}: {hint}", in_file(file))]
    MissingTensor {
        tensor: String,
        file: Option<PathBuf>,
        hint: String,
    },

    #[error("tensor {tensor}{} has shape {found:?} but the model config implies {expected:?}; the weights do not belong to this config.json", in_file(file))]
    ShapeMismatch {
        tensor: String,
        file: Option<PathBuf>,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    /// A request the engine cannot run as given (too long, bad token id...).
    #[error("invalid request {index}: {message}")]
    InvalidRequest { index: usize, message: String },

    /// A prompt that needs more KV-cache blocks than exist at all.
    #[error("a sequence of {tokens} tokens needs {needed} KV-cache blocks but the cache has only {available}; raise num_kv_blocks (or the KV memory budget) or shorten the prompt")]
    KvCacheTooSmall {
        tokens: usize,
        needed: usize,
        available: usize,
    },

    /// An executor received a step that violates its contract (a bug in the
    /// caller, reported instead of panicking).
    #[error("invalid step: {0}")]
    InvalidStep(String),

    #[error("settings: {0}")]
    Settings(String),

    /// The CUDA path cannot run on this machine: no driver, no device, a
    /// missing CUDA library or a GPU too old. The message says which and
    /// what to do.
    #[error("{0}")]
    CudaUnavailable(String),

    /// A CUDA call failed (out of memory, a kernel or cuBLASLt error).
    #[error("CUDA error: {0}")]
    Cuda(String),
}

fn in_file(file: &Option<PathBuf>) -> String {
    match file {
        Some(f) => format!(" in {}", f.display()),
        None => String::new(),
    }
}
