//! The Shardline job domain, pure (no network, no database): job spec,
//! dataset readers, prompt rendering, request keys, sharding plan, metrics
//! and aggregation, the coordinator ↔ worker protocol, and the backoff curve
//! every retry uses.
//!
//! Layers (arrows point at what a module uses): `protocol` → `spec` and the
//! domain types its bodies carry (`request`, `output`, `results`,
//! `provider_batch`), never back; `spec` uses only `request` and
//! `template`; `judge` uses `spec`, `plan`, `dataset` and `request`, and `metrics` and
//! `results` use `judge`; `diff` (two runs' `samples.jsonl` compared) uses
//! nothing else of the crate.

pub mod backoff;
pub mod cost;
pub mod dataset;
pub mod diff;
pub mod judge;
pub mod metrics;
pub mod model_text;
pub mod output;
pub mod plan;
pub mod protocol;
pub mod provider_batch;
pub mod redact;
pub mod render;
pub mod request;
pub mod results;
pub mod schedule;
pub mod spec;
pub mod template;

pub use backoff::Backoff;
pub use dataset::{
    read_jsonl_examples, DatasetError, DatasetReader, DatasetRoots, Doc, ReadLimits, ReadPolicy,
};
pub use metrics::Scorer;
pub use model_text::{ModelText, ModelTextError};
pub use output::{InferenceOutput, LoglikelihoodOutput, SegmentRecord, Usage};
pub use plan::{DocPlan, Planner};
pub use render::RenderError;
pub use request::{
    ChatMessage, GenerationParams, InferenceRequest, ModelFingerprint, RenderedInput, RequestKey,
    RequestType,
};
pub use results::{
    Aggregator, MetricSummary, MetricsReport, SampleOutputs, SamplePrompt, SampleRecord,
};
pub use spec::{BackendKind, JobSpec, ModelSpec, ProviderBatchSpec, SpecError};
