//! Results: one `SampleRecord` per document (a line of `samples.jsonl`), one
//! `MissingRecord` per request without an output (`missing.jsonl`), and the
//! `Aggregator` that turns samples into `metrics.json` — mean, seeded
//! bootstrap standard error and per-subset means per metric — and the
//! per-sample table (`samples.csv`, `samples.parquet`) written from
//! `samples.jsonl`.

mod aggregate;
mod missing;
mod parquet_table;
mod record;
mod report;
mod table;

pub use aggregate::{standard_error, Aggregator, BOOTSTRAP_ITERS, BOOTSTRAP_MAX_DOCS};
pub use missing::MissingRecord;
pub use parquet_table::{write_parquet, PARQUET_FILE};
pub use record::{ChoiceLoglikelihood, JudgeVerdict, SampleOutputs, SamplePrompt, SampleRecord};
pub use report::{MetricSummary, MetricsReport, StderrMethod, SubsetSummary};
pub use table::{write_csv, TableError, CSV_FILE};
