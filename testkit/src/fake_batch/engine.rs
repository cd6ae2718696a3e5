//! The fake Batch API's model: files, batches and their lifecycle, validation of input files,
//! the answers to each line and the output and error files. Pure data behind one mutex; the
//! routes in `fake_batch_routes` call it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::config::{BatchSummary, FakeBatchConfig, FakeBatchStats};
use crate::api_error::ApiError;
use crate::model::token_count;
use crate::{params, server, FakeConfig};

/// Endpoints a batch may target.
const ENDPOINTS: [&str; 3] = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"];
/// Metadata limits of the API.
const MAX_METADATA_KEYS: usize = 16;
const MAX_METADATA_KEY: usize = 64;
const MAX_METADATA_VALUE: usize = 512;

pub(crate) struct FileObj {
    pub id: String,
    pub bytes: Vec<u8>,
    pub filename: String,
    pub purpose: String,
    pub created_at: u64,
}

impl FileObj {
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "file",
            "bytes": self.bytes.len(),
            "created_at": self.created_at,
            "expires_at": null,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": null,
        })
    }
}

/// One request line of an input file.
struct Line {
    custom_id: String,
    body: Value,
    prompt: String,
    chat: bool,
}

/// What happened to one line.
enum Outcome {
    Ok(Value),
    Error { status: u16, body: Value },
    Dropped,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    Validating,
    Failed,
    InProgress,
    Finalizing,
    Completed,
    Expired,
    Cancelling,
    Cancelled,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Validating => "validating",
            Status::Failed => "failed",
            Status::InProgress => "in_progress",
            Status::Finalizing => "finalizing",
            Status::Completed => "completed",
            Status::Expired => "expired",
            Status::Cancelling => "cancelling",
            Status::Cancelled => "cancelled",
        }
    }
}

struct BatchObj {
    id: String,
    endpoint: String,
    input_file_id: String,
    metadata: Map<String, Value>,
    created: Instant,
    created_at: u64,
    lines: Vec<Line>,
    /// Processing (and output) order: a shuffle of the input order.
    order: Vec<usize>,
    /// Outcomes of the first `outcomes.len()` lines of `order`.
    outcomes: Vec<Outcome>,
    validation_errors: Vec<Value>,
    model: String,
    tokens: u64,
    request_set: String,
    expires: bool,
    status: Status,
    /// When the current status started.
    since: Instant,
    times: BTreeMap<&'static str, u64>,
    /// Lines done when a cancel or an expiry froze the batch.
    frozen: Option<usize>,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    polls: u64,
}

impl BatchObj {
    fn counts(&self) -> (usize, usize) {
        let ok = self
            .outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Ok(_)))
            .count();
        let failed = self
            .outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Error { .. }))
            .count();
        (ok, failed)
    }

    fn json(&self) -> Value {
        let (completed, failed) = self.counts();
        let errors = if self.validation_errors.is_empty() || self.status != Status::Failed {
            Value::Null
        } else {
            json!({"object": "list", "data": self.validation_errors})
        };
        let time = |name: &str| {
            self.times
                .get(name)
                .copied()
                .map_or(Value::Null, Value::from)
        };
        json!({
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": errors,
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.status.as_str(),
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "in_progress_at": time("in_progress_at"),
            "expires_at": self.created_at + 24 * 3600,
            "finalizing_at": time("finalizing_at"),
            "completed_at": time("completed_at"),
            "failed_at": time("failed_at"),
            "expired_at": time("expired_at"),
            "cancelling_at": time("cancelling_at"),
            "cancelled_at": time("cancelled_at"),
            "request_counts": {"total": self.lines.len(), "completed": completed, "failed": failed},
            "metadata": self.metadata,
        })
    }
}

#[derive(Default)]
struct Counters {
    uploads: u64,
    upload_bytes: u64,
    file_retrieves: u64,
    downloads: u64,
    download_bytes: u64,
    creates: u64,
    create_errors: u64,
    retrieves: u64,
    lists: u64,
    cancels: u64,
    lines_ok: u64,
    lines_failed: u64,
    lines_dropped: u64,
    max_enqueued_tokens: u64,
}

