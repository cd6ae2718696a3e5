//! `shardline run JOB --dry-run`: prints what running the job would send and
//! cost, as estimated by `coordinator::estimate` against the home's cache,
//! before anything is sent anywhere.

use jobs::spec::ProviderBatchSpec;
use jobs::spec::{BackendKind, MissingEnvVars};
use jobs::JobSpec;
use jobs::{cost::money, cost::CHARS_PER_TOKEN, cost::TOKENS_PER_MESSAGE};

use coordinator::estimate::{estimate, Estimate as Plan};
use coordinator::CoordinatorError;

use super::failure::{CmdResult, Failure};
use super::home::Home;
use crate::cli::RunArgs;
use crate::exit;

/// Prints the estimate; then, when `missing_env` names variables the run
/// would need and not find, says so and fails as the run would (exit 2).
pub async fn dry_run(
    args: &RunArgs,
    spec: &JobSpec,
    missing_env: Option<MissingEnvVars>,
) -> CmdResult {
    let home = Home::open(&args.home)?;
    let store = home.store().await?;
    let policy = super::job_file::read_policy(&args.job, &args.dataset_roots)?;
    let plan = estimate(spec, store.as_ref(), &policy)
        .await
        .map_err(|e| match e {
            // The index could not be read: a runtime failure, not bad input.
            CoordinatorError::Store(_) => Failure::runtime(
                anyhow::Error::new(e).context("cannot look the requests up in the cache index"),
            ),
            other if other.is_bad_input() => Failure::usage(other),
            other => Failure::runtime(other),
        })?;
    print(spec, &plan);
    if let Some(missing) = missing_env {
        return Err(Failure::usage(anyhow::anyhow!(
            "{}: {missing} (`run` would refuse to start)",
            args.job.display()
        )));
    }
    Ok(exit::OK)
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
    let per_file = ProviderBatchSpec::of(model).max_requests_per_file;
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
