//! The conformance suite on a fresh Postgres database per test, and checks
//! that only Postgres can make: concurrent claimers and completers, dead
//! connections. Postgres must be running: `scripts/test.sh` starts it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use jobs::protocol::JobState;
use jobs::spec::BackendKind;
use sqlx::Connection;
use uuid::Uuid;

use super::{PostgresOptions, PostgresStore, ScratchDatabase};
use crate::store::{
    Completion, JobStore, LeadershipStore, LeaseStore, NewJob, NewShard, PlanTotals, Store,
    StoreError,
};

/// A store on its own new database; the guard drops the database.
async fn make() -> (PostgresStore, ScratchDatabase) {
    let admin = ScratchDatabase::admin_url_from_env();
    let db = match ScratchDatabase::create(&admin, "shardline_t").await {
        Ok(db) => db,
        Err(e) => panic!(
            "the Postgres tests need a server: {e}. Run scripts/test.sh (it starts Postgres on \
             127.0.0.1:5432), or point {} at a server where this user may CREATE DATABASE",
            super::TEST_DATABASE_URL_ENV
        ),
    };
    let options = PostgresOptions {
        max_connections: 8,
        ..PostgresOptions::default()
    };
    let store = PostgresStore::connect_with(db.url(), options)
        .await
        .expect("connect to the scratch database and migrate it");
    (store, db)
}

crate::store_conformance_suite!(make);

fn t0() -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000, 0)
        .single()
        .expect("valid time")
}

/// A running job of `shards` empty shards.
async fn job(store: &dyn Store, tag: &str, shards: u64) -> Uuid {
    let id = Uuid::new_v4();
    store
        .create_job(NewJob {
            id,
            name: tag.into(),
            spec_json: "{}".into(),
            spec_hash: tag.into(),
            backend: BackendKind::Openai,
            model: "m".into(),
            priority: 0,
            created_at: t0(),
        })
        .await
        .expect("create job");
    let new: Vec<NewShard> = (0..shards)
        .map(|seq| NewShard {
            id: Uuid::new_v4(),
            seq,
            requests_json: "[]".into(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_never_share_a_shard_and_the_job_completes() {
    let (store, _db) = make().await;
    let store = Arc::new(store);
    let job_id = job(store.as_ref(), "concurrent", 400).await;
    let mut tasks = Vec::new();
    for w in 0..12 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let worker = format!("w{w}");
            let mut mine = Vec::new();
            loop {
                let claimed = store
                    .claim(
                        &worker,
                        &[BackendKind::Openai],
                        4,
                        Duration::from_secs(60),
                        t0(),
                    )
                    .await
                    .expect("claim");
                if claimed.is_empty() {
                    return mine;
                }
                for shard in claimed {
                    let done = store
                        .complete(&shard.fence(&worker), &Completion::default(), t0())
                        .await
                        .expect("complete");
                    assert!(done, "a fresh lease completes");
                    mine.push(shard.shard_id);
                }
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("worker task"));
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(total, 400, "every shard claimed exactly once");
    assert_eq!(all.len(), 400);
    let job = store.get_job(job_id).await.expect("job");
    assert_eq!(
        job.state,
        JobState::Completed,
        "the last completion ends the job"
    );
    assert_eq!(job.counts.shards_completed, 400);
}

#[tokio::test]
async fn a_dead_connection_is_retryable_and_the_pool_recovers() {
    let (store, db) = make().await;
    // A statement on a connection the server ends midway: the error must say
    // "try again", not "bad request".
    let mut conn = store.pool().acquire().await.expect("connection");
    let err = sqlx::query("SELECT pg_terminate_backend(pg_backend_pid())")
        .execute(&mut *conn)
        .await
        .expect_err("the server ends this connection");
    drop(conn);
    let mapped = StoreError::from(err);
    assert!(mapped.is_retryable(), "{mapped:?}");

    // Every connection of the pool killed from outside, as by a restart.
    store
        .list_jobs()
        .await
        .expect("the pool replaces the dead connection");
    let admin = ScratchDatabase::admin_url_from_env();
    let mut killer = sqlx::PgConnection::connect(&admin).await.expect("admin");
    let killed: i64 = sqlx::query_scalar(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1",
    )
    .bind(db.name())
    .fetch_one(&mut killer)
    .await
    .expect("terminate");
    let _ = killer.close().await;
    assert!(killed >= 1, "the pool had an idle connection to kill");
    // The pool tests connections before use: the next call reconnects.
    let id = job(&store, "after-restart", 1).await;
    assert_eq!(
        store.get_job(id).await.expect("job").state,
        JobState::Running
    );
}

#[tokio::test]
async fn two_replicas_share_one_leader_row() {
    let (a, db) = make().await;
    let b = PostgresStore::connect(db.url())
        .await
        .expect("second replica");
    let ttl = Duration::from_secs(10);
    assert!(a.try_acquire_leadership("a", ttl, t0()).await.unwrap());
    assert!(!b.try_acquire_leadership("b", ttl, t0()).await.unwrap());
    // Renewals keep it; B takes over only once A stops renewing.
    let later = t0() + chrono::Duration::seconds(8);
    assert!(a.try_acquire_leadership("a", ttl, later).await.unwrap());
    let after_a_ttl = t0() + chrono::Duration::seconds(12);
    assert!(!b
        .try_acquire_leadership("b", ttl, after_a_ttl)
        .await
        .unwrap());
    let expired = t0() + chrono::Duration::seconds(19);
    assert!(b.try_acquire_leadership("b", ttl, expired).await.unwrap());
    assert!(!a.try_acquire_leadership("a", ttl, expired).await.unwrap());
    b.close().await;
}
