//! Token cost arithmetic: prices of `[model.price]` (`crate::spec::PriceSpec`)
//! applied to tokens, the cost of a job's recorded token usage (under the job's own backend, beside what
//! the same tokens cost on the synchronous API), and the token estimate that
//! `shardline run --dry-run` prints before anything is sent.
//!
//! The estimate is an approximation, documented as such: without the
//! provider's tokenizer, input tokens are counted as one token per
//! [`CHARS_PER_TOKEN`] characters of the rendered input (OpenAI's own rule of
//! thumb for English text), plus [`TOKENS_PER_MESSAGE`] per chat message for
//! the role markers; output tokens are bounded by `max_tokens` (one token for
//! a log-likelihood request).

use serde::{Deserialize, Serialize};

use crate::output::Usage;
pub use crate::protocol::cost::money;
use crate::protocol::cost::CostSummary;
use crate::request::{InferenceRequest, RenderedInput, RequestType};
use crate::spec::{BackendKind, ModelSpec, PriceSpec};

/// Characters per token in the estimate (no tokenizer is known for an API
/// model).
pub const CHARS_PER_TOKEN: f64 = 4.0;
/// Tokens a chat message costs beyond its content (role and separators).
pub const TOKENS_PER_MESSAGE: u64 = 4;
/// The Batch API's price as a fraction of the synchronous one, used when the
/// price table gives no batch prices.
pub const DEFAULT_BATCH_DISCOUNT: f64 = 0.5;

impl PriceSpec {
    fn batch_input(&self) -> f64 {
        self.batch_input_per_million
            .unwrap_or(self.input_per_million * DEFAULT_BATCH_DISCOUNT)
    }

    fn batch_output(&self) -> f64 {
        self.batch_output_per_million
            .unwrap_or(self.output_per_million * DEFAULT_BATCH_DISCOUNT)
    }

    /// Cost of `input` and `output` tokens on the synchronous API.
    pub fn synchronous(&self, input: u64, output: u64) -> f64 {
        per_million(input, self.input_per_million) + per_million(output, self.output_per_million)
    }

    /// Cost of `input` and `output` tokens through the Batch API.
    pub fn batch(&self, input: u64, output: u64) -> f64 {
        per_million(input, self.batch_input()) + per_million(output, self.batch_output())
    }

    /// Cost under `backend`: batch prices for `openai-batch`, synchronous
    /// prices otherwise.
    pub fn under(&self, backend: BackendKind, input: u64, output: u64) -> f64 {
        match backend {
            BackendKind::OpenaiBatch => self.batch(input, output),
            _ => self.synchronous(input, output),
        }
    }
}

fn per_million(tokens: u64, price: f64) -> f64 {
    tokens as f64 * price / 1_000_000.0
}

/// `tokens: 350 prompt, 150 completion; cost: 0.0005 USD (synchronous API:
/// 0.0010 USD)`, the line `status`, `results` and `run` print.
pub fn usage_line(usage: &Usage, cost: Option<&CostSummary>) -> String {
    let mut line = format!(
        "tokens: {} prompt, {} completion",
        usage.prompt_tokens, usage.completion_tokens
    );
    if let Some(cost) = cost {
        line.push_str("; cost: ");
        line.push_str(&cost.describe());
    }
    line
}

/// The cost of `usage` under the model's price table; `None` without one.
pub fn job_cost(model: &ModelSpec, usage: Usage) -> Option<CostSummary> {
    let price = model.price.as_ref()?;
    Some(CostSummary {
        currency: price.currency.clone(),
        backend: model.backend,
        cost: price.under(model.backend, usage.prompt_tokens, usage.completion_tokens),
        synchronous_cost: price.synchronous(usage.prompt_tokens, usage.completion_tokens),
    })
}

/// Estimated input tokens of one request (see the module documentation).
pub fn estimate_input_tokens(req: &InferenceRequest) -> u64 {
    let (chars, messages) = match &req.input {
        RenderedInput::Prompt { prompt } => (prompt.chars().count(), 0u64),
        RenderedInput::Messages { messages } => (
            messages.iter().map(|m| m.content.chars().count()).sum(),
            messages.len() as u64,
        ),
    };
    let chars = chars + req.continuation.as_deref().map_or(0, |c| c.chars().count());
    (chars as f64 / CHARS_PER_TOKEN).ceil() as u64 + messages * TOKENS_PER_MESSAGE
}

