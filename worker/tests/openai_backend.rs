//! The OpenAI-compatible backend against testkit's fake server.

mod common;

use common::{model, params, prompt_request};
use jobs::Backoff;
use jobs::{ChatMessage, InferenceRequest, RenderedInput, RequestType};
use serde_json::json;
use std::time::{Duration, Instant};
use testkit::{FakeConfig, FakeOpenAi};
use worker::backend::{Backend, BackendError, ErrorReach, KeyPolicy, OpenAiBackend};

const FAST: Backoff = Backoff::full_jitter(Duration::from_millis(1), Duration::from_millis(5));

/// The key variables these tests name.
fn keys() -> KeyPolicy {
    KeyPolicy::only(vec!["SHARDLINE_WORKER_TEST_*".into()], Vec::new())
}

async fn fake(config: FakeConfig) -> FakeOpenAi {
    FakeOpenAi::start(config).await.expect("fake server starts")
}

fn backend(spec: &jobs::spec::ModelSpec) -> OpenAiBackend {
    OpenAiBackend::from_spec(spec, &keys())
        .expect("backend builds")
        .with_backoff(FAST)
}

fn loglikelihood_request(
    spec: &jobs::spec::ModelSpec,
    context: &str,
    continuation: &str,
) -> InferenceRequest {
    InferenceRequest::new(
        &spec.fingerprint(),
        0,
        RequestType::Loglikelihood,
        RenderedInput::Prompt {
            prompt: context.into(),
        },
        Some(continuation.into()),
        params(),
        0,
    )
}

#[tokio::test]
async fn chat_generate_sends_messages_and_records_usage() {
    let mut config = FakeConfig::default();
    config.answers.insert("What is 2+2?".into(), "4".into());
    let server = fake(config).await;
    let spec = model(&server.base_url(), json!({}));
    let mut p = params();
    p.seed = Some(10);
    p.stop = vec!["\n".into()];
    let req = InferenceRequest::new(
        &spec.fingerprint(),
        0,
        RequestType::Generate,
        RenderedInput::Messages {
            messages: vec![
                ChatMessage {
                    role: "system".into(),
                    content: "Answer briefly.".into(),
                },
                ChatMessage {
                    role: "user".into(),
                    content: "What is 2+2?".into(),
                },
            ],
        },
        None,
        p,
        3,
    );
    let out = backend(&spec).run(&req).await.expect("chat succeeds");
    assert_eq!(out.text.as_deref(), Some("4"));
    assert_eq!(out.finish_reason.as_deref(), Some("stop"));
    assert_eq!(out.attempts, 1);
    assert!(out.usage.prompt_tokens > 0);
    assert_eq!(out.usage.completion_tokens, 1);

    let recorded = server.requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].path, "/v1/chat/completions");
    let body = &recorded[0].body;
    assert_eq!(body["model"], "fake-model");
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["content"], "What is 2+2?");
    assert_eq!(body["max_tokens"], 32);
    assert_eq!(body["stop"], json!(["\n"]));
    // Sample 3 of base seed 10.
    assert_eq!(body["seed"], 13);
}

#[tokio::test]
async fn completions_generate_and_prompt_on_chat() {
    let mut config = FakeConfig::default();
    config
        .answers
        .insert("Capital of France:".into(), " Paris".into());
    let server = fake(config).await;

    let spec = model(&server.base_url(), json!({"endpoint": "completions"}));
    let out = backend(&spec)
        .run(&prompt_request(&spec, 0, "Capital of France:"))
        .await
        .expect("completion succeeds");
    assert_eq!(out.text.as_deref(), Some(" Paris"));
    let recorded = server.requests();
    assert_eq!(recorded[0].path, "/v1/completions");
    assert_eq!(recorded[0].body["prompt"], "Capital of France:");

    // A plain prompt on the chat endpoint is one user message.
    let chat = model(&server.base_url(), json!({}));
    backend(&chat)
        .run(&prompt_request(&chat, 0, "Capital of France:"))
        .await
        .expect("chat succeeds");
    let recorded = server.requests();
    assert_eq!(
        recorded[1].body["messages"],
        json!([{"role": "user", "content": "Capital of France:"}])
    );

    // Chat messages cannot go to /completions.
    let messages = InferenceRequest::new(
        &spec.fingerprint(),
        0,
        RequestType::Generate,
        RenderedInput::Messages {
            messages: vec![ChatMessage {
                role: "user".into(),
                content: "hi".into(),
            }],
        },
        None,
        params(),
        0,
    );
    let err = backend(&spec).run(&messages).await.unwrap_err();
    assert!(matches!(err, BackendError::Unsupported(_)), "{err}");
}

