//! HTTP side of the fake server: routes, auth, fault schedule, recording and response bodies.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use crate::api_error::ApiError;
use crate::model::{default_answer, generate, score_token, token_count, tokenize};
use crate::params::{self, ChatRequest, CompletionRequest};
use crate::{FakeConfig, FakeStats, RecordedRequest};

/// State shared by all handlers and the [`crate::FakeOpenAi`] handle.
pub(crate) struct Shared {
    pub config: RwLock<Arc<FakeConfig>>,
    pub requests: Mutex<Vec<RecordedRequest>>,
    /// Inference arrivals, numbering requests for the fault schedule.
    pub arrivals: AtomicU64,
    in_flight: AtomicU64,
    total: AtomicU64,
    ok: AtomicU64,
    rate_limited: AtomicU64,
    server_errors: AtomicU64,
    client_errors: AtomicU64,
    max_in_flight: AtomicU64,
    chat: AtomicU64,
    completions: AtomicU64,
    /// Counted by the listener (`tls::CountingListener`).
    pub connections: AtomicU64,
    /// When the server started: the clock of the two times below.
    born: Instant,
    /// Microseconds from `born` to the first inference request received
    /// (`u64::MAX`: none yet) and to the latest inference answer sent, so
    /// that a benchmark reads the inference window from the server's own
    /// clock instead of polling for it.
    first_inference_us: AtomicU64,
    last_answer_us: AtomicU64,
    /// Microseconds spent answering inference requests, summed: their mean
    /// is the latency a client with no overhead of its own would see.
    inference_us: AtomicU64,
}

impl Shared {
    pub fn new(config: FakeConfig) -> Self {
        Shared {
            config: RwLock::new(Arc::new(config)),
            requests: Mutex::new(Vec::new()),
            arrivals: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            total: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            client_errors: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            chat: AtomicU64::new(0),
            completions: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            born: Instant::now(),
            first_inference_us: AtomicU64::new(u64::MAX),
            last_answer_us: AtomicU64::new(0),
            inference_us: AtomicU64::new(0),
        }
    }

    fn micros_since_born(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_micros()).unwrap_or(u64::MAX - 1)
    }

    pub fn stats(&self) -> FakeStats {
        FakeStats {
            total: self.total.load(Ordering::SeqCst),
            ok: self.ok.load(Ordering::SeqCst),
            rate_limited: self.rate_limited.load(Ordering::SeqCst),
            server_errors: self.server_errors.load(Ordering::SeqCst),
            client_errors: self.client_errors.load(Ordering::SeqCst),
            max_in_flight: self.max_in_flight.load(Ordering::SeqCst),
            chat: self.chat.load(Ordering::SeqCst),
            completions: self.completions.load(Ordering::SeqCst),
            connections: self.connections.load(Ordering::SeqCst),
            first_inference_us: Some(self.first_inference_us.load(Ordering::SeqCst))
                .filter(|&t| t != u64::MAX),
            last_answer_us: Some(self.last_answer_us.load(Ordering::SeqCst)).filter(|&t| t != 0),
            inference_us: self.inference_us.load(Ordering::SeqCst),
        }
    }

    fn config(&self) -> Arc<FakeConfig> {
        self.config
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn count_status(&self, status: StatusCode) {
        let counter = match status.as_u16() {
            200..=299 => &self.ok,
            429 => &self.rate_limited,
            500.. => &self.server_errors,
            _ => &self.client_errors,
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }

    fn record(&self, config: &FakeConfig, request: RecordedRequest) {
        if config.record_requests {
            lock(&self.requests).push(request);
        }
    }
}

/// Locks a mutex, recovering from poisoning: a panicking test thread must not hide the records.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Counts a request as in flight until dropped, so cancelled requests are released too.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/_fake/stats", get(stats))
        .fallback(unknown_route)
        .method_not_allowed_fallback(unknown_route)
        .layer(axum::middleware::map_response(add_request_id))
        .with_state(shared)
}

/// OpenAI puts a request id on every answer; clients log it for support.
async fn add_request_id(mut response: Response) -> Response {
    let id = format!("req_{:032x}", rand::random::<u128>());
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    response
}

#[derive(Clone, Copy, PartialEq)]
enum Endpoint {
    Chat,
    Completions,
}

async fn chat(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    inference(&shared, Endpoint::Chat, &headers, &body).await
}

