//! The `engine` backend: Shardline's own inference engine inside the worker
//! process.
//!
//! One OS thread owns the model. It loads it (never on the async runtime),
//! then serves: between two engine steps it drains a channel of new
//! requests into the engine, so the requests of every shard a worker runs
//! share batches as soon as they arrive (continuous batching across
//! shards). Each answer goes back on its own oneshot channel; a request
//! whose caller went away (shard cancelled, lease lost) is dropped from the
//! engine at the next step.
//!
//! The model's fingerprint is checked against the spec's before any weight
//! is decoded, and a replacement chat template against its recorded
//! digest before the thread starts: outputs are never written under
//! another model's key.

mod chat_template;
mod job_map;
mod location;
mod resolve;
mod text;

pub use chat_template::{read_template, TemplateFile, TemplateFileError};
pub use resolve::{check_chat_template, resolve_model, ModelSpecError, ResolvedModel};
pub use text::EngineText;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use async_trait::async_trait;
use engine::text::StopChecker;
use engine::{
    load_model, DigestCache, EngineOutput, EngineSettings, EngineStats, LoadOptions, LoadedModel,
    RequestId, SystemRole, TextError, TokenAction,
};
use jobs::spec::{BackendKind, Endpoint, ModelSpec};
use jobs::{InferenceOutput, InferenceRequest, RenderedInput, RequestType, Usage};
use tokio::sync::oneshot;

use super::key_policy::KeyPolicy;
use super::{Backend, BackendError};

/// Requests in flight per sequence the engine batches: enough queued that
/// a finished sequence is replaced at once.
const QUEUE_PER_SEQ: usize = 2;

type Reply = oneshot::Sender<Result<InferenceOutput, BackendError>>;

/// A request on its way to the serving thread.
struct Job {
    request: InferenceRequest,
    reply: Reply,
    sent: Instant,
}

/// What the serving thread needs besides the model.
#[derive(Clone, Debug)]
struct ServeConfig {
    path: PathBuf,
    /// The model as errors name it: its path, or the variable holding it
    /// (a job's author may not see this worker's environment).
    shown: String,
    endpoint: Endpoint,
    /// `[model.prompt_format]` is set: prompts are already the model's
    /// text (see [`job_map::prompt`]).
    formatted: bool,
    system_role: SystemRole,
    threads: Option<usize>,
}

pub struct EngineBackend {
    jobs: mpsc::Sender<Job>,
    concurrency: usize,
    /// The model as errors name it (see [`ServeConfig`]).
    shown: String,
}

impl std::fmt::Debug for EngineBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBackend")
            .field("model", &self.shown)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl EngineBackend {
    /// Starts the serving thread, which loads the model in the background;
    /// requests sent meanwhile wait for it. Errors here are the spec's
    /// (no path, no fingerprint); a model that cannot be loaded fails every
    /// request with [`BackendError::EndpointUnusable`], so the shard fails
    /// once with the loader's message.
    pub fn from_spec(model: &ModelSpec, keys: &KeyPolicy) -> Result<EngineBackend, BackendError> {
        if model.backend != BackendKind::Engine {
            return Err(BackendError::Config(format!(
                "the engine backend cannot run a `{}` model",
                model.backend.as_str()
            )));
        }
        let (path, shown) = resolve_path(model, keys)?;
        let expected = model.fingerprint.clone().ok_or_else(|| {
            BackendError::Config(
                "model.fingerprint is missing: the engine refuses to write outputs without \
                 knowing which model they belong to; submit the job with `shardline run` or \
                 `shardline submit`, which compute it"
                    .into(),
            )
        })?;
        // Read here, not on the serving thread: a small file, and a
        // changed one fails the backend at once with what to do.
        let chat_template = read_template(model)
            .map_err(|e| BackendError::Config(e.to_string()))?
            .map(|file| file.template);
        if chat_template.is_some() && model.chat_template_sha256.is_none() {
            return Err(BackendError::Config(
                "model.chat_template_sha256 is missing: the chat template is part of the model's \
                 identity in request keys; submit the job with `shardline run` or `shardline \
                 submit`, which compute it"
                    .into(),
            ));
        }
        let settings = engine_settings(model);
        let concurrency = settings.max_num_seqs.max(1).saturating_mul(QUEUE_PER_SEQ);
        let options = LoadOptions {
            device: job_map::device(model.device.unwrap_or_default()),
            settings,
            digest_cache: DigestCache::default_location(),
            expected_fingerprint: Some(expected),
            chat_template,
        };
        let serve = ServeConfig {
            path,
            shown: shown.clone(),
            endpoint: model.endpoint,
            formatted: model.prompt_format.is_some(),
            system_role: job_map::system_role(model.system_role),
            threads: model
                .engine
                .as_ref()
                .and_then(|e| e.threads)
                .map(|t| t as usize),
        };
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("shardline-engine".into())
            .spawn(move || serve_thread(serve, options, rx))
            .map_err(|e| BackendError::Config(format!("cannot start the engine thread: {e}")))?;
        Ok(EngineBackend {
            jobs: tx,
            concurrency,
            shown,
        })
    }

    fn gone(&self) -> BackendError {
        BackendError::EndpointUnusable {
            url: self.shown.clone(),
            message: format!(
                "the engine serving {} stopped unexpectedly; see the worker's log",
                self.shown
            ),
        }
    }
}

