//! Tests of the fake Batch API over real HTTP, as a Batch API client uses it: upload, create,
//! poll through the documented statuses, download the output and error files, list with
//! pagination, cancel, and each injected scenario.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::{FakeBatchApi, FakeBatchConfig, FakeConfig, LineError};

const KEY: &str = "batch-key";

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn jsonl(prompts: &[&str]) -> String {
    prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({"custom_id": format!("req-{i}"), "method": "POST", "url": "/v1/chat/completions",
                   "body": {"model": "fake-model", "messages": [{"role": "user", "content": p}],
                            "max_tokens": 8}})
            .to_string()
                + "\n"
        })
        .collect()
}

async fn upload(api: &FakeBatchApi, content: &str) -> (u16, Value) {
    let boundary = "XyZboundary42";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\
         Content-Type: application/jsonl\r\n\r\n{content}\r\n--{boundary}--\r\n"
    );
    let r = client()
        .post(format!("{}/files", api.base_url()))
        .bearer_auth(KEY)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn call(api: &FakeBatchApi, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("{}{path}", api.base_url());
    let mut req = match method {
        "POST" => client().post(url),
        _ => client().get(url),
    }
    .bearer_auth(KEY);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn create(api: &FakeBatchApi, file_id: &str, tag: &str) -> Value {
    let (status, batch) = call(
        api,
        "POST",
        "/batches",
        Some(
            json!({"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                    "completion_window": "24h", "metadata": {"tag": tag}}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["status"], "validating");
    batch
}

/// Polls until the batch reaches a terminal status; returns it and the statuses seen.
async fn wait_terminal(api: &FakeBatchApi, id: &str) -> (Value, Vec<String>) {
    let start = Instant::now();
    let mut seen: Vec<String> = Vec::new();
    loop {
        let (status, batch) = call(api, "GET", &format!("/batches/{id}"), None).await;
        assert_eq!(status, 200, "{batch}");
        let s = batch["status"].as_str().unwrap().to_string();
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if matches!(s.as_str(), "completed" | "failed" | "expired" | "cancelled") {
            return (batch, seen);
        }
        assert!(start.elapsed() < Duration::from_secs(10), "stuck in {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn lines(api: &FakeBatchApi, file_id: &Value) -> Vec<Value> {
    let Some(id) = file_id.as_str() else {
        return Vec::new();
    };
    let r = client()
        .get(format!("{}/files/{id}/content", api.base_url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn start(batch: FakeBatchConfig) -> FakeBatchApi {
    FakeBatchApi::start(
        FakeConfig {
            api_key: Some(KEY.into()),
            ..FakeConfig::default()
        },
        batch,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_batch_goes_through_every_status_and_shuffles_its_output() {
    let api = start(FakeBatchConfig::default()).await;
    let prompts: Vec<String> = (0..40).map(|i| format!("question {i}")).collect();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let (status, file) = upload(&api, &jsonl(&refs)).await;
    assert_eq!(status, 200, "{file}");
    assert_eq!(file["purpose"], "batch");
    let (status, again) = call(
        &api,
        "GET",
        &format!("/files/{}", file["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!((status, &again["id"]), (200, &file["id"]));

    let batch = create(&api, file["id"].as_str().unwrap(), "one").await;
    let (done, seen) = wait_terminal(&api, batch["id"].as_str().unwrap()).await;
    assert_eq!(
        seen,
        ["validating", "in_progress", "finalizing", "completed"],
        "{done}"
    );
    assert_eq!(
        done["request_counts"],
        json!({"total": 40, "completed": 40, "failed": 0})
    );
    assert_eq!(done["metadata"]["tag"], "one");
    assert!(done["error_file_id"].is_null());
    let out = lines(&api, &done["output_file_id"]).await;
    assert_eq!(out.len(), 40);
    let ids: Vec<&str> = out
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    let in_order: Vec<String> = (0..40).map(|i| format!("req-{i}")).collect();
    assert_ne!(ids, in_order, "the output must not follow the input order");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 40);
    let first = &out[0];
    assert_eq!(first["response"]["status_code"], 200);
    let body = &first["response"]["body"];
    assert!(body["choices"][0]["message"]["content"].is_string());
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    let stats = api.batch_stats();
    assert_eq!((stats.uploads, stats.creates, stats.downloads), (1, 1, 1));
    assert_eq!(stats.max_batches_per_request_set(), 1);
    assert_eq!(stats.lines_ok, 40);
    assert!(stats.batches[0].polls >= 4);
}

#[tokio::test]
async fn validation_errors_fail_the_batch_with_errors() {
    let api = start(FakeBatchConfig {
        fail_validation_containing: vec!["poison".into()],
        ..FakeBatchConfig::default()
    })
    .await;
    let (_, file) = upload(&api, &jsonl(&["fine", "poison pill"])).await;
    let batch = create(&api, file["id"].as_str().unwrap(), "bad").await;
    let (done, seen) = wait_terminal(&api, batch["id"].as_str().unwrap()).await;
    assert_eq!(seen, ["validating", "failed"]);
    let errors = &done["errors"]["data"];
    assert_eq!(errors[0]["line"], 2, "{done}");
    assert!(done["output_file_id"].is_null());

    // Malformed files fail validation too, naming the line.
    let bad = format!(
        "{}{}\n",
        jsonl(&["a"]),
        json!({"custom_id": "req-0", "method": "POST", "url": "/v1/chat/completions",
               "body": {"model": "fake-model", "messages": []}})
    );
    let (_, file) = upload(&api, &bad).await;
    let batch = create(&api, file["id"].as_str().unwrap(), "dup").await;
    let (done, _) = wait_terminal(&api, batch["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["errors"]["data"][0]["code"], "duplicate_custom_id");

    // Synchronous create errors: unknown file, wrong window.
    let (status, body) = call(
        &api,
        "POST",
        "/batches",
        Some(
            json!({"input_file_id": "file-nope", "endpoint": "/v1/chat/completions",
                    "completion_window": "24h"}),
        ),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = call(
        &api,
        "POST",
        "/batches",
        Some(
            json!({"input_file_id": file["id"], "endpoint": "/v1/chat/completions",
                    "completion_window": "1h"}),
        ),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn per_line_errors_and_dropped_lines() {
    let api = start(FakeBatchConfig {
        line_errors: vec![LineError {
            needle: "flaky".into(),
            status: 500,
            times: 1,
        }],
        drop_lines: vec![("vanish".into(), 1)],
        ..FakeBatchConfig::default()
    })
    .await;
    let (_, file) = upload(&api, &jsonl(&["ok one", "flaky two", "vanish three"])).await;
    let batch = create(&api, file["id"].as_str().unwrap(), "lines").await;
    let (done, _) = wait_terminal(&api, batch["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(
        done["request_counts"],
        json!({"total": 3, "completed": 1, "failed": 1})
    );
    let out = lines(&api, &done["output_file_id"]).await;
    let err = lines(&api, &done["error_file_id"]).await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["custom_id"], "req-0");
    assert_eq!(err.len(), 1);
    assert_eq!(err[0]["custom_id"], "req-1");
    assert_eq!(err[0]["response"]["status_code"], 500);

    // The second time round both succeed.
    let (_, file) = upload(&api, &jsonl(&["ok one", "flaky two", "vanish three"])).await;
    let batch = create(&api, file["id"].as_str().unwrap(), "again").await;
    let (done, _) = wait_terminal(&api, batch["id"].as_str().unwrap()).await;
    assert_eq!(done["request_counts"]["completed"], 3);
    // Same requests, same set: the stats count two batches for it.
    assert_eq!(api.batch_stats().max_batches_per_request_set(), 2);
}

#[tokio::test]
async fn expired_and_cancelled_batches_keep_their_finished_lines() {
    let api = start(FakeBatchConfig {
        in_progress: Duration::from_millis(600),
        expire_first_batches: 1,
        expire_after: Duration::from_millis(300),
        cancelling: Duration::from_millis(100),
        ..FakeBatchConfig::default()
    })
    .await;
    let prompts: Vec<String> = (0..20).map(|i| format!("q{i}")).collect();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let (_, file) = upload(&api, &jsonl(&refs)).await;
    let batch = create(&api, file["id"].as_str().unwrap(), "exp").await;
    let (done, seen) = wait_terminal(&api, batch["id"].as_str().unwrap()).await;
    assert_eq!(seen.last().unwrap(), "expired");
    let out = lines(&api, &done["output_file_id"]).await;
    let err = lines(&api, &done["error_file_id"]).await;
    assert_eq!(out.len(), 10, "half of the lines finish before the expiry");
    assert_eq!(err.len(), 10);
    assert!(err.iter().all(|l| l["error"]["code"] == "batch_expired"));

    // A second batch does not expire; cancel it midway.
    let (_, file) = upload(&api, &jsonl(&refs)).await;
    let batch = create(&api, file["id"].as_str().unwrap(), "cancel").await;
    let id = batch["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, cancelling) = call(&api, "POST", &format!("/batches/{id}/cancel"), None).await;
    assert_eq!(status, 200, "{cancelling}");
    assert_eq!(cancelling["status"], "cancelling");
    let (done, _) = wait_terminal(&api, &id).await;
    assert_eq!(done["status"], "cancelled");
    let out = lines(&api, &done["output_file_id"]).await;
    let err = lines(&api, &done["error_file_id"]).await;
    assert_eq!(out.len() + err.len(), 20);
    assert!(!out.is_empty() && !err.is_empty(), "{} done", out.len());
    assert!(err.iter().all(|l| l["error"]["code"] == "batch_cancelled"));
    let (status, _) = call(&api, "POST", &format!("/batches/{id}/cancel"), None).await;
    assert_eq!(status, 400, "a cancelled batch cannot be cancelled again");
}

#[tokio::test]
async fn list_is_newest_first_with_cursor_pagination() {
    let api = start(FakeBatchConfig::default()).await;
    let (_, file) = upload(&api, &jsonl(&["a"])).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(create(&api, file["id"].as_str().unwrap(), &format!("b{i}")).await["id"].clone());
    }
    let (_, page) = call(&api, "GET", "/batches?limit=2", None).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["data"][0]["id"], ids[4]);
    assert_eq!(page["has_more"], true);
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/batches?limit=2&after={a}"),
            None => "/batches?limit=2".to_string(),
        };
        let (_, page) = call(&api, "GET", &path, None).await;
        for b in page["data"].as_array().unwrap() {
            seen.push(b["id"].clone());
        }
        if page["has_more"] != true {
            break;
        }
        after = page["last_id"].as_str().map(str::to_string);
    }
    ids.reverse();
    assert_eq!(seen, ids);
    assert_eq!(api.batch_stats().lists, 4);
}

#[tokio::test]
async fn the_enqueued_token_limit_fails_batches_beyond_it() {
    let api = start(FakeBatchConfig {
        validating: Duration::ZERO,
        in_progress: Duration::from_secs(5),
        enqueued_token_limit: Some(10),
        ..FakeBatchConfig::default()
    })
    .await;
    // Four tokens per line in the fake's tokenizer.
    let (_, file) = upload(
        &api,
        &jsonl(&["one two three four", "five six seven eight"]),
    )
    .await;
    let first = create(&api, file["id"].as_str().unwrap(), "first").await;
    let (_, b) = call(
        &api,
        "GET",
        &format!("/batches/{}", first["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(b["status"], "in_progress");
    let second = create(&api, file["id"].as_str().unwrap(), "second").await;
    let (done, _) = wait_terminal(&api, second["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["errors"]["data"][0]["code"], "token_limit_exceeded");
}

#[tokio::test]
async fn auth_and_sync_fallthrough() {
    let api = start(FakeBatchConfig::default()).await;
    let r = client()
        .get(format!("{}/batches", api.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // The synchronous endpoints answer on the same base URL.
    let (status, body) = call(
        &api,
        "POST",
        "/chat/completions",
        Some(json!({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(api.sync_stats().chat, 1);
}
