//! Conformance of [`LeaseStore`](crate::store::LeaseStore) claims: which shards
//! a worker gets, in which order.

use jobs::protocol::ShardState;
use jobs::spec::BackendKind;
use uuid::Uuid;

use super::{at, prioritized_job, request, running_job, t0, LEASE, WORKER};
use crate::store::{Claimant, Completion, ModelPattern, NewJob, NewShard, PlanTotals, Store};

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

pub async fn claim_filters_backend_and_job_state(store: &dyn Store) {
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

pub async fn claim_matches_worker_models(store: &dyn Store) {
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
                .claim_matching(
                    &Claimant {
                        worker_id: WORKER,
                        backends: &openai,
                        models: &models,
                        max,
                        lease: LEASE,
                    },
                    t0(),
                )
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

pub async fn higher_priority_is_claimed_first(store: &dyn Store) {
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

pub async fn equal_priority_jobs_share_workers(store: &dyn Store) {
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
