//! The conformance suite every [`Store`] implementation must pass. Each check
//! is a plain async fn over `&dyn Store`; `store_conformance_suite!` turns
//! them into `#[tokio::test]`s for one implementation (SQLite and Postgres).
//! Time is passed explicitly, so nothing here sleeps.

use chrono::{DateTime, TimeZone, Utc};
use jobs::protocol::{FailedRequest, JobState, ShardState};
use jobs::request::{GenerationParams, ModelFingerprint, RenderedInput, RequestType};
use jobs::spec::BackendKind;
use jobs::{InferenceRequest, RequestKey, Usage};
use std::time::Duration;
use uuid::Uuid;

use super::{
    Backoff, Completion, LeaseFence, ModelPattern, NewJob, NewShard, Partial, PlanTotals,
    SegmentEntry, Store, StoreError,
};

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
pub(crate) struct Fixture {
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

pub(crate) async fn create_get_and_list(store: &dyn Store) {
    let fx = running_job(store, "cgl", BackendKind::Openai, 2, 3, 3).await;
    let job = store.get_job(fx.job_id).await.unwrap();
    assert_eq!(job.name, "job-cgl");
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.counts.shards_total, 2);
    assert_eq!(job.counts.requests, 6);
    assert_eq!(store.job_spec_json(fx.job_id).await.unwrap(), "{}");
    assert_eq!(store.list_jobs().await.unwrap().len(), 1);
    assert_eq!(
        store.jobs_in_state(JobState::Running).await.unwrap(),
        vec![fx.job_id]
    );
    let missing = Uuid::new_v4();
    assert!(matches!(
        store.get_job(missing).await,
        Err(StoreError::JobNotFound(id)) if id == missing
    ));
    assert!(matches!(
        store.cancel_job(missing, t0()).await,
        Err(StoreError::JobNotFound(_))
    ));
}

pub(crate) async fn idempotent_create(store: &dyn Store) {
    let new = |id| NewJob {
        id,
        name: "same".into(),
        spec_json: "{}".into(),
        spec_hash: "same-hash".into(),
        backend: BackendKind::Openai,
        model: "m".into(),
        priority: 0,
        created_at: t0(),
    };
    let first = Uuid::new_v4();
    let (a, created_a) = store.create_job(new(first)).await.unwrap();
    let (b, created_b) = store.create_job(new(Uuid::new_v4())).await.unwrap();
    assert!(created_a);
    assert!(!created_b);
    assert_eq!(a.id, b.id);
    // A terminal job no longer blocks a new one with the same spec.
    store.cancel_job(first, at(1)).await.unwrap();
    let (c, created_c) = store.create_job(new(Uuid::new_v4())).await.unwrap();
    assert!(created_c);
    assert_ne!(c.id, first);
}

pub(crate) async fn claim_heartbeat_complete(store: &dyn Store) {
    let fx = running_job(store, "chc", BackendKind::Openai, 2, 3, 3).await;
    let first = store
        .claim(WORKER, &[BackendKind::Openai], 1, LEASE, t0())
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempt, 1);
    assert_eq!(first[0].job_id, fx.job_id);
    assert_eq!(first[0].lease_expires_at, at(10));
    let reqs: Vec<InferenceRequest> = serde_json::from_str(&first[0].requests_json).unwrap();
    assert_eq!(reqs, fx.shards[0]);

    let second = store
        .claim("worker-b", &[BackendKind::Openai], 5, LEASE, t0())
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_ne!(second[0].shard_id, first[0].shard_id);
    assert!(store
        .claim(WORKER, &[BackendKind::Openai], 5, LEASE, t0())
        .await
        .unwrap()
        .is_empty());

    // A heartbeat renews the lease, so the reaper leaves it alone.
    let hb = store
        .heartbeat(&first[0].fence(WORKER), 2, LEASE, at(8))
        .await
        .unwrap();
    assert!(hb.keep_going);
    assert!(!hb.cancelled);
    assert_eq!(hb.lease_expires_at, Some(at(18)));
    let job = store.get_job(fx.job_id).await.unwrap();
    assert_eq!(job.counts.shards_running, 2);
    assert_eq!(job.counts.completed, 2, "heartbeat progress counts");
    let reaped = store.reap_expired(at(12), &Backoff::NONE).await.unwrap();
    assert_eq!(reaped.returned, 1, "only the shard without heartbeat");

    assert!(store
        .complete(
            &first[0].fence(WORKER),
            &full_completion("segments/a", &fx.shards[0]),
            at(13)
        )
        .await
        .unwrap());
    let found = store.lookup_keys(&keys(&fx.shards[0])).await.unwrap();
    assert_eq!(found.len(), 3);
    assert!(found.values().all(|s| s == "segments/a"));
    assert!(store
        .indexed_segments()
        .await
        .unwrap()
        .contains("segments/a"));
    let job = store.get_job(fx.job_id).await.unwrap();
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.counts.shards_completed, 1);

    // The reaped shard comes back with attempt 2; its completion ends the job.
    let again = store
        .claim(WORKER, &[BackendKind::Openai], 5, LEASE, at(13))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].shard_id, second[0].shard_id);
    assert_eq!(again[0].attempt, 2);
    assert!(store
        .complete(
            &again[0].fence(WORKER),
            &full_completion("segments/b", &fx.shards[1]),
            at(14)
        )
        .await
        .unwrap());
    let job = store.get_job(fx.job_id).await.unwrap();
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.counts.shards_completed, 2);
    assert_eq!(job.counts.completed, 6);
    assert_eq!(job.counts.usage.prompt_tokens, 20);
    assert_eq!(job.counts.usage.completion_tokens, 10);
}

