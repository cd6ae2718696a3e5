//! `shardline run JOB --dry-run`: prints what running the job would send and
//! cost, as estimated by `coordinator::estimate` against the home's cache,
//! before anything is sent anywhere. An engine job's tokens are counted
//! with its model's tokenizer and chat template; cached outputs are
//! reported with what they cost when they were made.

use anyhow::Context;
use jobs::spec::ProviderBatchSpec;
use jobs::spec::{BackendKind, MetricKind, MissingEnvVars};
use jobs::JobSpec;
use jobs::{cost::money, cost::CHARS_PER_TOKEN, cost::TOKENS_PER_MESSAGE};

use coordinator::estimate::{estimate, Estimate as Plan, Sources};
use coordinator::CoordinatorError;

use super::failure::{CmdResult, Failure};
use super::home::Home;
use super::summary::thousands;
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
    let objects = home.objects()?;
    let policy = super::job_file::read_policy(&args.job, &args.dataset_roots)?;
    let model_text = worker::backend::engine::EngineText::of(&spec.model)
        .context("cannot read the model's tokenizer and chat template")
        .map_err(Failure::usage)?;
    let sources = Sources {
        store: store.as_ref(),
        objects: objects.as_ref(),
        model_text: model_text.as_deref(),
    };
    let plan = estimate(spec, &sources, &policy)
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
    if plan.requests > 0 && plan.to_send.requests == 0 {
        println!(
            "  requests:      {}, all already in the cache: nothing to send",
            thousands(plan.requests)
        );
        print_cached(spec, plan);
        print_judges(spec, plan);
        return;
    }
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
    if plan.tokens_counted {
        println!(
            "  input tokens:  {} (counted with the model's tokenizer and chat template)",
            thousands(plan.to_send.input_tokens)
        );
    } else {
        println!(
            "  input tokens:  ~{} (estimated: characters / {CHARS_PER_TOKEN} + {TOKENS_PER_MESSAGE} per chat message)",
            thousands(plan.to_send.input_tokens)
        );
    }
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
        None => match model.backend {
            BackendKind::Engine => {
                println!("  cost:          none to pay: the engine runs the model on this machine")
            }
            BackendKind::None => {
                println!("  cost:          none: backend \"none\" only scores from the cache")
            }
            _ => println!("  cost:          unknown; add [model.price] to the spec to see it"),
        },
    }
    if plan.cached > 0 {
        print_cached(spec, plan);
    }
    print_judges(spec, plan);
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

/// What the job's judges would add: their inputs hold the outputs, so only
/// a bound is known before the run.
fn print_judges(spec: &JobSpec, plan: &Plan) {
    for m in spec.metrics.iter().filter(|m| m.kind == MetricKind::Judge) {
        let (Some(judge), Some(name)) = (&m.model, &m.name) else {
            continue;
        };
        if spec.model.backend == BackendKind::None {
            println!(
                "  judge {name}: nothing to send: backend \"none\" scores the verdicts the \
                 cache holds"
            );
            continue;
        }
        let per_output = m.generation.as_ref().map_or(1, |g| g.n.max(1));
        let bound = plan.docs * u64::from(spec.task.generation.n.max(1)) * u64::from(per_output);
        println!(
            "  judge {name}: up to {} requests to {} (model {}), each made once its document's \
             outputs exist; those already judged come from the cache",
            thousands(bound),
            judge.backend.as_str(),
            judge.model
        );
    }
}

/// The cached requests and what their outputs cost when they were made.
fn print_cached(spec: &JobSpec, plan: &Plan) {
    let made = plan.cached_usage;
    let cost = jobs::cost::job_cost(&spec.model, made)
        .map(|c| format!(" ({})", c.describe()))
        .unwrap_or_default();
    println!(
        "  cached:        {} {}; they cost {} prompt + {} completion tokens when made{cost}",
        thousands(plan.cached),
        if plan.cached == 1 {
            "output"
        } else {
            "outputs"
        },
        thousands(made.prompt_tokens),
        thousands(made.completion_tokens),
    );
}
