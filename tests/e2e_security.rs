//! A submitted job is untrusted input: with real `shardline serve` and
//! `shardline worker` processes, a job cannot make a worker send the
//! coordinator's token, or any variable its operator did not allow, to the
//! job's own endpoint (an attacker's listener here); a key an endpoint
//! echoes back is stored, logged and printed nowhere; and a dataset outside
//! the coordinator's roots is refused with 403 and exit code 2.

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobs::protocol::JobState;
use support::local::LocalCluster;
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

/// A real `shardline serve` (dataset root: `dir`) and one `shardline
/// worker` with `worker_env` set, both up.
async fn start(dir: &Path, worker_env: &[(&str, &str)]) -> LocalCluster {
    LocalCluster::start(dir, ADMIN, WORKER, worker_env).await
}

#[tokio::test]
async fn a_job_cannot_make_a_worker_send_its_token_or_an_unlisted_variable() {
    let dir = tempfile::tempdir().unwrap();
    let (endpoint, seen) = recording_listener();
    let cluster = start(dir.path(), &[("AWS_SECRET_ACCESS_KEY", OTHER_SECRET)]).await;
    let coordinator = cluster.url.clone();
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
        let status = cluster.wait(id).await;
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

/// An endpoint that answers every request with 401 and, in its body, the
/// key headers it was sent, as a hostile or badly written one might.
fn echoing_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let echoed: Vec<&str> = head
                .lines()
                .filter(|l| {
                    let l = l.to_ascii_lowercase();
                    l.starts_with("authorization:") || l.starts_with("x-api-key:")
                })
                .collect();
            let body = serde_json::json!({
                "error": {
                    "message": format!("Incorrect API key provided: {}", echoed.join("; ")),
                    "type": "invalid_request_error",
                }
            })
            .to_string();
            let answer = format!(
                "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = std::io::Write::write_all(&mut stream, answer.as_bytes());
        }
    });
    url
}

/// Every file under `dir`, as text, with its name.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if String::from_utf8_lossy(&bytes).contains(needle) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

#[tokio::test]
async fn a_key_echoed_by_an_endpoint_is_never_stored_logged_or_printed() {
    const KEY: &str = "sk-e2e-echoed-secret-0123456789abcdef";
    let dir = tempfile::tempdir().unwrap();
    let endpoint = echoing_endpoint();
    let cluster = start(dir.path(), &[("SHARDLINE_KEY_E2E", KEY)]).await;

    let (data, _) = write_dataset(dir.path(), 3);
    let job = write_job(dir.path(), &data, &endpoint, "");
    edit_file(&job, "shard_size = 10", "shard_size = 10\nmax_attempts = 2");
    // `submit --watch` prints the job's progress and its error.
    let out = wait_bounded(
        command(&[
            "submit",
            job.to_str().unwrap(),
            "--watch",
            "--coordinator",
            &cluster.url,
        ])
        .env("SHARDLINE_ADMIN_TOKEN", ADMIN)
        .spawn()
        .unwrap(),
        Duration::from_secs(90),
    );
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let id = cluster.client.list_jobs().await.unwrap()[0].id;
    let status = cluster.wait(id).await;
    // Every request failed on the 401; the job ends with them counted.
    assert_eq!(status.counts.failed, 3, "{status:?}");
    let error = status.error.unwrap_or_default();
    assert!(!error.contains(KEY), "{error}");
    assert!(
        !printed.contains(KEY),
        "submit --watch printed the key: {printed}"
    );
    let failures = reqwest::Client::new()
        .get(format!("{}/v1/jobs/{id}/failures", cluster.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The endpoint's answer is reported, its key scrubbed.
    assert!(failures.contains("401"), "{failures}");
    assert!(
        failures.contains("Incorrect API key provided: authorization: Bearer"),
        "the echo itself is kept, only the key goes: {failures}"
    );
    assert!(!failures.contains(KEY), "{failures}");

    // Nowhere on disk: not in the store (jobs.error, shards.last_error),
    // the cache, nor the coordinator's and the worker's logs.
    drop(cluster);
    let found = files_containing(dir.path(), KEY);
    assert!(found.is_empty(), "the key was written to {found:?}");
}

#[tokio::test]
async fn a_dataset_outside_the_roots_is_refused_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let cluster = start(&root, &[]).await;
    // The job file and its dataset lie outside the coordinator's root.
    let (data, _) = write_dataset(dir.path(), 3);
    let job = write_job(dir.path(), &data, "http://127.0.0.1:9/v1", "");
    let out = command(&[
        "submit",
        job.to_str().unwrap(),
        "--coordinator",
        &cluster.url,
    ])
    .env("SHARDLINE_ADMIN_TOKEN", ADMIN)
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("HTTP 403"), "{said}");
    assert!(said.contains("dataset.path"), "{said}");
    assert!(said.contains("--dataset-root"), "{said}");
    assert!(cluster.client.list_jobs().await.unwrap().is_empty());
}
