//! OpenAI-shaped error answers: `{"error": {"message", "type", "param", "code"}}` plus headers.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// An error answer as the OpenAI API shapes it.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    pub headers: Vec<(HeaderName, String)>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            headers: Vec::new(),
        }
    }

    /// 400 `invalid_request_error` naming the offending parameter.
    pub fn invalid(
        param: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        let mut err = Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message);
        err.param = Some(param.into());
        err.code = Some(code);
        err
    }

    /// 400 for a body that is not JSON (OpenAI names no parameter here).
    pub fn unparsable_body(detail: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!(
                "We could not parse the JSON body of your request ({detail}). The OpenAI API \
                 expects a JSON payload; check that the body is valid JSON."
            ),
        )
    }

    pub fn missing_api_key() -> Self {
        let mut err = Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "You didn't provide an API key. Send it in an `Authorization: Bearer YOUR_KEY` header.",
        );
        err.code = Some("invalid_api_key");
        err
    }

    /// The key is never echoed back, so it cannot leak into logs.
    pub fn wrong_api_key() -> Self {
        let mut err = Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Incorrect API key provided. Check the key your client sends.",
        );
        err.code = Some("invalid_api_key");
        err
    }

    /// [`ApiError::wrong_api_key`] quoting the key it got.
    pub fn wrong_api_key_quoted(key: &str) -> Self {
        let mut err = Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            format!("Incorrect API key provided: {key}. Check the key your client sends."),
        );
        err.code = Some("invalid_api_key");
        err
    }

    pub fn model_not_found(model: &str) -> Self {
        let mut err = Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("The model `{model}` does not exist or you do not have access to it."),
        );
        err.param = Some("model".to_string());
        err.code = Some("model_not_found");
        err
    }

    pub fn invalid_url(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("Invalid URL ({method} {path})"),
        )
    }

    pub fn rate_limited(retry_after_secs: f64) -> Self {
        let mut err = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "requests",
            format!(
                "Rate limit reached for requests (fake server). Please try again in {retry_after_secs}s."
            ),
        );
        err.code = Some("rate_limit_exceeded");
        err
    }

    pub fn server_error() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "The server had an error while processing your request. Sorry about that!",
        )
    }

    pub fn overloaded() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "The engine is currently overloaded, please try again later.",
        )
    }

    pub fn body(&self) -> Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        for (name, value) in &self.headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                response.headers_mut().insert(name.clone(), value);
            }
        }
        response
    }
}
