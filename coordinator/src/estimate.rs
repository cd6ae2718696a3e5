//! Dry-run estimates: plans a job (dataset, prompts, request keys) without
//! storing it, looks the keys up in the cache index, and counts what running
//! it would send, in requests, shards, batch files and estimated tokens
//! (`jobs::cost`). Nothing is sent and nothing is written.

use std::collections::HashSet;

use jobs::cost::TokenEstimate;
use jobs::plan::Planner;
use jobs::spec::BackendKind;
use jobs::spec::ProviderBatchSpec;
use jobs::{DatasetReader, InferenceRequest, JobSpec, ReadPolicy, RequestKey};

use crate::error::CoordinatorError;
use crate::store::Store;

/// Keys looked up in the cache index per call.
const LOOKUP_BATCH: usize = 5_000;

/// What a dry run found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Estimate {
    pub docs: u64,
    pub bad_rows: u64,
    /// Distinct requests of the job.
    pub requests: u64,
    pub cached: u64,
    /// The requests to send.
    pub to_send: TokenEstimate,
    pub shards: u64,
    /// Batch input files (`openai-batch` only), counting requests per file.
    pub batch_files: u64,
}

/// Plans `spec` against the cache index of `store` and counts what a run
/// would send, reading its data files under `policy`. Dataset and
/// template errors name the file, line and field.
pub async fn estimate(
    spec: &JobSpec,
    store: &dyn Store,
    policy: &ReadPolicy,
) -> Result<Estimate, CoordinatorError> {
    let planner = Planner::new(spec, policy)?;
    let mut reader = DatasetReader::open(&spec.dataset, policy)?;
    let mut seen: HashSet<RequestKey> = HashSet::new();
    let mut pending: Vec<InferenceRequest> = Vec::new();
    let mut plan = Estimate::default();
    for doc in &mut reader {
        let planned = planner.plan_doc(&doc?)?;
        plan.docs += 1;
        for req in planned.requests {
            if seen.insert(req.key.clone()) {
                pending.push(req);
            }
        }
        if pending.len() >= LOOKUP_BATCH {
            count(store, &mut plan, std::mem::take(&mut pending)).await?;
        }
    }
    count(store, &mut plan, pending).await?;
    plan.bad_rows = reader.bad_rows();
    let to_send = plan.to_send.requests;
    let shard_size = u64::from(spec.sharding.shard_size.max(1));
    plan.shards = to_send.div_ceil(shard_size);
    if spec.model.backend == BackendKind::OpenaiBatch {
        // Full shards split alike; the last one may be smaller.
        let per_file = u64::from(
            ProviderBatchSpec::of(&spec.model)
                .max_requests_per_file
                .max(1),
        );
        let full = to_send / shard_size;
        let rest = to_send % shard_size;
        plan.batch_files = full * shard_size.div_ceil(per_file) + rest.div_ceil(per_file);
    }
    Ok(plan)
}

/// Counts `requests` as cached or to send.
async fn count(
    store: &dyn Store,
    plan: &mut Estimate,
    requests: Vec<InferenceRequest>,
) -> Result<(), CoordinatorError> {
    if requests.is_empty() {
        return Ok(());
    }
    let keys: Vec<RequestKey> = requests.iter().map(|r| r.key.clone()).collect();
    let cached = store.lookup_keys(&keys).await?;
    for req in &requests {
        plan.requests += 1;
        if cached.contains_key(&req.key) {
            plan.cached += 1;
        } else {
            plan.to_send.add(req);
        }
    }
    Ok(())
}
