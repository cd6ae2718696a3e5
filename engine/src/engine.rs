//! `LlmEngine`: the executor, the scheduler and its block manager driven
//! together to serve batches of generation and log-likelihood requests.
//!
//! Requests are token ids in, token ids out; text, chat templates and stop
//! strings belong to the caller, which can watch tokens as they are produced
//! (see [`LlmEngine::generate_with`]) and stop a sequence early.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::cpu::{kv_bytes_per_token, CpuExecutor, CpuModel};
use crate::error::EngineError;
use crate::executor::{BatchInput, BatchOutput, Executor};
use crate::kv::PrefixCacheStats;
use crate::sampling::{argmax, log_sum_exp, sample, SamplingParams, SeqRng};
use crate::scheduler::{ScheduledBatch, Scheduler, SchedulerConfig, SeqId, SeqKind};
use crate::weights::Weights;

/// Engine limits, as in vLLM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineSettings {
    /// Most sequences in one step.
    pub max_num_seqs: usize,
    /// Most tokens computed in one step; longer prompts are prefilled in
    /// chunks.
    pub max_num_batched_tokens: usize,
    /// Tokens per KV-cache block.
    pub block_size: usize,
    /// KV-cache size in blocks; when `None`, as many as fit in
    /// `kv_cache_bytes`.
    pub num_kv_blocks: Option<usize>,
    pub kv_cache_bytes: usize,
    /// Longest sequence (prompt plus generation); `None` means the model's
    /// `max_position_embeddings`.
    pub max_model_len: Option<usize>,
    pub enable_prefix_caching: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_num_seqs: 32,
            max_num_batched_tokens: 1024,
            block_size: 16,
            num_kv_blocks: None,
            kv_cache_bytes: 512 << 20,
            max_model_len: None,
            enable_prefix_caching: true,
        }
    }
}

