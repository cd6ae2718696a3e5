//! Conformance of [`LeaseStore`](crate::store::LeaseStore) recovery: expired
//! leases, backoff, orphaned leases after a restart.

use jobs::protocol::{JobState, ShardState};
use jobs::spec::BackendKind;
use std::time::Duration;

use super::{at, running_job, t0, LEASE, WORKER};
use crate::store::{Backoff, Completion, Store};

pub async fn reaper_spends_attempts(store: &dyn Store) {
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
        vec![crate::store::ExpiredLease {
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

pub async fn recover_returns_leases_without_spending(store: &dyn Store) {
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

pub async fn reaper_backs_off_exponentially(store: &dyn Store) {
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
