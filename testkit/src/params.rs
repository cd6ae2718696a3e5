//! Parsing and validation of `/v1/chat/completions` and `/v1/completions` bodies, with the
//! parameter names, limits and error codes of the OpenAI API reference.

use serde_json::{Map, Value};

use crate::api_error::ApiError;

/// Parameters both endpoints share.
#[derive(Debug, Clone)]
pub(crate) struct Common {
    pub model: String,
    pub max_tokens: Option<u32>,
    pub temperature: f64,
    pub stop: Vec<String>,
    pub seed: Option<i64>,
}

#[derive(Debug, Clone)]
pub(crate) struct ChatRequest {
    pub common: Common,
    /// Text of every message, in order (used for prompt token counts).
    pub texts: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct CompletionRequest {
    pub common: Common,
    pub prompt: String,
    pub echo: bool,
    pub logprobs: Option<u32>,
}

const ROLES: [&str; 5] = ["system", "user", "assistant", "developer", "tool"];

/// Fields this server interprets or knowingly ignores; anything else is an "extra" (vLLM-style
/// `top_k`, `extra_body` contents) that is accepted and recorded.
const KNOWN_CHAT: [&str; 20] = [
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "seed",
    "stream",
    "stream_options",
    "user",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "response_format",
    "metadata",
    "store",
];
const KNOWN_COMPLETION: [&str; 17] = [
    "model",
    "prompt",
    "max_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "seed",
    "stream",
    "stream_options",
    "user",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "echo",
    "best_of",
];

/// Fields of `body` outside the endpoint's known set.
pub(crate) fn extras(body: &Value, chat: bool) -> Map<String, Value> {
    let known: &[&str] = if chat { &KNOWN_CHAT } else { &KNOWN_COMPLETION };
    match body.as_object() {
        Some(obj) => obj
            .iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        None => Map::new(),
    }
}

/// Best-effort prompt text for recording and fault matching, even from an invalid body: the last
/// user message for chat, the prompt for completions.
pub(crate) fn prompt_text(body: &Value, chat: bool) -> String {
    if chat {
        let messages = body.get("messages").and_then(Value::as_array);
        messages
            .and_then(|m| {
                m.iter()
                    .rev()
                    .find(|msg| msg.get("role").and_then(Value::as_str) == Some("user"))
            })
            .and_then(|msg| content_text(msg.get("content")?).ok())
            .unwrap_or_default()
    } else {
        match body.get("prompt") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(items)) => match items.as_slice() {
                [Value::String(s)] => s.clone(),
                _ => String::new(),
            },
            _ => String::new(),
        }
    }
}

pub(crate) fn parse_chat(body: &Value, max_tokens_limit: u32) -> Result<ChatRequest, ApiError> {
    let obj = as_object(body)?;
    let messages = match field(obj, "messages") {
        None => return Err(missing("messages")),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(wrong_type("messages", "an array", other)),
    };
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "empty_array",
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an \
             empty array instead.",
        ));
    }
    let mut texts = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        let Some(msg) = message.as_object() else {
            return Err(wrong_type(&param, "an object", message));
        };
        let role = match field(msg, "role") {
            None => return Err(missing(&format!("{param}.role"))),
            Some(Value::String(role)) => role.as_str(),
            Some(other) => return Err(wrong_type(&format!("{param}.role"), "a string", other)),
        };
        if !ROLES.contains(&role) {
            return Err(ApiError::invalid(
                format!("{param}.role"),
                "invalid_value",
                format!(
                    "Invalid value: '{role}'. Supported values are: 'system', 'user', \
                     'assistant', 'developer' and 'tool'."
                ),
            ));
        }
        let text = match field(msg, "content") {
            // Assistant turns that only carry tool calls have no content.
            None if role == "assistant" => String::new(),
            None => return Err(missing(&format!("{param}.content"))),
            Some(content) => content_text(content).map_err(|(sub, expected)| {
                wrong_type(&format!("{param}.content{sub}"), expected, content)
            })?,
        };
        texts.push(text);
    }
    let max_tokens = match field(obj, "max_completion_tokens") {
        Some(_) => opt_u32(obj, "max_completion_tokens", 1, max_tokens_limit)?,
        None => opt_u32(obj, "max_tokens", 1, max_tokens_limit)?,
    };
    Ok(ChatRequest {
        common: common(obj, max_tokens)?,
        texts,
    })
}

pub(crate) fn parse_completion(
    body: &Value,
    max_tokens_limit: u32,
) -> Result<CompletionRequest, ApiError> {
    let obj = as_object(body)?;
    let prompt = match field(obj, "prompt") {
        None => return Err(missing("prompt")),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => match items.as_slice() {
            [Value::String(s)] => s.clone(),
            _ => {
                return Err(ApiError::invalid(
                    "prompt",
                    "invalid_value",
                    "This fake server accepts `prompt` as a string or an array of exactly one \
                     string; send one prompt per request.",
                ))
            }
        },
        Some(other) => return Err(wrong_type("prompt", "a string", other)),
    };
    let echo = match field(obj, "echo") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(wrong_type("echo", "a boolean", other)),
    };
    // vLLM accepts max_tokens = 0 together with echo, to score the prompt only.
    let min_tokens = if echo { 0 } else { 1 };
    // The legacy completions endpoint defaults to 16 tokens.
    let max_tokens = opt_u32(obj, "max_tokens", min_tokens, max_tokens_limit)?.unwrap_or(16);
    let logprobs = opt_u32(obj, "logprobs", 0, 5)?;
    Ok(CompletionRequest {
        common: common(obj, Some(max_tokens))?,
        prompt,
        echo,
        logprobs,
    })
}

