//! The exit-code contract of the cluster commands (`submit`, `status`,
//! `results`, `rescore`, `cancel`) against a real `shardline serve` and
//! `shardline worker`: 0 done, 1 a runtime failure, 2 bad input or
//! configuration, 3 finished with failed or missing requests. (`run`'s
//! codes are tested beside what causes them: e2e_run.rs, e2e_inputs.rs and
//! e2e_batch.rs; 130 is `ctrl_c_stops_cleanly_and_keeps_what_was_paid_for`.)

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::cluster::free_port;
use support::local::LocalCluster;
use support::*;
use testkit::{FakeConfig, FakeOpenAi};

const ADMIN: &str = "exit-codes-admin-token";
const WORKER: &str = "exit-codes-worker-token";

/// A job named `name` over `rows` questions, in its own folder.
fn job(dir: &Path, name: &str, rows: usize, base_url: &str) -> PathBuf {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).unwrap();
    let (dataset, _) = write_dataset(&sub, rows);
    let job = write_job(&sub, &dataset, base_url, "");
    edit_file(&job, "name = \"e2e\"", &format!("name = \"{name}\""));
    edit_file(&job, "shard_size = 10", "shard_size = 10\nmax_attempts = 1");
    job
}

/// The job id `submit` printed.
fn submitted_id(out: &Output) -> String {
    let id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{}", describe(out));
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_commands_follow_the_exit_code_contract() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeOpenAi::start(FakeConfig {
        // Rejected with 400: recorded as a failed request.
        fail_prompts_containing: vec!["(item 3)".into()],
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let c = LocalCluster::start(dir.path(), ADMIN, WORKER, &[]).await;
    let expect = |out: &Output, code: i32| {
        assert_eq!(
            out.status.code(),
            Some(code),
            "{}\n{}",
            describe(out),
            c.logs()
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{}", describe(out));
    };

    // 0: every request answered.
    let ok = job(dir.path(), "all-answered", 3, &fake.base_url());
    let out = c.admin(&["submit", ok.to_str().unwrap(), "--watch"]);
    expect(&out, 0);
    let id = submitted_id(&out);
    expect(&c.admin(&["status", &id]), 0);
    expect(&c.admin(&["results", &id]), 0);
    expect(&c.admin(&["rescore", &id]), 0);
    expect(&c.admin(&["cancel", &id]), 0);

    // 3: the job finished, one request failed; every command that reports
    // on it says so.
    let some = job(dir.path(), "one-failed", 5, &fake.base_url());
    let out = c.admin(&["submit", some.to_str().unwrap(), "--watch"]);
    expect(&out, 3);
    let id = submitted_id(&out);
    expect(&c.admin(&["status", &id]), 0);
    expect(
        &c.admin(&["status", &id, "--watch", "--interval", "0.2"]),
        3,
    );
    let out = c.admin(&["results", &id]);
    expect(&out, 3);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 requests of job"),
        "{}",
        describe(&out)
    );
    expect(&c.admin(&["rescore", &id]), 3);

    // 2: the job's own input, refused at once or failed while planning.
    let bad_spec = job(dir.path(), "bad-spec", 2, &fake.base_url());
    edit_file(&bad_spec, "temperature = 0.0", "temprature = 0.0");
    let out = c.admin(&["submit", bad_spec.to_str().unwrap()]);
    expect(&out, 2);
    let bad_row = job(dir.path(), "bad-row", 2, &fake.base_url());
    std::fs::write(
        dir.path().join("bad-row/data.jsonl"),
        "{\"id\": \"a\", \"question\": \"q\", \"answer\": \"a\", \"subset\": \"s\"}\n{not json\n",
    )
    .unwrap();
    let out = c.admin(&["submit", bad_row.to_str().unwrap(), "--watch"]);
    expect(&out, 2);
    let id = submitted_id(&out);
    expect(&c.admin(&["status", &id, "--watch"]), 2);
    let unknown = uuid::Uuid::now_v7().to_string();
    for args in [
        vec!["status", unknown.as_str()],
        vec!["status", "not-a-job-id"],
        vec!["results", unknown.as_str()],
        vec!["rescore", unknown.as_str()],
        vec!["cancel", unknown.as_str()],
    ] {
        expect(&c.admin(&args), 2);
    }

    // 1: at run time, no fault of the job's files: a worker that may not
    // read the key the job names fails its shard, naming itself.
    let refused = job(dir.path(), "key-refused", 2, &fake.base_url());
    edit_file(
        &refused,
        "api_key_env = \"SHARDLINE_KEY_E2E\"",
        "api_key_env = \"NOT_AN_ALLOWED_KEY\"",
    );
    // Another model: the same questions are not in the cache for it.
    edit_file(
        &refused,
        "model = \"fake-model\"",
        "model = \"other-model\"",
    );
    let out = c.admin(&["submit", refused.to_str().unwrap(), "--watch"]);
    expect(&out, 1);
    let id = submitted_id(&out);
    let status = c.client.job(id.parse().unwrap()).await.unwrap();
    let error = status.error.unwrap_or_default();
    assert!(
        error.contains("worker ") && error.contains("cannot build the backend"),
        "{error}"
    );
    expect(&c.admin(&["status", &id, "--watch"]), 1);
    // And a coordinator nobody answers at.
    let out = wait_bounded(
        command(&[
            "status",
            "--coordinator",
            &format!("http://127.0.0.1:{}", free_port()),
        ])
        .env("SHARDLINE_ADMIN_TOKEN", ADMIN)
        .spawn()
        .unwrap(),
        std::time::Duration::from_secs(90),
    );
    expect(&out, 1);
    fake.shutdown().await;
}