pub(crate) struct Engine {
    config: FakeBatchConfig,
    files: HashMap<String, FileObj>,
    batches: Vec<BatchObj>,
    by_id: HashMap<String, usize>,
    /// Times each `custom_id` was failed or dropped on purpose.
    injected: HashMap<String, u32>,
    ok_per_custom_id: BTreeMap<String, u64>,
    counters: Counters,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random_id(prefix: &str) -> String {
    format!("{prefix}{:024x}", rand::random::<u128>() >> 32)
}

fn sha256_hex(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([b'\n']);
    }
    hex::encode(hasher.finalize())
}

fn line_error(line: usize, code: &str, message: String, param: Option<&str>) -> Value {
    json!({"code": code, "message": message, "param": param, "line": line})
}

impl Engine {
    pub fn new(config: FakeBatchConfig) -> Self {
        Engine {
            config,
            files: HashMap::new(),
            batches: Vec::new(),
            by_id: HashMap::new(),
            injected: HashMap::new(),
            ok_per_custom_id: BTreeMap::new(),
            counters: Counters::default(),
        }
    }

    pub fn config_mut(&mut self) -> &mut FakeBatchConfig {
        &mut self.config
    }

    pub fn upload(
        &mut self,
        purpose: &str,
        filename: &str,
        bytes: Vec<u8>,
    ) -> Result<Value, ApiError> {
        if purpose != "batch" {
            return Err(ApiError::invalid(
                "purpose",
                "invalid_value",
                format!("'{purpose}' is not one of the purposes this fake accepts: 'batch'."),
            ));
        }
        self.counters.uploads += 1;
        self.counters.upload_bytes += bytes.len() as u64;
        let file = FileObj {
            id: random_id("file-"),
            bytes,
            filename: filename.to_string(),
            purpose: purpose.to_string(),
            created_at: unix_now(),
        };
        let body = file.json();
        self.files.insert(file.id.clone(), file);
        Ok(body)
    }

    pub fn file(&mut self, id: &str) -> Option<Value> {
        self.counters.file_retrieves += 1;
        self.files.get(id).map(FileObj::json)
    }

    pub fn content(&mut self, id: &str) -> Option<Vec<u8>> {
        let bytes = self.files.get(id)?.bytes.clone();
        self.counters.downloads += 1;
        self.counters.download_bytes += bytes.len() as u64;
        Some(bytes)
    }

    pub fn create(&mut self, body: &Value) -> Result<Value, ApiError> {
        let result = self.try_create(body);
        match &result {
            Ok(_) => self.counters.creates += 1,
            Err(_) => self.counters.create_errors += 1,
        }
        result
    }