#[async_trait]
impl Backend for EngineBackend {
    fn concurrency(&self) -> usize {
        self.concurrency
    }

    async fn run(&self, req: &InferenceRequest) -> Result<InferenceOutput, BackendError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                request: req.clone(),
                reply,
                sent: Instant::now(),
            })
            .map_err(|_| self.gone())?;
        answer.await.map_err(|_| self.gone())?
    }
}

/// `model.path` (already absolute when the spec came from a file), else
/// the path in the environment variable `model.path_env` names (never a
/// coordinator token's), else `model.path_default`; with how errors show it.
fn resolve_path(model: &ModelSpec, keys: &KeyPolicy) -> Result<(PathBuf, String), BackendError> {
    if let (None, Some(var)) = (&model.path, &model.path_env) {
        keys.check_not_token(var, "path_env")?;
    }
    match location::locate(model, &|var| std::env::var_os(var)) {
        Ok(found) => Ok((found.path, found.shown)),
        Err(location::Missing::EnvUnset { var, default }) => Err(BackendError::Config(format!(
            "environment variable {var} (named by model.path_env) is not set{}; export it \
             with the model's path (a GGUF file or a Hugging Face directory) on every worker",
            match (default, &model.path_default) {
                (Some(_), Some(written)) => format!(
                    ", and model.path_default ({}) does not exist on this worker",
                    written.display()
                ),
                _ => String::new(),
            }
        ))),
        Err(location::Missing::NoField) => Err(BackendError::Config(
            "[model] needs `path` (a GGUF file or a Hugging Face directory) or `path_env`".into(),
        )),
    }
}

/// `[model.engine]` over the engine's defaults.
fn engine_settings(model: &ModelSpec) -> EngineSettings {
    let mut s = EngineSettings::default();
    if let Some(e) = &model.engine {
        if let Some(v) = e.max_num_seqs {
            s.max_num_seqs = v as usize;
        }
        if let Some(v) = e.max_num_batched_tokens {
            s.max_num_batched_tokens = v as usize;
        }
        if let Some(v) = e.kv_cache_memory {
            s.kv_cache_bytes = usize::try_from(v.0).unwrap_or(usize::MAX);
        }
        if let Some(v) = e.max_model_len {
            s.max_model_len = Some(v as usize);
        }
        if let Some(v) = e.enable_prefix_caching {
            s.enable_prefix_caching = v;
        }
    }
    s
}

/// The serving thread: load, then serve until the backend is dropped.
fn serve_thread(config: ServeConfig, options: LoadOptions, jobs: mpsc::Receiver<Job>) {
    let pool = match config.threads {
        None => None,
        Some(n) => match rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("shardline-engine-{i}"))
            .build()
        {
            Ok(pool) => Some(pool),
            Err(e) => {
                let message = format!("cannot start {n} engine threads: {e}");
                return refuse_all(&config, message, jobs);
            }
        },
    };
    let run = || {
        let started = Instant::now();
        match load_model(&config.path, &options) {
            Ok(model) => {
                tracing::info!(
                    path = %config.path.display(),
                    fingerprint = %model.fingerprint,
                    parameters = model.info.num_parameters,
                    device = %model.info.device,
                    kv_blocks = model.info.num_kv_blocks,
                    load_ms = started.elapsed().as_millis() as u64,
                    "engine model loaded"
                );
                Server::new(config.clone(), model).serve(&jobs);
            }
            Err(e) => {
                tracing::error!(path = %config.path.display(), error = %e, "cannot load the engine model");
                // The loader names the path; a job sees it only as `shown`.
                let message = format!("cannot load the engine model: {e}")
                    .replace(&config.path.display().to_string(), &config.shown);
                refuse_all(&config, message, jobs);
            }
        }
    };
    match pool {
        Some(pool) => pool.install(run),
        None => run(),
    }
}

