//! HTTP side of the fake Batch API: auth, multipart uploads, and the Files and Batches routes
//! over the `fake_batch_engine` model. Unmatched routes fall through to the fake synchronous
//! server.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::shared::{lock, BatchShared};
use crate::api_error::ApiError;
use crate::FakeConfig;

/// Uploads up to the API's 200 MB, plus the multipart envelope.
const UPLOAD_LIMIT: usize = 256 * 1024 * 1024;

pub(crate) fn router(shared: Arc<BatchShared>, sync: Router) -> Router {
    Router::new()
        .route("/v1/files", post(upload))
        .route("/v1/files/{id}", get(file))
        .route("/v1/files/{id}/content", get(content))
        .route("/v1/batches", post(create).get(list))
        .route("/v1/batches/{id}", get(retrieve))
        .route("/v1/batches/{id}/cancel", post(cancel))
        .route("/_fake/batch/stats", get(stats))
        .layer(DefaultBodyLimit::max(UPLOAD_LIMIT))
        .with_state(shared)
        .fallback_service(sync)
}

fn check_auth(config: &FakeConfig, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &config.api_key else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => Err(ApiError::missing_api_key()),
        Some(key) if key.trim() == expected => Ok(()),
        Some(_) => Err(ApiError::wrong_api_key()),
    }
}

fn reply(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(value) => (StatusCode::OK, Json(value)).into_response(),
        Err(e) => e.into_response(),
    }
}

fn missing(kind: &str, id: &str) -> ApiError {
    let mut err = ApiError::invalid_url("GET", id);
    err.message = format!("No {kind} found with id '{id}'.");
    err
}

async fn upload(State(s): State<Arc<BatchShared>>, headers: HeaderMap, body: Bytes) -> Response {
    let config = s.sync_config();
    reply((|| {
        check_auth(&config, &headers)?;
        let parts = parse_multipart(&headers, &body)?;
        let purpose = parts
            .iter()
            .find(|p| p.name == "purpose")
            .map(|p| String::from_utf8_lossy(&p.data).trim().to_string())
            .ok_or_else(|| {
                ApiError::invalid(
                    "purpose",
                    "missing_required_parameter",
                    "Missing required parameter: 'purpose'.",
                )
            })?;
        let file = parts
            .into_iter()
            .find(|p| p.name == "file")
            .ok_or_else(|| {
                ApiError::invalid(
                    "file",
                    "missing_required_parameter",
                    "Missing required parameter: 'file'.",
                )
            })?;
        let filename = file.filename.unwrap_or_else(|| "upload.jsonl".to_string());
        lock(&s.engine).upload(&purpose, &filename, file.data)
    })())
}

async fn file(
    State(s): State<Arc<BatchShared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let config = s.sync_config();
    reply(check_auth(&config, &headers).and_then(|()| {
        lock(&s.engine)
            .file(&id)
            .ok_or_else(|| missing("file", &id))
    }))
}

async fn content(
    State(s): State<Arc<BatchShared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let config = s.sync_config();
    if let Err(e) = check_auth(&config, &headers) {
        return e.into_response();
    }
    match lock(&s.engine).content(&id) {
        Some(bytes) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            bytes,
        )
            .into_response(),
        None => missing("file", &id).into_response(),
    }
}

async fn create(State(s): State<Arc<BatchShared>>, headers: HeaderMap, body: Bytes) -> Response {
    let config = s.sync_config();
    reply(check_auth(&config, &headers).and_then(|()| {
        let value: Value =
            serde_json::from_slice(&body).map_err(|e| ApiError::unparsable_body(&e.to_string()))?;
        lock(&s.engine).create(&value)
    }))
}

async fn retrieve(
    State(s): State<Arc<BatchShared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let config = s.sync_config();
    reply(check_auth(&config, &headers).and_then(|()| {
        lock(&s.engine)
            .retrieve(&id, &config)
            .ok_or_else(|| missing("batch", &id))
    }))
}

#[derive(Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

async fn list(
    State(s): State<Arc<BatchShared>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    let config = s.sync_config();
    reply(check_auth(&config, &headers).and_then(|()| {
        let limit = query.limit.unwrap_or(20);
        if !(1..=100).contains(&limit) {
            return Err(ApiError::invalid(
                "limit",
                "invalid_value",
                format!("limit must be between 1 and 100, not {limit}."),
            ));
        }
        lock(&s.engine).list(query.after.as_deref(), limit, &config)
    }))
}

async fn cancel(
    State(s): State<Arc<BatchShared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let config = s.sync_config();
    reply(check_auth(&config, &headers).and_then(|()| lock(&s.engine).cancel(&id, &config)))
}

#[derive(Deserialize)]
struct StatsQuery {
    /// `?detail=true` keeps the per-request map (large for big runs).
    detail: Option<bool>,
}

async fn stats(State(s): State<Arc<BatchShared>>, Query(query): Query<StatsQuery>) -> Response {
    let config = s.sync_config();
    let mut engine = lock(&s.engine);
    engine.advance_all(&config);
    let stats = engine.stats();
    let stats = if query.detail == Some(true) {
        stats
    } else {
        stats.summary()
    };
    Json(stats).into_response()
}

/// One part of a `multipart/form-data` body.
struct Part {
    name: String,
    filename: Option<String>,
    data: Vec<u8>,
}

/// A small `multipart/form-data` reader (RFC 7578): enough for the Files API's two fields.
fn parse_multipart(headers: &HeaderMap, body: &[u8]) -> Result<Vec<Part>, ApiError> {
    let bad = |why: &str| {
        ApiError::invalid(
            "file",
            "invalid_multipart",
            format!("The upload must be multipart/form-data with `purpose` and `file`: {why}."),
        )
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("multipart/form-data") {
        return Err(bad("wrong Content-Type"));
    }
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"').to_string())
        .ok_or_else(|| bad("no boundary"))?;
    let delimiter = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let mut rest = match find(body, &delimiter) {
        Some(at) => &body[at + delimiter.len()..],
        None => return Err(bad("no part")),
    };
    loop {
        if rest.starts_with(b"--") {
            break;
        }
        let rest_after_crlf = rest
            .strip_prefix(b"\r\n")
            .ok_or_else(|| bad("broken part"))?;
        let header_end = find(rest_after_crlf, b"\r\n\r\n").ok_or_else(|| bad("broken headers"))?;
        let head = String::from_utf8_lossy(&rest_after_crlf[..header_end]).to_string();
        let content = &rest_after_crlf[header_end + 4..];
        let mut end_marker = b"\r\n".to_vec();
        end_marker.extend_from_slice(&delimiter);
        let end = find(content, &end_marker).ok_or_else(|| bad("unterminated part"))?;
        let data = content[..end].to_vec();
        let mut name = String::new();
        let mut filename = None;
        for line in head.lines() {
            if !line.to_ascii_lowercase().starts_with("content-disposition") {
                continue;
            }
            for param in line.split(';').skip(1) {
                let param = param.trim();
                if let Some(v) = param.strip_prefix("name=") {
                    name = v.trim_matches('"').to_string();
                } else if let Some(v) = param.strip_prefix("filename=") {
                    filename = Some(v.trim_matches('"').to_string());
                }
            }
        }
        parts.push(Part {
            name,
            filename,
            data,
        });
        rest = &content[end + end_marker.len()..];
    }
    Ok(parts)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}