    fn try_create(&mut self, body: &Value) -> Result<Value, ApiError> {
        let obj = body
            .as_object()
            .ok_or_else(|| ApiError::unparsable_body("the body must be a JSON object"))?;
        let text = |name: &str| -> Result<String, ApiError> {
            obj.get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    ApiError::invalid(
                        name,
                        "missing_required_parameter",
                        format!("Missing required parameter: '{name}'."),
                    )
                })
        };
        let input_file_id = text("input_file_id")?;
        let endpoint = text("endpoint")?;
        let window = text("completion_window")?;
        if !ENDPOINTS.contains(&endpoint.as_str()) {
            return Err(ApiError::invalid(
                "endpoint",
                "invalid_value",
                format!(
                    "Invalid endpoint '{endpoint}'; supported: {}.",
                    ENDPOINTS.join(", ")
                ),
            ));
        }
        if window != "24h" {
            return Err(ApiError::invalid(
                "completion_window",
                "invalid_value",
                format!("Invalid completion_window '{window}'; the only supported value is '24h'."),
            ));
        }
        let metadata = match obj.get("metadata") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => {
                return Err(ApiError::invalid(
                    "metadata",
                    "invalid_type",
                    "metadata must be an object of strings.",
                ))
            }
        };
        if metadata.len() > MAX_METADATA_KEYS {
            return Err(ApiError::invalid(
                "metadata",
                "invalid_value",
                format!(
                    "metadata has {} keys; at most {MAX_METADATA_KEYS} are allowed.",
                    metadata.len()
                ),
            ));
        }
        for (k, v) in &metadata {
            let ok = k.len() <= MAX_METADATA_KEY
                && v.as_str().is_some_and(|s| s.len() <= MAX_METADATA_VALUE);
            if !ok {
                return Err(ApiError::invalid(
                    "metadata",
                    "invalid_value",
                    format!("metadata key {k:?}: keys are strings of at most {MAX_METADATA_KEY} characters, values strings of at most {MAX_METADATA_VALUE}."),
                ));
            }
        }
        let file = self.files.get(&input_file_id).ok_or_else(|| {
            ApiError::invalid(
                "input_file_id",
                "invalid_value",
                format!("Could not find file '{input_file_id}'."),
            )
        })?;
        if file.purpose != "batch" {
            return Err(ApiError::invalid(
                "input_file_id",
                "invalid_value",
                format!(
                    "File '{input_file_id}' has purpose '{}', not 'batch'.",
                    file.purpose
                ),
            ));
        }
        let (lines, mut errors, model, tokens) = parse_input(&file.bytes, &endpoint, &self.config);
        for (i, line) in lines.iter().enumerate() {
            if let Some(needle) = self
                .config
                .fail_validation_containing
                .iter()
                .find(|n| line.prompt.contains(n.as_str()))
            {
                errors.push(line_error(
                    i + 1,
                    "invalid_request",
                    format!("The fake is configured to refuse lines containing {needle:?}."),
                    Some("body"),
                ));
            }
        }
        let mut ids: Vec<&str> = lines.iter().map(|l| l.custom_id.as_str()).collect();
        ids.sort_unstable();
        let request_set = sha256_hex(&ids);
        let ordinal = self.batches.len() as u64 + 1;
        let mut order: Vec<usize> = (0..lines.len()).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.config.shuffle_seed ^ ordinal);
        order.shuffle(&mut rng);
        let now = Instant::now();
        let batch = BatchObj {
            id: random_id("batch_"),
            endpoint,
            input_file_id,
            metadata,
            created: now,
            created_at: unix_now(),
            lines,
            order,
            outcomes: Vec::new(),
            validation_errors: errors,
            model,
            tokens,
            request_set,
            expires: ordinal <= self.config.expire_first_batches,
            status: Status::Validating,
            since: now,
            times: BTreeMap::new(),
            frozen: None,
            output_file_id: None,
            error_file_id: None,
            polls: 0,
        };
        let body = batch.json();
        self.by_id.insert(batch.id.clone(), self.batches.len());
        self.batches.push(batch);
        Ok(body)
    }

    pub fn retrieve(&mut self, id: &str, sync: &FakeConfig) -> Option<Value> {
        self.counters.retrieves += 1;
        let index = *self.by_id.get(id)?;
        self.advance(index, sync);
        let batch = &mut self.batches[index];
        batch.polls += 1;
        Some(batch.json())
    }

    pub fn list(
        &mut self,
        after: Option<&str>,
        limit: usize,
        sync: &FakeConfig,
    ) -> Result<Value, ApiError> {
        self.counters.lists += 1;
        self.advance_all(sync);
        let newest_first: Vec<usize> = (0..self.batches.len()).rev().collect();
        let start = match after {
            None => 0,
            Some(cursor) => match self.by_id.get(cursor) {
                Some(&index) => newest_first
                    .iter()
                    .position(|&i| i == index)
                    .map_or(newest_first.len(), |p| p + 1),
                None => {
                    return Err(ApiError::invalid(
                        "after",
                        "invalid_value",
                        format!("No batch found with id '{cursor}'."),
                    ))
                }
            },
        };
        let page: Vec<usize> = newest_first
            .iter()
            .skip(start)
            .take(limit)
            .copied()
            .collect();
        let data: Vec<Value> = page.iter().map(|&i| self.batches[i].json()).collect();
        let has_more = start + page.len() < newest_first.len();
        let id_of =
            |i: Option<&usize>| i.map_or(Value::Null, |&i| Value::from(self.batches[i].id.clone()));
        Ok(json!({
            "object": "list",
            "data": data,
            "first_id": id_of(page.first()),
            "last_id": id_of(page.last()),
            "has_more": has_more,
        }))
    }

    pub fn cancel(&mut self, id: &str, sync: &FakeConfig) -> Result<Value, ApiError> {
        self.counters.cancels += 1;
        let index = *self.by_id.get(id).ok_or_else(|| not_found(id))?;
        self.advance(index, sync);
        let now = Instant::now();
        let status = self.batches[index].status;
        match status {
            Status::Validating | Status::InProgress | Status::Finalizing => {
                let done = match status {
                    Status::Validating => 0,
                    Status::Finalizing => self.batches[index].lines.len(),
                    _ => self.progress(index, now),
                };
                self.run_lines(index, done, sync);
                let batch = &mut self.batches[index];
                batch.frozen = Some(done);
                set_status(batch, Status::Cancelling, now);
            }
            Status::Cancelling => {}
            other => {
                return Err(ApiError::invalid(
                    "batch_id",
                    "invalid_state",
                    format!("Cannot cancel a batch with status '{}'.", other.as_str()),
                ))
            }
        }
        Ok(self.batches[index].json())
    }

    pub fn advance_all(&mut self, sync: &FakeConfig) {
        for index in 0..self.batches.len() {
            self.advance(index, sync);
        }
    }

    /// Lines of batch `index` done at `now` while in progress.
    fn progress(&self, index: usize, now: Instant) -> usize {
        let batch = &self.batches[index];
        let total = batch.lines.len();
        let span = self.config.in_progress;
        if span.is_zero() {
            return total;
        }
        let elapsed = now.saturating_duration_since(batch.since);
        ((total as f64) * (elapsed.as_secs_f64() / span.as_secs_f64()).min(1.0)).floor() as usize
    }

    /// Input tokens of batches of `model` in progress or finalizing.
    fn enqueued(&self, model: &str) -> u64 {
        self.batches
            .iter()
            .filter(|b| {
                b.model == model && matches!(b.status, Status::InProgress | Status::Finalizing)
            })
            .map(|b| b.tokens)
            .sum()
    }

    /// Moves batch `index` through every status change due by now.
    fn advance(&mut self, index: usize, sync: &FakeConfig) {
        let now = Instant::now();
        loop {
            let (status, since) = (self.batches[index].status, self.batches[index].since);
            let elapsed = now.saturating_duration_since(since);
            match status {
                Status::Validating => {
                    if elapsed < self.config.validating {
                        return;
                    }
                    let at = since + self.config.validating;
                    let model = self.batches[index].model.clone();
                    let tokens = self.batches[index].tokens;
                    if let Some(limit) = self.config.enqueued_token_limit {
                        let enqueued = self.enqueued(&model);
                        if enqueued + tokens > limit {
                            self.batches[index].validation_errors.push(line_error(
                                0,
                                "token_limit_exceeded",
                                format!(
                                    "Enqueued token limit reached for {model} in organization \
                                     org-fake. Limit: {limit} enqueued tokens. Please try again \
                                     once some in_progress batches have been completed."
                                ),
                                None,
                            ));
                        }
                    }
                    let batch = &mut self.batches[index];
                    if batch.validation_errors.is_empty() {
                        set_status(batch, Status::InProgress, at);
                        let enqueued = self.enqueued(&model);
                        self.counters.max_enqueued_tokens =
                            self.counters.max_enqueued_tokens.max(enqueued);
                    } else {
                        set_status(batch, Status::Failed, at);
                        return;
                    }
                }
                Status::InProgress => {
                    let expire_at = self.config.expire_after;
                    if self.batches[index].expires && elapsed >= expire_at {
                        let at = since + expire_at;
                        let done = self.progress(index, at);
                        self.run_lines(index, done, sync);
                        self.batches[index].frozen = Some(done);
                        self.finish(index, Status::Expired, at);
                        return;
                    }
                    if elapsed < self.config.in_progress {
                        let done = self.progress(index, now);
                        self.run_lines(index, done, sync);
                        return;
                    }
                    let total = self.batches[index].lines.len();
                    self.run_lines(index, total, sync);
                    let at = since + self.config.in_progress;
                    set_status(&mut self.batches[index], Status::Finalizing, at);
                }
                Status::Finalizing => {
                    if elapsed < self.config.finalizing {
                        return;
                    }
                    let at = since + self.config.finalizing;
                    self.finish(index, Status::Completed, at);
                    return;
                }
                Status::Cancelling => {
                    if elapsed < self.config.cancelling {
                        return;
                    }
                    let at = since + self.config.cancelling;
                    self.finish(index, Status::Cancelled, at);
                    return;
                }
                _ => return,
            }
        }
    }

    /// Answers lines of batch `index` in processing order up to `done`.
    fn run_lines(&mut self, index: usize, done: usize, sync: &FakeConfig) {
        while self.batches[index].outcomes.len() < done {
            let position = self.batches[index].outcomes.len();
            let line_index = self.batches[index].order[position];
            let outcome = {
                let Engine {
                    batches,
                    config,
                    injected,
                    ..
                } = &mut *self;
                answer(config, injected, &batches[index].lines[line_index], sync)
            };
            let custom_id = self.batches[index].lines[line_index].custom_id.clone();
            match &outcome {
                Outcome::Ok(_) => {
                    self.counters.lines_ok += 1;
                    *self.ok_per_custom_id.entry(custom_id).or_insert(0) += 1;
                }
                Outcome::Error { .. } => self.counters.lines_failed += 1,
                Outcome::Dropped => self.counters.lines_dropped += 1,
            }
            self.batches[index].outcomes.push(outcome);
        }
    }
}

