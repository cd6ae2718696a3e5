//! `LlmEngine`: the executor, the scheduler and its block manager driven
//! together to serve batches of generation and log-likelihood requests.
//!
//! Requests are token ids in, token ids out; text, chat templates and stop
//! strings belong to the caller (see `text.rs`), which can watch tokens as
//! they are produced (see [`LlmEngine::step_with`]) and stop a sequence
//! early. A serving loop adds requests between steps
//! ([`LlmEngine::add_generate`], [`LlmEngine::step`]); the batch calls
//! ([`LlmEngine::generate`], [`LlmEngine::loglikelihood`]) are wrappers over
//! the same steps.

use std::collections::HashMap;

mod request;
mod run_to_end;
mod settings;
mod validate;

pub use request::{
    EngineOutput, EngineStats, FinishReason, Finished, GenerateOutput, GenerateRequest,
    LoglikelihoodRequest, LoglikelihoodScore, RequestId, TokenAction,
};
pub use settings::EngineSettings;

use crate::config::ModelConfig;
use crate::cpu::{CpuExecutor, CpuModel};
use crate::error::EngineError;
use crate::executor::{Executor, StepInput, StepOutput};
use crate::sampling::{argmax, log_sum_exp, sample, SamplingParams, SeqRng};
use crate::scheduler::{ScheduledStep, Scheduler, SchedulerConfig, SeqId, SeqKind};
use crate::weights::Weights;
use validate::RequestLimits;

/// An executor chosen at run time (CPU now, CUDA later): the engine is the
/// same code over either.
pub type BoxedExecutor = Box<dyn Executor + Send>;

/// An engine over a [`BoxedExecutor`], what loaders return.
pub type DynEngine = LlmEngine<BoxedExecutor>;

struct GenTrack {
    id: RequestId,
    params: SamplingParams,
    rng: SeqRng,
    stop: Vec<u32>,
    max_tokens: usize,
    max_len: usize,
    generated: Vec<u32>,
}

struct ScoreTrack {
    id: RequestId,
    /// The full context + continuation; position `p`'s logits score
    /// `targets[p + 1]`.
    targets: Vec<u32>,
    logits_from: usize,
    token_logprobs: Vec<f64>,
    greedy: bool,
}

enum Track {
    Gen(GenTrack),
    Score(ScoreTrack),
}

