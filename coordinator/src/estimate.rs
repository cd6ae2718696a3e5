//! Dry-run estimates: plans a job (dataset, prompts, request keys) without
//! storing it, looks the keys up in the cache index, and counts what running
//! it would send, in requests, shards, batch files and tokens: counted with
//! the model's own tokenizer where it is known (engine models), else
//! estimated (`jobs::cost`); and what the cached outputs used when they
//! were made. Nothing is sent and nothing is written.

use std::collections::{HashMap, HashSet};

use jobs::cost::TokenEstimate;
use jobs::plan::Planner;
use jobs::spec::BackendKind;
use jobs::spec::ProviderBatchSpec;
use jobs::{DatasetReader, InferenceRequest, JobSpec, ModelText, ReadPolicy, RequestKey, Usage};

use crate::error::CoordinatorError;
use crate::segment_cache::SegmentCache;
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
    /// What the cached outputs used when they were made (their recorded
    /// usage; an output whose segment cannot be read counts nothing).
    pub cached_usage: Usage,
    /// The requests to send.
    pub to_send: TokenEstimate,
    /// Whether `to_send.input_tokens` was counted with the model's own
    /// tokenizer rather than estimated from characters.
    pub tokens_counted: bool,
    pub shards: u64,
    /// Batch input files (`openai-batch` only), counting requests per file.
    pub batch_files: u64,
}

/// Where a dry run looks things up.
pub struct Sources<'a> {
    /// The cache index.
    pub store: &'a dyn Store,
    /// The cache's segments, for the cached outputs' recorded usage.
    pub objects: &'a dyn cache::ObjectStore,
    /// The model's tokenizer, where known: input tokens are counted with
    /// it instead of estimated.
    pub model_text: Option<&'a dyn ModelText>,
}

/// Plans `spec` against the cache index of `sources.store` and counts what
/// a run would send, reading its data files under `policy`. Dataset and
/// template errors name the file, line and field, as does an input the
/// model's tokenizer cannot encode.
pub async fn estimate(
    spec: &JobSpec,
    sources: &Sources<'_>,
    policy: &ReadPolicy,
) -> Result<Estimate, CoordinatorError> {
    let planner = Planner::new(spec, policy)?;
    let mut reader = DatasetReader::open(&spec.dataset, policy)?;
    let mut seen: HashSet<RequestKey> = HashSet::new();
    let mut pending: Vec<InferenceRequest> = Vec::new();
    let mut plan = Estimate {
        tokens_counted: sources.model_text.is_some(),
        ..Estimate::default()
    };
    let mut segments = SegmentCache::default();
    for doc in &mut reader {
        let planned = planner.plan_doc(&doc?)?;
        plan.docs += 1;
        for req in planned.requests {
            if seen.insert(req.key.clone()) {
                pending.push(req);
            }
        }
        if pending.len() >= LOOKUP_BATCH {
            let batch = std::mem::take(&mut pending);
            count(sources, &mut segments, &mut plan, batch).await?;
        }
    }
    count(sources, &mut segments, &mut plan, pending).await?;
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

/// Counts `requests` as cached (adding their recorded usage) or to send
/// (adding their tokens).
async fn count(
    sources: &Sources<'_>,
    segments: &mut SegmentCache,
    plan: &mut Estimate,
    requests: Vec<InferenceRequest>,
) -> Result<(), CoordinatorError> {
    if requests.is_empty() {
        return Ok(());
    }
    let keys: Vec<RequestKey> = requests.iter().map(|r| r.key.clone()).collect();
    let cached = sources.store.lookup_keys(&keys).await?;
    let mut by_segment: HashMap<&str, Vec<&RequestKey>> = HashMap::new();
    for req in &requests {
        plan.requests += 1;
        match cached.get(&req.key) {
            Some(segment) => {
                plan.cached += 1;
                by_segment
                    .entry(segment.as_str())
                    .or_default()
                    .push(&req.key);
            }
            None => match sources.model_text {
                Some(model) => {
                    let tokens = model.input_tokens(req).map_err(|e| {
                        CoordinatorError::Planning(format!(
                            "document {}: the model's tokenizer cannot read its input: {e}",
                            req.doc_index + 1
                        ))
                    })?;
                    plan.to_send.add_counted(req, tokens);
                }
                None => plan.to_send.add(req),
            },
        }
    }
    for (segment, wanted) in by_segment {
        // A segment that is gone or corrupt: a run would find those
        // outputs missing too; the estimate just counts no usage for them.
        if let Ok(decoded) = segments.get(sources.objects, segment).await {
            for key in wanted {
                if let Some(output) = decoded.get(key) {
                    plan.cached_usage.add(output.usage);
                }
            }
        }
    }
    Ok(())
}