/// The outcome of one line: an injected drop or error, else the fake model's answer.
fn answer(
    config: &FakeBatchConfig,
    injected_counts: &mut HashMap<String, u32>,
    line: &Line,
    sync: &FakeConfig,
) -> Outcome {
    let injected = injected_counts.get(&line.custom_id).copied().unwrap_or(0);
    if let Some((_, times)) = config
        .drop_lines
        .iter()
        .find(|(needle, _)| line.prompt.contains(needle.as_str()))
    {
        if injected < *times {
            injected_counts.insert(line.custom_id.clone(), injected + 1);
            return Outcome::Dropped;
        }
    }
    if let Some(err) = config
        .line_errors
        .iter()
        .find(|e| line.prompt.contains(e.needle.as_str()))
    {
        if injected < err.times {
            injected_counts.insert(line.custom_id.clone(), injected + 1);
            let status =
                StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let api = if status.is_server_error() {
                ApiError::server_error()
            } else {
                ApiError::invalid(
                    "messages",
                    "invalid_prompt",
                    "Invalid prompt: the fake is configured to reject this line.",
                )
            };
            return Outcome::Error {
                status: status.as_u16(),
                body: api.body(),
            };
        }
    }
    let answered = if line.chat {
        params::parse_chat(&line.body, sync.max_tokens_limit)
            .and_then(|req| check(sync, &req.common.model, &line.prompt).map(|()| req))
            .map(|req| server::chat_response(sync, &req, &line.prompt))
    } else {
        params::parse_completion(&line.body, sync.max_tokens_limit)
            .and_then(|req| check(sync, &req.common.model, &line.prompt).map(|()| req))
            .map(|req| server::completion_response(sync, &req))
    };
    match answered {
        Ok(body) => Outcome::Ok(body),
        Err(e) => Outcome::Error {
            status: e.status.as_u16(),
            body: e.body(),
        },
    }
}

