//! Request extractors shared by every handler: the caller's role (bearer
//! token), a JSON body whose errors name the field, and a job id in the path.
//!
//! Handlers list what they need as arguments, so no handler repeats the
//! checks. Axum runs the header extractors before the body, so a request
//! without a valid token is refused before its body is read.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::ApiError;
use crate::coordinator::Coordinator;

/// The caller holds the admin token (job routes).
pub(super) struct Admin;

/// The caller holds the worker token or the admin token (lease and
/// provider-batch routes).
pub(super) struct WorkerOrAdmin;

impl FromRequestParts<Coordinator> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, c: &Coordinator) -> Result<Self, ApiError> {
        authorize(c, &parts.headers, Role::Admin).map(|()| Admin)
    }
}

impl FromRequestParts<Coordinator> for WorkerOrAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, c: &Coordinator) -> Result<Self, ApiError> {
        authorize(c, &parts.headers, Role::Worker).map(|()| WorkerOrAdmin)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Admin,
    Worker,
}

/// Whether `given` is the `expected` token, in time that depends on neither
/// where they differ nor their lengths: both are hashed first, and the
/// digests (always 32 bytes) are compared without stopping at the first
/// difference. An empty expected token matches nothing.
fn token_matches(given: &str, expected: &str) -> bool {
    if expected.is_empty() {
        return false;
    }
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Admin routes take the admin token; worker routes take either token.
fn authorize(c: &Coordinator, headers: &HeaderMap, role: Role) -> Result<(), ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(given) = given else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing bearer token: send `Authorization: Bearer <token>`",
        ));
    };
    let config = c.config();
    let ok = token_matches(given, &config.admin_token)
        || (role == Role::Worker && token_matches(given, &config.worker_token));
    if ok {
        return Ok(());
    }
    let which = match role {
        Role::Admin => "the admin token",
        Role::Worker => "the worker or admin token",
    };
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        format!("invalid bearer token: this route needs {which}"),
    ))
}

/// A JSON body; a parse error names the offending field.
pub(super) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        parse_body(&body).map(JsonBody)
    }
}

/// A JSON body carrying a job spec (submit, rescore), at most the
/// operator's `max_spec_bytes`: a spec is small, and one that is not would
/// cost the coordinator memory to parse and plan.
pub(super) struct SpecBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Coordinator> for SpecBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, c: &Coordinator) -> Result<Self, ApiError> {
        let limit = c.config().limits.max_spec_bytes;
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the job spec is larger than {limit} bytes, the most this coordinator \
                     accepts (its operator sets that with `serve --max-spec-bytes`)"
                ),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let cap = usize::try_from(limit).unwrap_or(usize::MAX);
        let body = axum::body::to_bytes(req.into_body(), cap)
            .await
            .map_err(|e| {
                let inner = e.into_inner();
                if inner
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    too_large()
                } else {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("cannot read the request body: {inner}"),
                    )
                }
            })?;
        parse_body(&body).map(SpecBody)
    }
}

fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let inner = quote_capped(&inner.to_string());
        let path = quote_capped(&path);
        let message = if path.is_empty() || path == "." {
            format!("invalid request body: {inner}")
        } else {
            format!("invalid request body at `{path}`: {inner}")
        };
        ApiError::new(StatusCode::BAD_REQUEST, message)
    })
}

/// Most characters of a caller's input an error answer quotes back: enough
/// to find the mistake, never a copy of a large body.
const MAX_ECHO_CHARS: usize = 300;

/// `text` cut to [`MAX_ECHO_CHARS`] characters, saying how much was left out.
fn quote_capped(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        None => text.to_string(),
        Some((end, _)) => format!(
            "{}… ({} more characters)",
            &text[..end],
            text[end..].chars().count()
        ),
    }
}

/// Query parameters; a parse error is a JSON `ErrorBody` like every other
/// error (axum's own `Query` answers in plain text).
pub(super) struct QueryArgs<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(args)| QueryArgs(args))
            .map_err(|e| ApiError::new(e.status(), quote_capped(&e.body_text())))
    }
}

/// The `{id}` of a job route.
pub(super) struct JobId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for JobId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        Uuid::parse_str(&raw).map(JobId).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "{} is not a job id (expected a UUID): {e}",
                    quote_capped(&format!("{raw:?}"))
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_themselves() {
        assert!(token_matches("a-long-enough-token", "a-long-enough-token"));
        assert!(!token_matches("a-long-enough-tokeN", "a-long-enough-token"));
        assert!(!token_matches(
            "a-long-enough-token-and-more",
            "a-long-enough-token"
        ));
        assert!(!token_matches("", "a-long-enough-token"));
        assert!(!token_matches("", ""), "an unset token never matches");
    }

    /// Found by schemathesis: `GET /v1/jobs/{id}/failures?limit=-1` was
    /// answered in plain text, not with the JSON `ErrorBody` of every error.
    #[tokio::test]
    async fn a_bad_query_is_a_json_error() {
        use axum::response::IntoResponse;

        #[derive(serde::Deserialize)]
        struct Args {
            #[allow(dead_code)]
            limit: Option<u64>,
        }
        let (mut parts, ()) = axum::http::Request::builder()
            .uri("/v1/jobs/x/failures?limit=-1")
            .body(())
            .unwrap()
            .into_parts();
        let Err(err) = QueryArgs::<Args>::from_request_parts(&mut parts, &()).await else {
            panic!("a negative limit parses");
        };
        let answer = err.into_response();
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
        assert_eq!(answer.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn echoes_are_capped() {
        assert_eq!(quote_capped("short"), "short");
        let long = "x".repeat(MAX_ECHO_CHARS + 50);
        let quoted = quote_capped(&long);
        assert!(quoted.starts_with(&"x".repeat(MAX_ECHO_CHARS)));
        assert!(quoted.ends_with("… (50 more characters)"), "{quoted}");
        // Cut on a character boundary.
        let wide = "é".repeat(MAX_ECHO_CHARS + 1);
        assert!(quote_capped(&wide).ends_with("(1 more characters)"));
    }
}
