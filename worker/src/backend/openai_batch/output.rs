//! Reading a finished batch: its output and error files are matched to the shard's requests by
//! `custom_id` (the request key), never by line order. Each request of the batch ends as an
//! output, a final error, or a request to try again (a 429/5xx line, a line cut by an expiry or
//! a cancel, or a request missing from both files).

use std::collections::HashMap;
use std::time::Duration;

use jobs::{InferenceOutput, InferenceRequest};
use serde_json::Value;

use crate::backend::OpenAiBackend;

/// What became of one request of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum LineResult {
    Ok(InferenceOutput),
    /// Worth another try (server error, rate limit, expiry, cancel, missing).
    Retry(String),
    /// Fails again if sent again (a 4xx, an answer that cannot be read).
    Failed(String),
}

/// Results of the requests at `indices` from the batch's files. A request
/// found in neither file is `Retry("missing …")`. Lines naming requests
/// outside `indices` are ignored (counted in the second value).
pub fn read_results(
    body_of: &OpenAiBackend,
    all: &[InferenceRequest],
    indices: &[u32],
    files: &[&[u8]],
    batch_id: &str,
) -> (HashMap<u32, LineResult>, usize) {
    let by_key: HashMap<&str, u32> = indices
        .iter()
        .filter_map(|&i| all.get(i as usize).map(|r| (r.key.as_str(), i)))
        .collect();
    let mut results: HashMap<u32, LineResult> = HashMap::with_capacity(indices.len());
    let mut strangers = 0usize;
    for file in files {
        for raw in file.split(|b| *b == b'\n') {
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let line: Value = match serde_json::from_slice(raw) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(batch_id, error = %e, "unreadable line in a batch result file");
                    continue;
                }
            };
            let Some(index) = line
                .get("custom_id")
                .and_then(Value::as_str)
                .and_then(|id| by_key.get(id))
                .copied()
            else {
                strangers += 1;
                continue;
            };
            let result = read_line(body_of, &all[index as usize], &line, batch_id);
            // An output wins over an error for the same request.
            match results.get(&index) {
                Some(LineResult::Ok(_)) => {}
                _ => {
                    results.insert(index, result);
                }
            }
        }
    }
    for &index in indices {
        results.entry(index).or_insert_with(|| {
            LineResult::Retry(format!(
                "missing from both result files of batch {batch_id}"
            ))
        });
    }
    (results, strangers)
}

fn read_line(
    body_of: &OpenAiBackend,
    req: &InferenceRequest,
    line: &Value,
    batch_id: &str,
) -> LineResult {
    let response = line.get("response").filter(|r| !r.is_null());
    let status = response
        .and_then(|r| r.get("status_code"))
        .and_then(Value::as_u64);
    if let (Some(200), Some(body)) = (status, response.and_then(|r| r.get("body"))) {
        let url = format!("batch {batch_id}");
        return match body_of.output_from_answer(req, &url, body, Duration::ZERO, 1) {
            Ok(output) => LineResult::Ok(output),
            Err(e) => LineResult::Failed(e.to_string()),
        };
    }
    if let Some(error) = line.get("error").filter(|e| !e.is_null()) {
        let code = error.get("code").and_then(Value::as_str).unwrap_or("error");
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        return LineResult::Retry(format!("batch {batch_id}: {code}: {message}"));
    }
    let status = status.unwrap_or(0);
    let message = response
        .and_then(|r| r.pointer("/body/error/message"))
        .and_then(Value::as_str)
        .unwrap_or("no message");
    let text = format!("HTTP {status} in batch {batch_id}: {message}");
    if matches!(status, 408 | 429) || (500..=599).contains(&status) || status == 0 {
        LineResult::Retry(text)
    } else {
        LineResult::Failed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::KeyPolicy;
    use jobs::{GenerationParams, ModelFingerprint, RenderedInput, RequestType};
    use serde_json::json;

    fn backend() -> OpenAiBackend {
        let model = serde_json::from_value(json!({
            "backend": "openai-batch", "model": "m", "base_url": "http://127.0.0.1:9/v1"
        }))
        .unwrap();
        OpenAiBackend::from_spec(&model, &KeyPolicy::any_except(Vec::new())).unwrap()
    }

    fn request(i: u64) -> InferenceRequest {
        InferenceRequest::new(
            &ModelFingerprint::api("openai", "m"),
            i,
            RequestType::Generate,
            RenderedInput::Prompt {
                prompt: format!("q{i}"),
            },
            None,
            GenerationParams {
                max_tokens: 4,
                temperature: 0.0,
                top_p: None,
                stop: vec![],
                seed: None,
                extra_body: Default::default(),
            },
            0,
        )
    }

    fn ok_line(req: &InferenceRequest, text: &str) -> String {
        json!({"id": "r", "custom_id": req.key.as_str(), "error": null, "response": {
            "status_code": 200, "request_id": "x", "body": {
                "choices": [{"message": {"content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2}}}})
        .to_string()
    }

    #[test]
    fn lines_are_matched_by_custom_id_and_classified() {
        let all: Vec<_> = (0..6).map(request).collect();
        let output = format!(
            "{}\n{}\n",
            ok_line(&all[2], "two"),
            ok_line(&all[0], "zero")
        );
        let errors = [
            json!({"custom_id": all[1].key.as_str(), "error": null, "response": {
                "status_code": 500, "body": {"error": {"message": "boom"}}}}),
            json!({"custom_id": all[3].key.as_str(), "error": null, "response": {
                "status_code": 400, "body": {"error": {"message": "bad input"}}}}),
            json!({"custom_id": all[4].key.as_str(), "response": null,
                   "error": {"code": "batch_expired", "message": "too late"}}),
            json!({"custom_id": "someone-else", "response": null,
                   "error": {"code": "batch_expired", "message": "too late"}}),
        ]
        .iter()
        .map(|v| v.to_string() + "\n")
        .collect::<String>();
        let indices: Vec<u32> = (0..6).collect();
        let (results, strangers) = read_results(
            &backend(),
            &all,
            &indices,
            &[output.as_bytes(), errors.as_bytes()],
            "batch_1",
        );
        assert_eq!(strangers, 1);
        match &results[&0] {
            LineResult::Ok(out) => {
                assert_eq!(out.text.as_deref(), Some("zero"));
                assert_eq!(out.usage.prompt_tokens, 3);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&results[&2], LineResult::Ok(o) if o.text.as_deref() == Some("two")));
        assert!(matches!(&results[&1], LineResult::Retry(e) if e.contains("HTTP 500")));
        assert!(matches!(&results[&3], LineResult::Failed(e) if e.contains("bad input")));
        assert!(matches!(&results[&4], LineResult::Retry(e) if e.contains("batch_expired")));
        assert!(matches!(&results[&5], LineResult::Retry(e) if e.contains("missing")));
    }
}
