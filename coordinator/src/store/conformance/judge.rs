//! Conformance of [`JudgeStore`](crate::store::JudgeStore): documents wait
//! for their shards, judge requests go to a child job on the judge's
//! backend, and the judged job completes only when its judges have.

use jobs::protocol::{FailureKind, JobState};
use jobs::spec::BackendKind;
use uuid::Uuid;

use super::{at, full_completion, request, t0, LEASE, WORKER};
use crate::store::{JudgeStage, NewJob, NewJudgeItem, NewShard, PlanTotals, Store, StoreError};

fn item(doc_index: u64, wait_seqs: &[u64]) -> NewJudgeItem {
    NewJudgeItem {
        doc_index,
        wait_seqs: wait_seqs.to_vec(),
        item_json: format!("{{\"doc\":{doc_index}}}"),
    }
}

fn shard(seq: u64, tag: &str) -> NewShard {
    let reqs = vec![request(tag, seq)];
    NewShard {
        id: Uuid::new_v4(),
        seq,
        requests_json: serde_json::to_string(&reqs).expect("json"),
        request_count: 1,
        max_attempts: 1,
    }
}

fn stage(shards: usize, tag: &str) -> JudgeStage {
    JudgeStage {
        name: "judged/judge:correct".into(),
        spec_json: "{}".into(),
        spec_hash: format!("judge-hash-{tag}"),
        backend: BackendKind::OpenaiBatch,
        model: "judge".into(),
        shards: (0..shards).map(|s| shard(s as u64, tag)).collect(),
        requests: 3,
        cached: 3 - shards as u64,
    }
}

/// A running judged job: shards 0 and 1, documents waiting for nothing,
/// for shard 0, and for shards 0 and 1.
async fn judged_job(store: &dyn Store, tag: &str) -> Uuid {
    let id = Uuid::new_v4();
    store
        .create_job(NewJob {
            id,
            name: "judged".into(),
            spec_json: "{}".into(),
            spec_hash: format!("hash-{tag}"),
            backend: BackendKind::Openai,
            model: "m".into(),
            priority: 3,
            created_at: t0(),
        })
        .await
        .unwrap();
    store
        .insert_shards(id, &[shard(0, tag), shard(1, tag)], t0())
        .await
        .unwrap();
    store
        .insert_judge_items(id, &[item(0, &[]), item(1, &[0]), item(2, &[0, 1])])
        .await
        .unwrap();
    let state = store
        .finish_planning(id, PlanTotals::default(), t0())
        .await
        .unwrap();
    assert_eq!(state, JobState::Running);
    id
}

async fn complete_next(store: &dyn Store, backend: BackendKind, now_secs: i64) -> Uuid {
    let claimed = store
        .claim(WORKER, &[backend], 1, LEASE, at(now_secs))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "a shard of {backend:?} to claim");
    let reqs: Vec<jobs::InferenceRequest> =
        serde_json::from_str(&claimed[0].requests_json).unwrap();
    let done = store
        .complete(
            &claimed[0].fence(WORKER),
            &full_completion(&format!("seg-{now_secs}"), &reqs),
            at(now_secs),
        )
        .await
        .unwrap();
    assert!(done);
    claimed[0].job_id
}

fn docs(ready: &[crate::store::ReadyJudgeItem]) -> Vec<u64> {
    let mut docs: Vec<u64> = ready.iter().map(|r| r.doc_index).collect();
    docs.sort();
    docs
}

pub async fn judge_items_wait_for_shards_and_children_for_the_job(store: &dyn Store) {
    let id = judged_job(store, "jw").await;
    assert_eq!(store.judged_jobs().await.unwrap(), vec![id]);
    let ready = store.ready_judge_items(id, 10).await.unwrap();
    assert_eq!(docs(&ready), vec![0], "only the cached document is ready");
    assert_eq!(ready[0].item_json, "{\"doc\":0}");

    complete_next(store, BackendKind::Openai, 1).await;
    let ready = store.ready_judge_items(id, 10).await.unwrap();
    assert_eq!(docs(&ready), vec![0, 1]);
    assert_eq!(store.unfinished_shards(id, &[0, 1]).await.unwrap(), vec![1]);

    // Documents 0 and 1 judged: a child job on the judge's backend.
    store
        .commit_judging(id, &[stage(1, "jw")], &[0, 1], at(2))
        .await
        .unwrap();
    let children = store.child_jobs(id).await.unwrap();
    assert_eq!(children.len(), 1);
    let child = store.get_job(children[0].id).await.unwrap();
    assert_eq!(child.parent_id, Some(id));
    assert_eq!(child.state, JobState::Running);
    assert_eq!(child.backend, "openai-batch");
    assert_eq!(child.priority, 3, "the parent's priority");
    assert_eq!((child.counts.requests, child.counts.cached), (3, 2));
    assert!(store.ready_judge_items(id, 10).await.unwrap().is_empty());
    assert!(
        !store.complete_if_done(id, at(2)).await.unwrap(),
        "a shard, a document and a judge are left"
    );

    // The child's shard runs on the judge's backend and completes it.
    assert_eq!(
        complete_next(store, BackendKind::OpenaiBatch, 3).await,
        child.id
    );
    assert_eq!(
        store.get_job(child.id).await.unwrap().state,
        JobState::Completed
    );

    // The last document: its requests all cached, the child gets counts
    // only and stays completed.
    complete_next(store, BackendKind::Openai, 4).await;
    assert_eq!(
        store.get_job(id).await.unwrap().state,
        JobState::Running,
        "document 2 still waits for its judges"
    );
    assert_eq!(
        docs(&store.ready_judge_items(id, 10).await.unwrap()),
        vec![2]
    );
    store
        .commit_judging(id, &[stage(0, "jw")], &[2], at(5))
        .await
        .unwrap();
    let child = store.get_job(child.id).await.unwrap();
    assert_eq!(child.state, JobState::Completed);
    assert_eq!(child.counts.requests, 6);
    assert_eq!(child.counts.shards_total, 1);
    assert!(store.complete_if_done(id, at(5)).await.unwrap());
    assert_eq!(store.get_job(id).await.unwrap().state, JobState::Completed);
    assert!(store.judged_jobs().await.unwrap().is_empty());
}