#[tokio::test]
async fn loglikelihood_via_echo_sums_continuation_and_reports_greedy() {
    let config = FakeConfig {
        favoured_continuations: vec![" blue sky".into()],
        ..FakeConfig::default()
    };
    let server = fake(config).await;
    let spec = model(&server.base_url(), json!({"endpoint": "completions"}));
    let backend = backend(&spec);

    let favoured = backend
        .run(&loglikelihood_request(
            &spec,
            "The color of the",
            " blue sky",
        ))
        .await
        .expect("scored");
    let ll = favoured.loglikelihood.expect("loglikelihood output");
    assert_eq!(ll.token_logprobs.len(), 2, "{ll:?}");
    assert!((ll.logprob - (-0.02)).abs() < 1e-9, "{ll:?}");
    assert!(ll.is_greedy);
    assert!(favoured.text.is_none());

    let other = backend
        .run(&loglikelihood_request(
            &spec,
            "The color of the",
            " red sea",
        ))
        .await
        .expect("scored");
    let ll = other.loglikelihood.expect("loglikelihood output");
    assert_eq!(ll.token_logprobs.len(), 2);
    assert!((ll.logprob - ll.token_logprobs.iter().sum::<f64>()).abs() < 1e-12);
    assert!(ll.logprob < -1.0, "{ll:?}");
    assert!(!ll.is_greedy);

    let body = &server.requests()[0].body;
    assert_eq!(body["prompt"], "The color of the blue sky");
    assert_eq!(body["echo"], true);
    assert_eq!(body["logprobs"], 1);
    assert_eq!(body["temperature"], 0);

    // The chat endpoint cannot score a prompt.
    let chat = model(&server.base_url(), json!({}));
    let err = OpenAiBackend::from_spec(&chat, &keys())
        .unwrap()
        .run(&loglikelihood_request(&chat, "a", " b"))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Unsupported(_)));
    assert!(
        err.to_string().contains("endpoint = \"completions\""),
        "{err}"
    );
}

#[tokio::test]
async fn extra_body_is_passed_through_and_wins() {
    let server = fake(FakeConfig::default()).await;
    let spec = model(&server.base_url(), json!({}));
    let mut req = prompt_request(&spec, 0, "hello");
    req.params.extra_body.insert("top_k".into(), json!(5));
    req.params
        .extra_body
        .insert("temperature".into(), json!(0.7));
    backend(&spec).run(&req).await.expect("succeeds");
    let recorded = &server.requests()[0];
    assert_eq!(recorded.body["top_k"], 5);
    assert_eq!(recorded.body["temperature"], 0.7);
    assert_eq!(recorded.extra.get("top_k"), Some(&json!(5)));
}

#[tokio::test]
async fn retries_429_honouring_retry_after() {
    let config = FakeConfig {
        rate_limit_every: Some(2),
        retry_after_secs: 0.5,
        ..FakeConfig::default()
    };
    let server = fake(config).await;
    let spec = model(&server.base_url(), json!({}));
    let backend = backend(&spec);
    let first = backend.run(&prompt_request(&spec, 0, "one")).await.unwrap();
    assert_eq!(first.attempts, 1);
    let started = Instant::now();
    let second = backend.run(&prompt_request(&spec, 1, "two")).await.unwrap();
    // The backoff is ~1 ms, so only the server's Retry-After explains this.
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(second.attempts, 2);
    assert!(
        second.latency_ms < 450,
        "latency of the successful attempt only"
    );
    assert_eq!(server.stats().rate_limited, 1);
}