async fn completions(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !shared.config().serve_completions {
        // A chat-only server: the route does not exist.
        return unknown_route(State(shared), method, uri).await;
    }
    inference(&shared, Endpoint::Completions, &headers, &body).await
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.stats()).into_response()
}

async fn models(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let received_at = SystemTime::now();
    let started = Instant::now();
    shared.total.fetch_add(1, Ordering::SeqCst);
    let config = shared.config();
    let response = match check_auth(&config, &headers) {
        Err(err) => err.into_response(),
        Ok(()) => {
            let data: Vec<Value> = config
                .served_models
                .iter()
                .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "testkit"}))
                .collect();
            Json(json!({"object": "list", "data": data})).into_response()
        }
    };
    finish(
        &shared,
        &config,
        "GET",
        "/v1/models",
        Value::Null,
        received_at,
        started,
        response,
    )
}

async fn unknown_route(State(shared): State<Arc<Shared>>, method: Method, uri: Uri) -> Response {
    let received_at = SystemTime::now();
    let started = Instant::now();
    shared.total.fetch_add(1, Ordering::SeqCst);
    let config = shared.config();
    let response = ApiError::invalid_url(method.as_str(), uri.path()).into_response();
    finish(
        &shared,
        &config,
        method.as_str(),
        uri.path(),
        Value::Null,
        received_at,
        started,
        response,
    )
}

/// Counts and records a non-inference answer.
#[allow(clippy::too_many_arguments)]
fn finish(
    shared: &Shared,
    config: &FakeConfig,
    method: &str,
    path: &str,
    body: Value,
    received_at: SystemTime,
    started: Instant,
    response: Response,
) -> Response {
    shared.count_status(response.status());
    shared.record(
        config,
        RecordedRequest {
            method: method.to_string(),
            path: path.to_string(),
            body,
            prompt: String::new(),
            extra: Map::new(),
            status: response.status().as_u16(),
            received_at,
            duration: started.elapsed(),
        },
    );
    response
}