pub(crate) async fn claim_filters_backend_and_job_state(store: &dyn Store) {
    let fx = running_job(store, "none", BackendKind::None, 1, 2, 3).await;
    assert!(store
        .claim(WORKER, &[BackendKind::Openai], 5, LEASE, t0())
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .claim(WORKER, &[], 5, LEASE, t0())
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .claim(WORKER, &[BackendKind::None], 0, LEASE, t0())
        .await
        .unwrap()
        .is_empty());
    // A job still planning hands out nothing.
    let planning = Uuid::new_v4();
    store
        .create_job(NewJob {
            id: planning,
            name: "p".into(),
            spec_json: "{}".into(),
            spec_hash: "planning".into(),
            backend: BackendKind::Openai,
            model: "m".into(),
            priority: 0,
            created_at: t0(),
        })
        .await
        .unwrap();
    store
        .insert_shards(
            planning,
            &[NewShard {
                id: Uuid::new_v4(),
                seq: 0,
                requests_json: "[]".into(),
                request_count: 0,
                max_attempts: 1,
            }],
            t0(),
        )
        .await
        .unwrap();
    assert!(store
        .claim(WORKER, &[BackendKind::Openai], 5, LEASE, t0())
        .await
        .unwrap()
        .is_empty());
    // Planning restarts from scratch after a crash.
    store.reset_planning(planning).await.unwrap();
    assert!(store.list_shards(planning).await.unwrap().is_empty());
    let got = store
        .claim(
            WORKER,
            &[BackendKind::Openai, BackendKind::None],
            5,
            LEASE,
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job_id, fx.job_id);
}

/// A running job of one model with `shards` one-request shards.
async fn job_of_model(store: &dyn Store, tag: &str, model: &str, shards: u64) -> Uuid {
    let id = Uuid::new_v4();
    store
        .create_job(NewJob {
            id,
            name: tag.into(),
            spec_json: "{}".into(),
            spec_hash: format!("hash-{tag}"),
            backend: BackendKind::Openai,
            model: model.into(),
            priority: 0,
            created_at: t0(),
        })
        .await
        .expect("create job");
    let new: Vec<NewShard> = (0..shards)
        .map(|seq| NewShard {
            id: Uuid::new_v4(),
            seq,
            requests_json: serde_json::to_string(&[request(tag, seq)]).expect("json"),
            request_count: 1,
            max_attempts: 3,
        })
        .collect();
    store.insert_shards(id, &new, t0()).await.expect("shards");
    store
        .finish_planning(id, PlanTotals::default(), t0())
        .await
        .expect("finish planning");
    id
}

fn patterns(globs: &[&str]) -> Vec<ModelPattern> {
    globs
        .iter()
        .map(|g| ModelPattern::new(g).expect("pattern"))
        .collect()
}

