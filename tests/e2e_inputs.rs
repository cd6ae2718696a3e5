//! End to end: bad input fails clearly (never a panic), and different models
//! or temperatures never share cache entries.

mod support;

use support::*;
use testkit::{FakeConfig, FakeOpenAi};

fn assert_clean_failure(out: &std::process::Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", describe(out));
    assert!(!stderr.contains("panicked"), "{}", describe(out));
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "missing {needle:?} in\n{}",
            describe(out)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (dataset, _) = write_dataset(dir.path(), 5);

    // Unknown spec field: file, line and field path.
    let job = write_job(
        dir.path(),
        &dataset,
        "http://127.0.0.1:9/v1",
        "temprature = 0.5",
    );
    let out = run_job(&job, &home, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_clean_failure(&out, &["job.toml:", "temprature"]);

    // A template that refers to a field the rows do not have.
    let text =
        std::fs::read_to_string(write_job(dir.path(), &dataset, "http://127.0.0.1:9/v1", ""))
            .unwrap()
            .replace("{{ question }}", "{{ qestion }}");
    std::fs::write(&job, text).unwrap();
    let out = run_job(&job, &home, &[]);
    assert_clean_failure(&out, &["data.jsonl:1", "qestion", "task.messages"]);

    // A dataset that cannot be read.
    let missing = dir.path().join("nope.jsonl");
    let job = write_job(dir.path(), &missing, "http://127.0.0.1:9/v1", "");
    let out = run_job(&job, &home, &[]);
    assert_clean_failure(&out, &["nope.jsonl"]);

    // Malformed JSONL: file:line and the way out.
    std::fs::write(&dataset, "{\"id\": \"a\", \"question\": \"q\", \"answer\": \"a\", \"subset\": \"s\"}\n{\"id\": \"b\",\n").unwrap();
    let job = write_job(dir.path(), &dataset, "http://127.0.0.1:9/v1", "");
    let out = run_job(&job, &home, &[]);
    assert_clean_failure(&out, &["data.jsonl:2", "on_bad_row"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_down_fails_with_the_endpoint_named() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, _) = write_dataset(dir.path(), 6);
    // Nothing listens on this port: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let job = write_job(dir.path(), &dataset, &url, "");
    edit_file(&job, "max_retries = 3", "max_retries = 1");
    edit_file(&job, "shard_size = 10", "shard_size = 10\nmax_attempts = 1");
    let home = dir.path().join("home");
    let out = run_to_end(&[
        "run",
        job.to_str().unwrap(),
        "--home",
        home.to_str().unwrap(),
        "--no-progress",
    ]);
    assert_clean_failure(&out, &[&format!("127.0.0.1:{port}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_and_temperatures_never_share_cache_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, _) = write_dataset(dir.path(), 15);
    let fake = FakeOpenAi::start(FakeConfig::default()).await.unwrap();
    let job = write_job(dir.path(), &dataset, &fake.base_url(), "");
    let home = dir.path().join("home");
    let (job_s, home_s) = (job.to_str().unwrap(), home.to_str().unwrap());
    let run = |extra: &[&str]| {
        let mut args = vec!["run", job_s, "--home", home_s, "--no-progress"];
        args.extend_from_slice(extra);
        let out = run_to_end(&args);
        assert!(out.status.success(), "{}", describe(&out));
    };

    run(&[]);
    assert_eq!(fake.stats().ok, 15);
    run(&[]);
    assert_eq!(
        fake.stats().ok,
        15,
        "same model, same parameters: all cached"
    );
    run(&["--model", "fake-model-2"]);
    assert_eq!(fake.stats().ok, 30, "another model must not reuse outputs");
    let by_model = |m: &str| {
        fake.requests()
            .iter()
            .filter(|r| r.body["model"] == m)
            .count()
    };
    assert_eq!((by_model("fake-model"), by_model("fake-model-2")), (15, 15));

    edit_file(&job, "temperature = 0.0", "temperature = 0.7");
    run(&[]);
    assert_eq!(
        fake.stats().ok,
        45,
        "another temperature must not reuse outputs"
    );
    run(&[]);
    assert_eq!(fake.stats().ok, 45);
    fake.shutdown().await;
}
