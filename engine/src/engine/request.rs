//! What the engine is asked and what it answers: token-level generation
//! and log-likelihood requests, their outputs and the engine's counters.

use serde::{Deserialize, Serialize};

use crate::kv::PrefixCacheStats;

/// One generation request, as token ids.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerateRequest {
    pub prompt_tokens: Vec<u32>,
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    /// `0` disables top-k.
    pub top_k: usize,
    pub seed: u64,
    /// Which of several samples of the same prompt this is; with `seed`,
    /// selects the random stream.
    pub sample_index: u64,
    /// Tokens that end generation besides the model's EOS tokens.
    pub stop_token_ids: Vec<u32>,
    /// Keep generating past the model's EOS tokens.
    pub ignore_eos: bool,
}

impl Default for GenerateRequest {
    fn default() -> Self {
        GenerateRequest {
            prompt_tokens: Vec::new(),
            max_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            sample_index: 0,
            stop_token_ids: Vec::new(),
            ignore_eos: false,
        }
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// `max_tokens` or the model's length limit was reached.
    Length,
    /// A stop or EOS token was produced (it is not in `tokens`).
    StopToken(u32),
    /// The caller's callback asked to stop (e.g. on a stop string).
    Stopped,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerateOutput {
    /// Generated tokens, without the stop token.
    pub tokens: Vec<u32>,
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV came from the prefix cache.
    pub cached_prompt_tokens: usize,
}

/// What the token callback of [`LlmEngine::generate_with`] wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenAction {
    Continue,
    Stop,
}

/// `log P(continuation | context)`, as lm-evaluation-harness defines it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoglikelihoodRequest {
    pub context_tokens: Vec<u32>,
    pub continuation_tokens: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoglikelihoodScore {
    /// Sum of the continuation tokens' log-probabilities.
    pub logprob: f64,
    /// Whether every continuation token is the argmax at its position.
    pub is_greedy: bool,
    pub token_logprobs: Vec<f64>,
}

/// Counters since the engine was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub steps: u64,
    /// Tokens run through the model (prefill and decode).
    pub computed_tokens: u64,
    pub generated_tokens: u64,
    pub preemptions: u64,
    pub prefix_cache: PrefixCacheStats,
}

/// Identifies a request added with [`LlmEngine::add_generate`] or
/// [`LlmEngine::add_loglikelihood`]; unique within one engine.
pub type RequestId = u64;

/// What a finished request produced.
#[derive(Clone, Debug, PartialEq)]
pub enum EngineOutput {
    Generate(GenerateOutput),
    Loglikelihood(LoglikelihoodScore),
}

/// A request that finished during a [`LlmEngine::step`].
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    pub id: RequestId,
    pub output: EngineOutput,
}