impl Engine {
    /// Ends batch `index` in `status` at `at`, writing its output and error files.
    fn finish(&mut self, index: usize, status: Status, at: Instant) {
        let code = match status {
            Status::Expired => Some((
                "batch_expired",
                "This request could not be executed before the completion window expired.",
            )),
            Status::Cancelled => Some(("batch_cancelled", "This request was cancelled.")),
            _ => None,
        };
        let batch = &self.batches[index];
        let mut output = String::new();
        let mut errors = String::new();
        for (position, &line_index) in batch.order.iter().enumerate() {
            let custom_id = &batch.lines[line_index].custom_id;
            let request_id = random_id("req_");
            let line = match batch.outcomes.get(position) {
                Some(Outcome::Ok(body)) => Some((
                    true,
                    json!({
                        "id": random_id("batch_req_"),
                        "custom_id": custom_id,
                        "response": {"status_code": 200, "request_id": request_id, "body": body},
                        "error": null,
                    }),
                )),
                Some(Outcome::Error { status, body }) => Some((
                    false,
                    json!({
                        "id": random_id("batch_req_"),
                        "custom_id": custom_id,
                        "response": {"status_code": status, "request_id": request_id, "body": body},
                        "error": null,
                    }),
                )),
                Some(Outcome::Dropped) => None,
                None => code.map(|(code, message)| {
                    (
                        false,
                        json!({
                            "id": random_id("batch_req_"),
                            "custom_id": custom_id,
                            "response": null,
                            "error": {"code": code, "message": message},
                        }),
                    )
                }),
            };
            if let Some((ok, value)) = line {
                let target = if ok { &mut output } else { &mut errors };
                target.push_str(&value.to_string());
                target.push('\n');
            }
        }
        let batch_id = batch.id.clone();
        let mut store = |text: String, kind: &str| -> Option<String> {
            if text.is_empty() {
                return None;
            }
            let file = FileObj {
                id: random_id("file-"),
                bytes: text.into_bytes(),
                filename: format!("{batch_id}_{kind}.jsonl"),
                purpose: "batch_output".to_string(),
                created_at: unix_now(),
            };
            let id = file.id.clone();
            self.files.insert(id.clone(), file);
            Some(id)
        };
        let output_id = store(output, "output");
        let error_id = store(errors, "error");
        let batch = &mut self.batches[index];
        batch.output_file_id = output_id;
        batch.error_file_id = error_id;
        set_status(batch, status, at);
    }

