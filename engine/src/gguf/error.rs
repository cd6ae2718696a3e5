//! What can go wrong reading a GGUF model.

use std::path::PathBuf;

/// Everything that can go wrong reading a GGUF model. Each variant names the
/// file and, where there is one, the tensor or metadata key.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read GGUF file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a GGUF file (first bytes {found:02x?}, expected \"GGUF\")")]
    BadMagic { path: PathBuf, found: Vec<u8> },
    #[error("{path}: GGUF version {version} is not supported: {hint}")]
    UnsupportedVersion {
        path: PathBuf,
        version: u32,
        hint: &'static str,
    },
    #[error("{path} is truncated: {what} lies past the end of the file (re-download it)")]
    Truncated { path: PathBuf, what: String },
    #[error("{path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "{path}: tensor {tensor:?} has type {ggml_type}, which this engine cannot dequantise \
         (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K); \
         use a file quantised to one of those"
    )]
    UnsupportedType {
        path: PathBuf,
        tensor: String,
        ggml_type: String,
    },
    #[error(
        "{path}: architecture {architecture:?} is not supported (supported: llama, qwen2, qwen3)"
    )]
    UnsupportedArchitecture { path: PathBuf, architecture: String },
    #[error("{path}: metadata key {key:?} is missing")]
    MissingMetadata { path: PathBuf, key: String },
    #[error("{path}: metadata key {key:?} should be {expected}, found {found}")]
    BadMetadata {
        path: PathBuf,
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("{path}: tensor {tensor:?} is missing")]
    MissingTensor { path: PathBuf, tensor: String },
    #[error("{path}: tensor {tensor:?} is not part of a supported {architecture} model")]
    UnexpectedTensor {
        path: PathBuf,
        tensor: String,
        architecture: String,
    },
    #[error(
        "{path}: tensor {tensor:?} has shape {found:?}, expected {expected:?} from the metadata"
    )]
    ShapeMismatch {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{path}: unsupported RoPE scaling: {detail}")]
    UnsupportedRopeScaling { path: PathBuf, detail: String },
}
