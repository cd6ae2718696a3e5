//! Conformance of [`JobStore`](crate::store::JobStore): creation, planning, cancellation.

use jobs::protocol::{FailureKind, JobState, ShardState};
use jobs::spec::BackendKind;
use uuid::Uuid;

use super::{at, running_job, t0, LEASE, WORKER};
use crate::store::{Completion, NewJob, PlanTotals, Store, StoreError};

pub async fn create_get_and_list(store: &dyn Store) {
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

pub async fn idempotent_create(store: &dyn Store) {
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

pub async fn cancel_stops_shards(store: &dyn Store) {
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

/// A new job in `planning`, named `name`.
async fn planning_job(store: &dyn Store, name: &str) -> Uuid {
    let id = Uuid::new_v4();
    store
        .create_job(NewJob {
            id,
            name: name.into(),
            spec_json: "{}".into(),
            spec_hash: name.into(),
            backend: BackendKind::Openai,
            model: "m".into(),
            priority: 0,
            created_at: t0(),
        })
        .await
        .unwrap();
    id
}

pub async fn planning_without_shards_completes(store: &dyn Store) {
    let id = planning_job(store, "all-cached").await;
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
    assert!(!store
        .fail_job(id, "late", FailureKind::Runtime, at(3))
        .await
        .unwrap());
    let metrics = store.metrics().await.unwrap();
    assert!(metrics
        .jobs_by_state
        .iter()
        .any(|(s, n)| s == "completed" && *n == 1));
    assert_eq!(metrics.requests_cached, 5);
}

pub async fn late_usage_is_counted(store: &dyn Store) {
    let fx = running_job(store, "usage", BackendKind::Openai, 2, 1, 3).await;
    let shard = store.list_shards(fx.job_id).await.unwrap()[0].id;
    let spent = jobs::Usage {
        prompt_tokens: 70,
        completion_tokens: 9,
    };
    store
        .add_usage(fx.job_id, shard, spent, at(1))
        .await
        .unwrap();
    store
        .add_usage(fx.job_id, shard, spent, at(2))
        .await
        .unwrap();
    let job = store.get_job(fx.job_id).await.unwrap();
    assert_eq!(job.counts.usage.prompt_tokens, 140);
    assert_eq!(job.counts.usage.completion_tokens, 18);
}

pub async fn planning_attempts_are_counted(store: &dyn Store) {
    let id = planning_job(store, "attempts").await;
    assert_eq!(store.count_planning_attempt(id).await.unwrap(), 1);
    assert_eq!(store.count_planning_attempt(id).await.unwrap(), 2);
    store.uncount_planning_attempt(id).await.unwrap();
    assert_eq!(store.count_planning_attempt(id).await.unwrap(), 2);
    // Never below zero.
    for _ in 0..4 {
        store.uncount_planning_attempt(id).await.unwrap();
    }
    assert_eq!(store.count_planning_attempt(id).await.unwrap(), 1);
    // Only a job in `planning` is counted.
    store
        .finish_planning(id, PlanTotals::default(), at(1))
        .await
        .unwrap();
    assert_eq!(store.count_planning_attempt(id).await.unwrap(), 0);
    assert_eq!(
        store.count_planning_attempt(Uuid::new_v4()).await.unwrap(),
        0
    );
}

pub async fn a_failure_keeps_whose_fault_it_is(store: &dyn Store) {
    for kind in [FailureKind::Input, FailureKind::Runtime] {
        let id = planning_job(store, kind.as_str()).await;
        assert_eq!(store.get_job(id).await.unwrap().status().error_kind, None);
        assert!(store
            .fail_job(id, "data.jsonl:3: invalid JSON", kind, at(1))
            .await
            .unwrap());
        let job = store.get_job(id).await.unwrap();
        assert_eq!(job.state, JobState::Failed);
        assert_eq!(job.error_kind, Some(kind));
        assert_eq!(job.status().error_kind, Some(kind));
        let listed = store.list_jobs().await.unwrap();
        let listed = listed.iter().find(|j| j.id == id).unwrap();
        assert_eq!(listed.error_kind, Some(kind));
        // A second failure changes nothing.
        assert!(!store
            .fail_job(id, "again", FailureKind::Runtime, at(2))
            .await
            .unwrap());
        assert_eq!(store.get_job(id).await.unwrap().error_kind, Some(kind));
    }
}