/// The inference engine over any [`Executor`].
///
/// Two ways to drive it: the batch calls ([`generate`](Self::generate),
/// [`generate_with`](Self::generate_with),
/// [`loglikelihood`](Self::loglikelihood)) run a set of requests to the end;
/// the incremental calls ([`add_generate`](Self::add_generate),
/// [`add_loglikelihood`](Self::add_loglikelihood), [`step`](Self::step))
/// let a serving loop add requests between steps, so requests of different
/// callers share batches as soon as they arrive (continuous batching).
pub struct LlmEngine<E: Executor = CpuExecutor> {
    executor: E,
    scheduler: Scheduler,
    config: ModelConfig,
    max_model_len: usize,
    stats: EngineStats,
    scratch: Vec<(f32, u32)>,
    /// Unfinished requests by sequence.
    tracks: HashMap<SeqId, Track>,
    /// The sequence of each unfinished request, for [`LlmEngine::abort`].
    seq_of: HashMap<RequestId, SeqId>,
    /// Requests finished without a step (`max_tokens = 0`), handed out by
    /// the next step.
    ready: Vec<Finished>,
    next_id: RequestId,
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
            tracks: HashMap::new(),
            seq_of: HashMap::new(),
            ready: Vec::new(),
            next_id: 0,
        })
    }

    /// The same engine over a boxed executor, so engines over different
    /// executors have one type. Only an idle engine can be converted (the
    /// scheduler state moves along, so nothing is lost either way).
    pub fn into_boxed(self) -> DynEngine
    where
        E: Send + 'static,
    {
        LlmEngine {
            executor: Box::new(self.executor),
            scheduler: self.scheduler,
            config: self.config,
            max_model_len: self.max_model_len,
            stats: self.stats,
            scratch: self.scratch,
            tracks: self.tracks,
            seq_of: self.seq_of,
            ready: self.ready,
            next_id: self.next_id,
        }
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

    /// The scheduler's limits (max sequences per step, token budget, cache
    /// size).
    pub fn scheduler_config(&self) -> &SchedulerConfig {
        self.scheduler.config()
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            preemptions: self.scheduler.num_preemptions(),
            prefix_cache: self.scheduler.prefix_cache_stats(),
            ..self.stats
        }
    }

    /// True while a request added with `add_*` has not been handed out by
    /// [`step`](Self::step).
    pub fn has_unfinished(&self) -> bool {
        !self.tracks.is_empty() || !self.ready.is_empty()
    }

    /// Requests added and not yet handed out.
    pub fn num_unfinished(&self) -> usize {
        self.tracks.len() + self.ready.len()
    }

    /// Queues a generation request; its output comes out of a later
    /// [`step`](Self::step). Invalid requests are refused here, and nothing
    /// is queued for them.
    pub fn add_generate(&mut self, request: GenerateRequest) -> Result<RequestId, EngineError> {
        let id = self.next_id;
        self.limits()
            .check_generate(&request)
            .map_err(|m| invalid(id as usize, &m))?;
        self.next_id += 1;
        let prompt_len = request.prompt_tokens.len();
        if request.max_tokens == 0 {
            self.ready.push(Finished {
                id,
                output: EngineOutput::Generate(GenerateOutput {
                    tokens: Vec::new(),
                    finish_reason: FinishReason::Length,
                    prompt_tokens: prompt_len,
                    cached_prompt_tokens: 0,
                }),
            });
            return Ok(id);
        }
        let max_len = (prompt_len + request.max_tokens).min(self.max_model_len);
        let mut stop = request.stop_token_ids.clone();
        if !request.ignore_eos {
            stop.extend(&self.config.eos_token_ids);
        }
        let seq = self
            .scheduler
            .add(request.prompt_tokens, SeqKind::Generate, max_len)
            .map_err(|e| match e {
                e @ EngineError::KvCacheTooSmall { .. } => e,
                other => invalid(id as usize, &other.to_string()),
            })?;
        self.seq_of.insert(id, seq);
        self.tracks.insert(
            seq,
            Track::Gen(GenTrack {
                id,
                params: SamplingParams {
                    temperature: request.temperature,
                    top_p: request.top_p,
                    top_k: request.top_k,
                },
                rng: SeqRng::new(request.seed, request.sample_index),
                stop,
                max_tokens: request.max_tokens,
                max_len,
                generated: Vec::new(),
            }),
        );
        Ok(id)
    }

    /// Queues a log-likelihood request; see [`loglikelihood`](Self::loglikelihood)
    /// for what it computes.
    pub fn add_loglikelihood(
        &mut self,
        request: LoglikelihoodRequest,
    ) -> Result<RequestId, EngineError> {
        let id = self.next_id;
        self.limits()
            .check_loglikelihood(&request)
            .map_err(|m| invalid(id as usize, &m))?;
        self.next_id += 1;
        let logits_from = request.context_tokens.len() - 1;
        let mut targets = request.context_tokens;
        targets.extend_from_slice(&request.continuation_tokens);
        // The model reads everything but the last token.
        let input = targets[..targets.len() - 1].to_vec();
        let len = input.len();
        let seq = self
            .scheduler
            .add(input, SeqKind::Score { logits_from }, len)
            .map_err(|e| match e {
                e @ EngineError::KvCacheTooSmall { .. } => e,
                other => invalid(id as usize, &other.to_string()),
            })?;
        self.seq_of.insert(id, seq);
        self.tracks.insert(
            seq,
            Track::Score(ScoreTrack {
                id,
                targets,
                logits_from,
                token_logprobs: Vec::new(),
                greedy: true,
            }),
        );
        Ok(id)
    }

    /// Drops an unfinished request (its output is never produced). Returns
    /// whether it was unfinished.
    pub fn abort(&mut self, id: RequestId) -> bool {
        if let Some(at) = self.ready.iter().position(|f| f.id == id) {
            self.ready.remove(at);
            return true;
        }
        match self.seq_of.remove(&id) {
            Some(seq) => {
                self.tracks.remove(&seq);
                self.scheduler.finish(seq);
                true
            }
            None => false,
        }
    }

    /// Drops every unfinished request.
    pub fn abort_all(&mut self) {
        self.ready.clear();
        self.seq_of.clear();
        let seqs: Vec<SeqId> = self.tracks.drain().map(|(seq, _)| seq).collect();
        for seq in seqs {
            self.scheduler.finish(seq);
        }
    }

    /// Runs one step over the unfinished requests and returns those that
    /// finished in it (empty when there is nothing to do). On an error the
    /// step's work is lost and **every** unfinished request is dropped (the
    /// engine stays usable): callers fail whatever they were waiting for.
    pub fn step(&mut self) -> Result<Vec<Finished>, EngineError> {
        self.step_with(|_, _| TokenAction::Continue)
    }

    /// Like [`step`](Self::step), calling `on_token(id, tokens_so_far)`
    /// after every generated token (stop tokens excepted); returning
    /// [`TokenAction::Stop`] finishes that request with
    /// [`FinishReason::Stopped`]. This is where callers check stop strings.
    pub fn step_with(
        &mut self,
        mut on_token: impl FnMut(RequestId, &[u32]) -> TokenAction,
    ) -> Result<Vec<Finished>, EngineError> {
        let mut finished = std::mem::take(&mut self.ready);
        if self.tracks.is_empty() {
            return Ok(finished);
        }
        let (batch, out) = match self.run_step() {
            Ok(r) => r,
            Err(e) => {
                self.abort_all();
                return Err(e);
            }
        };
        let mut row = 0;
        for s in &batch.seqs {
            let rows = row..row + s.logits.len();
            row = rows.end;
            match self.tracks.get_mut(&s.seq_id) {
                None => {}
                Some(Track::Gen(t)) => {
                    // A generating sequence wants at most one row: the
                    // logits after its last token.
                    let Some(r) = rows.clone().last() else {
                        continue;
                    };
                    let logits = out.row(r);
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
                        if on_token(t.id, &t.generated) == TokenAction::Stop {
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
                            if let Some(Track::Gen(t)) = self.tracks.remove(&s.seq_id) {
                                self.seq_of.remove(&t.id);
                                finished.push(Finished {
                                    id: t.id,
                                    output: EngineOutput::Generate(GenerateOutput {
                                        tokens: t.generated,
                                        finish_reason: reason,
                                        prompt_tokens: seq
                                            .as_ref()
                                            .map_or(0, |q| q.num_prompt_tokens()),
                                        cached_prompt_tokens: seq
                                            .as_ref()
                                            .map_or(0, |q| q.num_cached_tokens()),
                                    }),
                                });
                            }
                        }
                    }
                }
                Some(Track::Score(t)) => {
                    for (p, r) in s.logits.clone().zip(rows) {
                        let logits = out.row(r);
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
                        if let Some(Track::Score(t)) = self.tracks.remove(&s.seq_id) {
                            self.seq_of.remove(&t.id);
                            finished.push(Finished {
                                id: t.id,
                                output: EngineOutput::Loglikelihood(LoglikelihoodScore {
                                    logprob: t.token_logprobs.iter().sum(),
                                    is_greedy: t.greedy,
                                    token_logprobs: t.token_logprobs,
                                }),
                            });
                        }
                    }
                }
            }
        }
        Ok(finished)
    }

    /// What a request must fit.
    fn limits(&self) -> RequestLimits {
        RequestLimits {
            vocab_size: self.config.vocab_size,
            max_model_len: self.max_model_len,
        }
    }

    /// Schedules, computes and records one step.
    fn run_step(&mut self) -> Result<(ScheduledStep, StepOutput), EngineError> {
        let scheduled = self.scheduler.schedule()?;
        let input = StepInput::from_scheduled(&scheduled);
        let out = self.executor.forward(&input)?;
        let expected: usize = scheduled.seqs.iter().map(|s| s.logits.len()).sum();
        if out.num_rows() != expected {
            return Err(EngineError::InvalidStep(format!(
                "executor returned {} logit rows for {expected} requested",
                out.num_rows()
            )));
        }
        self.scheduler.complete_step(&scheduled);
        self.stats.steps += 1;
        self.stats.computed_tokens += input.num_tokens() as u64;
        Ok((scheduled, out))
    }
}

