//! A model's own view of its inputs, where a backend knows it (the engine
//! has the model's tokenizer and chat template; an API does not say): the
//! exact text a request's input becomes, and how many tokens the model
//! reads for it. Implemented outside this crate (the worker's engine
//! backend); used for `samples.jsonl` and dry-run token counts.

use crate::request::{InferenceRequest, RenderedInput};

/// Why a model could not render or count an input (the backend would
/// refuse that request too).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ModelTextError(pub String);

pub trait ModelText: Send + Sync {
    /// The text the model reads for `input`: chat messages rendered with
    /// the model's chat template, a plain prompt as the backend passes it.
    fn prompt_text(&self, input: &RenderedInput) -> Result<String, ModelTextError>;

    /// Tokens the model reads for `request`: its prompt, and the
    /// continuation of a log-likelihood request (as the backend counts
    /// them in `usage.prompt_tokens`).
    fn input_tokens(&self, request: &InferenceRequest) -> Result<u64, ModelTextError>;
}