pub(crate) async fn claim_matches_worker_models(store: &dyn Store) {
    let llama = job_of_model(store, "llama", "llama-3-8b", 2).await;
    let gpt = job_of_model(store, "gpt", "gpt-4o-mini", 2).await;
    // SQL wildcards in a model name are literal characters of a pattern.
    let odd = job_of_model(store, "odd", "a_b%c", 1).await;
    let near = job_of_model(store, "near", "axb%c", 1).await;
    let openai = [BackendKind::Openai];
    let claim = |globs: &'static [&'static str], max: u32| {
        let models = patterns(globs);
        async move {
            store
                .claim_matching(WORKER, &openai, &models, max, LEASE, t0())
                .await
                .expect("claim")
                .into_iter()
                .map(|c| c.job_id)
                .collect::<Vec<_>>()
        }
    };
    // Nothing matches: nothing is handed out, and nothing is locked.
    assert!(claim(&["mistral-*"], 10).await.is_empty());
    assert!(claim(&["LLAMA-*"], 10).await.is_empty(), "case sensitive");
    assert!(
        claim(&["llama"], 10).await.is_empty(),
        "whole name, not a prefix"
    );
    let got = claim(&["llama-*"], 10).await;
    assert_eq!(got, vec![llama, llama]);
    let got = claim(&["gpt-4o-?ini", "nothing"], 10).await;
    assert_eq!(got, vec![gpt, gpt]);
    let got = claim(&["a_b%c"], 10).await;
    assert_eq!(got, vec![odd], "`_` and `%` are not wildcards");
    // No pattern: any model.
    let got = store
        .claim(WORKER, &openai, 10, LEASE, t0())
        .await
        .expect("claim");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job_id, near);
}

pub(crate) async fn late_worker_is_fenced(store: &dyn Store) {
    let fx = running_job(store, "fence", BackendKind::Openai, 1, 2, 3).await;
    let lease = store
        .claim(WORKER, &[BackendKind::Openai], 1, LEASE, t0())
        .await
        .unwrap()
        .remove(0);
    let wrong = [
        fence(lease.shard_id, lease.attempt + 1, WORKER),
        fence(lease.shard_id, lease.attempt, "intruder"),
        fence(Uuid::new_v4(), lease.attempt, WORKER),
    ];
    for f in &wrong {
        let done = full_completion("segments/late", &fx.shards[0]);
        assert!(!store.complete(f, &done, at(1)).await.unwrap(), "{f:?}");
        assert_eq!(store.fail(f, "x", at(1), at(1)).await.unwrap(), None);
        assert!(!store.release(f, None, at(1)).await.unwrap());
        let hb = store.heartbeat(f, 0, LEASE, at(1)).await.unwrap();
        assert!(!hb.keep_going);
        assert!(!hb.cancelled);
    }
    assert!(store
        .lookup_keys(&keys(&fx.shards[0]))
        .await
        .unwrap()
        .is_empty());
    let shard = &store.list_shards(fx.job_id).await.unwrap()[0];
    assert_eq!(shard.state, ShardState::Running);
    assert_eq!(shard.lease_owner.as_deref(), Some(WORKER));
    assert_eq!(shard.attempts_used, 0);

    // Expired and re-claimed: the first holder can no longer complete.
    store.reap_expired(at(11), &Backoff::NONE).await.unwrap();
    let newer = store
        .claim("worker-b", &[BackendKind::Openai], 1, LEASE, at(11))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(newer.attempt, 2);
    let stale = full_completion("segments/stale", &fx.shards[0]);
    assert!(!store
        .complete(&lease.fence(WORKER), &stale, at(12))
        .await
        .unwrap());
    assert!(store
        .complete(
            &newer.fence("worker-b"),
            &full_completion("segments/new", &fx.shards[0]),
            at(12)
        )
        .await
        .unwrap());
    // Completing twice is fenced too.
    assert!(!store
        .complete(&newer.fence("worker-b"), &stale, at(13))
        .await
        .unwrap());
    let found = store.lookup_keys(&keys(&fx.shards[0])).await.unwrap();
    assert!(found.values().all(|s| s == "segments/new"));
}

