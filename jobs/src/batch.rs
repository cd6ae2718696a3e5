//! Old paths of the provider-batch types, kept only until the other crates'
//! call sites move: the wire bodies are in `protocol::provider_batch`, the
//! per-shard state in `provider_batch`, the `[model.batch]` section in
//! `spec::ProviderBatchSpec`.

pub use crate::protocol::provider_batch::*;
pub use crate::provider_batch::*;
pub use crate::spec::{
    ProviderBatchSpec as BatchSpec, RetryWith, API_MAX_FILE_BYTES, API_MAX_REQUESTS_PER_FILE,
    COMPLETION_WINDOW,
};