impl EngineSettings {
    /// The number of KV blocks these settings give for `config` (f32 cache).
    pub fn resolve_num_kv_blocks(&self, config: &ModelConfig) -> usize {
        self.num_kv_blocks.unwrap_or_else(|| {
            let per_block = kv_bytes_per_token(config) * self.block_size.max(1);
            (self.kv_cache_bytes / per_block.max(1)).max(1)
        })
    }
}

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
pub struct LoglikelihoodOutput {
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

struct GenTrack {
    index: usize,
    params: SamplingParams,
    rng: SeqRng,
    stop: Vec<u32>,
    max_tokens: usize,
    max_len: usize,
    generated: Vec<u32>,
}

struct ScoreTrack {
    index: usize,
    /// The full context + continuation; position `p`'s logits score
    /// `targets[p + 1]`.
    targets: Vec<u32>,
    logits_from: usize,
    token_logprobs: Vec<f64>,
    greedy: bool,
}

/// The inference engine over any [`Executor`].
pub struct LlmEngine<E: Executor = CpuExecutor> {
    executor: E,
    scheduler: Scheduler,
    config: ModelConfig,
    max_model_len: usize,
    stats: EngineStats,
    scratch: Vec<(f32, u32)>,
}

impl LlmEngine<CpuExecutor> {
    /// A CPU engine over `weights` (checked against `config`).
    pub fn new_cpu(
        config: ModelConfig,
        weights: Weights,
        settings: &EngineSettings,
    ) -> Result<Self, EngineError> {
        let blocks = settings.resolve_num_kv_blocks(&config);
        let model = CpuModel::new(config.clone(), weights)?;
        let executor = CpuExecutor::new(model, blocks, settings.block_size)?;
        LlmEngine::with_executor(executor, config, settings)
    }
}

impl<E: Executor> LlmEngine<E> {
    /// An engine over an executor whose KV cache is already allocated; the
    /// block size and block count are taken from the executor.
    pub fn with_executor(
        executor: E,
        config: ModelConfig,
        settings: &EngineSettings,
    ) -> Result<Self, EngineError> {
        let scheduler = Scheduler::new(SchedulerConfig {
            max_num_seqs: settings.max_num_seqs,
            max_num_batched_tokens: settings.max_num_batched_tokens,
            block_size: executor.block_size(),
            num_kv_blocks: executor.num_kv_blocks(),
            enable_prefix_caching: settings.enable_prefix_caching,
        })?;
        let max_model_len = settings
            .max_model_len
            .unwrap_or(config.max_position_embeddings)
            .max(1);
        Ok(LlmEngine {
            executor,
            scheduler,
            config,
            max_model_len,
            stats: EngineStats::default(),
            scratch: Vec::new(),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn executor(&self) -> &E {
        &self.executor
    }

    pub fn max_model_len(&self) -> usize {
        self.max_model_len
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            preemptions: self.scheduler.num_preemptions(),
            prefix_cache: self.scheduler.prefix_cache_stats(),
            ..self.stats
        }
    }

    /// Runs every request to completion, batching them continuously.
    pub fn generate(
        &mut self,
        requests: Vec<GenerateRequest>,
    ) -> Result<Vec<GenerateOutput>, EngineError> {
        self.generate_with(requests, |_, _| TokenAction::Continue)
    }

    /// Like [`generate`](Self::generate), calling `on_token(request_index,
    /// tokens_so_far)` after every generated token (stop tokens excepted);
    /// returning [`TokenAction::Stop`] finishes that request with
    /// [`FinishReason::Stopped`]. This is where callers check stop strings.
    pub fn generate_with(
        &mut self,
        requests: Vec<GenerateRequest>,
        mut on_token: impl FnMut(usize, &[u32]) -> TokenAction,
    ) -> Result<Vec<GenerateOutput>, EngineError> {
        for (i, r) in requests.iter().enumerate() {
            self.check_tokens(i, &r.prompt_tokens)?;
            if r.prompt_tokens.is_empty() {
                return Err(invalid(i, "prompt_tokens is empty"));
            }
            if r.prompt_tokens.len() >= self.max_model_len {
                return Err(invalid(
                    i,
                    &format!(
                        "prompt of {} tokens leaves no room to generate within max_model_len {}",
                        r.prompt_tokens.len(),
                        self.max_model_len
                    ),
                ));
            }
            if !(r.temperature >= 0.0 && r.top_p > 0.0 && r.top_p <= 1.0) {
                return Err(invalid(i, "temperature must be >= 0 and top_p in (0, 1]"));
            }
        }
        let mut outputs: Vec<Option<GenerateOutput>> = vec![None; requests.len()];
        let mut tracks: HashMap<SeqId, GenTrack> = HashMap::new();
        let result = (|| {
            for (index, r) in requests.into_iter().enumerate() {
                let prompt_len = r.prompt_tokens.len();
                if r.max_tokens == 0 {
                    outputs[index] = Some(GenerateOutput {
                        tokens: Vec::new(),
                        finish_reason: FinishReason::Length,
                        prompt_tokens: prompt_len,
                        cached_prompt_tokens: 0,
                    });
                    continue;
                }
                let max_len = (prompt_len + r.max_tokens).min(self.max_model_len);
                let mut stop = r.stop_token_ids.clone();
                if !r.ignore_eos {
                    stop.extend(&self.config.eos_token_ids);
                }
                let id = self
                    .scheduler
                    .add(r.prompt_tokens, SeqKind::Generate, max_len)
                    .map_err(|e| invalid(index, &e.to_string()))?;
                tracks.insert(
                    id,
                    GenTrack {
                        index,
                        params: SamplingParams {
                            temperature: r.temperature,
                            top_p: r.top_p,
                            top_k: r.top_k,
                        },
                        rng: SeqRng::new(r.seed, r.sample_index),
                        stop,
                        max_tokens: r.max_tokens,
                        max_len,
                        generated: Vec::new(),
                    },
                );
            }

            while self.scheduler.has_unfinished() {
                let (batch, out) = self.step()?;
                let mut row = 0;
                for s in &batch.seqs {
                    for _ in s.logits.clone() {
                        let logits = out.row(row);
                        row += 1;
                        let Some(t) = tracks.get_mut(&s.seq_id) else {
                            continue;
                        };
                        let token = sample(logits, &t.params, &mut t.rng, &mut self.scratch);
                        self.stats.generated_tokens += 1;
                        let finish = if t.stop.contains(&token) {
                            Some(FinishReason::StopToken(token))
                        } else {
                            t.generated.push(token);
                            let prompt_len = self
                                .scheduler
                                .sequence(s.seq_id)
                                .map_or(0, |q| q.num_prompt_tokens());
                            if on_token(t.index, &t.generated) == TokenAction::Stop {
                                Some(FinishReason::Stopped)
                            } else if t.generated.len() >= t.max_tokens
                                || prompt_len + t.generated.len() >= t.max_len
                            {
                                Some(FinishReason::Length)
                            } else {
                                None
                            }
                        };
                        match finish {
                            None => self.scheduler.append_token(s.seq_id, token),
                            Some(reason) => {
                                let seq = self.scheduler.finish(s.seq_id);
                                if let Some(t) = tracks.remove(&s.seq_id) {
                                    outputs[t.index] = Some(GenerateOutput {
                                        tokens: t.generated,
                                        finish_reason: reason,
                                        prompt_tokens: seq
                                            .as_ref()
                                            .map_or(0, |q| q.num_prompt_tokens()),
                                        cached_prompt_tokens: seq
                                            .as_ref()
                                            .map_or(0, |q| q.num_cached_tokens()),
                                    });
                                }
                            }
                        }
                    }
                }
            }
            Ok(())
        })();
        self.abort_all(tracks.keys().copied());
        result?;
        Ok(outputs.into_iter().flatten().collect())
    }

    /// Scores each continuation given its context: the sum of its tokens'
    /// log-probabilities and whether greedy decoding would produce it. The
    /// context must not be empty (prepend BOS/EOT for unconditional scores,
    /// as lm-evaluation-harness does); truncating long inputs is the
    /// caller's job.
    pub fn loglikelihood(
        &mut self,
        requests: Vec<LoglikelihoodRequest>,
    ) -> Result<Vec<LoglikelihoodOutput>, EngineError> {
        for (i, r) in requests.iter().enumerate() {
            self.check_tokens(i, &r.context_tokens)?;
            self.check_tokens(i, &r.continuation_tokens)?;
            if r.context_tokens.is_empty() || r.continuation_tokens.is_empty() {
                return Err(invalid(
                    i,
                    "context and continuation must both be non-empty (prepend BOS to an empty context)",
                ));
            }
            let total = r.context_tokens.len() + r.continuation_tokens.len();
            if total - 1 > self.max_model_len {
                return Err(invalid(
                    i,
                    &format!(
                        "{total} tokens exceed max_model_len {}; truncate the context from the left",
                        self.max_model_len
                    ),
                ));
            }
        }
        let mut outputs: Vec<Option<LoglikelihoodOutput>> = vec![None; requests.len()];
        let mut tracks: HashMap<SeqId, ScoreTrack> = HashMap::new();
        let result = (|| {
            for (index, r) in requests.into_iter().enumerate() {
                let logits_from = r.context_tokens.len() - 1;
                let mut targets = r.context_tokens;
                targets.extend_from_slice(&r.continuation_tokens);
                // The model reads everything but the last token.
                let input = targets[..targets.len() - 1].to_vec();
                let len = input.len();
                let id = self
                    .scheduler
                    .add(input, SeqKind::Score { logits_from }, len)
                    .map_err(|e| invalid(index, &e.to_string()))?;
                tracks.insert(
                    id,
                    ScoreTrack {
                        index,
                        targets,
                        logits_from,
                        token_logprobs: Vec::new(),
                        greedy: true,
                    },
                );
            }

            while self.scheduler.has_unfinished() {
                let (batch, out) = self.step()?;
                let mut row = 0;
                for s in &batch.seqs {
                    let Some(t) = tracks.get_mut(&s.seq_id) else {
                        row += s.logits.len();
                        continue;
                    };
                    for p in s.logits.clone() {
                        let logits = out.row(row);
                        row += 1;
                        debug_assert_eq!(p - t.logits_from, t.token_logprobs.len());
                        let target = t.targets[p + 1];
                        let lp = match logits.get(target as usize) {
                            Some(&v) => v as f64 - log_sum_exp(logits),
                            None => f64::NEG_INFINITY,
                        };
                        t.token_logprobs.push(lp);
                        t.greedy &= argmax(logits) == target;
                    }
                    let done = self
                        .scheduler
                        .sequence(s.seq_id)
                        .is_some_and(|q| q.num_computed() == q.tokens().len());
                    if done {
                        self.scheduler.finish(s.seq_id);
                        if let Some(t) = tracks.remove(&s.seq_id) {
                            outputs[t.index] = Some(LoglikelihoodOutput {
                                logprob: t.token_logprobs.iter().sum(),
                                is_greedy: t.greedy,
                                token_logprobs: t.token_logprobs,
                            });
                        }
                    }
                }
            }
            Ok(())
        })();
        self.abort_all(tracks.keys().copied());
        result?;
        Ok(outputs.into_iter().flatten().collect())
    }

    /// Schedules, computes and records one step.
    fn step(&mut self) -> Result<(ScheduledBatch, BatchOutput), EngineError> {
        let batch = self.scheduler.schedule()?;
        let input = BatchInput::from_scheduled(&batch);
        let out = self.executor.forward(&input)?;
        let expected: usize = batch.seqs.iter().map(|s| s.logits.len()).sum();
        if out.num_rows() != expected {
            return Err(EngineError::InvalidBatch(format!(
                "executor returned {} logit rows for {expected} requested",
                out.num_rows()
            )));
        }
        self.scheduler.complete_step(&batch);
        self.stats.steps += 1;
        self.stats.computed_tokens += input.num_tokens() as u64;
        Ok((batch, out))
    }

    /// Drops sequences left behind by an error, so the engine stays usable.
    fn abort_all(&mut self, ids: impl Iterator<Item = SeqId>) {
        let ids: Vec<SeqId> = ids.collect();
        for id in ids {
            self.scheduler.finish(id);
        }
    }

    fn check_tokens(&self, index: usize, tokens: &[u32]) -> Result<(), EngineError> {
        match tokens
            .iter()
            .find(|&&t| t as usize >= self.config.vocab_size)
        {
            Some(t) => Err(invalid(
                index,
                &format!(
                    "token id {t} is outside the vocabulary of {}",
                    self.config.vocab_size
                ),
            )),
            None => Ok(()),
        }
    }
}

fn invalid(index: usize, message: &str) -> EngineError {
    EngineError::InvalidRequest {
        index,
        message: message.to_string(),
    }
}