pub(crate) async fn fail_backs_off_then_dies(store: &dyn Store) {
    let fx = running_job(store, "fail", BackendKind::Openai, 1, 2, 2).await;
    let lease = store
        .claim(WORKER, &[BackendKind::Openai], 1, LEASE, t0())
        .await
        .unwrap()
        .remove(0);
    let state = store
        .fail(&lease.fence(WORKER), "endpoint down", at(30), at(1))
        .await
        .unwrap();
    assert_eq!(state, Some(ShardState::Available));
    let shard = &store.list_shards(fx.job_id).await.unwrap()[0];
    assert_eq!(shard.attempts_used, 1);
    assert_eq!(shard.next_visible_at, at(30));
    assert_eq!(shard.last_error.as_deref(), Some("endpoint down"));
    // Not visible before the backoff ends.
    assert!(store
        .claim(WORKER, &[BackendKind::Openai], 1, LEASE, at(29))
        .await
        .unwrap()
        .is_empty());
    let retry = store
        .claim(WORKER, &[BackendKind::Openai], 1, LEASE, at(30))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(retry.attempt, 2);
    let state = store
        .fail(&retry.fence(WORKER), "endpoint still down", at(60), at(31))
        .await
        .unwrap();
    assert_eq!(state, Some(ShardState::Dead));
    let job = store.get_job(fx.job_id).await.unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.counts.shards_dead, 1);
    let error = job.error.unwrap_or_default();
    assert!(error.contains("endpoint still down"), "{error}");
    assert!(store
        .claim(WORKER, &[BackendKind::Openai], 1, LEASE, at(100))
        .await
        .unwrap()
        .is_empty());
}

pub(crate) async fn release_keeps_attempts_and_indexes_partial(store: &dyn Store) {
    let fx = running_job(store, "rel", BackendKind::Openai, 1, 4, 1).await;
    let lease = store
        .claim(WORKER, &[BackendKind::Openai], 1, LEASE, t0())
        .await
        .unwrap()
        .remove(0);
    let partial = Partial {
        segment: "segments/partial".into(),
        written: keys(&fx.shards[0][..2]),
        usage: Usage {
            prompt_tokens: 4,
            completion_tokens: 2,
        },
    };
    assert!(store
        .release(&lease.fence(WORKER), Some(&partial), at(1))
        .await
        .unwrap());
    let shard = &store.list_shards(fx.job_id).await.unwrap()[0];
    assert_eq!(shard.state, ShardState::Available);
    assert_eq!(shard.attempts_used, 0, "a release spends no attempt");
    assert_eq!(shard.attempt, 1, "the fencing token never goes back");
    assert_eq!(
        store.lookup_keys(&keys(&fx.shards[0])).await.unwrap().len(),
        2
    );
    assert_eq!(
        store
            .get_job(fx.job_id)
            .await
            .unwrap()
            .counts
            .usage
            .prompt_tokens,
        4
    );
    // max_attempts is 1, yet the shard can still be claimed and completed.
    let again = store
        .claim(WORKER, &[BackendKind::Openai], 1, LEASE, at(1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(again.attempt, 2);
    assert!(!store
        .release(&lease.fence(WORKER), None, at(2))
        .await
        .unwrap());
    let rest = Completion {
        segment: Some("segments/rest".into()),
        written: keys(&fx.shards[0][2..]),
        failed: vec![],
        usage: Usage::default(),
    };
    assert!(store
        .complete(&again.fence(WORKER), &rest, at(2))
        .await
        .unwrap());
    let job = store.get_job(fx.job_id).await.unwrap();
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.counts.completed, 4);
}

pub(crate) async fn reaper_spends_attempts(store: &dyn Store) {
    let fx = running_job(store, "reap", BackendKind::Openai, 1, 1, 2).await;
    store
        .claim(WORKER, &[BackendKind::Openai], 1, LEASE, t0())
        .await
        .unwrap();
    assert_eq!(
        store
            .reap_expired(at(10), &Backoff::NONE)
            .await
            .unwrap()
            .returned,
        0
    );
    let first = store.reap_expired(at(11), &Backoff::NONE).await.unwrap();
    assert_eq!(first.returned, 1);
    let shard = &store.list_shards(fx.job_id).await.unwrap()[0];
    // The caller learns which attempt expired (to index its segment).
    assert_eq!(
        first.expired,
        vec![super::ExpiredLease {
            job_id: fx.job_id,
            shard_id: shard.id,
            attempt: 1,
        }]
    );
    assert_eq!(shard.state, ShardState::Available);
    assert_eq!(shard.attempts_used, 1);
    assert!(shard.lease_owner.is_none());
    store
        .claim(WORKER, &[BackendKind::Openai], 1, LEASE, at(11))
        .await
        .unwrap();
    let second = store.reap_expired(at(30), &Backoff::NONE).await.unwrap();
    assert_eq!(second.dead, 1);
    let job = store.get_job(fx.job_id).await.unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert!(job.error.unwrap_or_default().contains("expired"));
}

pub(crate) async fn cancel_stops_shards(store: &dyn Store) {
    let fx = running_job(store, "cancel", BackendKind::Openai, 3, 1, 3).await;
    let lease = store
        .claim(WORKER, &[BackendKind::Openai], 1, LEASE, t0())
        .await
        .unwrap()
        .remove(0);
    let job = store.cancel_job(fx.job_id, at(1)).await.unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    let states: Vec<_> = store
        .list_shards(fx.job_id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.state)
        .collect();
    assert_eq!(
        states
            .iter()
            .filter(|s| **s == ShardState::Cancelled)
            .count(),
        2
    );
    assert!(store
        .claim(WORKER, &[BackendKind::Openai], 5, LEASE, at(1))
        .await
        .unwrap()
        .is_empty());
    // A worker that finishes before its next heartbeat cannot complete.
    assert!(!store
        .complete(&lease.fence(WORKER), &Completion::default(), at(1))
        .await
        .unwrap());
    let hb = store
        .heartbeat(&lease.fence(WORKER), 0, LEASE, at(2))
        .await
        .unwrap();
    assert!(!hb.keep_going);
    assert!(hb.cancelled);
    assert!(store
        .list_shards(fx.job_id)
        .await
        .unwrap()
        .iter()
        .all(|s| s.state == ShardState::Cancelled));
    // Cancelling again is harmless; the state stays.
    let job = store.cancel_job(fx.job_id, at(3)).await.unwrap();
    assert_eq!(job.state, JobState::Cancelled);
}

pub(crate) async fn recover_returns_leases_without_spending(store: &dyn Store) {
    let fx = running_job(store, "recover", BackendKind::Openai, 2, 1, 1).await;
    store
        .claim(WORKER, &[BackendKind::Openai], 2, LEASE, t0())
        .await
        .unwrap();
    assert_eq!(store.recover_orphaned(at(1)).await.unwrap(), 2);
    for shard in store.list_shards(fx.job_id).await.unwrap() {
        assert_eq!(shard.state, ShardState::Available);
        assert_eq!(shard.attempts_used, 0);
    }
    let again = store
        .claim(WORKER, &[BackendKind::Openai], 2, LEASE, at(1))
        .await
        .unwrap();
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|c| c.attempt == 2));
}

