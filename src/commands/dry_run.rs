//! `shardline run JOB --dry-run`: plans the job on this machine (dataset, prompts, request
//! keys), looks the keys up in the home's cache, and prints what running it would send and
//! cost, before anything is sent anywhere. Token counts are estimates (`jobs::cost`).

use anyhow::Context;
use std::collections::HashSet;

use jobs::batch::BatchSpec;
use jobs::cost::{money, TokenEstimate, CHARS_PER_TOKEN, TOKENS_PER_MESSAGE};
use jobs::spec::BackendKind;
use jobs::{InferenceRequest, JobSpec, RequestKey};

use super::home::Home;
use super::{CmdResult, Failure};
use crate::cli::RunArgs;
use crate::exit;

/// Keys looked up in the cache index per call.
const LOOKUP_BATCH: usize = 5_000;

/// What a dry run found.
struct Plan {
    docs: u64,
    bad_rows: u64,
    /// Distinct requests of the job.
    requests: u64,
    cached: u64,
    /// The requests to send.
    to_send: TokenEstimate,
    shards: u64,
    /// Batch input files (`openai-batch` only), counting requests per file.
    batch_files: u64,
}

pub async fn dry_run(args: &RunArgs, spec: &JobSpec) -> CmdResult {
    let home = Home::open(&args.home)?;
    let store = home.store().await?;
    let plan = plan(spec, store.as_ref()).await?;
    print(spec, &plan);
    Ok(exit::OK)
}

async fn plan(spec: &JobSpec, store: &dyn coordinator::Store) -> Result<Plan, Failure> {
    let planner = jobs::plan::Planner::new(spec).map_err(Failure::usage)?;
    let mut reader = jobs::DatasetReader::open(&spec.dataset).map_err(Failure::usage)?;
    let mut seen: HashSet<RequestKey> = HashSet::new();
    let mut pending: Vec<InferenceRequest> = Vec::new();
    let mut plan = Plan {
        docs: 0,
        bad_rows: 0,
        requests: 0,
        cached: 0,
        to_send: TokenEstimate::default(),
        shards: 0,
        batch_files: 0,
    };
    for doc in &mut reader {
        let doc = doc.map_err(Failure::usage)?;
        let planned = planner.plan_doc(&doc).map_err(Failure::usage)?;
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
        let per_file = u64::from(BatchSpec::of(&spec.model).max_requests_per_file.max(1));
        let full = to_send / shard_size;
        let rest = to_send % shard_size;
        plan.batch_files = full * shard_size.div_ceil(per_file) + rest.div_ceil(per_file);
    }
    Ok(plan)
}

/// Counts `requests` as cached or to send.
async fn count(
    store: &dyn coordinator::Store,
    plan: &mut Plan,
    requests: Vec<InferenceRequest>,
) -> Result<(), Failure> {
    if requests.is_empty() {
        return Ok(());
    }
    let keys: Vec<RequestKey> = requests.iter().map(|r| r.key.clone()).collect();
    let cached = store
        .lookup_keys(&keys)
        .await
        .context("cannot look the requests up in the cache index")?;
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

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn print(spec: &JobSpec, plan: &Plan) {
    let model = &spec.model;
    println!(
        "dry run of {} ({} backend, model {}): nothing was sent",
        spec.name,
        model.backend.as_str(),
        model.model
    );
    let bad = if plan.bad_rows > 0 {
        format!(" ({} bad rows skipped)", thousands(plan.bad_rows))
    } else {
        String::new()
    };
    println!("  documents:     {}{bad}", thousands(plan.docs));
    println!(
        "  requests:      {} ({} already in the cache, {} to send in {} shards{})",
        thousands(plan.requests),
        thousands(plan.cached),
        thousands(plan.to_send.requests),
        thousands(plan.shards),
        if model.backend == BackendKind::OpenaiBatch {
            format!(
                ", at least {} batch input files",
                thousands(plan.batch_files)
            )
        } else {
            String::new()
        }
    );
    println!(
        "  input tokens:  ~{} (estimated: characters / {CHARS_PER_TOKEN} + {TOKENS_PER_MESSAGE} per chat message)",
        thousands(plan.to_send.input_tokens)
    );
    println!(
        "  output tokens: at most {} (max_tokens per request)",
        thousands(plan.to_send.max_output_tokens)
    );
    match plan.to_send.cost(model) {
        Some(cost) => {
            let under = if cost.backend == BackendKind::OpenaiBatch {
                "batch prices"
            } else {
                "synchronous prices"
            };
            println!(
                "  cost:          {} to {} {} ({under}: inputs only to every output token allowed)",
                money(cost.low),
                money(cost.high),
                cost.currency
            );
            if cost.backend == BackendKind::OpenaiBatch {
                println!(
                    "                 {} to {} {} on the synchronous API",
                    money(cost.synchronous_low),
                    money(cost.synchronous_high),
                    cost.currency
                );
            }
        }
        None => println!("  cost:          unknown; add [model.price] to the spec to see it"),
    }
    let per_file = BatchSpec::of(model).max_requests_per_file;
    if model.backend == BackendKind::OpenaiBatch
        && plan.batch_files > 1
        && spec.sharding.shard_size < per_file
    {
        println!(
            "  note:          every shard is its own batch (an upload, a create, its polls and a \
             download each); sharding.shard_size = {per_file} needs fewer"
        );
    }
}