#[tokio::test]
async fn server_errors_are_retried_until_success_or_exhaustion() {
    let server = fake(FakeConfig {
        fail_first: 2,
        ..FakeConfig::default()
    })
    .await;
    let spec = model(&server.base_url(), json!({"max_retries": 3}));
    let out = backend(&spec)
        .run(&prompt_request(&spec, 0, "x"))
        .await
        .unwrap();
    assert_eq!(out.attempts, 3);
    assert_eq!(server.stats().server_errors, 2);

    let server = fake(FakeConfig {
        fail_first: 10,
        ..FakeConfig::default()
    })
    .await;
    let spec = model(&server.base_url(), json!({"max_retries": 2}));
    let err = backend(&spec)
        .run(&prompt_request(&spec, 0, "x"))
        .await
        .unwrap_err();
    match err {
        BackendError::Http {
            status, attempts, ..
        } => {
            assert_eq!(status, 500);
            assert_eq!(attempts, 3);
        }
        other => panic!("expected HTTP 500, got {other}"),
    }
    assert_eq!(server.stats().total, 3);
}

#[tokio::test]
async fn client_errors_are_not_retried_and_carry_the_message() {
    let config = FakeConfig {
        fail_prompts_containing: vec!["poison".into()],
        ..FakeConfig::default()
    };
    let server = fake(config).await;
    let spec = model(&server.base_url(), json!({"max_retries": 5}));
    let err = backend(&spec)
        .run(&prompt_request(&spec, 0, "a poison prompt"))
        .await
        .unwrap_err();
    match &err {
        BackendError::Http {
            status,
            attempts,
            message,
            ..
        } => {
            assert_eq!(*status, 400);
            assert_eq!(*attempts, 1);
            assert!(
                !message.is_empty() && !message.starts_with('{'),
                "{message}"
            );
        }
        other => panic!("expected HTTP 400, got {other}"),
    }
    assert_eq!(server.stats().total, 1);
}

#[tokio::test]
async fn connection_errors_are_retried_then_reported() {
    // Bind then drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spec = model(
        &format!("http://127.0.0.1:{port}/v1"),
        json!({"max_retries": 1}),
    );
    let err = backend(&spec)
        .run(&prompt_request(&spec, 0, "x"))
        .await
        .unwrap_err();
    match err {
        BackendError::Transport { attempts, .. } => assert_eq!(attempts, 2),
        other => panic!("expected a transport error, got {other}"),
    }
}