pub(crate) async fn request_failures_are_recorded(store: &dyn Store) {
    let fx = running_job(store, "reqfail", BackendKind::Openai, 1, 3, 3).await;
    let lease = store
        .claim(WORKER, &[BackendKind::Openai], 1, LEASE, t0())
        .await
        .unwrap()
        .remove(0);
    let reqs = &fx.shards[0];
    let completion = Completion {
        segment: Some("segments/f".into()),
        written: keys(&reqs[..2]),
        failed: vec![FailedRequest {
            key: reqs[2].key.clone(),
            error: "HTTP 400: context too long".into(),
        }],
        usage: Usage::default(),
    };
    assert!(store
        .complete(&lease.fence(WORKER), &completion, at(1))
        .await
        .unwrap());
    let job = store.get_job(fx.job_id).await.unwrap();
    assert_eq!(
        job.state,
        JobState::Completed,
        "failed requests do not fail the shard"
    );
    assert_eq!(job.counts.completed, 2);
    assert_eq!(job.counts.failed, 1);
    let failures = store.job_failures(fx.job_id, 10).await.unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].key, reqs[2].key);
    assert_eq!(failures[0].shard_id, lease.shard_id);
    assert!(failures[0].error.contains("context too long"));
    let by_key = store.failures_for_keys(&keys(reqs)).await.unwrap();
    assert_eq!(by_key.len(), 1);
    assert!(store
        .lookup_keys(&[reqs[2].key.clone()])
        .await
        .unwrap()
        .is_empty());
}

