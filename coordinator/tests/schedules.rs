//! Schedules on real stores: two coordinators over one Postgres fire a due
//! schedule once, from the leader only; a fire missed while no coordinator
//! ran is caught up once; paused schedules and refused specs do not fire;
//! and the schedule API over HTTP.

use chrono::{Duration as ChronoDuration, Utc};
use coordinator::store::{PostgresStore, ScratchDatabase, SqliteStore, Store};
use coordinator::{Coordinator, CoordinatorConfig, CoordinatorError};
use jobs::protocol::JobState;
use jobs::schedule::NewSchedule;
use jobs::JobSpec;
use std::path::Path;
use std::sync::Arc;

fn spec(dir: &Path, name: &str) -> JobSpec {
    std::fs::write(dir.join("data.jsonl"), "{\"q\": \"2+2?\", \"a\": \"4\"}\n").unwrap();
    JobSpec::from_toml_str(
        &format!(
            r#"
name = "{name}"
[model]
backend = "openai"
model = "m"
base_url = "http://127.0.0.1:9/v1"
[dataset]
path = "data.jsonl"
[task]
kind = "generate"
prompt = "{{{{ q }}}}"
target = "{{{{ a }}}}"
[[metrics]]
type = "exact_match"
"#
        ),
        "job.toml",
        Some(dir),
    )
    .unwrap()
}

fn coordinator(store: Arc<dyn Store>, dir: &Path) -> Coordinator {
    let objects: Arc<dyn cache::ObjectStore> =
        Arc::new(cache::LocalDirStore::new(dir.join("cache")));
    let mut config = CoordinatorConfig::with_tokens("admin-token-123456", "worker-token-12345");
    config.read = jobs::ReadPolicy::unrestricted();
    Coordinator::new(store, objects, config)
}

fn nightly(spec: JobSpec) -> NewSchedule {
    NewSchedule {
        name: "nightly".into(),
        cron: "0 3 * * *".into(),
        timezone: "Europe/Berlin".into(),
        spec,
    }
}

#[tokio::test]
async fn only_the_leader_fires_and_a_missed_fire_is_caught_up_once() {
    let dir = tempfile::tempdir().unwrap();
    let admin = ScratchDatabase::admin_url_from_env();
    let db = ScratchDatabase::create(&admin, "shardline_sched")
        .await
        .expect("Postgres for the test (scripts/test.sh starts it)");
    let connect = || async {
        let store: Arc<dyn Store> = Arc::new(PostgresStore::connect(db.url()).await.unwrap());
        store
    };
    let a = coordinator(connect().await, dir.path());
    let b = coordinator(connect().await, dir.path());
    let created = a
        .create_schedule(nightly(spec(dir.path(), "mmlu")))
        .await
        .unwrap();
    assert!(created.runs.is_empty());
    let first = chrono::DateTime::parse_from_rfc3339(&created.next_fire_at)
        .unwrap()
        .with_timezone(&Utc);
    assert!(first > Utc::now(), "it fires in the future");

    // Due now. The follower's ticks fire nothing; the leader's fires it.
    a.run_schedule_now("nightly").await.unwrap();
    assert!(a.leader_tick().await, "the first to tick leads");
    assert_eq!(a.schedule("nightly").await.unwrap().runs.len(), 1);
    for _ in 0..3 {
        assert!(!b.leader_tick().await);
    }
    let status = b.schedule("nightly").await.unwrap();
    assert_eq!(status.runs.len(), 1, "fired once, by the leader");
    let first_job = status.runs[0].job_id;
    // Let the run-now's job end, so that the next fire makes a job.
    a.cancel(first_job).await.unwrap();

    // Three days of missed fires (no coordinator ran): caught up once.
    let later = first + ChronoDuration::days(3);
    let (leader, follower) = (&a, &b);
    assert!(follower.store().due_schedules(later).await.unwrap().len() == 1);
    let fired = leader.fire_due_schedules(later).await.unwrap();
    assert_eq!(fired.len(), 1, "one fire for three missed days");
    assert!(leader.fire_due_schedules(later).await.unwrap().is_empty());
    let status = follower.schedule("nightly").await.unwrap();
    assert_eq!(status.runs.len(), 2);
    assert_eq!(status.runs[0].job_id, fired[0], "newest first");
    assert_eq!(status.runs[0].state, JobState::Planning);
    let next = chrono::DateTime::parse_from_rfc3339(&status.next_fire_at)
        .unwrap()
        .with_timezone(&Utc);
    assert!(
        next > later && next <= later + ChronoDuration::days(1),
        "{next}"
    );

    // Paused: never due; run-now refused until resumed.
    follower.pause_schedule("nightly").await.unwrap();
    assert!(leader
        .fire_due_schedules(next + ChronoDuration::days(1))
        .await
        .unwrap()
        .is_empty());
    let refused = follower.run_schedule_now("nightly").await.unwrap_err();
    assert!(refused.to_string().contains("paused"), "{refused}");
    follower.resume_schedule("nightly").await.unwrap();
    follower.run_schedule_now("nightly").await.unwrap();
    // Resuming an active schedule keeps its pending run-now.
    let pending = follower.schedule("nightly").await.unwrap().next_fire_at;
    follower.resume_schedule("nightly").await.unwrap();
    assert_eq!(
        follower.schedule("nightly").await.unwrap().next_fire_at,
        pending
    );
    // The first fire's job is still live (never planned here): skipped.
    assert!(leader
        .fire_due_schedules(Utc::now())
        .await
        .unwrap()
        .is_empty());
    a.delete_schedule("nightly").await.unwrap();
    assert!(matches!(
        b.schedule("nightly").await.unwrap_err(),
        CoordinatorError::Store(coordinator::StoreError::ScheduleNotFound(_))
    ));
}

#[tokio::test]
async fn bad_schedules_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("s.db")).await.unwrap());
    let c = coordinator(store, dir.path());
    let good = nightly(spec(dir.path(), "mmlu"));
    for (edit, field) in [
        (
            Box::new(|s: &mut NewSchedule| s.cron = "0 3 * *".into())
                as Box<dyn Fn(&mut NewSchedule)>,
            "`cron`",
        ),
        (
            Box::new(|s: &mut NewSchedule| s.timezone = "Mars/Base".into()),
            "`timezone`",
        ),
        (
            Box::new(|s: &mut NewSchedule| s.name = "no spaces".into()),
            "`name`",
        ),
    ] {
        let mut bad = good.clone();
        edit(&mut bad);
        let err = c.create_schedule(bad).await.unwrap_err();
        assert!(err.to_string().contains(field), "{err}");
        assert!(err.is_bad_input(), "{err}");
    }
    c.create_schedule(good.clone()).await.unwrap();
    let twice = c.create_schedule(good).await.unwrap_err();
    assert!(twice.to_string().contains("exists"), "{twice}");
}
