//! A submitted job is untrusted input: with real `shardline serve` and
//! `shardline worker` processes, a job cannot make a worker send the
//! coordinator's token, or any variable its operator did not allow, to the
//! job's own endpoint (an attacker's listener here).

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobs::protocol::JobState;
use support::cluster::{free_port, Proc};
use support::*;
use uuid::Uuid;

const ADMIN: &str = "security-admin-token";
const WORKER: &str = "security-worker-token";
const OTHER_SECRET: &str = "aws-secret-value-that-must-stay-home";

/// An endpoint that records every byte sent to it and never answers.
fn recording_listener() -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                record.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        }
    });
    (url, seen)
}

/// `shardline submit` of a job whose key is read from `var` (as TOML
/// spells it).
fn submit(dir: &Path, coordinator: &str, endpoint: &str, var: &str) -> Uuid {
    let (data, _) = write_dataset(dir, 3);
    let job = write_job(dir, &data, endpoint, "");
    edit_file(
        &job,
        "api_key_env = \"SHARDLINE_KEY_E2E\"",
        &format!("api_key_env = \"{var}\""),
    );
    edit_file(&job, "shard_size = 10", "shard_size = 10\nmax_attempts = 1");
    let out = command(&[
        "submit",
        job.to_str().unwrap(),
        "--coordinator",
        coordinator,
    ])
    .env("SHARDLINE_ADMIN_TOKEN", ADMIN)
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    Uuid::parse_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
}

#[tokio::test]
async fn a_job_cannot_make_a_worker_send_its_token_or_an_unlisted_variable() {
    let dir = tempfile::tempdir().unwrap();
    let (endpoint, seen) = recording_listener();
    let port = free_port();
    let coordinator = format!("http://127.0.0.1:{port}");
    let home = dir.path().join("home");
    let mut serve = command(&[
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--home",
        home.to_str().unwrap(),
        "--dataset-root",
        dir.path().to_str().unwrap(),
    ]);
    serve
        .env("SHARDLINE_ADMIN_TOKEN", ADMIN)
        .env("SHARDLINE_WORKER_TOKEN", WORKER);
    let serve = Proc::spawn("serve", serve, dir.path());
    let client = client::CoordinatorClient::new(&coordinator, ADMIN.into()).unwrap();
    let start = Instant::now();
    while client.healthz().await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "{}", serve.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cache = home.join("cache");
    let mut worker = command(&[
        "worker",
        "--coordinator",
        &coordinator,
        "--cache",
        cache.to_str().unwrap(),
        "--poll-ms",
        "200",
    ]);
    worker
        .env("SHARDLINE_WORKER_TOKEN", WORKER)
        .env("AWS_SECRET_ACCESS_KEY", OTHER_SECRET);
    let worker = Proc::spawn("worker", worker, dir.path());

    let mut ids = Vec::new();
    for (n, (var, refusal)) in [
        ("SHARDLINE_WORKER_TOKEN", "holds a coordinator token"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "--allow-key-env AWS_SECRET_ACCESS_KEY",
        ),
        // A terminal escape in the spec comes back in the job's error.
        ("EVIL\\u001b[2J", "does not allow"),
    ]
    .into_iter()
    .enumerate()
    {
        let job_dir = dir.path().join(format!("job-{n}"));
        std::fs::create_dir_all(&job_dir).unwrap();
        let id = submit(&job_dir, &coordinator, &endpoint, var);
        let start = Instant::now();
        let status = loop {
            let status = client.job(id).await.unwrap();
            if status.state.is_terminal() {
                break status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "job of {var} did not end\n{}\n{}",
                serve.log(),
                worker.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(status.state, JobState::Failed, "{var}: {status:?}");
        let error = status.error.unwrap_or_default();
        assert!(error.contains(refusal), "{var}: {error}");
        ids.push(id);
    }

    // `shardline status` shows that error with the escape written out, not
    // acted on.
    let out = command(&["status", &ids[2].to_string(), "--coordinator", &coordinator])
        .env("SHARDLINE_ADMIN_TOKEN", ADMIN)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("EVIL\\u{1b}[2J"), "{}", describe(&out));
    assert!(
        !shown.contains('\u{1b}'),
        "a raw escape reached the terminal"
    );

    let seen = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(!seen.contains(WORKER), "the worker token was sent: {seen}");
    assert!(!seen.contains(OTHER_SECRET), "a variable was sent: {seen}");
    assert!(seen.is_empty(), "the endpoint was contacted: {seen}");
}