pub(crate) async fn cache_index_first_writer_wins(store: &dyn Store) {
    let k = |c: char| RequestKey(c.to_string().repeat(64));
    let a = SegmentEntry {
        path: "segments/x/a".into(),
        job_id: None,
        shard_id: None,
        attempt: None,
        keys: vec![k('1'), k('2')],
    };
    let b = SegmentEntry {
        path: "segments/x/b".into(),
        keys: vec![k('2'), k('3')],
        ..a.clone()
    };
    assert_eq!(store.index_segment(&a, t0()).await.unwrap(), 2);
    assert_eq!(store.index_segment(&b, t0()).await.unwrap(), 1);
    // Re-indexing the same segment is harmless.
    assert_eq!(store.index_segment(&a, t0()).await.unwrap(), 0);
    let found = store
        .lookup_keys(&[k('1'), k('2'), k('3'), k('4')])
        .await
        .unwrap();
    assert_eq!(found.len(), 3);
    assert_eq!(found[&k('2')], "segments/x/a");
    assert_eq!(found[&k('3')], "segments/x/b");
    assert_eq!(store.indexed_segments().await.unwrap().len(), 2);
    assert_eq!(store.metrics().await.unwrap().cache_index_keys, 3);
    store.clear_cache_index().await.unwrap();
    assert!(store.lookup_keys(&[k('1')]).await.unwrap().is_empty());
    assert!(store.indexed_segments().await.unwrap().is_empty());
}

pub(crate) async fn planning_without_shards_completes(store: &dyn Store) {
    let id = Uuid::new_v4();
    store
        .create_job(NewJob {
            id,
            name: "all-cached".into(),
            spec_json: "{}".into(),
            spec_hash: "all-cached".into(),
            backend: BackendKind::Openai,
            model: "m".into(),
            priority: 0,
            created_at: t0(),
        })
        .await
        .unwrap();
    let totals = PlanTotals {
        docs: 5,
        bad_rows: 1,
        requests: 5,
        cached: 5,
    };
    assert_eq!(
        store.finish_planning(id, totals, at(1)).await.unwrap(),
        JobState::Completed
    );
    let job = store.get_job(id).await.unwrap();
    assert_eq!(job.counts.docs, 5);
    assert_eq!(job.counts.bad_rows, 1);
    assert_eq!(job.counts.cached, 5);
    assert_eq!(job.counts.shards_total, 0);
    // A second call leaves the finished job alone.
    assert_eq!(
        store
            .finish_planning(id, PlanTotals::default(), at(2))
            .await
            .unwrap(),
        JobState::Completed
    );
    assert!(!store.fail_job(id, "late", at(3)).await.unwrap());
    let metrics = store.metrics().await.unwrap();
    assert!(metrics
        .jobs_by_state
        .iter()
        .any(|(s, n)| s == "completed" && *n == 1));
    assert_eq!(metrics.requests_cached, 5);
}

pub(crate) async fn higher_priority_is_claimed_first(store: &dyn Store) {
    let low = running_job(store, "prio-low", BackendKind::Openai, 3, 1, 3).await;
    let high = prioritized_job(store, "prio-high", BackendKind::Openai, 5, at(1), 2, 1, 3).await;
    assert_eq!(store.get_job(high.job_id).await.unwrap().priority, 5);
    assert_eq!(store.get_job(low.job_id).await.unwrap().priority, 0);
    let got = store
        .claim(WORKER, &[BackendKind::Openai], 3, LEASE, t0())
        .await
        .unwrap();
    let of = |job: Uuid| got.iter().filter(|c| c.job_id == job).count();
    assert_eq!((of(high.job_id), of(low.job_id)), (2, 1), "{got:?}");
}

