//! Conformance of [`ProviderBatchStore`](crate::store::ProviderBatchStore): the `openai-batch`
//! lifecycle from submission to the end of a submitted shard.

use chrono::{DateTime, Utc};
use jobs::protocol::{FailedRequest, JobState, ShardState};
use jobs::spec::BackendKind;
use jobs::{InferenceRequest, Usage};
use uuid::Uuid;

use super::{at, keys, request, t0, LEASE};
use crate::store::{
    Backoff, BatchEnd, BatchFence, BatchSubmission, BatchUpdate, Claimant, LeaseFence, NewJob,
    NewShard, Partial, PlanTotals, PollFence, Store,
};

const MODEL_KEY: &str = "http://api|m";

/// A running `openai-batch` job of `shards` shards of 3 requests.
async fn batch_job(
    store: &dyn Store,
    tag: &str,
    shards: u64,
) -> (Uuid, Vec<Vec<InferenceRequest>>) {
    let job_id = Uuid::new_v4();
    store
        .create_job(NewJob {
            id: job_id,
            name: tag.into(),
            spec_json: "{}".into(),
            spec_hash: format!("hash-{tag}"),
            backend: BackendKind::OpenaiBatch,
            model: "m".into(),
            priority: 0,
            created_at: t0(),
        })
        .await
        .expect("create job");
    let mut all = Vec::new();
    let mut rows = Vec::new();
    for s in 0..shards {
        let reqs: Vec<_> = (0..3).map(|i| request(tag, s * 100 + i)).collect();
        rows.push(NewShard {
            id: Uuid::new_v4(),
            seq: s,
            requests_json: serde_json::to_string(&reqs).unwrap(),
            request_count: 3,
            max_attempts: 3,
        });
        all.push(reqs);
    }
    store.insert_shards(job_id, &rows, t0()).await.unwrap();
    let state = store
        .finish_planning(
            job_id,
            PlanTotals {
                docs: shards * 3,
                bad_rows: 0,
                requests: shards * 3,
                cached: 0,
            },
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(state, JobState::Running);
    (job_id, all)
}

fn submission(state: &str, tokens: u64, next: DateTime<Utc>) -> BatchSubmission {
    BatchSubmission {
        state_json: state.to_string(),
        model_key: MODEL_KEY.to_string(),
        enqueued_tokens: tokens,
        next_poll_at: next,
    }
}

fn poll_fence(shard_id: Uuid, poll_seq: u64, worker: &str) -> PollFence {
    PollFence {
        shard_id,
        poll_seq,
        worker_id: worker.to_string(),
    }
}

/// Claims one shard for `worker` and submits it, due at `at(due)`.
async fn submit_one(store: &dyn Store, worker: &str, due: i64) -> LeaseFence {
    let claimed = store
        .claim(worker, &[BackendKind::OpenaiBatch], 1, LEASE, t0())
        .await
        .unwrap();
    let fence = claimed[0].fence(worker);
    assert!(store
        .submit(&fence, &submission("{\"round\":0}", 10, at(due)), t0())
        .await
        .unwrap());
    fence
}

pub async fn submit_records_the_batches_and_ends_the_lease(store: &dyn Store) {
    let (job_id, _) = batch_job(store, "submit", 2).await;
    let claimed = store
        .claim("w1", &[BackendKind::OpenaiBatch], 1, LEASE, t0())
        .await
        .unwrap();
    let fence = claimed[0].fence("w1");
    let wrong = LeaseFence {
        attempt: fence.attempt + 1,
        ..fence.clone()
    };
    assert!(!store
        .submit(&wrong, &submission("{}", 0, at(5)), t0())
        .await
        .unwrap());
    assert!(store
        .submit(&fence, &submission("{\"round\":0}", 10, at(5)), at(1))
        .await
        .unwrap());
    // Submitted twice: the lease is gone, so the second is fenced.
    assert!(!store
        .submit(&fence, &submission("{}", 0, at(5)), at(1))
        .await
        .unwrap());
    let shard = store
        .list_shards(job_id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.id == fence.shard_id)
        .unwrap();
    assert_eq!(shard.state, ShardState::Submitted);
    assert_eq!(shard.lease_owner, None);
    // The old lease's heartbeat is told to stop.
    let beat = store.heartbeat(&fence, 1, LEASE, at(2)).await.unwrap();
    assert!(!beat.keep_going);
    // The reaper leaves submitted shards alone, and the job is not done
    // while one is submitted.
    let reaped = store.reap_expired(at(100), &Backoff::NONE).await.unwrap();
    assert_eq!(reaped.returned + reaped.dead + reaped.cancelled, 0);
    assert_eq!(reaped.jobs_completed, 0);
    store.recover_orphaned(at(100)).await.unwrap();
    let shard = store
        .list_shards(job_id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.id == fence.shard_id)
        .unwrap();
    assert_eq!(shard.state, ShardState::Submitted, "recovery leaves it too");
}

pub async fn poll_leases_are_due_exclusive_and_fenced(store: &dyn Store) {
    let (_, _) = batch_job(store, "polls", 1).await;
    let fence = submit_one(store, "w1", 5).await;
    let backends = [BackendKind::OpenaiBatch];
    // Not due yet: nothing, and when it will be.
    let early = store
        .claim_polls(&Claimant::any_model("p1", &backends, 4, LEASE), at(1))
        .await
        .unwrap();
    assert!(early.polls.is_empty());
    assert_eq!(early.next_due_at, Some(at(5)));
    // Another backend never sees it.
    let other = store
        .claim_polls(
            &Claimant::any_model("p1", &[BackendKind::Openai], 4, LEASE),
            at(6),
        )
        .await
        .unwrap();
    assert!(other.polls.is_empty());
    let first = store
        .claim_polls(&Claimant::any_model("p1", &backends, 4, LEASE), at(6))
        .await
        .unwrap();
    assert_eq!(first.polls.len(), 1);
    let poll = &first.polls[0];
    assert_eq!(poll.shard_id, fence.shard_id);
    assert_eq!(poll.job_state, JobState::Running);
    assert_eq!(poll.state_json, "{\"round\":0}");
    // Held: nobody else gets it until the poll lease expires.
    let second = store
        .claim_polls(&Claimant::any_model("p2", &backends, 4, LEASE), at(7))
        .await
        .unwrap();
    assert!(second.polls.is_empty());
    let p1 = poll_fence(poll.shard_id, poll.poll_seq, "p1");
    assert_eq!(
        store.renew_poll(&p1, LEASE, at(8)).await.unwrap(),
        Some(JobState::Running)
    );
    // Renewed to 18: still held at 17, taken over at 19.
    let held = store
        .claim_polls(&Claimant::any_model("p2", &backends, 4, LEASE), at(17))
        .await
        .unwrap();
    assert!(held.polls.is_empty());
    let taken = store
        .claim_polls(&Claimant::any_model("p2", &backends, 4, LEASE), at(19))
        .await
        .unwrap();
    assert_eq!(taken.polls.len(), 1);
    assert!(taken.polls[0].poll_seq > poll.poll_seq);
    // The first poller is fenced everywhere.
    assert_eq!(store.renew_poll(&p1, LEASE, at(20)).await.unwrap(), None);
    let update = BatchUpdate {
        state_json: "{}".into(),
        enqueued_tokens: 0,
        keep_lease: false,
        next_poll_at: at(30),
        partial: None,
    };
    assert!(!store
        .record_poll(&p1, &update, LEASE, at(20))
        .await
        .unwrap());
    assert_eq!(
        store
            .finish(&p1, &BatchEnd::Cancelled, None, at(20))
            .await
            .unwrap(),
        None
    );
}

pub async fn updates_index_outputs_and_schedule_the_next_poll(store: &dyn Store) {
    let (job_id, shards) = batch_job(store, "updates", 1).await;
    let fence = submit_one(store, "w1", 0).await;
    let backends = [BackendKind::OpenaiBatch];
    let poll = store
        .claim_polls(&Claimant::any_model("p1", &backends, 1, LEASE), at(1))
        .await
        .unwrap()
        .polls
        .remove(0);
    let p1 = poll_fence(fence.shard_id, poll.poll_seq, "p1");
    let reqs = &shards[0];
    let partial = Partial {
        segment: "segments/updates/p0.jsonl.zst".into(),
        written: keys(&reqs[..2]),
        usage: Usage {
            prompt_tokens: 7,
            completion_tokens: 3,
        },
    };
    // Kept: the pass goes on, the shard stays held.
    let keep = BatchUpdate {
        state_json: "{\"round\":1}".into(),
        enqueued_tokens: 4,
        keep_lease: true,
        next_poll_at: at(1),
        partial: Some(partial),
    };
    assert!(store.record_poll(&p1, &keep, LEASE, at(2)).await.unwrap());
    let found = store.lookup_keys(&keys(reqs)).await.unwrap();
    assert_eq!(found.len(), 2);
    let job = store.get_job(job_id).await.unwrap();
    assert_eq!(job.counts.completed, 2, "outputs count as done at once");
    assert_eq!(job.counts.usage.prompt_tokens, 7);
    assert!(store
        .claim_polls(
            &Claimant {
                worker_id: "p2",
                backends: &backends,
                models: &[],
                max: 1,
                lease: LEASE
            },
            at(3)
        )
        .await
        .unwrap()
        .polls
        .is_empty());
    // Released until 40.
    let release = BatchUpdate {
        keep_lease: false,
        next_poll_at: at(40),
        partial: None,
        ..keep.clone()
    };
    assert!(store
        .record_poll(&p1, &release, LEASE, at(4))
        .await
        .unwrap());
    let claim = store
        .claim_polls(&Claimant::any_model("p2", &backends, 1, LEASE), at(5))
        .await
        .unwrap();
    assert!(claim.polls.is_empty());
    assert_eq!(claim.next_due_at, Some(at(40)));
    let again = store
        .claim_polls(&Claimant::any_model("p2", &backends, 1, LEASE), at(40))
        .await
        .unwrap();
    assert_eq!(again.polls[0].state_json, "{\"round\":1}");
}

pub async fn finishing_completes_the_job_with_its_failures(store: &dyn Store) {
    let (job_id, shards) = batch_job(store, "finish", 2).await;
    let a = submit_one(store, "w1", 0).await;
    let b = submit_one(store, "w1", 0).await;
    let backends = [BackendKind::OpenaiBatch];
    let polls = store
        .claim_polls(&Claimant::any_model("p1", &backends, 2, LEASE), at(1))
        .await
        .unwrap()
        .polls;
    assert_eq!(polls.len(), 2);
    let fence_of = |id: Uuid| {
        let p = polls.iter().find(|p| p.shard_id == id).unwrap();
        poll_fence(id, p.poll_seq, "p1")
    };
    let reqs_of = |id: Uuid, list: &[Vec<InferenceRequest>]| -> Vec<InferenceRequest> {
        let seq = if id == a.shard_id { 0 } else { 1 };
        // Shards are claimed in seq order.
        list[seq].clone()
    };
    let ra = reqs_of(a.shard_id, &shards);
    let end = BatchEnd::Completed {
        failed: vec![FailedRequest {
            key: ra[2].key.clone(),
            error: "HTTP 400 in batch b: bad".into(),
        }],
    };
    let partial = Partial {
        segment: "segments/finish/a.jsonl.zst".into(),
        written: keys(&ra[..2]),
        usage: Usage::default(),
    };
    assert_eq!(
        store
            .finish(&fence_of(a.shard_id), &end, Some(&partial), at(2))
            .await
            .unwrap(),
        Some(ShardState::Completed)
    );
    // One shard still submitted: the job runs on, even through the
    // reaper's safety net.
    store.reap_expired(at(3), &Backoff::NONE).await.unwrap();
    assert_eq!(
        store.get_job(job_id).await.unwrap().state,
        JobState::Running
    );
    let rb = reqs_of(b.shard_id, &shards);
    let partial_b = Partial {
        segment: "segments/finish/b.jsonl.zst".into(),
        written: keys(&rb),
        usage: Usage::default(),
    };
    assert_eq!(
        store
            .finish(
                &fence_of(b.shard_id),
                &BatchEnd::Completed { failed: vec![] },
                Some(&partial_b),
                at(4)
            )
            .await
            .unwrap(),
        Some(ShardState::Completed)
    );
    let job = store.get_job(job_id).await.unwrap();
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.counts.completed, 5);
    assert_eq!(job.counts.failed, 1);
    let failures = store.job_failures(job_id, 10).await.unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].key, ra[2].key);
}