/// Most output tokens one request can produce.
pub fn max_output_tokens(req: &InferenceRequest) -> u64 {
    match req.request_type {
        RequestType::Generate => u64::from(req.params.max_tokens),
        RequestType::Loglikelihood => 1,
    }
}

/// Estimated tokens of a set of requests, and their cost.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct TokenEstimate {
    pub requests: u64,
    /// Input tokens: counted with the model's tokenizer where it is known,
    /// else estimated (characters / 4 plus message overhead).
    pub input_tokens: u64,
    /// Upper bound on output tokens (`max_tokens` per request).
    pub max_output_tokens: u64,
}

impl TokenEstimate {
    /// Adds `req` with its input tokens estimated from its characters.
    pub fn add(&mut self, req: &InferenceRequest) {
        self.add_counted(req, estimate_input_tokens(req));
    }

    /// Adds `req` whose input is `input_tokens` tokens (counted with the
    /// model's own tokenizer where it is known).
    pub fn add_counted(&mut self, req: &InferenceRequest, input_tokens: u64) {
        self.requests += 1;
        self.input_tokens = self.input_tokens.saturating_add(input_tokens);
        self.max_output_tokens = self
            .max_output_tokens
            .saturating_add(max_output_tokens(req));
    }

    /// Cost range under the model's prices: inputs only (no output at all)
    /// to inputs plus every output token allowed; under the job's backend
    /// and on the synchronous API.
    pub fn cost(&self, model: &ModelSpec) -> Option<EstimatedCost> {
        let price = model.price.as_ref()?;
        Some(EstimatedCost {
            currency: price.currency.clone(),
            backend: model.backend,
            low: price.under(model.backend, self.input_tokens, 0),
            high: price.under(model.backend, self.input_tokens, self.max_output_tokens),
            synchronous_low: price.synchronous(self.input_tokens, 0),
            synchronous_high: price.synchronous(self.input_tokens, self.max_output_tokens),
        })
    }
}

/// An estimated cost range (see [`TokenEstimate::cost`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EstimatedCost {
    pub currency: String,
    pub backend: BackendKind,
    pub low: f64,
    pub high: f64,
    pub synchronous_low: f64,
    pub synchronous_high: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{ChatMessage, GenerationParams, ModelFingerprint};

    fn price() -> PriceSpec {
        PriceSpec {
            input_per_million: 0.15,
            output_per_million: 0.60,
            batch_input_per_million: None,
            batch_output_per_million: None,
            currency: "USD".into(),
        }
    }

    #[test]
    fn batch_prices_default_to_half() {
        let p = price();
        assert!((p.synchronous(1_000_000, 1_000_000) - 0.75).abs() < 1e-12);
        assert!((p.batch(1_000_000, 1_000_000) - 0.375).abs() < 1e-12);
        let mut p = price();
        p.batch_input_per_million = Some(0.1);
        assert!((p.batch(1_000_000, 0) - 0.1).abs() < 1e-12);
        assert!((p.under(BackendKind::Openai, 2_000_000, 0) - 0.3).abs() < 1e-12);
    }

    #[test]
    fn estimate_counts_chars_and_messages() {
        let fp = ModelFingerprint::api("openai", "m");
        let params = GenerationParams {
            max_tokens: 10,
            temperature: 0.0,
            top_p: None,
            stop: vec![],
            seed: None,
            extra_body: Default::default(),
        };
        let chat = InferenceRequest::new(
            &fp,
            0,
            RequestType::Generate,
            RenderedInput::Messages {
                messages: vec![
                    ChatMessage {
                        role: "system".into(),
                        content: "abcd".into(),
                    },
                    ChatMessage {
                        role: "user".into(),
                        content: "abcde".into(),
                    },
                ],
            },
            None,
            params.clone(),
            0,
        );
        // ceil(9 / 4) + 2 messages × 4.
        assert_eq!(estimate_input_tokens(&chat), 3 + 8);
        assert_eq!(max_output_tokens(&chat), 10);
        let ll = InferenceRequest::new(
            &fp,
            0,
            RequestType::Loglikelihood,
            RenderedInput::Prompt {
                prompt: "12345678".into(),
            },
            Some(" x".into()),
            params,
            0,
        );
        assert_eq!(estimate_input_tokens(&ll), 3);
        assert_eq!(max_output_tokens(&ll), 1);
        let mut est = TokenEstimate::default();
        est.add(&chat);
        est.add(&ll);
        assert_eq!(est.requests, 2);
        assert_eq!(est.input_tokens, 14);
        assert_eq!(est.max_output_tokens, 11);
    }
}
