//! The Shardline job domain, pure (no network, no database): job spec,
//! dataset readers, prompt rendering, request keys, sharding plan, metrics
//! and aggregation.

pub mod output;
pub mod protocol;
pub mod request;
pub mod spec;

pub use output::{InferenceOutput, LoglikelihoodOutput, SegmentRecord, Usage};
pub use request::{
    ChatMessage, GenerationParams, InferenceRequest, ModelFingerprint, RenderedInput, RequestKey,
    RequestType,
};
pub use spec::JobSpec;