fn common(obj: &Map<String, Value>, max_tokens: Option<u32>) -> Result<Common, ApiError> {
    let model = match field(obj, "model") {
        None => return Err(missing("model")),
        Some(Value::String(model)) => model.clone(),
        Some(other) => return Err(wrong_type("model", "a string", other)),
    };
    let temperature = opt_f64(obj, "temperature", 0.0, 2.0)?.unwrap_or(1.0);
    opt_f64(obj, "top_p", 0.0, 1.0)?;
    if let Some(n) = opt_u32(obj, "n", 1, 128)? {
        if n != 1 {
            return Err(ApiError::invalid(
                "n",
                "invalid_value",
                format!(
                    "This fake server only supports n = 1 (got {n}); send one request per sample."
                ),
            ));
        }
    }
    if let Some(Value::Bool(true)) = field(obj, "stream") {
        return Err(ApiError::invalid(
            "stream",
            "invalid_value",
            "This fake server does not support streaming; set `stream` to false.",
        ));
    }
    let stop = match field(obj, "stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            if items.len() > 4 {
                return Err(ApiError::invalid(
                    "stop",
                    "array_above_max_length",
                    format!(
                        "Invalid 'stop': array too long. Expected an array with maximum length 4, \
                         but got an array with length {} instead.",
                        items.len()
                    ),
                ));
            }
            let mut stops = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => stops.push(s.clone()),
                    other => return Err(wrong_type(&format!("stop[{i}]"), "a string", other)),
                }
            }
            stops
        }
        Some(other) => return Err(wrong_type("stop", "a string or an array of strings", other)),
    };
    let seed = match field(obj, "seed") {
        None => None,
        Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
        Some(other) => return Err(wrong_type("seed", "an integer", other)),
    };
    Ok(Common {
        model,
        max_tokens,
        temperature,
        stop,
        seed,
    })
}

/// Text of a message `content`: a string, or an array of `{"type": "text", "text": ...}` parts.
/// On error returns the sub-path and the expected shape.
fn content_text(content: &Value) -> Result<String, (String, &'static str)> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                let is_text = part.get("type").and_then(Value::as_str) == Some("text");
                match part.get("text").and_then(Value::as_str) {
                    Some(t) if is_text => text.push_str(t),
                    _ => {
                        return Err((
                            format!("[{j}]"),
                            "a text part {\"type\": \"text\", \"text\": ...}",
                        ))
                    }
                }
            }
            Ok(text)
        }
        _ => Err((String::new(), "a string or an array of text parts")),
    }
}

fn as_object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.as_object().ok_or_else(|| {
        ApiError::unparsable_body(&format!("expected a JSON object, got {}", type_name(body)))
    })
}

/// A field, treating an explicit `null` as absent, as the OpenAI API does for optional fields.
fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn opt_u32(
    obj: &Map<String, Value>,
    key: &str,
    min: u32,
    max: u32,
) -> Result<Option<u32>, ApiError> {
    let Some(value) = field(obj, key) else {
        return Ok(None);
    };
    let Some(n) = value.as_i64() else {
        return Err(wrong_type(key, "an integer", value));
    };
    if n < i64::from(min) {
        return Err(ApiError::invalid(
            key,
            "integer_below_min_value",
            format!("Invalid '{key}': integer below minimum value. Expected a value >= {min}, but got {n} instead."),
        ));
    }
    if n > i64::from(max) {
        return Err(ApiError::invalid(
            key,
            "integer_above_max_value",
            format!("Invalid '{key}': integer above maximum value. Expected a value <= {max}, but got {n} instead."),
        ));
    }
    Ok(u32::try_from(n).ok())
}

fn opt_f64(
    obj: &Map<String, Value>,
    key: &str,
    min: f64,
    max: f64,
) -> Result<Option<f64>, ApiError> {
    let Some(value) = field(obj, key) else {
        return Ok(None);
    };
    let Some(x) = value.as_f64() else {
        return Err(wrong_type(key, "a number", value));
    };
    if x < min {
        return Err(ApiError::invalid(
            key,
            "decimal_below_min_value",
            format!("Invalid '{key}': decimal below minimum value. Expected a value >= {min}, but got {x} instead."),
        ));
    }
    if x > max {
        return Err(ApiError::invalid(
            key,
            "decimal_above_max_value",
            format!("Invalid '{key}': decimal above maximum value. Expected a value <= {max}, but got {x} instead."),
        ));
    }
    Ok(Some(x))
}

fn missing(param: &str) -> ApiError {
    ApiError::invalid(
        param,
        "missing_required_parameter",
        format!("Missing required parameter: '{param}'."),
    )
}

fn wrong_type(param: &str, expected: &str, got: &Value) -> ApiError {
    ApiError::invalid(
        param,
        "invalid_type",
        format!(
            "Invalid type for '{param}': expected {expected}, but got {} instead.",
            type_name(got)
        ),
    )
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a decimal",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
