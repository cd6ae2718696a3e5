//! Conformance of [`LeaseStore`](crate::store::LeaseStore): one attempt's lease
//! from claim to its fenced end.

use jobs::protocol::{FailKind, JobState, ShardState};
use jobs::spec::BackendKind;
use jobs::{InferenceRequest, Usage};
use uuid::Uuid;

use super::{at, fence, full_completion, keys, running_job, t0, LEASE, WORKER};
use crate::store::{Backoff, Completion, Partial, Store};

pub async fn claim_heartbeat_complete(store: &dyn Store) {
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

pub async fn late_worker_is_fenced(store: &dyn Store) {
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
        assert_eq!(
            store
                .fail(f, "x", FailKind::Transient, at(1), at(1))
                .await
                .unwrap(),
            None
        );
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

pub async fn fail_backs_off_then_dies(store: &dyn Store) {
    let fx = running_job(store, "fail", BackendKind::Openai, 1, 2, 2).await;
    let lease = store
        .claim(WORKER, &[BackendKind::Openai], 1, LEASE, t0())
        .await
        .unwrap()
        .remove(0);
    let state = store
        .fail(
            &lease.fence(WORKER),
            "endpoint down",
            FailKind::Transient,
            at(30),
            at(1),
        )
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
        .fail(
            &retry.fence(WORKER),
            "endpoint still down",
            FailKind::Transient,
            at(60),
            at(31),
        )
        .await
        .unwrap();
    assert_eq!(state, Some(ShardState::Dead));
    let job = store.get_job(fx.job_id).await.unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.counts.shards_dead, 1);
    assert_eq!(
        job.status().error_kind,
        Some(jobs::protocol::FailureKind::Runtime),
        "a dead shard is no fault of the job's input"
    );
    let error = job.error.unwrap_or_default();
    assert!(error.contains("endpoint still down"), "{error}");
    assert!(store
        .claim(WORKER, &[BackendKind::Openai], 1, LEASE, at(100))
        .await
        .unwrap()
        .is_empty());
}

/// A configuration failure kills the shard at its first attempt, whatever
/// attempts are left, and fails the job with the worker's message alone.
pub async fn configuration_failure_fails_the_job_at_once(store: &dyn Store) {
    let fx = running_job(store, "config", BackendKind::Openai, 2, 2, 3).await;
    let lease = store
        .claim(WORKER, &[BackendKind::Openai], 1, LEASE, t0())
        .await
        .unwrap()
        .remove(0);
    let state = store
        .fail(
            &lease.fence(WORKER),
            "certificate not trusted; set model.ca_cert",
            FailKind::Configuration,
            at(30),
            at(1),
        )
        .await
        .unwrap();
    assert_eq!(state, Some(ShardState::Dead));
    let job = store.get_job(fx.job_id).await.unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(
        job.error_kind,
        Some(jobs::protocol::FailureKind::Configuration)
    );
    assert_eq!(
        job.error.as_deref(),
        Some("certificate not trusted; set model.ca_cert")
    );
    assert_eq!(
        job.status().error_kind,
        Some(jobs::protocol::FailureKind::Configuration)
    );
    // Nothing of the job is handed out any more.
    assert!(store
        .claim(WORKER, &[BackendKind::Openai], 1, LEASE, at(100))
        .await
        .unwrap()
        .is_empty());
}

pub async fn release_keeps_attempts_and_indexes_partial(store: &dyn Store) {
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

pub async fn concurrent_completions_are_fenced_one_by_one(store: &dyn Store) {
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