#[tokio::test]
async fn api_key_comes_from_the_named_variable_and_is_never_shown() {
    let server = fake(FakeConfig {
        api_key: Some("sk-test-123".into()),
        ..FakeConfig::default()
    })
    .await;

    let missing = model(
        &server.base_url(),
        json!({"api_key_env": "SHARDLINE_WORKER_TEST_UNSET_KEY"}),
    );
    let err = OpenAiBackend::from_spec(&missing, &keys()).unwrap_err();
    assert!(matches!(err, BackendError::Config(_)));
    assert!(
        err.to_string().contains("SHARDLINE_WORKER_TEST_UNSET_KEY"),
        "{err}"
    );
    assert!(worker::build_backend(&missing, &keys()).is_err());

    std::env::set_var("SHARDLINE_WORKER_TEST_KEY", "sk-test-123");
    let not_allowed = model(
        &server.base_url(),
        json!({"api_key_env": "SHARDLINE_WORKER_TEST_KEY"}),
    );
    let err = OpenAiBackend::from_spec(&not_allowed, &KeyPolicy::default()).unwrap_err();
    assert!(err.to_string().contains("does not allow"), "{err}");
    let spec = model(
        &server.base_url(),
        json!({"api_key_env": "SHARDLINE_WORKER_TEST_KEY"}),
    );
    let backend = backend(&spec);
    assert!(!format!("{backend:?}").contains("sk-test-123"));
    backend
        .run(&prompt_request(&spec, 0, "x"))
        .await
        .expect("authorised");

    let unauthenticated =
        OpenAiBackend::from_spec(&model(&server.base_url(), json!({})), &keys()).unwrap();
    let err = unauthenticated
        .run(&prompt_request(&spec, 0, "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BackendError::Http { status: 401, .. }),
        "{err}"
    );

    let none = model(&server.base_url(), json!({"backend": "none"}));
    let err = worker::build_backend(&none, &keys())
        .err()
        .expect("none has no backend");
    assert!(err
        .to_string()
        .contains("backend none makes no inference calls"));

    let no_url: jobs::spec::ModelSpec = serde_json::from_value(json!({
        "backend": "openai", "model": "m", "base_url_env": "SHARDLINE_WORKER_TEST_UNSET_URL"
    }))
    .unwrap();
    let err = OpenAiBackend::from_spec(&no_url, &keys()).unwrap_err();
    assert!(
        err.to_string().contains("SHARDLINE_WORKER_TEST_UNSET_URL"),
        "{err}"
    );
}

#[tokio::test]
async fn concurrency_limit_is_honoured() {
    let server = fake(FakeConfig {
        latency: Duration::from_millis(100),
        ..FakeConfig::default()
    })
    .await;
    let spec = model(&server.base_url(), json!({"concurrency": 3}));
    let backend = backend(&spec);
    assert_eq!(backend.concurrency(), 3);
    let requests: Vec<_> = (0..12)
        .map(|i| prompt_request(&spec, i, &format!("q{i}")))
        .collect();
    let results = futures::future::join_all(requests.iter().map(|r| backend.run(r))).await;
    assert!(results.iter().all(Result::is_ok));
    let max = server.stats().max_in_flight;
    assert!((2..=3).contains(&max), "max in flight {max}");
}

#[tokio::test]
async fn requests_per_minute_spaces_requests() {
    let server = fake(FakeConfig::default()).await;
    // 300/min = 5/s with a burst of one second's worth.
    let spec = model(
        &server.base_url(),
        json!({"requests_per_minute": 300, "concurrency": 16}),
    );
    let backend = backend(&spec);
    let requests: Vec<_> = (0..10)
        .map(|i| prompt_request(&spec, i, &format!("r{i}")))
        .collect();
    let started = Instant::now();
    let results = futures::future::join_all(requests.iter().map(|r| backend.run(r))).await;
    assert!(results.iter().all(Result::is_ok));
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    let mut arrivals: Vec<_> = server.requests().iter().map(|r| r.received_at).collect();
    arrivals.sort();
    let spread = arrivals[9].duration_since(arrivals[0]).unwrap();
    assert!(spread >= Duration::from_millis(900), "{spread:?}");
}

#[tokio::test]
async fn chat_messages_are_sent_exactly_as_planned() {
    // The planner applies system_role = "fold" and the request key covers
    // its output; the worker must not fold a second time.
    let server = fake(FakeConfig::default()).await;
    let spec = model(&server.base_url(), json!({"system_role": "fold"}));
    let messages = vec![
        ChatMessage {
            role: "system".into(),
            content: "Be brief.".into(),
        },
        ChatMessage {
            role: "user".into(),
            content: "Hi".into(),
        },
    ];
    let req = InferenceRequest::new(
        &spec.fingerprint(),
        0,
        RequestType::Generate,
        RenderedInput::Messages {
            messages: messages.clone(),
        },
        None,
        params(),
        0,
    );
    backend(&spec).run(&req).await.expect("chat succeeds");
    assert_eq!(
        server.requests()[0].body["messages"],
        json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"}
        ])
    );
}

#[tokio::test]
async fn loglikelihood_moves_context_whitespace_and_rejects_straddling_tokens() {
    let server = fake(FakeConfig {
        favoured_continuations: vec![" blue sky".into()],
        ..FakeConfig::default()
    })
    .await;
    let spec = model(&server.base_url(), json!({"endpoint": "completions"}));
    let backend = backend(&spec);

    // "the " + "blue sky": the fake's tokenizer (like real BPEs) yields
    // " blue", which starts in the context's trailing space. Scored as
    // "the" + " blue sky", both continuation tokens count.
    let out = backend
        .run(&loglikelihood_request(
            &spec,
            "The color of the ",
            "blue sky",
        ))
        .await
        .expect("scored");
    let ll = out.loglikelihood.expect("loglikelihood output");
    assert_eq!(ll.token_logprobs.len(), 2, "{ll:?}");
    assert!((ll.logprob - (-0.02)).abs() < 1e-9, "{ll:?}");
    assert!(ll.is_greedy);
    assert_eq!(
        server.requests()[0].body["prompt"],
        "The color of the blue sky"
    );

    // "th" + "e blue sky": the token " the" straddles the boundary; no
    // silent partial score.
    let err = backend
        .run(&loglikelihood_request(
            &spec,
            "The color of th",
            "e blue sky",
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Unscorable(_)), "{err}");
    assert!(err.to_string().contains("\" the\""), "{err}");
}