/// An invalid-request error for the caller's request `index`.
fn invalid(index: usize, message: &str) -> EngineError {
    EngineError::InvalidRequest {
        index,
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Architecture;
    use crate::testing::{random_weights, tiny_config};

    fn engine() -> LlmEngine {
        let config = tiny_config(Architecture::Qwen2);
        let settings = EngineSettings {
            max_num_seqs: 3,
            max_num_batched_tokens: 16,
            block_size: 4,
            num_kv_blocks: Some(64),
            ..EngineSettings::default()
        };
        LlmEngine::new_cpu(config.clone(), random_weights(&config, 21), &settings).unwrap()
    }

    fn prompt(n: usize, salt: u32) -> Vec<u32> {
        (0..n as u32).map(|i| (i * 7 + salt) % 90 + 3).collect()
    }

    fn greedy(n: usize, salt: u32, max_tokens: usize) -> GenerateRequest {
        GenerateRequest {
            prompt_tokens: prompt(n, salt),
            max_tokens,
            ignore_eos: true,
            ..GenerateRequest::default()
        }
    }

    #[test]
    fn requests_added_between_steps_give_the_batch_results() {
        let gens: Vec<GenerateRequest> =
            (0..5).map(|i| greedy(5 + 3 * i, i as u32, 3 + i)).collect();
        let score = LoglikelihoodRequest {
            context_tokens: prompt(9, 40),
            continuation_tokens: prompt(3, 50),
        };
        let want_gen = engine().generate(gens.clone()).unwrap();
        let want_score = engine().loglikelihood(vec![score.clone()]).unwrap();

        // One new request per step, while earlier ones are mid-flight, and
        // a max_tokens = 0 request that finishes without running.
        let mut e = engine();
        let mut ids = Vec::new();
        let mut got: HashMap<RequestId, EngineOutput> = HashMap::new();
        type Add = Box<dyn FnOnce(&mut LlmEngine) -> RequestId>;
        let mut queue: Vec<Add> = Vec::new();
        for g in gens.clone() {
            queue.push(Box::new(move |e| e.add_generate(g).unwrap()));
        }
        let s = score.clone();
        queue.insert(2, Box::new(move |e| e.add_loglikelihood(s).unwrap()));
        queue.push(Box::new(|e| e.add_generate(greedy(4, 9, 0)).unwrap()));
        let mut queue = queue.into_iter();
        let mut steps = 0;
        loop {
            if let Some(add) = queue.next() {
                ids.push(add(&mut e));
            } else if !e.has_unfinished() {
                break;
            }
            for f in e.step().unwrap() {
                assert!(got.insert(f.id, f.output).is_none(), "finished twice");
            }
            steps += 1;
            assert!(steps < 200);
        }
        assert_eq!(got.len(), 7);
        let gen_ids: Vec<RequestId> = ids.iter().copied().filter(|&id| id != ids[2]).collect();
        for (want, id) in want_gen.iter().zip(&gen_ids) {
            match &got[id] {
                EngineOutput::Generate(g) => assert_eq!(g.tokens, want.tokens),
                other => panic!("{other:?}"),
            }
        }
        match &got[&ids[6]] {
            EngineOutput::Generate(g) => assert!(g.tokens.is_empty()),
            other => panic!("{other:?}"),
        }
        match &got[&ids[2]] {
            EngineOutput::Loglikelihood(l) => {
                assert!((l.logprob - want_score[0].logprob).abs() < 1e-4);
                assert_eq!(l.is_greedy, want_score[0].is_greedy);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn aborts_hooks_and_busy_batch_calls() {
        let mut e = engine();
        let a = e.add_generate(greedy(6, 1, 10)).unwrap();
        let b = e.add_generate(greedy(6, 2, 10)).unwrap();
        e.step().unwrap();
        // A batch call refuses to run other callers' requests.
        assert!(e.generate(vec![greedy(3, 3, 2)]).is_err());
        assert!(e.abort(a));
        assert!(!e.abort(a));
        let mut seen = Vec::new();
        let mut out = Vec::new();
        while e.has_unfinished() {
            out.extend(
                e.step_with(|id, toks| {
                    seen.push(id);
                    if toks.len() == 2 {
                        TokenAction::Stop
                    } else {
                        TokenAction::Continue
                    }
                })
                .unwrap(),
            );
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].id, b);
        assert!(seen.iter().all(|&id| id == b));
        match &out[0].output {
            EngineOutput::Generate(g) => {
                assert_eq!(g.tokens.len(), 2);
                assert_eq!(g.finish_reason, FinishReason::Stopped);
            }
            other => panic!("{other:?}"),
        }
        // An invalid request is refused at once and queues nothing.
        assert!(e.add_generate(greedy(0, 1, 3)).is_err());
        assert!(!e.has_unfinished());
        // The boxed engine is the same engine.
        let mut boxed = engine().into_boxed();
        let plain = engine().generate(vec![greedy(7, 5, 4)]).unwrap();
        assert_eq!(boxed.generate(vec![greedy(7, 5, 4)]).unwrap(), plain);
    }
}