pub async fn a_waiting_document_can_wait_for_another_shard(store: &dyn Store) {
    let id = judged_job(store, "rw").await;
    store.rewait_judge_item(id, 0, 1).await.unwrap();
    assert!(
        store.ready_judge_items(id, 10).await.unwrap().is_empty(),
        "document 0 now waits for shard 1"
    );
    complete_next(store, BackendKind::Openai, 1).await;
    complete_next(store, BackendKind::Openai, 2).await;
    let ready = store.ready_judge_items(id, 10).await.unwrap();
    assert_eq!(docs(&ready), vec![0, 1, 2]);
    let two = ready.iter().find(|r| r.doc_index == 2).unwrap();
    assert_eq!(two.wait_seqs, vec![0, 1]);
    assert_eq!(store.ready_judge_items(id, 2).await.unwrap().len(), 2);
}

pub async fn judges_of_a_failed_job_are_orphaned(store: &dyn Store) {
    let id = judged_job(store, "or").await;
    store
        .commit_judging(id, &[stage(1, "or")], &[0], at(1))
        .await
        .unwrap();
    assert!(store.orphaned_children().await.unwrap().is_empty());
    store
        .fail_job(id, "a shard died", FailureKind::Runtime, at(2))
        .await
        .unwrap();
    let child = store.child_jobs(id).await.unwrap()[0].id;
    assert_eq!(store.orphaned_children().await.unwrap(), vec![child]);
    store.cancel_job(child, at(3)).await.unwrap();
    assert!(store.orphaned_children().await.unwrap().is_empty());
}

pub async fn a_replanned_job_forgets_its_documents(store: &dyn Store) {
    let id = Uuid::new_v4();
    store
        .create_job(NewJob {
            id,
            name: "judged".into(),
            spec_json: "{}".into(),
            spec_hash: "hash-rp".into(),
            backend: BackendKind::Openai,
            model: "m".into(),
            priority: 0,
            created_at: t0(),
        })
        .await
        .unwrap();
    store.insert_judge_items(id, &[item(0, &[])]).await.unwrap();
    store.reset_judge_items(id).await.unwrap();
    let state = store
        .finish_planning(id, PlanTotals::default(), t0())
        .await
        .unwrap();
    assert_eq!(state, JobState::Completed, "nothing left to judge");
}

pub async fn each_judge_condition_holds_the_job_alone(store: &dyn Store) {
    let id = judged_job(store, "hold").await;
    complete_next(store, BackendKind::Openai, 1).await;
    complete_next(store, BackendKind::Openai, 2).await;
    // Only a waiting document is left.
    assert!(!store.complete_if_done(id, at(3)).await.unwrap());
    store
        .commit_judging(id, &[stage(1, "hold")], &[0, 1, 2], at(3))
        .await
        .unwrap();
    // Only the judge job's shard is left.
    assert!(!store.complete_if_done(id, at(4)).await.unwrap());
    assert_eq!(store.reopen_children(id, at(4)).await.unwrap(), 0);

    // Judging the same documents again is refused and changes nothing.
    let again = store
        .commit_judging(id, &[stage(2, "hold")], &[1], at(5))
        .await
        .unwrap_err();
    assert!(matches!(again, StoreError::Conflict(_)), "{again:?}");
    let child = store.child_jobs(id).await.unwrap()[0].id;
    assert_eq!(store.get_job(child).await.unwrap().counts.shards_total, 1);

    complete_next(store, BackendKind::OpenaiBatch, 6).await;
    assert_eq!(
        store.get_job(child).await.unwrap().state,
        JobState::Completed
    );
    assert!(store.complete_if_done(id, at(7)).await.unwrap());
}

pub async fn a_completed_judge_job_reopens_for_new_shards(store: &dyn Store) {
    let id = judged_job(store, "reopen").await;
    store
        .commit_judging(id, &[stage(1, "reopen")], &[0], at(1))
        .await
        .unwrap();
    let child = store.child_jobs(id).await.unwrap()[0].id;
    complete_next(store, BackendKind::OpenaiBatch, 2).await;
    assert_eq!(
        store.get_job(child).await.unwrap().state,
        JobState::Completed
    );
    complete_next(store, BackendKind::Openai, 3).await;
    store
        .commit_judging(id, &[stage(1, "reopen-2")], &[1], at(4))
        .await
        .unwrap();
    let record = store.get_job(child).await.unwrap();
    assert_eq!(record.state, JobState::Running, "new shards reopen it");
    assert_eq!(record.counts.shards_total, 2);
    assert_eq!(
        store.child_jobs(id).await.unwrap().len(),
        1,
        "one judge job"
    );
}