#[tokio::test]
async fn rejected_key_opens_the_breaker_and_names_the_variable() {
    let server = fake(FakeConfig {
        api_key: Some("sk-right".into()),
        ..FakeConfig::default()
    })
    .await;
    std::env::set_var("SHARDLINE_WORKER_TEST_WRONG_KEY", "sk-wrong-secret");
    let spec = model(
        &server.base_url(),
        json!({"api_key_env": "SHARDLINE_WORKER_TEST_WRONG_KEY", "max_retries": 5}),
    );
    let backend = backend(&spec);
    let mut errors = Vec::new();
    for i in 0..30 {
        errors.push(
            backend
                .run(&prompt_request(&spec, i, "x"))
                .await
                .unwrap_err(),
        );
    }
    // 19 ordinary 401s, the 20th opens the breaker, the rest fail fast.
    assert_eq!(server.stats().total, 20);
    assert!(matches!(errors[0], BackendError::Http { status: 401, .. }));
    assert!(errors[19..].iter().all(BackendError::is_endpoint_unusable));
    let text = errors[29].to_string();
    assert!(
        text.contains("SHARDLINE_WORKER_TEST_WRONG_KEY") && text.contains(&server.base_url()),
        "{text}"
    );
    assert!(!text.contains("sk-wrong-secret"), "{text}");
}

#[tokio::test]
async fn an_unknown_model_stops_the_backend_at_once_but_bad_prompts_do_not() {
    let server = fake(FakeConfig {
        fail_prompts_containing: vec!["poison".into()],
        ..FakeConfig::default()
    })
    .await;
    // A 400 on a prompt is that prompt's problem: never trips the breaker.
    let spec = model(&server.base_url(), json!({}));
    let b = OpenAiBackend::from_spec(&spec, &keys())
        .unwrap()
        .with_backoff(FAST)
        .with_circuit_breaker(3, Duration::from_secs(30));
    for i in 0..6 {
        let err = b
            .run(&prompt_request(&spec, i, "poison"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, BackendError::Http { status: 400, .. }),
            "{err}"
        );
    }
    assert_eq!(server.stats().total, 6);

    // A 404 naming the model is the same for every request: the first one
    // condemns the job, and the rest never reach the server.
    let missing = model(&server.base_url(), json!({"model": "missing-model"}));
    let b = OpenAiBackend::from_spec(&missing, &keys())
        .unwrap()
        .with_backoff(FAST)
        .with_circuit_breaker(3, Duration::from_secs(30));
    for i in 0..5 {
        let err = b.run(&prompt_request(&missing, i, "x")).await.unwrap_err();
        assert_eq!(err.reach(), ErrorReach::Job, "{err}");
        let text = err.to_string();
        assert!(
            text.contains("does not serve model \"missing-model\"") && text.contains("/models"),
            "{text}"
        );
    }
    assert_eq!(server.stats().total, 6 + 1);
}

