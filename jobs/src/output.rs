//! What a backend returns for a request, and the self-describing record that
//! is stored for it in a cache segment.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::request::{ModelFingerprint, RequestKey, RequestType};

/// Token counts as reported by the backend.
#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    pub fn add(&mut self, other: Usage) {
        // Counts come from servers; never let a bogus one overflow.
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
    }
}

/// Result of a `loglikelihood` request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LoglikelihoodOutput {
    /// Sum of the continuation tokens' log-probabilities.
    pub logprob: f64,
    /// Whether every continuation token was the argmax (lm-eval's `is_greedy`).
    pub is_greedy: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_logprobs: Vec<f64>,
}

/// A successful inference result.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct InferenceOutput {
    /// Generated text (`generate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// Scores (`loglikelihood`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loglikelihood: Option<LoglikelihoodOutput>,
    #[serde(default)]
    pub usage: Usage,
    /// Wall time of the successful attempt.
    pub latency_ms: u64,
    /// HTTP attempts it took (1 when no retry was needed).
    #[serde(default = "one")]
    pub attempts: u32,
}

fn one() -> u32 {
    1
}

/// One line of a segment: a request's outcome, readable on its own.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SegmentRecord {
    pub key: RequestKey,
    pub model: ModelFingerprint,
    pub request_type: RequestType,
    pub sample_index: u32,
    /// Present when the request succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<InferenceOutput>,
    /// Present when the request failed after all retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// RFC 3339 time the outcome was recorded.
    pub created_at: String,
}

impl SegmentRecord {
    pub fn is_success(&self) -> bool {
        self.output.is_some() && self.error.is_none()
    }
}
