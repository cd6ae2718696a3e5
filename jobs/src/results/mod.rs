//! Results: one `SampleRecord` per document (a line of `samples.jsonl`), and
//! the `Aggregator` that turns them into `metrics.json` — mean, seeded
//! bootstrap standard error and per-subset means per metric.

mod aggregate;
mod record;
mod report;

pub use aggregate::{standard_error, Aggregator, BOOTSTRAP_ITERS, BOOTSTRAP_MAX_DOCS};
pub use record::{ChoiceLoglikelihood, SampleOutputs, SamplePrompt, SampleRecord};
pub use report::{MetricSummary, MetricsReport, StderrMethod, SubsetSummary};