pub async fn a_failed_batch_kills_the_shard_and_fails_the_job(store: &dyn Store) {
    let (job_id, _) = batch_job(store, "dies", 1).await;
    let fence = submit_one(store, "w1", 0).await;
    let poll = store
        .claim_polls(
            &Claimant::any_model("p1", &[BackendKind::OpenaiBatch], 1, LEASE),
            at(1),
        )
        .await
        .unwrap()
        .polls
        .remove(0);
    let end = BatchEnd::Failed {
        error: "batch b failed: line 2: invalid_request: nope".into(),
    };
    assert_eq!(
        store
            .finish(
                &poll_fence(fence.shard_id, poll.poll_seq, "p1"),
                &end,
                None,
                at(2)
            )
            .await
            .unwrap(),
        Some(ShardState::Dead)
    );
    let job = store.get_job(job_id).await.unwrap();
    assert_eq!(job.state, JobState::Failed);
    let error = job.error.unwrap_or_default();
    assert!(error.contains("line 2: invalid_request"), "{error}");
}

pub async fn a_cancelled_job_hands_its_batches_to_pollers_at_once(store: &dyn Store) {
    let (job_id, _) = batch_job(store, "cancel", 1).await;
    let fence = submit_one(store, "w1", 1000).await;
    store.cancel_job(job_id, at(1)).await.unwrap();
    // Not due for a long while, but the job stopped: pollers cancel now.
    let poll = store
        .claim_polls(
            &Claimant::any_model("p1", &[BackendKind::OpenaiBatch], 1, LEASE),
            at(2),
        )
        .await
        .unwrap()
        .polls
        .remove(0);
    assert_eq!(poll.job_state, JobState::Cancelled);
    let p1 = poll_fence(fence.shard_id, poll.poll_seq, "p1");
    assert_eq!(
        store.renew_poll(&p1, LEASE, at(3)).await.unwrap(),
        Some(JobState::Cancelled)
    );
    assert_eq!(
        store
            .finish(&p1, &BatchEnd::Cancelled, None, at(4))
            .await
            .unwrap(),
        Some(ShardState::Cancelled)
    );
    let shards = store.list_shards(job_id).await.unwrap();
    assert_eq!(shards[0].state, ShardState::Cancelled);
}