    pub fn stats(&self) -> FakeBatchStats {
        let c = &self.counters;
        FakeBatchStats {
            uploads: c.uploads,
            upload_bytes: c.upload_bytes,
            file_retrieves: c.file_retrieves,
            downloads: c.downloads,
            download_bytes: c.download_bytes,
            creates: c.creates,
            create_errors: c.create_errors,
            retrieves: c.retrieves,
            lists: c.lists,
            cancels: c.cancels,
            lines_ok: c.lines_ok,
            lines_failed: c.lines_failed,
            lines_dropped: c.lines_dropped,
            max_enqueued_tokens: c.max_enqueued_tokens,
            batches: self
                .batches
                .iter()
                .map(|b| BatchSummary {
                    id: b.id.clone(),
                    request_set: b.request_set.clone(),
                    status: b.status.as_str().to_string(),
                    requests: b.lines.len(),
                    tokens: b.tokens,
                    polls: b.polls,
                    metadata: b.metadata.clone(),
                })
                .collect(),
            ok_per_custom_id: self.ok_per_custom_id.clone(),
        }
    }
}

fn not_found(id: &str) -> ApiError {
    let mut err = ApiError::invalid_url("GET", &format!("/v1/batches/{id}"));
    err.message = format!("No batch found with id '{id}'.");
    err
}

fn set_status(batch: &mut BatchObj, status: Status, at: Instant) {
    batch.status = status;
    batch.since = at;
    let wall = batch.created_at + at.saturating_duration_since(batch.created).as_secs();
    let name = match status {
        Status::InProgress => "in_progress_at",
        Status::Finalizing => "finalizing_at",
        Status::Completed => "completed_at",
        Status::Failed => "failed_at",
        Status::Expired => "expired_at",
        Status::Cancelling => "cancelling_at",
        Status::Cancelled => "cancelled_at",
        Status::Validating => return,
    };
    batch.times.insert(name, wall);
}

