//! Inference backends: the [`Backend`] trait a worker runs requests on, and
//! [`build_backend`], which picks the implementation a model spec names.

mod breaker;
pub mod engine;
pub mod openai;
pub mod openai_batch;
mod rate_limit;

use async_trait::async_trait;
use jobs::spec::{BackendKind, ModelSpec};
use jobs::{InferenceOutput, InferenceRequest};
use std::sync::Arc;

pub use breaker::{DEFAULT_COOLDOWN as BREAKER_COOLDOWN, DEFAULT_THRESHOLD as BREAKER_THRESHOLD};
pub use engine::EngineBackend;
pub use openai::OpenAiBackend;
pub use openai_batch::OpenAiBatchBackend;
pub use rate_limit::TokenBucket;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendError {
    /// The model spec or the environment is wrong; retrying cannot help.
    #[error("backend configuration: {0}")]
    Config(String),
    /// The backend cannot serve this kind of request.
    #[error("unsupported request: {0}")]
    Unsupported(String),
    /// The endpoint answered with an error status (after retries when the
    /// status is retryable).
    #[error("HTTP {status} from {url} after {attempts} attempt(s): {message}")]
    Http {
        url: String,
        status: u16,
        message: String,
        attempts: u32,
    },
    /// Timeouts or connection failures, after retries.
    #[error("{url}: {message} (after {attempts} attempt(s))")]
    Transport {
        url: String,
        message: String,
        attempts: u32,
    },
    /// A 2xx answer that does not follow the API.
    #[error("unexpected answer from {url}: {message}")]
    BadResponse { url: String, message: String },
    /// The answer is well formed but cannot score this continuation exactly
    /// (a token straddles the context/continuation boundary).
    #[error("cannot score the continuation: {0}")]
    Unscorable(String),
    /// The in-process engine cannot run this request on its model (too
    /// long for the model, parameters it does not support, ...).
    #[error("{0}")]
    Invalid(String),
    /// The backend's circuit breaker is open: the endpoint failed the same
    /// way (unreachable, key rejected, model unknown) many times in a row,
    /// so every request would fail. The worker fails the whole shard with
    /// this message instead of recording one failure per request.
    #[error("{message}")]
    EndpointUnusable { url: String, message: String },
}

impl BackendError {
    /// Whether this error condemns the whole shard (not just one request).
    pub fn is_endpoint_unusable(&self) -> bool {
        matches!(self, BackendError::EndpointUnusable { .. })
    }
}

/// Something that turns inference requests into outputs.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Requests this backend wants in flight at once. The backend enforces
    /// it across every shard sharing it; the worker keeps claiming shards
    /// until about `CLAIM_AHEAD` times this many requests are pending.
    fn concurrency(&self) -> usize;

    /// Runs one request, retrying transient failures internally.
    async fn run(&self, req: &InferenceRequest) -> Result<InferenceOutput, BackendError>;

    /// The Batch API backend, when this is one: the worker then runs whole
    /// shards through provider batches instead of request by request.
    fn batch(&self) -> Option<&OpenAiBatchBackend> {
        None
    }
}

/// Builds the backend a model spec names.
pub fn build_backend(model: &ModelSpec) -> Result<Arc<dyn Backend>, BackendError> {
    match model.backend {
        BackendKind::Openai => Ok(Arc::new(OpenAiBackend::from_spec(model)?)),
        BackendKind::OpenaiBatch => Ok(Arc::new(OpenAiBatchBackend::from_spec(model)?)),
        BackendKind::Engine => Ok(Arc::new(EngineBackend::from_spec(model)?)),
        BackendKind::None => Err(BackendError::Config(
            "backend none makes no inference calls; this shard should not exist".into(),
        )),
    }
}