pub(crate) async fn equal_priority_jobs_share_workers(store: &dyn Store) {
    let a = prioritized_job(store, "fair-a", BackendKind::Openai, 0, t0(), 6, 1, 3).await;
    let b = prioritized_job(store, "fair-b", BackendKind::Openai, 0, at(1), 6, 1, 3).await;
    let of = |claimed: &[crate::store::ClaimedShard], job: Uuid| {
        claimed.iter().filter(|c| c.job_id == job).count()
    };
    // One batch is spread over both jobs, not taken from the older one.
    let first = store
        .claim(WORKER, &[BackendKind::Openai], 4, LEASE, t0())
        .await
        .unwrap();
    assert_eq!((of(&first, a.job_id), of(&first, b.job_id)), (2, 2));
    // Within a job, shards still go out in seq order.
    let seqs: Vec<u64> = store
        .list_shards(a.job_id)
        .await
        .unwrap()
        .iter()
        .filter(|s| s.state == ShardState::Running)
        .map(|s| s.seq)
        .collect();
    assert_eq!(seqs, vec![0, 1]);
    // A tie goes to the older job; then the other one catches up.
    let tie = store
        .claim(WORKER, &[BackendKind::Openai], 1, LEASE, t0())
        .await
        .unwrap();
    assert_eq!(tie[0].job_id, a.job_id);
    let catch_up = store
        .claim(WORKER, &[BackendKind::Openai], 1, LEASE, t0())
        .await
        .unwrap();
    assert_eq!(catch_up[0].job_id, b.job_id);
    // B's workers finish first: B now runs fewer shards, so it gets the next
    // worker although A is older (fair share, not first-come-first-served).
    for shard in first
        .iter()
        .chain(&catch_up)
        .filter(|c| c.job_id == b.job_id)
    {
        assert!(store
            .complete(&shard.fence(WORKER), &Completion::default(), at(1))
            .await
            .unwrap());
    }
    let next = store
        .claim(WORKER, &[BackendKind::Openai], 2, LEASE, at(1))
        .await
        .unwrap();
    assert_eq!((of(&next, a.job_id), of(&next, b.job_id)), (0, 2));
}

pub(crate) async fn reaper_backs_off_exponentially(store: &dyn Store) {
    let fx = running_job(store, "backoff", BackendKind::Openai, 1, 1, 5).await;
    let backoff = Backoff {
        base: Duration::from_secs(10),
        cap: Duration::from_secs(25),
        jitter: 0.0,
    };
    // Lease, expire, reap: the shard waits 10 s, then 20 s, then the 25 s cap.
    let mut now = 0;
    for expected_wait in [10, 20, 25] {
        let claimed = store
            .claim(WORKER, &[BackendKind::Openai], 1, LEASE, at(now))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1, "claimable at {now}");
        let reap_at = now + 11;
        assert_eq!(
            store
                .reap_expired(at(reap_at), &backoff)
                .await
                .unwrap()
                .returned,
            1
        );
        let shard = &store.list_shards(fx.job_id).await.unwrap()[0];
        assert_eq!(shard.next_visible_at, at(reap_at + expected_wait));
        assert!(store
            .claim(
                WORKER,
                &[BackendKind::Openai],
                1,
                LEASE,
                at(reap_at + expected_wait - 1)
            )
            .await
            .unwrap()
            .is_empty());
        now = reap_at + expected_wait;
    }
    let last = store
        .claim(WORKER, &[BackendKind::Openai], 1, LEASE, at(now))
        .await
        .unwrap();
    assert!(store
        .complete(&last[0].fence(WORKER), &Completion::default(), at(now))
        .await
        .unwrap());

    // Jitter takes up to half off, differently per shard.
    let many = running_job(store, "jitter", BackendKind::Openai, 8, 1, 5).await;
    store
        .claim(WORKER, &[BackendKind::Openai], 8, LEASE, at(1000))
        .await
        .unwrap();
    let jittered = Backoff {
        base: Duration::from_secs(10),
        cap: Duration::from_secs(10),
        jitter: 0.5,
    };
    store.reap_expired(at(1011), &jittered).await.unwrap();
    let visible: Vec<_> = store
        .list_shards(many.job_id)
        .await
        .unwrap()
        .iter()
        .map(|s| s.next_visible_at)
        .collect();
    for t in &visible {
        assert!(*t >= at(1016) && *t <= at(1021), "{t} outside [5 s, 10 s]");
    }
    assert!(
        visible.iter().any(|t| *t != visible[0]),
        "jitter spreads the shards: {visible:?}"
    );
}