/// The model checks of the synchronous server that apply to a line.
fn check(sync: &FakeConfig, model: &str, prompt: &str) -> Result<(), ApiError> {
    if model == "missing-model" {
        return Err(ApiError::model_not_found(model));
    }
    if let Some(needle) = sync
        .fail_prompts_containing
        .iter()
        .find(|needle| prompt.contains(needle.as_str()))
    {
        return Err(ApiError::invalid(
            "messages",
            "invalid_prompt",
            format!("Invalid prompt: the fake server is configured to reject prompts containing {needle:?}."),
        ));
    }
    Ok(())
}

/// Parses an input file: its lines, the validation errors (1-based line numbers, as the API
/// reports them), the model every line names, and the input tokens.
fn parse_input(
    bytes: &[u8],
    endpoint: &str,
    config: &FakeBatchConfig,
) -> (Vec<Line>, Vec<Value>, String, u64) {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    let mut model: Option<String> = None;
    let mut tokens = 0u64;
    if bytes.len() as u64 > config.max_file_bytes {
        errors.push(line_error(
            0,
            "file_too_large",
            format!(
                "The input file is {} bytes; at most {} are allowed.",
                bytes.len(),
                config.max_file_bytes
            ),
            None,
        ));
        return (lines, errors, String::new(), 0);
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            errors.push(line_error(
                0,
                "invalid_file",
                format!("The file is not UTF-8: {e}."),
                None,
            ));
            return (lines, errors, String::new(), 0);
        }
    };
    let mut seen = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let value: Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            Err(e) => {
                errors.push(line_error(
                    n,
                    "invalid_json_line",
                    format!("Line {n} is not JSON: {e}."),
                    None,
                ));
                continue;
            }
        };
        let custom_id = value.get("custom_id").and_then(Value::as_str);
        let method = value.get("method").and_then(Value::as_str);
        let url = value.get("url").and_then(Value::as_str);
        let body = value.get("body").filter(|b| b.is_object());
        let (Some(custom_id), Some(method), Some(url), Some(body)) = (custom_id, method, url, body)
        else {
            errors.push(line_error(
                n,
                "invalid_request",
                format!("Line {n} needs `custom_id`, `method`, `url` and an object `body`."),
                None,
            ));
            continue;
        };
        if method != "POST" {
            errors.push(line_error(
                n,
                "invalid_method",
                format!("Line {n}: method must be POST."),
                Some("method"),
            ));
            continue;
        }
        if url != endpoint {
            errors.push(line_error(
                n,
                "mismatched_endpoint",
                format!("Line {n}: url {url:?} does not match the batch's endpoint {endpoint:?}."),
                Some("url"),
            ));
            continue;
        }
        if let Some(first) = seen.insert(custom_id.to_string(), n) {
            errors.push(line_error(
                n,
                "duplicate_custom_id",
                format!("Line {n}: custom_id {custom_id:?} is already used on line {first}."),
                Some("custom_id"),
            ));
            continue;
        }
        let line_model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match &model {
            None => model = Some(line_model.to_string()),
            Some(m) if m != line_model => {
                errors.push(line_error(
                    n,
                    "mismatched_model",
                    format!("Line {n}: every request of a batch must use one model ({m:?}, not {line_model:?})."),
                    Some("body.model"),
                ));
                continue;
            }
            Some(_) => {}
        }
        let chat = url == "/v1/chat/completions";
        let prompt = params::prompt_text(body, chat);
        tokens += token_count(&prompt);
        lines.push(Line {
            custom_id: custom_id.to_string(),
            body: body.clone(),
            prompt,
            chat,
        });
    }
    if lines.is_empty() && errors.is_empty() {
        errors.push(line_error(
            0,
            "empty_file",
            "The input file has no requests.".into(),
            None,
        ));
    }
    if lines.len() > config.max_lines {
        errors.push(line_error(
            0,
            "too_many_requests",
            format!(
                "The input file has {} requests; at most {} are allowed.",
                lines.len(),
                config.max_lines
            ),
            None,
        ));
    }
    (lines, errors, model.unwrap_or_default(), tokens)
}