async fn inference(
    shared: &Shared,
    endpoint: Endpoint,
    headers: &HeaderMap,
    raw: &[u8],
) -> Response {
    let received_at = SystemTime::now();
    let started = Instant::now();
    let _in_flight = InFlight::enter(shared);
    shared
        .first_inference_us
        .fetch_min(shared.micros_since_born(), Ordering::SeqCst);
    shared.total.fetch_add(1, Ordering::SeqCst);
    match endpoint {
        Endpoint::Chat => shared.chat.fetch_add(1, Ordering::SeqCst),
        Endpoint::Completions => shared.completions.fetch_add(1, Ordering::SeqCst),
    };
    let arrival = shared.arrivals.fetch_add(1, Ordering::SeqCst) + 1;
    let config = shared.config();
    let is_chat = endpoint == Endpoint::Chat;
    let (body, parse_error) = match serde_json::from_slice::<Value>(raw) {
        Ok(body) => (body, None),
        Err(err) => (Value::Null, Some(err.to_string())),
    };
    let prompt = params::prompt_text(&body, is_chat);

    if !config.latency.is_zero() {
        tokio::time::sleep(config.latency).await;
    }
    let result = answer(
        &config,
        endpoint,
        arrival,
        headers,
        &body,
        parse_error,
        &prompt,
    )
    .await;
    let mut response = match result {
        Ok(json) => (StatusCode::OK, Json(json)).into_response(),
        Err(err) => err.into_response(),
    };
    let limited = response.status() == StatusCode::TOO_MANY_REQUESTS;
    for (name, value) in rate_limit_headers(&config, arrival, limited, started) {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    shared.count_status(response.status());
    shared
        .last_answer_us
        .fetch_max(shared.micros_since_born(), Ordering::SeqCst);
    let spent = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    shared.inference_us.fetch_add(spent, Ordering::SeqCst);
    let path = if is_chat {
        "/v1/chat/completions"
    } else {
        "/v1/completions"
    };
    shared.record(
        &config,
        RecordedRequest {
            method: "POST".to_string(),
            path: path.to_string(),
            extra: params::extras(&body, is_chat),
            body,
            prompt,
            status: response.status().as_u16(),
            received_at,
            duration: started.elapsed(),
        },
    );
    response
}

/// Auth, fault schedule, validation, then the deterministic answer, in the order of the
/// module-level documentation of the crate.
async fn answer(
    config: &FakeConfig,
    endpoint: Endpoint,
    arrival: u64,
    headers: &HeaderMap,
    body: &Value,
    parse_error: Option<String>,
    prompt: &str,
) -> Result<Value, ApiError> {
    check_auth(config, headers)?;
    if arrival <= config.fail_first {
        return Err(ApiError::server_error());
    }
    // checked_rem: a schedule of 0 means "never" rather than a division by zero.
    if let Some(every) = config.rate_limit_every {
        if arrival.checked_rem(every) == Some(0) {
            let mut err = ApiError::rate_limited(config.retry_after_secs);
            let secs = config.retry_after_secs.max(0.0);
            // Retry-After is whole seconds (RFC 9110); retry-after-ms carries the precise value.
            err.headers.push((
                HeaderName::from_static("retry-after"),
                format!("{}", secs.ceil() as u64),
            ));
            err.headers.push((
                HeaderName::from_static("retry-after-ms"),
                format!("{}", (secs * 1000.0).round() as u64),
            ));
            return Err(err);
        }
    }
    if let Some(every) = config.server_error_every {
        if arrival.checked_rem(every) == Some(0) {
            return Err(if (arrival / every) % 2 == 1 {
                ApiError::server_error()
            } else {
                ApiError::overloaded()
            });
        }
    }
    if let Some(detail) = parse_error {
        return Err(ApiError::unparsable_body(&detail));
    }
    let result = match endpoint {
        Endpoint::Chat => {
            let request = params::parse_chat(body, config.max_tokens_limit)?;
            check_prompt(config, &request.common.model, "messages", prompt).await?;
            chat_response(config, &request, prompt)
        }
        Endpoint::Completions => {
            let request = params::parse_completion(body, config.max_tokens_limit)?;
            check_prompt(config, &request.common.model, "prompt", prompt).await?;
            completion_response(config, &request)
        }
    };
    Ok(result)
}

fn check_auth(config: &FakeConfig, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &config.api_key else {
        return Ok(());
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => Err(ApiError::missing_api_key()),
        Some(key) if key.trim() == expected => Ok(()),
        Some(key) if config.echo_wrong_key => Err(ApiError::wrong_api_key_quoted(key)),
        Some(_) => Err(ApiError::wrong_api_key()),
    }
}

/// Model existence, configured failures and slowness, which all depend on a valid request.
async fn check_prompt(
    config: &FakeConfig,
    model: &str,
    prompt_param: &str,
    prompt: &str,
) -> Result<(), ApiError> {
    if model == "missing-model" {
        return Err(ApiError::model_not_found(model));
    }
    if let Some(needle) = config
        .fail_prompts_containing
        .iter()
        .find(|needle| prompt.contains(needle.as_str()))
    {
        return Err(ApiError::invalid(
            prompt_param,
            "invalid_prompt",
            format!("Invalid prompt: the fake server is configured to reject prompts containing {needle:?}."),
        ));
    }
    let extra: Duration = config
        .slow_prompts_containing
        .iter()
        .filter(|(needle, _)| prompt.contains(needle.as_str()))
        .map(|(_, delay)| *delay)
        .sum();
    if !extra.is_zero() {
        tokio::time::sleep(extra).await;
    }
    Ok(())
}

fn answer_text(config: &FakeConfig, prompt: &str, seed: Option<i64>, temperature: f64) -> String {
    config
        .answers
        .get(prompt)
        .or_else(|| config.answers.get(prompt.trim()))
        .cloned()
        .unwrap_or_else(|| default_answer(prompt, seed, temperature))
}

pub(crate) fn chat_response(config: &FakeConfig, request: &ChatRequest, prompt: &str) -> Value {
    let common = &request.common;
    let full = answer_text(config, prompt, common.seed, common.temperature);
    let generation = generate(&full, &common.stop, common.max_tokens);
    let prompt_tokens: u64 = request.texts.iter().map(|t| token_count(t)).sum();
    let completion_tokens = token_count(&generation.text);
    json!({
        "id": format!("chatcmpl-{:024x}", rand::random::<u128>() >> 32),
        "object": "chat.completion",
        "created": unix_now(),
        "model": common.model,
        "system_fingerprint": "fp_testkit",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": generation.text, "refusal": null},
            "logprobs": null,
            "finish_reason": generation.finish_reason,
        }],
        "usage": usage(prompt_tokens, completion_tokens),
    })
}

