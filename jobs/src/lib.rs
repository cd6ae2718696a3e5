//! The Shardline job domain, pure (no network, no database): job spec,
//! dataset readers, prompt rendering, request keys, sharding plan, metrics
//! and aggregation.

pub mod batch;
pub mod cost;
pub mod dataset;
pub mod metrics;
pub mod output;
pub mod plan;
pub mod protocol;
pub mod render;
pub mod request;
pub mod results;
pub mod spec;
pub mod spec_load;

pub use dataset::{read_jsonl_examples, DatasetError, DatasetReader, Doc};
pub use metrics::Scorer;
pub use output::{InferenceOutput, LoglikelihoodOutput, SegmentRecord, Usage};
pub use plan::{DocPlan, Planner};
pub use render::RenderError;
pub use request::{
    ChatMessage, GenerationParams, InferenceRequest, ModelFingerprint, RenderedInput, RequestKey,
    RequestType,
};
pub use results::{Aggregator, MetricSummary, MetricsReport, SampleOutputs, SampleRecord};
pub use spec::JobSpec;
pub use spec_load::SpecError;
