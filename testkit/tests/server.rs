//! Tests of the fake OpenAI server over real HTTP, as a client would use it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use testkit::{FakeConfig, FakeOpenAi};

async fn post(
    server: &FakeOpenAi,
    path: &str,
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", server.base_url()))
        .json(&body)
        .send()
        .await
        .expect("request reaches the fake server");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.expect("answer is JSON");
    (status, headers, body)
}

fn chat_body(prompt: &str) -> Value {
    json!({"model": "fake-model", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": prompt},
    ]})
}

#[tokio::test]
async fn chat_answers_with_usage_and_configured_answers() {
    let mut config = FakeConfig::default();
    config.answers.insert("What is 2+2?".into(), "4".into());
    let server = FakeOpenAi::start(config).await.unwrap();

    let (status, headers, body) =
        post(&server, "/chat/completions", chat_body("What is 2+2?")).await;
    assert_eq!(status, 200, "{body}");
    assert!(headers.contains_key("x-request-id"));
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "fake-model");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["message"]["content"], "4");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    // "Be brief." = 2 tokens, "What is 2+2?" = 3 tokens, "4" = 1 token.
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6})
    );

    // Unknown fields (vLLM's top_k) are accepted and recorded.
    let mut with_extra = chat_body("other question");
    with_extra["top_k"] = json!(5);
    let (status, _, body) = post(&server, "/chat/completions", with_extra).await;
    assert_eq!(status, 200);
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.starts_with("answer-"), "{text}");
    let recorded = server.requests();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[1].prompt, "other question");
    assert_eq!(recorded[1].extra.get("top_k"), Some(&json!(5)));
    assert_eq!(server.count_for_prompt("2+2"), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn answers_depend_on_seed_only_when_sampling() {
    let server = FakeOpenAi::start(FakeConfig::default()).await.unwrap();
    let mut texts = Vec::new();
    for (temperature, seed) in [(0.0, 1), (0.0, 2), (0.8, 1), (0.8, 2), (0.8, 1)] {
        let mut body = chat_body("Tell me a story");
        body["temperature"] = json!(temperature);
        body["seed"] = json!(seed);
        let (status, _, answer) = post(&server, "/chat/completions", body).await;
        assert_eq!(status, 200);
        texts.push(
            answer["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(texts[0], texts[1], "greedy decoding ignores the seed");
    assert_ne!(texts[2], texts[3], "different seeds sample differently");
    assert_eq!(texts[2], texts[4], "same seed, same sample");
    server.shutdown().await;
}

#[tokio::test]
async fn stop_sequences_and_max_tokens_truncation() {
    let mut config = FakeConfig::default();
    config
        .answers
        .insert("count".into(), "one two three\nfour five".into());
    let server = FakeOpenAi::start(config).await.unwrap();

    let mut body = chat_body("count");
    body["stop"] = json!(["\n"]);
    let (_, _, answer) = post(&server, "/chat/completions", body).await;
    assert_eq!(answer["choices"][0]["message"]["content"], "one two three");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");

    let mut body = chat_body("count");
    body["max_tokens"] = json!(2);
    let (_, _, answer) = post(&server, "/chat/completions", body).await;
    assert_eq!(answer["choices"][0]["message"]["content"], "one two");
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    assert_eq!(answer["usage"]["completion_tokens"], 2);

    let (_, _, answer) = post(
        &server,
        "/completions",
        json!({"model": "m", "prompt": "count", "max_tokens": 3, "stop": "five"}),
    )
    .await;
    assert_eq!(answer["object"], "text_completion");
    assert_eq!(answer["choices"][0]["text"], "one two three");
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    assert_eq!(answer["choices"][0]["logprobs"], Value::Null);
    server.shutdown().await;
}

#[tokio::test]
async fn completions_echo_logprobs_have_openai_shape_and_favour_choices() {
    let config = FakeConfig {
        favoured_continuations: vec![" Paris".into()],
        ..FakeConfig::default()
    };
    let server = FakeOpenAi::start(config).await.unwrap();
    let context = "Q: What is the capital of France?\nA:";
    let mut scores = Vec::new();
    for choice in [" London", " Paris"] {
        let prompt = format!("{context}{choice}");
        let (status, _, body) = post(
            &server,
            "/completions",
            json!({"model": "m", "prompt": prompt, "echo": true, "max_tokens": 0, "logprobs": 1, "temperature": 0}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let choice_obj = &body["choices"][0];
        assert_eq!(
            choice_obj["text"], prompt,
            "max_tokens 0 + echo returns only the prompt"
        );
        let lp = &choice_obj["logprobs"];
        let tokens = lp["tokens"].as_array().unwrap();
        let token_logprobs = lp["token_logprobs"].as_array().unwrap();
        let top = lp["top_logprobs"].as_array().unwrap();
        let offsets: Vec<u64> = lp["text_offset"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(tokens.len(), token_logprobs.len());
        assert_eq!(tokens.len(), top.len());
        assert_eq!(tokens.len(), offsets.len());
        assert_eq!(
            tokens.len() as u64,
            body["usage"]["prompt_tokens"].as_u64().unwrap()
        );
        assert_eq!(body["usage"]["completion_tokens"], 0);
        assert!(token_logprobs[0].is_null() && top[0].is_null());
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
        let joined: String = tokens.iter().map(|t| t.as_str().unwrap()).collect();
        assert_eq!(joined, prompt);
        for (lp, top) in token_logprobs.iter().zip(top).skip(1) {
            assert!(lp.as_f64().unwrap() <= 0.0);
            assert!(top
                .as_object()
                .unwrap()
                .values()
                .all(|v| v.as_f64().unwrap() <= 0.0));
        }
        // The continuation is the last token; is_greedy = it is the argmax of its top_logprobs.
        let last = tokens.last().unwrap().as_str().unwrap();
        assert_eq!(last, choice);
        let last_top = top.last().unwrap().as_object().unwrap();
        assert!(last_top.contains_key(last));
        let argmax = last_top
            .iter()
            .max_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap()))
            .unwrap()
            .0;
        assert_eq!(
            argmax == last,
            choice == " Paris",
            "only the favoured choice is greedy"
        );
        scores.push(token_logprobs.last().unwrap().as_f64().unwrap());
    }
    assert!(scores[1] > scores[0], "favoured ' Paris' wins: {scores:?}");
    assert_eq!(scores[1], -0.01);

    // Echo with generation: logprobs cover prompt then generated tokens.
    let (_, _, body) = post(
        &server,
        "/completions",
        json!({"model": "m", "prompt": "Hello there", "echo": true, "max_tokens": 5, "logprobs": 0}),
    )
    .await;
    let text = body["choices"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("Hello there") && text.len() > "Hello there".len());
    let n = body["choices"][0]["logprobs"]["tokens"]
        .as_array()
        .unwrap()
        .len() as u64;
    assert_eq!(n, body["usage"]["total_tokens"].as_u64().unwrap());
    server.shutdown().await;
}

#[tokio::test]
async fn auth_and_bad_requests_use_openai_error_objects() {
    let config = FakeConfig {
        api_key: Some("sk-test".into()),
        fail_prompts_containing: vec!["POISON".into()],
        ..FakeConfig::default()
    };
    let server = FakeOpenAi::start(config).await.unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", server.base_url());

    let response = client
        .post(&url)
        .json(&chat_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let response = client
        .post(&url)
        .bearer_auth("sk-wrong")
        .json(&chat_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await.unwrap();
    assert!(
        !body.to_string().contains("sk-wrong"),
        "keys are never echoed"
    );

    let send = |body: Value| client.post(&url).bearer_auth("sk-test").json(&body).send();
    let cases = [
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 3}),
            "temperature",
        ),
        (json!({"model": "m"}), "messages"),
        (json!({"model": "m", "messages": []}), "messages"),
        (
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            "model",
        ),
        (
            json!({"model": "m", "messages": [{"role": "robot", "content": "hi"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 2}),
            "n",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5000}),
            "max_tokens",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d", "e"]}),
            "stop",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "POISON pill"}]}),
            "messages",
        ),
    ];
    for (body, param) in cases {
        let response = send(body.clone()).await.unwrap();
        assert_eq!(response.status().as_u16(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
        assert_eq!(error["error"]["param"], param, "{error}");
        assert!(error["error"]["message"].as_str().unwrap().len() > 10);
    }
    let response =
        send(json!({"model": "missing-model", "messages": [{"role": "user", "content": "hi"}]}))
            .await
            .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "model_not_found");

    let response = client
        .post(format!("{}/nope", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    assert!(response.headers().contains_key("x-request-id"));

    let models: Value = client
        .get(format!("{}/models", server.base_url()))
        .bearer_auth("sk-test")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "fake-model");

    let stats = server.stats();
    assert_eq!(stats.client_errors, 2 + 9 + 1 + 1);
    assert_eq!(stats.ok, 1);
    assert_eq!(server.count_for_prompt("POISON"), 0);
    assert!(server
        .requests()
        .iter()
        .any(|r| r.prompt.contains("POISON") && r.status == 400));
    server.shutdown().await;
}

#[tokio::test]
async fn rate_limits_and_server_errors_follow_the_schedule() {
    let config = FakeConfig {
        fail_first: 2,
        rate_limit_every: Some(4),
        retry_after_secs: 0.25,
        ..FakeConfig::default()
    };
    let server = FakeOpenAi::start(config).await.unwrap();
    let mut statuses = Vec::new();
    for i in 0..8 {
        let (status, headers, body) =
            post(&server, "/chat/completions", chat_body(&format!("q{i}"))).await;
        statuses.push(status);
        if status == 429 {
            assert_eq!(body["error"]["code"], "rate_limit_exceeded");
            assert_eq!(headers["retry-after"], "1");
            assert_eq!(headers["retry-after-ms"], "250");
            assert_eq!(headers["x-ratelimit-limit-requests"], "4");
            assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
            assert_eq!(headers["x-ratelimit-reset-requests"], "250ms");
        }
        if status == 500 {
            assert_eq!(body["error"]["type"], "server_error");
        }
    }
    assert_eq!(statuses, [500, 500, 200, 429, 200, 200, 200, 429]);
    let stats = server.stats();
    assert_eq!(
        (
            stats.total,
            stats.ok,
            stats.rate_limited,
            stats.server_errors
        ),
        (8, 4, 2, 2)
    );
    assert_eq!((stats.chat, stats.completions), (8, 0));

    server.set_config(|c| {
        c.rate_limit_every = None;
        c.fail_first = 0;
        c.server_error_every = Some(2);
    });
    server.reset_schedule();
    let mut statuses = Vec::new();
    for i in 0..4 {
        statuses.push(
            post(&server, "/chat/completions", chat_body(&format!("r{i}")))
                .await
                .0,
        );
    }
    assert_eq!(statuses, [200, 500, 200, 503]);
    server.shutdown().await;
}

#[tokio::test]
async fn tracks_max_in_flight_and_slow_prompts() {
    let config = FakeConfig {
        latency: Duration::from_millis(200),
        slow_prompts_containing: vec![("SLOW".into(), Duration::from_millis(300))],
        ..FakeConfig::default()
    };
    let server = FakeOpenAi::start(config).await.unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", server.base_url());
    let calls = (0..5).map(|i| client.post(&url).json(&chat_body(&format!("p{i}"))).send());
    let started = std::time::Instant::now();
    for response in futures_join(calls).await {
        assert_eq!(response.unwrap().status().as_u16(), 200);
    }
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "requests run concurrently"
    );
    assert_eq!(server.stats().max_in_flight, 5);

    let started = std::time::Instant::now();
    let (status, _, _) = post(&server, "/chat/completions", chat_body("a SLOW one")).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(500));
    server.shutdown().await;
}

/// Runs futures concurrently without pulling in the `futures` crate.
async fn futures_join<F: std::future::Future + Send + 'static>(
    calls: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = calls.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("task completes"));
    }
    out
}

#[tokio::test]
async fn binary_prints_its_url_and_serves() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-openai"))
        .args(["--port", "0", "--api-key", "sk-bin", "--favour", " Paris"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn fake-openai");
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .unwrap()
    .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("prints its URL")
        .to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/v1"),
        "{url}"
    );
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{url}/chat/completions"))
        .bearer_auth("sk-bin")
        .json(&chat_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let stats: Value = client
        .get(url.replace("/v1", "/_fake/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["ok"], 1);
    child.kill().unwrap();
    child.wait().unwrap();

    let bad = Command::new(env!("CARGO_BIN_EXE_fake-openai"))
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--bogus"));
}