pub(crate) fn completion_response(config: &FakeConfig, request: &CompletionRequest) -> Value {
    let common = &request.common;
    let full = answer_text(config, &request.prompt, common.seed, common.temperature);
    let generation = generate(&full, &common.stop, common.max_tokens);
    let prompt_tokens = tokenize(&request.prompt);
    let generated_tokens = tokenize(&generation.text);
    let echo = request.echo && !config.ignore_echo;
    let text = if echo {
        format!("{}{}", request.prompt, generation.text)
    } else {
        generation.text.clone()
    };
    let logprobs = request
        .logprobs
        .filter(|_| !config.drop_logprobs)
        .map(|top_n| {
            completion_logprobs(
                config,
                &request.prompt,
                &prompt_tokens,
                &generated_tokens,
                echo,
                top_n,
            )
        });
    json!({
        "id": format!("cmpl-{:024x}", rand::random::<u128>() >> 32),
        "object": "text_completion",
        "created": unix_now(),
        "model": common.model,
        "system_fingerprint": "fp_testkit",
        "choices": [{
            "index": 0,
            "text": text,
            "logprobs": logprobs,
            "finish_reason": generation.finish_reason,
        }],
        "usage": usage(prompt_tokens.len() as u64, generated_tokens.len() as u64),
    })
}

/// The legacy `logprobs` object. With `echo` it covers the prompt tokens (the first one has no
/// context, so its logprob and top_logprobs are null, as in OpenAI and vLLM) and then the
/// generated ones. `text_offset` is in characters into the returned `text`.
fn completion_logprobs(
    config: &FakeConfig,
    prompt: &str,
    prompt_tokens: &[&str],
    generated_tokens: &[&str],
    echo: bool,
    top_n: u32,
) -> Value {
    let mut tokens = Vec::new();
    let mut token_logprobs = Vec::new();
    let mut top_logprobs = Vec::new();
    let mut text_offset = Vec::new();
    let mut offset = 0usize;
    let mut context = String::new();
    let mut push = |token: &str, context: &mut String, generated: bool| {
        tokens.push(Value::from(token));
        text_offset.push(Value::from(offset));
        if context.is_empty() && !generated {
            token_logprobs.push(Value::Null);
            top_logprobs.push(Value::Null);
        } else {
            let score = score_token(
                context,
                token,
                &config.favoured_continuations,
                generated,
                top_n as usize,
            );
            token_logprobs.push(Value::from(score.logprob));
            let top: Map<String, Value> = score
                .top
                .into_iter()
                .map(|(t, lp)| (t, Value::from(lp)))
                .collect();
            top_logprobs.push(Value::Object(top));
        }
        offset += token.chars().count();
        context.push_str(token);
    };
    if echo {
        for token in prompt_tokens {
            push(token, &mut context, false);
        }
    } else {
        context.push_str(prompt);
    }
    for token in generated_tokens {
        push(token, &mut context, true);
    }
    json!({
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top_logprobs,
        "text_offset": text_offset,
    })
}

fn usage(prompt_tokens: u64, completion_tokens: u64) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

/// OpenAI's `x-ratelimit-*-requests` headers. The window is `rate_limit_every` requests (10 000
/// when rate limiting is off), so `remaining` reaches 0 exactly on the request answered 429.
fn rate_limit_headers(
    config: &FakeConfig,
    arrival: u64,
    limited: bool,
    started: Instant,
) -> Vec<(HeaderName, String)> {
    let limit = config.rate_limit_every.filter(|n| *n > 0).unwrap_or(10_000);
    let remaining = if limited {
        0
    } else {
        limit - ((arrival - 1) % limit + 1)
    };
    vec![
        (
            HeaderName::from_static("x-ratelimit-limit-requests"),
            limit.to_string(),
        ),
        (
            HeaderName::from_static("x-ratelimit-remaining-requests"),
            remaining.to_string(),
        ),
        (
            HeaderName::from_static("x-ratelimit-reset-requests"),
            reset_duration(config.retry_after_secs),
        ),
        (
            HeaderName::from_static("openai-processing-ms"),
            started.elapsed().as_millis().to_string(),
        ),
    ]
}

/// OpenAI writes reset times like `"12ms"` or `"1.5s"`.
fn reset_duration(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs < 1.0 {
        format!("{}ms", (secs * 1000.0).round() as u64)
    } else {
        format!("{secs}s")
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
