//! Conformance of [`ScheduleStore`](crate::store::ScheduleStore): schedules
//! by name, and fires that create their job at most once per due time.

use jobs::protocol::JobState;
use jobs::spec::BackendKind;
use uuid::Uuid;

use super::{at, t0};
use crate::store::{FireOutcome, NewJob, NewScheduleRecord, ScheduleFire, Store, StoreError};

fn schedule(name: &str, next_secs: i64) -> NewScheduleRecord {
    NewScheduleRecord {
        id: Uuid::new_v4(),
        name: name.into(),
        cron: "0 3 * * *".into(),
        timezone: "UTC".into(),
        spec_json: "{}".into(),
        next_fire_at: at(next_secs),
        created_at: t0(),
    }
}

fn job(hash: &str, secs: i64) -> NewJob {
    NewJob {
        id: Uuid::new_v4(),
        name: "nightly".into(),
        spec_json: "{}".into(),
        spec_hash: hash.into(),
        backend: BackendKind::Openai,
        model: "m".into(),
        priority: 0,
        created_at: at(secs),
    }
}

pub async fn schedules_are_kept_by_name(store: &dyn Store) {
    let created = store
        .create_schedule(schedule("nightly", 10))
        .await
        .unwrap();
    assert_eq!(created.name, "nightly");
    assert!(!created.paused);
    assert_eq!(created.next_fire_at, at(10));
    assert_eq!(created.last_fired_at, None);
    let again = store
        .create_schedule(schedule("nightly", 10))
        .await
        .unwrap_err();
    assert!(matches!(again, StoreError::Conflict(_)), "{again:?}");
    store.create_schedule(schedule("hourly", 5)).await.unwrap();
    let names: Vec<String> = store
        .list_schedules()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["hourly", "nightly"]);

    let paused = store
        .set_schedule_paused("nightly", true, at(10), at(1))
        .await
        .unwrap();
    assert!(paused.paused);
    let due: Vec<String> = store
        .due_schedules(at(100))
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(due, ["hourly"], "a paused schedule is never due");
    store
        .set_schedule_paused("nightly", false, at(50), at(2))
        .await
        .unwrap();
    let moved = store.set_next_fire("nightly", at(3), at(3)).await.unwrap();
    assert_eq!(moved.next_fire_at, at(3));
    assert_eq!(moved.updated_at, at(3));

    store.delete_schedule("nightly").await.unwrap();
    for missing in [
        store.get_schedule("nightly").await.unwrap_err(),
        store.delete_schedule("nightly").await.unwrap_err(),
        store
            .set_next_fire("nightly", at(1), at(1))
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(&missing, StoreError::ScheduleNotFound(n) if n == "nightly"),
            "{missing:?}"
        );
    }
}

pub async fn a_due_schedule_fires_once(store: &dyn Store) {
    let s = store
        .create_schedule(schedule("nightly", 10))
        .await
        .unwrap();
    assert!(store.due_schedules(at(9)).await.unwrap().is_empty());
    assert_eq!(store.due_schedules(at(10)).await.unwrap().len(), 1);

    let first = job("spec-a", 11);
    let fire = ScheduleFire {
        schedule_id: s.id,
        due_at: at(10),
        next_fire_at: at(70),
        job: first.clone(),
    };
    assert_eq!(
        store.fire_schedule(&fire, at(11)).await.unwrap(),
        FireOutcome::Fired(first.id)
    );
    // A second replica that saw the same due time makes nothing.
    let twin = ScheduleFire {
        job: job("spec-a", 11),
        ..fire.clone()
    };
    assert_eq!(
        store.fire_schedule(&twin, at(11)).await.unwrap(),
        FireOutcome::Lost
    );
    assert_eq!(
        store.get_job(first.id).await.unwrap().state,
        JobState::Planning
    );
    assert!(store.due_schedules(at(69)).await.unwrap().is_empty());
    let fired = store.get_schedule("nightly").await.unwrap();
    assert_eq!(fired.next_fire_at, at(70));
    assert_eq!(fired.last_fired_at, Some(at(11)));

    // The same spec's job still runs at the next fire: no second job.
    let next = ScheduleFire {
        schedule_id: s.id,
        due_at: at(70),
        next_fire_at: at(130),
        job: job("spec-a", 71),
    };
    assert_eq!(
        store.fire_schedule(&next, at(71)).await.unwrap(),
        FireOutcome::StillRunning(first.id)
    );
    assert_eq!(
        store.get_schedule("nightly").await.unwrap().next_fire_at,
        at(130)
    );
    // A new spec (a new checkpoint's fingerprint, say) makes its own job.
    let third = job("spec-b", 131);
    let fire = ScheduleFire {
        schedule_id: s.id,
        due_at: at(130),
        next_fire_at: at(190),
        job: third.clone(),
    };
    assert_eq!(
        store.fire_schedule(&fire, at(131)).await.unwrap(),
        FireOutcome::Fired(third.id)
    );
    let runs: Vec<Uuid> = store
        .schedule_runs(s.id, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.job_id)
        .collect();
    assert_eq!(runs, [third.id, first.id], "newest first");
    assert_eq!(store.schedule_runs(s.id, 1).await.unwrap().len(), 1);

    // A paused schedule does not fire, even when asked to.
    store
        .set_schedule_paused("nightly", true, at(190), at(150))
        .await
        .unwrap();
    let paused = ScheduleFire {
        schedule_id: s.id,
        due_at: at(190),
        next_fire_at: at(250),
        job: job("spec-c", 191),
    };
    assert_eq!(
        store.fire_schedule(&paused, at(191)).await.unwrap(),
        FireOutcome::Lost
    );
    // Deleting the schedule keeps the jobs it fired.
    store.delete_schedule("nightly").await.unwrap();
    assert!(store.get_job(third.id).await.is_ok());
}