#[tokio::test]
async fn refused_connections_retry_little_and_open_the_breaker() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}/v1");
    let spec = model(&base, json!({"max_retries": 10}));
    let b = backend(&spec).with_circuit_breaker(5, Duration::from_secs(30));
    let started = Instant::now();
    match b.run(&prompt_request(&spec, 0, "x")).await.unwrap_err() {
        BackendError::Transport { attempts, .. } => assert_eq!(attempts, 3),
        other => panic!("expected a transport error, got {other}"),
    }
    // Attempts 4 and 5 open the breaker during the second request.
    let err = b.run(&prompt_request(&spec, 1, "x")).await.unwrap_err();
    assert!(err.is_endpoint_unusable(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&base) && text.contains("unreachable"),
        "{text}"
    );
    let fast = Instant::now();
    let err = b.run(&prompt_request(&spec, 2, "x")).await.unwrap_err();
    assert!(err.is_endpoint_unusable());
    assert!(fast.elapsed() < Duration::from_millis(100));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_key_the_endpoint_echoes_back_never_reaches_the_error() {
    let server = fake(FakeConfig {
        api_key: Some("the-right-key-0000".into()),
        echo_wrong_key: true,
        ..FakeConfig::default()
    })
    .await;
    // Not shaped like any known key: only knowing its value can catch it.
    let wrong = "plain-wrong-key-123456";
    std::env::set_var("SHARDLINE_WORKER_TEST_ECHOED_KEY", wrong);
    let spec = model(
        &server.base_url(),
        json!({"api_key_env": "SHARDLINE_WORKER_TEST_ECHOED_KEY", "max_retries": 0}),
    );
    let err = backend(&spec)
        .run(&prompt_request(&spec, 0, "x"))
        .await
        .unwrap_err();
    let shown = err.to_string();
    assert!(
        matches!(err, BackendError::Http { status: 401, .. }),
        "{shown}"
    );
    assert!(!shown.contains(wrong), "the key was kept: {shown}");
    assert!(shown.contains(jobs::redact::REDACTED), "{shown}");
}

#[test]
fn endpoint_and_model_variables_are_never_tokens_and_never_quoted() {
    let spec = |fields: serde_json::Value| -> jobs::spec::ModelSpec {
        serde_json::from_value(fields).unwrap()
    };
    std::env::set_var(
        "SHARDLINE_WORKER_TEST_SECRET_URL",
        "not-a-url-but-a-secret-value",
    );
    let err = OpenAiBackend::from_spec(
        &spec(json!({"backend": "openai", "model": "m",
            "base_url_env": "SHARDLINE_WORKER_TEST_SECRET_URL"})),
        &keys(),
    )
    .unwrap_err()
    .to_string();
    assert!(!err.contains("secret-value"), "{err}");
    assert!(err.contains("SHARDLINE_WORKER_TEST_SECRET_URL"), "{err}");

    let err = OpenAiBackend::from_spec(
        &spec(json!({"backend": "openai", "model": "m",
            "base_url_env": "SHARDLINE_WORKER_TOKEN"})),
        &keys(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("holds a coordinator token"), "{err}");

    let err = worker::backend::EngineBackend::from_spec(
        &spec(json!({"backend": "engine", "model": "m",
            "path_env": "SHARDLINE_ADMIN_TOKEN", "fingerprint": "f".repeat(64)})),
        &keys(),
    )
    .expect_err("refused")
    .to_string();
    assert!(err.contains("holds a coordinator token"), "{err}");
}

/// A server that cannot score a prompt fails the job's first request with an
/// error that reaches the whole job; the requests after it fail the same way
/// without reaching the server.
#[tokio::test]
async fn a_server_that_cannot_score_fails_once_for_every_request() {
    for configure in [
        (|c: &mut FakeConfig| c.ignore_echo = true) as fn(&mut FakeConfig),
        |c| c.drop_logprobs = true,
        |c| c.serve_completions = false,
    ] {
        let mut config = FakeConfig::default();
        configure(&mut config);
        let server = fake(config).await;
        let spec = model(&server.base_url(), json!({"endpoint": "completions"}));
        let b = backend(&spec);
        let first = b
            .run(&loglikelihood_request(&spec, "The sky is", " blue"))
            .await
            .unwrap_err();
        assert!(
            matches!(first, BackendError::Incompatible { .. }),
            "{first:?}"
        );
        assert_eq!(first.reach(), ErrorReach::Job);
        assert!(first.to_string().contains("vLLM"), "{first}");
        let seen = server.stats().total;
        assert_eq!(seen, 1, "retried an answer no retry changes");
        let second = b
            .run(&loglikelihood_request(&spec, "The grass is", " green"))
            .await
            .unwrap_err();
        assert_eq!(second, first);
        assert_eq!(server.stats().total, seen);
        server.shutdown().await;
    }
}
