//! Conformance of [`FailureStore`](crate::store::FailureStore).

use jobs::protocol::{FailedRequest, JobState};
use jobs::spec::BackendKind;
use jobs::Usage;

use super::{at, keys, running_job, t0, LEASE, WORKER};
use crate::store::{Completion, Store};

pub async fn request_failures_are_recorded(store: &dyn Store) {
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