pub async fn reservations_share_the_cap_across_shards(store: &dyn Store) {
    let (_, _) = batch_job(store, "cap", 3).await;
    let backends = [BackendKind::OpenaiBatch];
    let claimed = store.claim("w1", &backends, 3, LEASE, t0()).await.unwrap();
    let fences: Vec<LeaseFence> = claimed.iter().map(|c| c.fence("w1")).collect();
    let hold = |i: usize| BatchFence::Lease(fences[i].clone());
    // Nothing enqueued: an oversized batch still goes, alone.
    assert_eq!(
        store
            .reserve(&hold(0), MODEL_KEY, 100, 0, &[150, 10], at(1))
            .await
            .unwrap(),
        Some((1, 0))
    );
    // The next shard sees it and gets nothing.
    assert_eq!(
        store
            .reserve(&hold(1), MODEL_KEY, 100, 0, &[10], at(1))
            .await
            .unwrap(),
        Some((0, 150))
    );
    // Another model has its own quota.
    assert_eq!(
        store
            .reserve(&hold(1), "other|m", 100, 0, &[60, 60], at(1))
            .await
            .unwrap(),
        Some((1, 0))
    );
    // The first shard shrinks to 40 when submitted; now 60 more fit.
    assert!(store
        .submit(
            &fences[0],
            &BatchSubmission {
                model_key: MODEL_KEY.into(),
                ..submission("{}", 40, at(50))
            },
            at(2)
        )
        .await
        .unwrap());
    assert_eq!(
        store
            .reserve(&hold(2), MODEL_KEY, 100, 0, &[30, 30, 30], at(3))
            .await
            .unwrap(),
        Some((2, 40))
    );
    // A fence that does not hold the shard gets no answer.
    let stale = BatchFence::Lease(LeaseFence {
        attempt: fences[2].attempt + 1,
        ..fences[2].clone()
    });
    assert_eq!(
        store
            .reserve(&stale, MODEL_KEY, 100, 0, &[1], at(3))
            .await
            .unwrap(),
        None
    );
}

pub async fn recovery_ends_poll_leases(store: &dyn Store) {
    let (_, _) = batch_job(store, "recover", 1).await;
    let fence = submit_one(store, "w1", 0).await;
    let backends = [BackendKind::OpenaiBatch];
    let first = store
        .claim_polls(&Claimant::any_model("p1", &backends, 1, LEASE), at(1))
        .await
        .unwrap();
    assert_eq!(first.polls.len(), 1);
    assert_eq!(store.recover_polls(at(2)).await.unwrap(), 1);
    let again = store
        .claim_polls(&Claimant::any_model("p2", &backends, 1, LEASE), at(2))
        .await
        .unwrap();
    assert_eq!(again.polls.len(), 1);
    assert_eq!(again.polls[0].shard_id, fence.shard_id);
}