/// Answers every request with the same unusable error, until the backend
/// is dropped.
fn refuse_all(config: &ServeConfig, message: String, jobs: mpsc::Receiver<Job>) {
    let url = config.shown.clone();
    for job in jobs.iter() {
        let _ = job.reply.send(Err(BackendError::EndpointUnusable {
            url: url.clone(),
            message: message.clone(),
        }));
    }
}

/// A request inside the engine.
struct Pending {
    reply: Reply,
    sent: Instant,
    kind: PendingKind,
}

enum PendingKind {
    Generate { stop: StopChecker },
    Score { context: usize, continuation: usize },
}

struct Server {
    config: ServeConfig,
    model: LoadedModel,
    pending: HashMap<RequestId, Pending>,
    /// Requests answered with an output.
    served: u64,
    /// Start of the current busy period, with the counters then, for the
    /// idle log line.
    busy_since: Option<(Instant, EngineStats, u64)>,
}

impl Server {
    fn new(config: ServeConfig, model: LoadedModel) -> Server {
        Server {
            config,
            model,
            pending: HashMap::new(),
            served: 0,
            busy_since: None,
        }
    }

    fn serve(mut self, jobs: &mpsc::Receiver<Job>) {
        loop {
            if !self.model.engine.has_unfinished() {
                self.log_idle();
                // Nothing to compute: wait for work (or the backend's end).
                match jobs.recv() {
                    Ok(job) => self.admit(job),
                    Err(_) => return,
                }
            }
            loop {
                match jobs.try_recv() {
                    Ok(job) => self.admit(job),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        if !self.model.engine.has_unfinished() {
                            return;
                        }
                        break;
                    }
                }
            }
            self.drop_abandoned();
            self.step();
        }
    }

    /// Turns a request into engine work, or answers it at once when it
    /// cannot run.
    fn admit(&mut self, job: Job) {
        if self.busy_since.is_none() {
            self.busy_since = Some((Instant::now(), self.model.engine.stats(), self.served));
        }
        match self.add(&job.request) {
            Ok((id, kind)) => {
                self.pending.insert(
                    id,
                    Pending {
                        reply: job.reply,
                        sent: job.sent,
                        kind,
                    },
                );
            }
            Err(e) => {
                let _ = job.reply.send(Err(e));
            }
        }
    }

    fn add(&mut self, req: &InferenceRequest) -> Result<(RequestId, PendingKind), BackendError> {
        let text = &self.model.text;
        let invalid = |e: &dyn std::fmt::Display| BackendError::Invalid(e.to_string());
        match req.request_type {
            RequestType::Generate => {
                let prompt =
                    job_map::prompt(self.config.endpoint, self.config.formatted, &req.input)?;
                let params =
                    job_map::text_params(&req.params, req.sample_index).map_err(|e| invalid(&e))?;
                let prepared = text
                    .prepare_generation(&prompt, &params, self.config.system_role)
                    .map_err(|e| match e {
                        // No request of this job can run on this model.
                        TextError::NoChatTemplate => BackendError::Incompatible {
                            url: self.config.shown.clone(),
                            message: chat_template::no_chat_template(&self.config.shown),
                        },
                        e => invalid(&e),
                    })?;
                let id = self
                    .model
                    .engine
                    .add_generate(prepared.request)
                    .map_err(|e| invalid(&e))?;
                Ok((
                    id,
                    PendingKind::Generate {
                        stop: prepared.stop,
                    },
                ))
            }
            RequestType::Loglikelihood => {
                let context = match &req.input {
                    RenderedInput::Prompt { prompt } => prompt,
                    RenderedInput::Messages { .. } => {
                        return Err(BackendError::Unsupported(
                            "loglikelihood needs a plain prompt, but this task renders chat \
                             messages; use a `prompt` template in [task] for multiple_choice"
                                .into(),
                        ))
                    }
                };
                let continuation = req.continuation.as_deref().ok_or_else(|| {
                    BackendError::Unsupported(
                        "a loglikelihood request has no continuation to score".into(),
                    )
                })?;
                let tokens = text
                    .loglikelihood_tokens(context, continuation, self.model.engine.max_model_len())
                    .map_err(|e| invalid(&e))?;
                if tokens.truncated > 0 {
                    tracing::debug!(
                        dropped = tokens.truncated,
                        "context truncated from the left to fit the model"
                    );
                }
                let kind = PendingKind::Score {
                    context: tokens.request.context_tokens.len(),
                    continuation: tokens.request.continuation_tokens.len(),
                };
                let id = self
                    .model
                    .engine
                    .add_loglikelihood(tokens.request)
                    .map_err(|e| invalid(&e))?;
                Ok((id, kind))
            }
        }
    }

    /// Requests whose caller stopped waiting are not worth computing.
    fn drop_abandoned(&mut self) {
        let gone: Vec<RequestId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.reply.is_closed())
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            self.pending.remove(&id);
            self.model.engine.abort(id);
        }
    }

    fn step(&mut self) {
        let tokenizer = self.model.text.tokenizer();
        let pending = &mut self.pending;
        let result = self.model.engine.step_with(|id, tokens| {
            match pending.get_mut(&id).map(|p| &mut p.kind) {
                Some(PendingKind::Generate { stop }) => stop.push(tokenizer, tokens),
                _ => TokenAction::Continue,
            }
        });
        let finished = match result {
            Ok(finished) => finished,
            Err(e) => {
                // The engine dropped every unfinished request; fail them.
                tracing::error!(error = %e, "engine step failed");
                for (_, p) in self.pending.drain() {
                    let _ = p.reply.send(Err(BackendError::Invalid(format!(
                        "the engine failed a step: {e}"
                    ))));
                }
                return;
            }
        };
        for f in finished {
            let Some(p) = self.pending.remove(&f.id) else {
                continue;
            };
            self.served += 1;
            let latency_ms = u64::try_from(p.sent.elapsed().as_millis()).unwrap_or(u64::MAX);
            let output = match (f.output, p.kind) {
                (EngineOutput::Generate(g), PendingKind::Generate { stop }) => {
                    match self.model.text.complete(&stop, &g) {
                        Ok(c) => Ok(InferenceOutput {
                            text: Some(c.text),
                            finish_reason: Some(c.finish_reason.to_string()),
                            loglikelihood: None,
                            usage: Usage {
                                prompt_tokens: c.prompt_tokens as u64,
                                completion_tokens: c.completion_tokens as u64,
                            },
                            latency_ms,
                            attempts: 1,
                        }),
                        Err(e) => Err(BackendError::Invalid(e.to_string())),
                    }
                }
                (
                    EngineOutput::Loglikelihood(l),
                    PendingKind::Score {
                        context,
                        continuation,
                    },
                ) => Ok(InferenceOutput {
                    text: None,
                    finish_reason: None,
                    loglikelihood: Some(jobs::LoglikelihoodOutput {
                        logprob: l.logprob,
                        is_greedy: l.is_greedy,
                        token_logprobs: l.token_logprobs,
                    }),
                    usage: Usage {
                        prompt_tokens: (context + continuation) as u64,
                        completion_tokens: 0,
                    },
                    latency_ms,
                    attempts: 1,
                }),
                _ => Err(BackendError::Invalid(
                    "the engine answered a request with the wrong kind of output".into(),
                )),
            };
            let _ = p.reply.send(output);
        }
    }

    /// One line per busy period: how much was done and how fast.
    fn log_idle(&mut self) {
        let Some((since, before, served_before)) = self.busy_since.take() else {
            return;
        };
        let now = self.model.engine.stats();
        let secs = since.elapsed().as_secs_f64().max(1e-9);
        let computed = now.computed_tokens - before.computed_tokens;
        tracing::info!(
            requests = self.served - served_before,
            steps = now.steps - before.steps,
            computed_tokens = computed,
            generated_tokens = now.generated_tokens - before.generated_tokens,
            prefix_hit_tokens = now.prefix_cache.hit_tokens - before.prefix_cache.hit_tokens,
            busy_secs = format!("{secs:.1}"),
            tokens_per_sec = format!("{:.0}", computed as f64 / secs),
            "engine idle"
        );
    }
}
