//! End-to-end test of `shardline schedule …` against a real `serve` on
//! Postgres and S3 with a worker and the fake OpenAI server: a schedule is
//! created, listed, fired now (its job runs to completion), paused,
//! resumed and deleted; bad expressions, a taken name and an unknown
//! schedule exit 2 naming what is wrong.

mod support;

use std::process::Output;
use std::time::Duration;

use jobs::protocol::JobState;
use support::cluster::*;
use support::cluster_jobs::*;
use support::*;

fn schedule(c: &Cluster, args: &[&str]) -> Output {
    let mut all = vec!["schedule"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--coordinator", &c.coordinator_url]);
    c.shardline(&all).output().expect("run shardline schedule")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_is_created_fired_paused_and_deleted() {
    let mut c = Cluster::start(&[], &[]).await;
    c.start_coordinator().await;
    let url = c.coordinator_url.clone();
    c.start_worker("w1", &url, &[]);
    let job = cluster_job(c.dir.path(), "nightly-qa", 20, 10, &c.fake.base_url);
    let job_s = job.to_str().unwrap();

    for (cron, zone, names) in [
        ("0 3 * *", "UTC", "`cron`"),
        ("0 3 * * 9", "UTC", "`cron`"),
        ("0 3 * * *", "Mars/Base", "`timezone`"),
    ] {
        let out = schedule(
            &c,
            &[
                "create",
                "nightly",
                "--cron",
                cron,
                "--timezone",
                zone,
                job_s,
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert!(text(&out).contains(names), "{}", describe(&out));
    }
    let out = schedule(
        &c,
        &[
            "create",
            "nightly",
            "--cron",
            "0 3 * * 1-5",
            "--timezone",
            "Europe/Berlin",
            job_s,
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        text(&out).contains("it submits nightly-qa next at"),
        "{}",
        describe(&out)
    );
    let again = schedule(&c, &["create", "nightly", "--cron", "@daily", job_s]);
    assert_eq!(again.status.code(), Some(2), "{}", describe(&again));
    assert!(text(&again).contains("exists"), "{}", describe(&again));

    let out = schedule(&c, &["list"]);
    assert!(out.status.success(), "{}", describe(&out));
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listed.contains("nightly") && listed.contains("active") && listed.contains("0 3 * * 1-5"),
        "{listed}"
    );

    // Fired now: the leader submits the job, the worker runs it.
    let out = schedule(&c, &["run-now", "nightly"]);
    assert!(out.status.success(), "{}", describe(&out));
    let client = c.client();
    let run = wait_for(
        &c,
        "the schedule to fire",
        Duration::from_secs(30),
        async || {
            client
                .schedule("nightly")
                .await
                .ok()
                .and_then(|s| s.runs.first().cloned())
        },
    )
    .await;
    wait_for(
        &c,
        "the fired job to complete",
        Duration::from_secs(60),
        async || {
            client
                .job(run.job_id)
                .await
                .ok()
                .filter(|j| j.state == JobState::Completed)
        },
    )
    .await;
    let out = schedule(&c, &["show", "nightly"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&run.job_id.to_string()),
        "{}",
        describe(&out)
    );

    // Paused: listed so, and not fired on demand.
    assert!(schedule(&c, &["pause", "nightly"]).status.success());
    assert!(String::from_utf8_lossy(&schedule(&c, &["list"]).stdout).contains("paused"));
    let out = schedule(&c, &["run-now", "nightly"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(text(&out).contains("resume it first"), "{}", describe(&out));
    let out = schedule(&c, &["resume", "nightly"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(text(&out).contains("fires next at"), "{}", describe(&out));

    // A name is checked before it goes into a path.
    let out = schedule(&c, &["pause", "../jobs"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(text(&out).contains("`name`"), "{}", describe(&out));

    // Deleted: gone, and its job stays.
    assert!(schedule(&c, &["delete", "nightly"]).status.success());
    let out = schedule(&c, &["show", "nightly"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        text(&out).contains("no schedule named"),
        "{}",
        describe(&out)
    );
    assert!(client.job(run.job_id).await.is_ok());
}
