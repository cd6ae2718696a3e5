//! The conformance suite every store implementation must pass, one file per
//! role. Each check is a plain async fn over `&dyn Store`;
//! [`store_conformance_suite!`](crate::store_conformance_suite) turns them
//! into `#[tokio::test]`s for one implementation (SQLite and Postgres). Time
//! is passed explicitly, so nothing here sleeps. Test support: built for the
//! crate's own tests and with the `test-support` feature.

pub mod cache_index;
pub mod claims;
pub mod failures;
pub mod jobs;
pub mod judge;
pub mod leadership;
pub mod leases;
pub mod provider_batch;
pub mod reaper;
pub mod schedule;

use ::jobs::protocol::JobState;
use ::jobs::request::{GenerationParams, ModelFingerprint, RenderedInput, RequestType};
use ::jobs::spec::BackendKind;
use ::jobs::{InferenceRequest, RequestKey, Usage};
use chrono::{DateTime, TimeZone, Utc};
use std::time::Duration;
use uuid::Uuid;

use crate::store::{Completion, LeaseFence, NewJob, NewShard, PlanTotals, Store};

const LEASE: Duration = Duration::from_secs(10);

const WORKER: &str = "worker-a";

fn t0() -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000, 0)
        .single()
        .expect("valid time")
}

fn at(secs: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(secs)
}

fn request(tag: &str, i: u64) -> InferenceRequest {
    InferenceRequest::new(
        &ModelFingerprint::api("test", "m"),
        i,
        RequestType::Generate,
        RenderedInput::Prompt {
            prompt: format!("{tag} {i}"),
        },
        None,
        GenerationParams {
            max_tokens: 8,
            temperature: 0.0,
            top_p: None,
            stop: vec![],
            seed: None,
            extra_body: Default::default(),
        },
        0,
    )
}

/// A running job of `shards` shards of `per_shard` requests each.
pub struct Fixture {
    pub job_id: Uuid,
    pub shards: Vec<Vec<InferenceRequest>>,
}

async fn running_job(
    store: &dyn Store,
    tag: &str,
    backend: BackendKind,
    shards: usize,
    per_shard: u64,
    max_attempts: u32,
) -> Fixture {
    prioritized_job(
        store,
        tag,
        backend,
        0,
        t0(),
        shards,
        per_shard,
        max_attempts,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn prioritized_job(
    store: &dyn Store,
    tag: &str,
    backend: BackendKind,
    priority: i32,
    created_at: DateTime<Utc>,
    shards: usize,
    per_shard: u64,
    max_attempts: u32,
) -> Fixture {
    let job_id = Uuid::new_v4();
    let (job, created) = store
        .create_job(NewJob {
            id: job_id,
            name: format!("job-{tag}"),
            spec_json: "{}".into(),
            spec_hash: format!("hash-{tag}"),
            backend,
            model: "m".into(),
            priority,
            created_at,
        })
        .await
        .expect("create job");
    assert!(created);
    assert_eq!(job.state, JobState::Planning);
    let mut requests = Vec::new();
    let mut new_shards = Vec::new();
    for s in 0..shards {
        let reqs: Vec<_> = (0..per_shard)
            .map(|i| request(tag, s as u64 * 1000 + i))
            .collect();
        new_shards.push(NewShard {
            id: Uuid::new_v4(),
            seq: s as u64,
            requests_json: serde_json::to_string(&reqs).expect("json"),
            request_count: per_shard,
            max_attempts,
        });
        requests.push(reqs);
    }
    store
        .insert_shards(job_id, &new_shards, t0())
        .await
        .expect("insert shards");
    let state = store
        .finish_planning(
            job_id,
            PlanTotals {
                docs: shards as u64 * per_shard,
                bad_rows: 0,
                requests: shards as u64 * per_shard,
                cached: 0,
            },
            t0(),
        )
        .await
        .expect("finish planning");
    assert_eq!(state, JobState::Running);
    Fixture {
        job_id,
        shards: requests,
    }
}

fn keys(reqs: &[InferenceRequest]) -> Vec<RequestKey> {
    reqs.iter().map(|r| r.key.clone()).collect()
}

fn fence(shard_id: Uuid, attempt: u32, worker: &str) -> LeaseFence {
    LeaseFence {
        shard_id,
        attempt,
        worker_id: worker.into(),
    }
}

fn full_completion(segment: &str, reqs: &[InferenceRequest]) -> Completion {
    Completion {
        segment: Some(segment.into()),
        written: keys(reqs),
        failed: vec![],
        usage: Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
        },
    }
}

/// Expands to one `#[tokio::test]` per conformance check. `$make` is an async
/// fn returning `(store, guard)`; the guard (e.g. a temp dir) lives as long
/// as the test. The provider-batch checks land in a `provider_batch` module.
#[macro_export]
macro_rules! store_conformance_suite {
    ($make:path) => {
        $crate::store_conformance_suite!(@tests $make;
            jobs::create_get_and_list,
            jobs::idempotent_create,
            jobs::cancel_stops_shards,
            jobs::planning_without_shards_completes,
            jobs::late_usage_is_counted,
            jobs::planning_attempts_are_counted,
            jobs::a_failure_keeps_whose_fault_it_is,
            judge::judge_items_wait_for_shards_and_children_for_the_job,
            judge::a_waiting_document_can_wait_for_another_shard,
            judge::judges_of_a_failed_job_are_orphaned,
            judge::a_replanned_job_forgets_its_documents,
            judge::each_judge_condition_holds_the_job_alone,
            judge::a_completed_judge_job_reopens_for_new_shards,
            leases::claim_heartbeat_complete,
            leases::late_worker_is_fenced,
            leases::fail_backs_off_then_dies,
            leases::configuration_failure_fails_the_job_at_once,
            leases::release_keeps_attempts_and_indexes_partial,
            leases::concurrent_completions_are_fenced_one_by_one,
            claims::claim_filters_backend_and_job_state,
            claims::claim_matches_worker_models,
            claims::higher_priority_is_claimed_first,
            claims::equal_priority_jobs_share_workers,
            reaper::reaper_spends_attempts,
            reaper::recover_returns_leases_without_spending,
            reaper::reaper_backs_off_exponentially,
            failures::request_failures_are_recorded,
            cache_index::cache_index_first_writer_wins,
            leadership::leadership_is_exclusive_until_it_expires,
            schedule::schedules_are_kept_by_name,
            schedule::a_due_schedule_fires_once
        );
        mod provider_batch {
            use super::*;
            $crate::store_conformance_suite!(@tests $make;
                provider_batch::submit_records_the_batches_and_ends_the_lease,
                provider_batch::poll_leases_are_due_exclusive_and_fenced,
                provider_batch::updates_index_outputs_and_schedule_the_next_poll,
                provider_batch::finishing_completes_the_job_with_its_failures,
                provider_batch::a_failed_batch_kills_the_shard_and_fails_the_job,
                provider_batch::a_cancelled_job_hands_its_batches_to_pollers_at_once,
                provider_batch::reservations_share_the_cap_across_shards,
                provider_batch::recovery_ends_poll_leases
            );
        }
    };
    (@tests $make:path; $($role:ident :: $name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $make().await;
                $crate::store::conformance::$role::$name(&store).await;
            }
        )*
    };
}
