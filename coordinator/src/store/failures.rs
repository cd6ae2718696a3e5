//! Requests that failed for good: per job (for the status page) and per key
//! (for the rescore and resubmission paths).

use async_trait::async_trait;
use jobs::RequestKey;
use std::collections::HashMap;
use uuid::Uuid;

use super::StoreError;

/// One request's final error in one job.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestFailure {
    pub job_id: Uuid,
    pub key: RequestKey,
    pub shard_id: Uuid,
    pub error: String,
}

/// The request failures table (written by the lease and provider-batch
/// completions).
#[async_trait]
pub trait FailureStore: Send + Sync {
    /// Failed requests of a job, at most `limit`.
    async fn job_failures(
        &self,
        job_id: Uuid,
        limit: u64,
    ) -> Result<Vec<RequestFailure>, StoreError>;
    /// The recorded error of each key that failed in any job.
    async fn failures_for_keys(
        &self,
        keys: &[RequestKey],
    ) -> Result<HashMap<RequestKey, String>, StoreError>;
}
