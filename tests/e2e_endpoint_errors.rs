//! End to end: endpoints that cannot serve a job as it is configured — a
//! TLS certificate from a private CA, a server without `/v1/completions`, a
//! server that ignores `echo` or returns no `logprobs`, a model the server
//! does not have. `shardline run` stops at the first such error, without
//! paying for the other requests, exits 2, and says what to change, not
//! "run the same command again".

mod support;

use std::path::{Path, PathBuf};
use support::*;
use testkit::{FakeConfig, FakeOpenAi, TestPki};

/// Requests in flight at once in these jobs: a job that stops at its first
/// configuration error has sent at most this many.
const CONCURRENCY: u64 = 4;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a run that failed on its configuration: exit 2, no advice to
/// run it again as it is.
fn assert_configuration_failure(out: &std::process::Output) -> String {
    assert_eq!(out.status.code(), Some(2), "{}", describe(out));
    let err = stderr(out);
    assert!(
        !err.to_lowercase().contains("run the same command again"),
        "{err}"
    );
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_fails_at_once_and_is_trusted_through_ca_cert_or_ssl_cert_file() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, rows) = write_dataset(dir.path(), 24);
    let pki = TestPki::generate().unwrap();
    let fake = FakeOpenAi::start_tls(
        FakeConfig {
            api_key: Some("test-key".into()),
            ..FakeConfig::default()
        },
        &pki,
    )
    .await
    .unwrap();
    assert!(fake.base_url().starts_with("https://"));
    let job = write_job(dir.path(), &dataset, &fake.base_url(), "");

    // Verified against the built-in roots only: refused, and no retry can
    // change that.
    let out = run_job(&job, &dir.path().join("home-untrusted"), &[]);
    let err = assert_configuration_failure(&out);
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(err.contains("ca_cert"), "{err}");
    assert!(err.contains("ssl_verify = false"), "{err}");
    assert!(!err.contains("unreachable"), "{err}");
    let connections = fake.stats().connections;
    assert!(
        (1..=CONCURRENCY).contains(&connections),
        "{connections} connections for a certificate no retry can change"
    );
    assert_eq!(fake.stats().total, 0);

    // A missing CA file is the job file's error: nothing is sent.
    edit_file(
        &job,
        "timeout_secs = 10",
        "timeout_secs = 10\nca_cert = \"ca.pem\"",
    );
    let out = run_job(&job, &dir.path().join("home-no-ca-file"), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.contains("model.ca_cert"), "{err}");
    assert!(
        err.contains(&dir.path().join("ca.pem").display().to_string()),
        "{err}"
    );
    assert_eq!(fake.stats().connections, connections);

    // `ca_cert`, relative to the job file, adds the private CA.
    pki.write_ca(&dir.path().join("ca.pem")).unwrap();
    let out = run_job(&job, &dir.path().join("home-ca-cert"), &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(fake.stats().ok as usize, rows.len());

    // So does the platform's SSL_CERT_FILE, for a job that names none.
    edit_file(&job, "ca_cert = \"ca.pem\"", "");
    let home = dir.path().join("home-ssl-cert-file");
    let child = command(&[
        "run",
        job.to_str().unwrap(),
        "--home",
        home.to_str().unwrap(),
        "--no-progress",
    ])
    .env("SSL_CERT_FILE", dir.path().join("ca.pem"))
    .spawn()
    .unwrap();
    let out = wait_bounded(child, std::time::Duration::from_secs(120));
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(fake.stats().ok as usize, 2 * rows.len());
    fake.shutdown().await;
}

/// A multiple-choice job of 6 questions × 4 choices (24 scoring requests)
/// against `base_url`.
fn write_mc_job(dir: &Path, base_url: &str) -> PathBuf {
    let mut data = String::new();
    for i in 0..6 {
        let row = serde_json::json!({
            "id": format!("mc{i}"),
            "question": format!("Which word is number {i}?"),
            "options": [format!("alpha{i}"), format!("bravo{i}"), format!("charlie{i}"), format!("delta{i}")],
            "answer": "A",
        });
        data.push_str(&row.to_string());
        data.push('\n');
    }
    std::fs::write(dir.join("mc.jsonl"), data).unwrap();
    let job = dir.join("mc.toml");
    std::fs::write(
        &job,
        format!(
            r#"name = "mc"
[model]
backend = "openai"
model = "fake-model"
base_url = "{base_url}"
endpoint = "completions"
concurrency = {CONCURRENCY}
max_retries = 3

[dataset]
path = "mc.jsonl"
id_field = "id"

[task]
kind = "multiple_choice"
prompt = "Question: {{{{ question }}}}\nAnswer:"
choices = "options"
target = "{{{{ answer }}}}"

[[metrics]]
type = "acc"
"#
        ),
    )
    .unwrap();
    job
}

/// Runs the multiple-choice job against a fake server configured by
/// `configure`; returns the run's stderr, after the assertions every such
/// run passes.
async fn run_mc_against(configure: impl FnOnce(&mut FakeConfig)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut config = FakeConfig::default();
    configure(&mut config);
    let fake = FakeOpenAi::start(config).await.unwrap();
    let job = write_mc_job(dir.path(), &fake.base_url());
    let out = run_job(&job, &dir.path().join("home"), &[]);
    let err = assert_configuration_failure(&out);
    // What scoring needs, and who provides it.
    for needed in [
        "/v1/completions",
        "echo",
        "logprobs",
        "vLLM",
        "SGLang",
        "llama.cpp",
    ] {
        assert!(err.contains(needed), "{needed:?} missing from: {err}");
    }
    let received = fake.stats().total;
    assert!(
        (1..=CONCURRENCY).contains(&received),
        "{received} requests reached a server that cannot score any of them"
    );
    fake.shutdown().await;
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_the_completions_route_is_not_called_a_missing_model() {
    let err = run_mc_against(|c| c.serve_completions = false).await;
    assert!(err.contains("no route"), "{err}");
    assert!(!err.contains("does not serve model"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_echo_stops_the_job_at_once() {
    let err = run_mc_against(|c| c.ignore_echo = true).await;
    assert!(err.contains("ignored `echo`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_logprobs_stops_the_job_at_once() {
    let err = run_mc_against(|c| c.drop_logprobs = true).await;
    assert!(err.contains("no `logprobs`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_the_server_does_not_have_stops_the_job_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, _) = write_dataset(dir.path(), 24);
    let fake = FakeOpenAi::start(FakeConfig {
        api_key: Some("test-key".into()),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let job = write_job(dir.path(), &dataset, &fake.base_url(), "");
    // The fake answers 404 `model_not_found` for this name, as OpenAI does
    // for any model it does not have.
    edit_file(&job, "model = \"fake-model\"", "model = \"missing-model\"");
    let out = run_job(&job, &dir.path().join("home"), &[]);
    let err = assert_configuration_failure(&out);
    assert!(
        err.contains("does not serve model \"missing-model\""),
        "{err}"
    );
    assert!(err.contains("/models"), "{err}");
    let received = fake.stats().total;
    assert!(
        (1..=CONCURRENCY).contains(&received),
        "{received} requests for a model the server said it does not have"
    );
    fake.shutdown().await;
}