pub(crate) async fn leadership_is_exclusive_until_it_expires(store: &dyn Store) {
    let ttl = Duration::from_secs(10);
    assert!(store.try_acquire_leadership("a", ttl, t0()).await.unwrap());
    assert!(!store.try_acquire_leadership("b", ttl, at(1)).await.unwrap());
    // Renewing pushes the expiry out.
    assert!(store.try_acquire_leadership("a", ttl, at(8)).await.unwrap());
    assert!(!store
        .try_acquire_leadership("b", ttl, at(12))
        .await
        .unwrap());
    // A stopped leader is replaced once its row expires.
    assert!(store
        .try_acquire_leadership("b", ttl, at(18))
        .await
        .unwrap());
    assert!(!store
        .try_acquire_leadership("a", ttl, at(19))
        .await
        .unwrap());
    // Only the holder can give it up; then anyone takes it at once.
    store.release_leadership("a").await.unwrap();
    assert!(!store
        .try_acquire_leadership("a", ttl, at(20))
        .await
        .unwrap());
    store.release_leadership("b").await.unwrap();
    assert!(store
        .try_acquire_leadership("a", ttl, at(21))
        .await
        .unwrap());
    // A restarted single process clears the row of its previous life.
    store.recover_orphaned(at(22)).await.unwrap();
    assert!(store
        .try_acquire_leadership("c", ttl, at(22))
        .await
        .unwrap());
}

pub(crate) async fn concurrent_completions_are_fenced_one_by_one(store: &dyn Store) {
    let fx = running_job(store, "together", BackendKind::Openai, 2, 2, 3).await;
    let leases = store
        .claim(WORKER, &[BackendKind::Openai], 2, LEASE, t0())
        .await
        .unwrap();
    let (a, b) = (&leases[0], &leases[1]);
    let reqs = |lease: &crate::store::ClaimedShard| {
        let seq = fx
            .shards
            .iter()
            .position(|s| serde_json::to_string(s).unwrap() == lease.requests_json)
            .expect("claimed shard is one of the job's");
        fx.shards[seq].clone()
    };
    let (ra, rb) = (reqs(a), reqs(b));
    let good_a = full_completion("segments/together-a", &ra);
    let good_b = full_completion("segments/together-b", &rb);
    let stale_b = full_completion("segments/together-stale", &rb);
    let stale_fence = fence(b.shard_id, b.attempt + 1, WORKER);
    // Arriving together (one batch where the store batches): each is fenced
    // on its own, and a repeated completion is applied once.
    let outcomes = futures::future::join_all([
        store.complete(&stale_fence, &stale_b, at(1)),
        store.complete(&a.fence(WORKER), &good_a, at(1)),
        store.complete(&b.fence(WORKER), &good_b, at(1)),
        store.complete(&a.fence(WORKER), &good_a, at(1)),
    ])
    .await;
    let outcomes: Vec<bool> = outcomes.into_iter().map(|o| o.unwrap()).collect();
    assert!(!outcomes[0], "stale fence refused");
    assert!(outcomes[2], "the other shard completes");
    assert_eq!(
        outcomes[1] as u8 + outcomes[3] as u8,
        1,
        "a repeated completion is applied once: {outcomes:?}"
    );
    let found = store.lookup_keys(&keys(&rb)).await.unwrap();
    assert!(
        found.values().all(|s| s == "segments/together-b"),
        "{found:?}"
    );
    let job = store.get_job(fx.job_id).await.unwrap();
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.counts.completed, 4);
    assert_eq!(
        job.counts.usage.prompt_tokens, 20,
        "usage counted once per shard"
    );
}

/// Expands to one `#[tokio::test]` per conformance check. `$make` is an async
/// fn returning `(store, guard)`; the guard (e.g. a temp dir) lives as long
/// as the test.
macro_rules! store_conformance_suite {
    ($make:path) => {
        $crate::store::conformance::store_conformance_suite!(@tests $make;
            create_get_and_list,
            idempotent_create,
            claim_heartbeat_complete,
            claim_filters_backend_and_job_state,
            claim_matches_worker_models,
            late_worker_is_fenced,
            fail_backs_off_then_dies,
            release_keeps_attempts_and_indexes_partial,
            reaper_spends_attempts,
            cancel_stops_shards,
            recover_returns_leases_without_spending,
            request_failures_are_recorded,
            cache_index_first_writer_wins,
            planning_without_shards_completes,
            higher_priority_is_claimed_first,
            equal_priority_jobs_share_workers,
            reaper_backs_off_exponentially,
            leadership_is_exclusive_until_it_expires,
            concurrent_completions_are_fenced_one_by_one
        );
    };
    (@tests $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $make().await;
                $crate::store::conformance::$name(&store).await;
            }
        )*
    };
}

pub(crate) use store_conformance_suite;
