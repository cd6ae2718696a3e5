//! Loading a job spec from TOML and validating what serde cannot check.
//!
//! Every error names where it comes from (the file, or `job spec` for specs
//! posted as JSON), the field path (`model.backend`, `task.messages[1].content`)
//! and, when the spec came from TOML text, the line and column. For enum fields
//! the message lists the accepted values (toml's "expected one of" list).

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::render;
use crate::spec::{BackendKind, Endpoint, JobSpec, MetricKind, TaskKind, ENGINE_EXTRA_BODY_KEYS};

/// Body keys the backend sets itself; `extra_body` may not override them.
const RESERVED_BODY_KEYS: &[&str] = &["model", "messages", "prompt", "stream", "n"];

/// Longest job name accepted (it becomes a folder name).
const MAX_NAME_LEN: usize = 100;

/// A job spec that could not be read, parsed or validated.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The spec file could not be read.
    #[error("{origin}: cannot read job spec: {source}")]
    Read {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML, or does not fit the spec's shape.
    #[error("{}", format_located(.origin, .location, .field.as_deref(), .message))]
    Parse {
        origin: String,
        /// Dotted field path, when the error concerns a field.
        field: Option<String>,
        location: Option<Location>,
        message: String,
    },
    /// The spec parsed but a value is not acceptable.
    #[error("{}", format_located(.origin, .location, Some(.field.as_str()), .message))]
    Invalid {
        origin: String,
        field: String,
        location: Option<Location>,
        message: String,
    },
}

impl SpecError {
    /// The field path the error concerns, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            SpecError::Read { .. } => None,
            SpecError::Parse { field, .. } => field.as_deref(),
            SpecError::Invalid { field, .. } => Some(field),
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError::Invalid {
            origin: DEFAULT_ORIGIN.to_string(),
            field: field.into(),
            location: None,
            message: message.into(),
        }
    }

    /// Re-labels an error with the file it came from and, when the field
    /// can be found in `text`, its line and column.
    fn located_in(self, origin: &str, text: Option<&str>) -> Self {
        match self {
            SpecError::Invalid {
                field,
                location,
                message,
                ..
            } => {
                let location = location.or_else(|| text.and_then(|t| locate_field(t, &field)));
                SpecError::Invalid {
                    origin: origin.to_string(),
                    field,
                    location,
                    message,
                }
            }
            SpecError::Parse {
                field,
                location,
                message,
                ..
            } => SpecError::Parse {
                origin: origin.to_string(),
                field,
                location,
                message,
            },
            SpecError::Read { source, .. } => SpecError::Read {
                origin: origin.to_string(),
                source,
            },
        }
    }
}

/// 1-based line and column in the spec text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

const DEFAULT_ORIGIN: &str = "job spec";

fn format_located(
    origin: &str,
    location: &Option<Location>,
    field: Option<&str>,
    message: &str,
) -> String {
    let mut out = origin.to_string();
    if let Some(loc) = location {
        out.push_str(&format!(":{loc}"));
    }
    out.push_str(": ");
    if let Some(field) = field.filter(|f| !f.is_empty()) {
        out.push_str(&format!("`{field}`: "));
    }
    out.push_str(message);
    out
}

impl JobSpec {
    /// Reads, parses and validates a TOML job file. Relative `dataset.path`
    /// and `task.fewshot.path` are resolved against the file's folder.
    pub fn from_toml_file(path: &Path) -> Result<JobSpec, SpecError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            origin: origin.clone(),
            source,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new(""));
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        JobSpec::from_toml_str(&text, &origin, Some(&base))
    }

    /// Parses and validates TOML text. `origin` names the text in errors;
    /// `base_dir`, when given, anchors relative paths.
    pub fn from_toml_str(
        text: &str,
        origin: &str,
        base_dir: Option<&Path>,
    ) -> Result<JobSpec, SpecError> {
        let deserializer = toml::Deserializer::new(text);
        let mut spec: JobSpec = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let field = err.path().to_string();
            let inner = err.into_inner();
            let location = inner
                .span()
                .map(|span| offset_to_location(text, span.start));
            SpecError::Parse {
                origin: origin.to_string(),
                field: (field != ".").then_some(field),
                location,
                message: inner.message().trim_end().replace('\n', "; "),
            }
        })?;
        if let Some(base) = base_dir {
            spec.resolve_paths(base);
        }
        // A file may leave `model.fingerprint` to the CLI, which computes it
        // from the model before submitting.
        spec.validate_as_written()
            .map_err(|e| e.located_in(origin, Some(text)))?;
        Ok(spec)
    }

    /// Makes relative dataset and few-shot paths absolute under `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &PathBuf| -> PathBuf {
            if p.is_absolute() {
                p.clone()
            } else {
                base.join(p)
            }
        };
        self.dataset.path = resolve(&self.dataset.path);
        if let Some(fewshot) = &mut self.task.fewshot {
            fewshot.path = resolve(&fewshot.path);
        }
        if let Some(model_path) = &self.model.path {
            self.model.path = Some(resolve(model_path));
        }
    }

    /// [`JobSpec::validate`] without the checks of what `shardline run` and
    /// `submit` fill in before submitting (the engine model's fingerprint).
    pub fn validate_as_written(&self) -> Result<(), SpecError> {
        self.validate_inner(false)
    }

    /// Checks everything serde cannot: templates and regexes compile,
    /// metrics fit the task kind, numbers are in range. Used for TOML files
    /// and for specs submitted as JSON.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.validate_inner(true)
    }

    fn validate_inner(&self, submitted: bool) -> Result<(), SpecError> {
        self.validate_name()?;
        self.validate_model()?;
        self.validate_engine(submitted)?;
        self.validate_dataset()?;
        self.validate_task()?;
        self.validate_metrics()?;
        if self.sharding.shard_size == 0 {
            return Err(SpecError::invalid(
                "sharding.shard_size",
                "must be at least 1",
            ));
        }
        if self.sharding.max_attempts == 0 {
            return Err(SpecError::invalid(
                "sharding.max_attempts",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    fn validate_name(&self) -> Result<(), SpecError> {
        let name = &self.name;
        if name.is_empty() {
            return Err(SpecError::invalid("name", "must not be empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(SpecError::invalid(
                "name",
                format!(
                    "is {} characters long; at most {MAX_NAME_LEN} are allowed",
                    name.len()
                ),
            ));
        }
        let safe = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !safe || name.starts_with('.') {
            return Err(SpecError::invalid(
                "name",
                format!(
                    "{name:?} is not usable as a folder name: use letters, digits, `-`, `_` and `.` \
                     (not first)"
                ),
            ));
        }
        Ok(())
    }

    fn validate_model(&self) -> Result<(), SpecError> {
        let m = &self.model;
        if m.model.trim().is_empty() {
            return Err(SpecError::invalid("model.model", "must not be empty"));
        }
        if m.provider.trim().is_empty() {
            return Err(SpecError::invalid("model.provider", "must not be empty"));
        }
        if let Some(ns) = &m.cache_namespace {
            if ns.trim().is_empty() {
                return Err(SpecError::invalid(
                    "model.cache_namespace",
                    "must not be empty when set",
                ));
            }
        }
        if matches!(m.backend, BackendKind::Openai | BackendKind::OpenaiBatch) {
            match (&m.base_url, &m.base_url_env) {
                (None, None) => return Err(SpecError::invalid(
                    "model.base_url",
                    "the `openai` and `openai-batch` backends need `base_url` (e.g. \"http://localhost:8000/v1\") \
                         or `base_url_env` (the name of an environment variable holding it)",
                )),
                (Some(url), _) => {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(SpecError::invalid(
                            "model.base_url",
                            format!("{url:?} must start with http:// or https://"),
                        ));
                    }
                }
                (None, Some(var)) => {
                    if var.trim().is_empty() {
                        return Err(SpecError::invalid(
                            "model.base_url_env",
                            "must not be empty",
                        ));
                    }
                }
            }
        }
        if let Some(var) = &m.api_key_env {
            if var.trim().is_empty() {
                return Err(SpecError::invalid(
                    "model.api_key_env",
                    "must not be empty when set",
                ));
            }
        }
        if m.timeout_secs == 0 {
            return Err(SpecError::invalid(
                "model.timeout_secs",
                "must be at least 1",
            ));
        }
        if m.concurrency == 0 {
            return Err(SpecError::invalid(
                "model.concurrency",
                "must be at least 1",
            ));
        }
        if m.requests_per_minute == Some(0) {
            return Err(SpecError::invalid(
                "model.requests_per_minute",
                "must be at least 1 (leave it out for no limit)",
            ));
        }
        if m.tokens_per_minute == Some(0) {
            return Err(SpecError::invalid(
                "model.tokens_per_minute",
                "must be at least 1 (leave it out for no limit)",
            ));
        }
        crate::batch::validate_model(m)?;
        Ok(())
    }

    /// The `engine` backend's fields: where the model is, its fingerprint
    /// once submitted, the engine settings, and no field of another backend
    /// (nor engine fields on other backends, except that `backend = "none"`
    /// keeps an engine job's model identity for cache-only scoring).
    fn validate_engine(&self, submitted: bool) -> Result<(), SpecError> {
        let m = &self.model;
        let engine = m.backend == BackendKind::Engine;
        if !engine && m.backend != BackendKind::None {
            let foreign = [
                ("path", m.path.is_some()),
                ("path_env", m.path_env.is_some()),
                ("fingerprint", m.fingerprint.is_some()),
                ("device", m.device.is_some()),
                ("engine", m.engine.is_some()),
            ];
            if let Some((field, _)) = foreign.into_iter().find(|(_, set)| *set) {
                return Err(SpecError::invalid(
                    format!("model.{field}"),
                    format!(
                        "applies only to `backend = \"engine\"` (this job uses `{}`); remove it \
                         or change the backend",
                        m.backend.as_str()
                    ),
                ));
            }
        } else if engine {
            for (field, set) in [
                ("base_url", m.base_url.is_some()),
                ("base_url_env", m.base_url_env.is_some()),
                ("api_key_env", m.api_key_env.is_some()),
            ] {
                if set {
                    return Err(SpecError::invalid(
                        format!("model.{field}"),
                        "applies only to the `openai` backends; the `engine` backend runs the model \
                         at `path` (or `path_env`) itself",
                    ));
                }
            }
            match (&m.path, &m.path_env) {
                (None, None) => {
                    return Err(SpecError::invalid(
                        "model.path",
                        "the `engine` backend needs `path` (a GGUF file or a Hugging Face model \
                         directory, relative to the job file) or `path_env` (the name of an \
                         environment variable holding it)",
                    ))
                }
                (Some(p), _) if p.as_os_str().is_empty() => {
                    return Err(SpecError::invalid("model.path", "must not be empty"))
                }
                (None, Some(var)) if var.trim().is_empty() => {
                    return Err(SpecError::invalid("model.path_env", "must not be empty"))
                }
                _ => {}
            }
            for key in self.task.generation.extra_body.keys() {
                if !ENGINE_EXTRA_BODY_KEYS.contains(&key.as_str()) {
                    return Err(SpecError::invalid(
                        format!("task.generation.extra_body.{key}"),
                        format!(
                            "is not a parameter the `engine` backend understands; accepted keys: {}",
                            ENGINE_EXTRA_BODY_KEYS.join(", ")
                        ),
                    ));
                }
            }
            if let Some(e) = &m.engine {
                for (field, value, min) in [
                    ("max_num_seqs", e.max_num_seqs, 1),
                    ("max_num_batched_tokens", e.max_num_batched_tokens, 1),
                    ("max_model_len", e.max_model_len, 2),
                    ("threads", e.threads, 1),
                ] {
                    if value.is_some_and(|v| v < min) {
                        return Err(SpecError::invalid(
                            format!("model.engine.{field}"),
                            format!("must be at least {min} (leave it out for the default)"),
                        ));
                    }
                }
                if e.kv_cache_memory.is_some_and(|b| b.0 < 1 << 20) {
                    return Err(SpecError::invalid(
                        "model.engine.kv_cache_memory",
                        "must be at least 1MiB (e.g. \"512MiB\"; leave it out for the default)",
                    ));
                }
            }
        }
        match &m.fingerprint {
            Some(fp) if !crate::spec::is_fingerprint(fp) => Err(SpecError::invalid(
                "model.fingerprint",
                format!(
                    "{fp:?} is not a model fingerprint (64 lowercase hex characters, the sha256 \
                     that `shardline run` computes from the model); remove it to have it computed"
                ),
            )),
            None if engine && submitted => Err(SpecError::invalid(
                "model.fingerprint",
                "is missing: outputs of the `engine` backend are cached under the model's \
                 fingerprint (sha256 of its weights, tokenizer and chat template). `shardline \
                 run` and `shardline submit` compute it from `model.path` before submitting; a \
                 spec posted to the API directly must include it (64 hex characters)",
            )),
            _ => Ok(()),
        }
    }

    fn validate_dataset(&self) -> Result<(), SpecError> {
        let d = &self.dataset;
        if d.path.as_os_str().is_empty() {
            return Err(SpecError::invalid("dataset.path", "must not be empty"));
        }
        if d.limit == Some(0) {
            return Err(SpecError::invalid(
                "dataset.limit",
                "must be at least 1 (leave it out to read the whole dataset)",
            ));
        }
        if d.id_field.as_deref().is_some_and(|f| f.is_empty()) {
            return Err(SpecError::invalid(
                "dataset.id_field",
                "must not be empty when set",
            ));
        }
        if d.subset_field.as_deref().is_some_and(|f| f.is_empty()) {
            return Err(SpecError::invalid(
                "dataset.subset_field",
                "must not be empty when set",
            ));
        }
        Ok(())
    }

    fn validate_task(&self) -> Result<(), SpecError> {
        let t = &self.task;
        let env = render::template_env();
        match (&t.prompt, &t.messages) {
            (Some(_), Some(_)) => {
                return Err(SpecError::invalid(
                    "task.prompt",
                    "set either `prompt` or `messages`, not both",
                ))
            }
            (None, None) => {
                return Err(SpecError::invalid(
                    "task.prompt",
                    "set `prompt` (a template) or `messages` (chat turns)",
                ))
            }
            (Some(prompt), None) => check_template(&env, "task.prompt", prompt)?,
            (None, Some(messages)) => {
                if messages.is_empty() {
                    return Err(SpecError::invalid(
                        "task.messages",
                        "must have at least one turn",
                    ));
                }
                for (i, m) in messages.iter().enumerate() {
                    if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                        return Err(SpecError::invalid(
                            format!("task.messages[{i}].role"),
                            format!(
                                "unknown role {:?}, expected one of `system`, `user`, `assistant`",
                                m.role
                            ),
                        ));
                    }
                    check_template(&env, &format!("task.messages[{i}].content"), &m.content)?;
                }
                if !messages.iter().any(|m| m.role == "user") {
                    return Err(SpecError::invalid(
                        "task.messages",
                        "needs at least one turn with role = \"user\"",
                    ));
                }
                if self.model.endpoint == Endpoint::Completions {
                    return Err(SpecError::invalid(
                        "task.messages",
                        "`endpoint = \"completions\"` sends a plain prompt: use `task.prompt` \
                         instead of `task.messages`, or `endpoint = \"chat\"`",
                    ));
                }
            }
        }
        if let Some(target) = &t.target {
            check_template(&env, "task.target", target)?;
        }
        if let Some(choices) = &t.choices {
            if let Err(e) = env.compile_expression(choices) {
                return Err(SpecError::invalid(
                    "task.choices",
                    format!("is not a valid expression: {}", render::describe_error(&e)),
                ));
            }
        }
        if let Some(fewshot) = &t.fewshot {
            if fewshot.path.as_os_str().is_empty() {
                return Err(SpecError::invalid("task.fewshot.path", "must not be empty"));
            }
            if fewshot.k > 0 && t.target.is_none() {
                return Err(SpecError::invalid(
                    "task.target",
                    "few-shot examples need a `target` template to render each example's answer",
                ));
            }
        }
        match t.kind {
            TaskKind::MultipleChoice => {
                if self.model.endpoint == Endpoint::Chat {
                    return Err(SpecError::invalid(
                        "model.endpoint",
                        "`kind = \"multiple_choice\"` is scored by log-likelihood, which needs the \
                         prompt's log-probabilities: set `endpoint = \"completions\"` (chat \
                         endpoints do not return them)",
                    ));
                }
                if t.choices.is_none() {
                    return Err(SpecError::invalid(
                        "task.choices",
                        "`kind = \"multiple_choice\"` needs `choices`, an expression giving the \
                         list of answer texts, e.g. \"choices\" or \"[A, B, C, D]\"",
                    ));
                }
                if t.target.is_none() {
                    return Err(SpecError::invalid(
                        "task.target",
                        "`kind = \"multiple_choice\"` needs `target`: the gold answer as an index \
                         (0-based), a letter (A, B, ...) or the choice text",
                    ));
                }
            }
            TaskKind::Generate => {
                let g = &t.generation;
                if g.max_tokens == 0 {
                    return Err(SpecError::invalid(
                        "task.generation.max_tokens",
                        "must be at least 1",
                    ));
                }
            }
        }
        let g = &t.generation;
        if g.n == 0 {
            return Err(SpecError::invalid(
                "task.generation.n",
                "must be at least 1",
            ));
        }
        if t.kind == TaskKind::MultipleChoice && g.n != 1 {
            return Err(SpecError::invalid(
                "task.generation.n",
                "must be 1 for multiple_choice (log-likelihoods are deterministic)",
            ));
        }
        if !(g.temperature.is_finite() && (0.0..=2.0).contains(&g.temperature)) {
            return Err(SpecError::invalid(
                "task.generation.temperature",
                format!(
                    "{} is out of range: accepted values are 0.0 to 2.0",
                    g.temperature
                ),
            ));
        }
        if let Some(top_p) = g.top_p {
            if !(top_p.is_finite() && top_p > 0.0 && top_p <= 1.0) {
                return Err(SpecError::invalid(
                    "task.generation.top_p",
                    format!(
                        "{top_p} is out of range: accepted values are greater than 0 and at most 1"
                    ),
                ));
            }
        }
        for key in g.extra_body.keys() {
            if RESERVED_BODY_KEYS.contains(&key.as_str()) {
                return Err(SpecError::invalid(
                    format!("task.generation.extra_body.{key}"),
                    format!(
                        "`{key}` is set by Shardline itself and cannot be overridden; reserved keys: {}",
                        RESERVED_BODY_KEYS.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_metrics(&self) -> Result<(), SpecError> {
        let kind = self.task.kind;
        let mut names = HashSet::new();
        for (i, m) in self.metrics.iter().enumerate() {
            let field = |f: &str| format!("metrics[{i}].{f}");
            let kind_name = metric_kind_name(m.kind);
            let fits = match m.kind {
                MetricKind::Acc | MetricKind::AccNorm => kind == TaskKind::MultipleChoice,
                MetricKind::ExactMatch
                | MetricKind::Contains
                | MetricKind::Regex
                | MetricKind::F1
                | MetricKind::ChoiceLetter => kind == TaskKind::Generate,
            };
            if !fits {
                let accepted = match kind {
                    TaskKind::MultipleChoice => "acc, acc_norm",
                    TaskKind::Generate => "exact_match, contains, regex, choice_letter, f1",
                };
                let task_kind = match kind {
                    TaskKind::MultipleChoice => "multiple_choice",
                    TaskKind::Generate => "generate",
                };
                return Err(SpecError::invalid(
                    field("type"),
                    format!(
                        "`{kind_name}` does not apply to `kind = \"{task_kind}\"` tasks; accepted \
                         metrics for this kind: {accepted}"
                    ),
                ));
            }
            if self.task.target.is_none() {
                return Err(SpecError::invalid(
                    "task.target",
                    format!(
                        "metric `{kind_name}` compares against the reference: set `task.target`"
                    ),
                ));
            }
            match (m.kind, &m.pattern) {
                (MetricKind::Regex, None) => {
                    return Err(SpecError::invalid(
                        field("pattern"),
                        "a `regex` metric needs `pattern`, a regular expression whose first \
                         capture group is the answer, e.g. \"answer is (\\\\w+)\"",
                    ))
                }
                (MetricKind::Regex, Some(pattern)) => {
                    let re = regex::Regex::new(pattern).map_err(|e| {
                        SpecError::invalid(field("pattern"), format!("is not a valid regex: {e}"))
                    })?;
                    if re.captures_len() < 2 {
                        return Err(SpecError::invalid(
                            field("pattern"),
                            "needs a capture group, e.g. \"answer is (\\\\w+)\": its first group \
                             is compared with the target",
                        ));
                    }
                }
                (_, Some(_)) => {
                    return Err(SpecError::invalid(
                        field("pattern"),
                        format!("is only used by `type = \"regex\"`, not `{kind_name}`"),
                    ))
                }
                (_, None) => {}
            }
            if matches!(
                m.kind,
                MetricKind::Acc | MetricKind::AccNorm | MetricKind::ChoiceLetter
            ) && !m.normalize.is_empty()
            {
                return Err(SpecError::invalid(
                    field("normalize"),
                    format!("does not apply to `{kind_name}`; remove it"),
                ));
            }
            let name = m.display_name();
            if name.trim().is_empty() {
                return Err(SpecError::invalid(field("name"), "must not be empty"));
            }
            if !names.insert(name.clone()) {
                return Err(SpecError::invalid(
                    field("name"),
                    format!(
                        "a metric named `{name}` is already defined; give each metric a distinct \
                         `name`"
                    ),
                ));
            }
        }
        Ok(())
    }
}

pub(crate) fn metric_kind_name(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::ExactMatch => "exact_match",
        MetricKind::Contains => "contains",
        MetricKind::Regex => "regex",
        MetricKind::ChoiceLetter => "choice_letter",
        MetricKind::F1 => "f1",
        MetricKind::Acc => "acc",
        MetricKind::AccNorm => "acc_norm",
    }
}

fn check_template(
    env: &minijinja::Environment<'static>,
    field: &str,
    source: &str,
) -> Result<(), SpecError> {
    env.template_from_named_str(field, source)
        .map(|_| ())
        .map_err(|e| {
            SpecError::invalid(
                field,
                format!("template does not compile: {}", render::describe_error(&e)),
            )
        })
}

fn offset_to_location(text: &str, offset: usize) -> Location {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before
        .get(line_start..)
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    Location { line, column }
}

/// Finds where a field path such as `task.messages[1].content` is written in
/// TOML text, falling back to the closest enclosing item that has a span.
fn locate_field(text: &str, field: &str) -> Option<Location> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut best: Option<std::ops::Range<usize>> = None;
    let mut node = Node::Table(doc.as_table());
    for segment in field.split('.') {
        let (key, indexes) = split_indexes(segment);
        let Some(next) = node.child_key(key) else {
            break;
        };
        node = next;
        best = node.span().or(best);
        for index in indexes {
            let Some(next) = node.child_index(index) else {
                return best.map(|r| offset_to_location(text, r.start));
            };
            node = next;
            best = node.span().or(best);
        }
    }
    best.map(|r| offset_to_location(text, r.start))
}

/// A position in a parsed TOML document, whatever syntax wrote it.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a toml_edit::Item),
    Table(&'a toml_edit::Table),
    Value(&'a toml_edit::Value),
}

impl<'a> Node<'a> {
    fn span(self) -> Option<std::ops::Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Table(t) => t.span(),
            Node::Value(v) => v.span(),
        }
    }

    fn child_key(self, key: &str) -> Option<Node<'a>> {
        match self {
            Node::Table(t) => t.get(key).map(Node::Item),
            Node::Item(toml_edit::Item::Table(t)) => t.get(key).map(Node::Item),
            Node::Item(toml_edit::Item::Value(toml_edit::Value::InlineTable(t)))
            | Node::Value(toml_edit::Value::InlineTable(t)) => t.get(key).map(Node::Value),
            _ => None,
        }
    }

    fn child_index(self, index: usize) -> Option<Node<'a>> {
        match self {
            Node::Item(toml_edit::Item::ArrayOfTables(a)) => a.get(index).map(Node::Table),
            Node::Item(toml_edit::Item::Value(toml_edit::Value::Array(a)))
            | Node::Value(toml_edit::Value::Array(a)) => a.get(index).map(Node::Value),
            _ => None,
        }
    }
}

/// Splits `messages[1]` into `("messages", [1])`.
fn split_indexes(segment: &str) -> (&str, Vec<usize>) {
    let key_end = segment.find('[').unwrap_or(segment.len());
    let key = &segment[..key_end];
    let indexes = segment[key_end..]
        .split(['[', ']'])
        .filter_map(|s| s.parse().ok())
        .collect();
    (key, indexes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "qa"

[model]
backend = "openai"
model = "m"
base_url = "http://localhost:8000/v1"

[dataset]
path = "data/questions.jsonl"

[task]
kind = "generate"
target = "{{ answer }}"

[[task.messages]]
role = "system"
content = "Be brief."

[[task.messages]]
role = "user"
content = "{{ question }}"

[task.fewshot]
path = "shots.jsonl"
k = 1

[[metrics]]
type = "exact_match"
normalize = ["strip"]
"#;

    fn err(text: &str) -> String {
        JobSpec::from_toml_str(text, "job.toml", None)
            .expect_err("spec should be rejected")
            .to_string()
    }

    #[test]
    fn good_spec_loads_and_resolves_paths() {
        let spec = JobSpec::from_toml_str(GOOD, "job.toml", Some(Path::new("/jobs/qa"))).unwrap();
        assert_eq!(
            spec.dataset.path,
            PathBuf::from("/jobs/qa/data/questions.jsonl")
        );
        assert_eq!(
            spec.task.fewshot.as_ref().unwrap().path,
            PathBuf::from("/jobs/qa/shots.jsonl")
        );
        assert_eq!(spec.task.generation.max_tokens, 256);
    }

    #[test]
    fn from_file_resolves_against_the_file_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.toml");
        std::fs::write(&path, GOOD).unwrap();
        let spec = JobSpec::from_toml_file(&path).unwrap();
        assert_eq!(spec.dataset.path, dir.path().join("data/questions.jsonl"));
        let missing = JobSpec::from_toml_file(&dir.path().join("nope.toml")).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("nope.toml: cannot read job spec"),
            "{missing}"
        );
    }

    #[test]
    fn unknown_field_names_path_line_and_accepted_fields() {
        let text = GOOD.replace("model = \"m\"", "model = \"m\"\nbakend_url = \"x\"");
        let e = err(&text);
        assert!(e.starts_with("job.toml:7:1: `model"), "{e}");
        assert!(e.contains("unknown field `bakend_url`"), "{e}");
        assert!(e.contains("`base_url`"), "{e}");
    }

    #[test]
    fn wrong_enum_value_lists_accepted_values() {
        let e = err(&GOOD.replace("backend = \"openai\"", "backend = \"openia\""));
        assert!(e.starts_with("job.toml:5:11: `model.backend`: "), "{e}");
        assert!(e.contains("unknown variant `openia`"), "{e}");
        assert!(e.contains("`openai`") && e.contains("`none`"), "{e}");
        let e = err(&GOOD.replace("normalize = [\"strip\"]", "normalize = [\"trim\"]"));
        assert!(
            e.contains("`metrics[0].normalize[0]`") || e.contains("`metrics.0.normalize.0`"),
            "{e}"
        );
        assert!(e.contains("remove_articles"), "{e}");
    }

    #[test]
    fn missing_field_is_named() {
        let e = err(&GOOD.replace("model = \"m\"\n", ""));
        assert!(e.contains("`model`: missing field `model`"), "{e}");
        let e = err(&GOOD.replace("kind = \"generate\"\n", ""));
        assert!(e.contains("missing field `kind`"), "{e}");
    }

    #[test]
    fn bad_template_names_the_template_and_line() {
        let e = err(&GOOD.replace(
            "content = \"{{ question }}\"",
            "content = \"{{ question }\"",
        ));
        assert!(
            e.contains("`task.messages[1].content`: template does not compile"),
            "{e}"
        );
        assert!(e.starts_with("job.toml:22:11:"), "{e}");
        let e = err(&GOOD.replace("target = \"{{ answer }}\"", "target = \"{% if %}\""));
        assert!(
            e.contains("`task.target`: template does not compile"),
            "{e}"
        );
    }

    #[test]
    fn bad_regex_and_missing_group() {
        let with_regex = |p: &str| {
            GOOD.replace(
                "type = \"exact_match\"",
                &format!("type = \"regex\"\npattern = '{p}'"),
            )
        };
        let e = err(&with_regex("answer is ("));
        assert!(
            e.contains("`metrics[0].pattern`: is not a valid regex"),
            "{e}"
        );
        assert!(e.starts_with("job.toml:30:11:"), "{e}");
        let e = err(&with_regex("answer is \\w+"));
        assert!(e.contains("needs a capture group"), "{e}");
        assert!(JobSpec::from_toml_str(&with_regex("answer is (\\w+)"), "job.toml", None).is_ok());
        let e = err(&GOOD.replace("type = \"exact_match\"", "type = \"regex\""));
        assert!(
            e.contains("`metrics[0].pattern`: a `regex` metric needs `pattern`"),
            "{e}"
        );
    }

    #[test]
    fn semantic_rules() {
        let e = err(&GOOD.replace("type = \"exact_match\"", "type = \"acc\""));
        assert!(e.contains("`metrics[0].type`: `acc` does not apply"), "{e}");
        let e = err(&GOOD.replace("base_url = \"http://localhost:8000/v1\"\n", ""));
        assert!(
            e.contains("`model.base_url`") && e.contains("base_url_env"),
            "{e}"
        );
        let e = err(&GOOD.replace("name = \"qa\"", "name = \"../qa\""));
        assert!(e.contains("`name`") && e.contains("folder name"), "{e}");
        let e = err(&GOOD.replace("name = \"qa\"", "name = \"\""));
        assert!(e.contains("`name`: must not be empty"), "{e}");
        let e = err(&format!("{GOOD}\n[[metrics]]\ntype = \"exact_match\"\n"));
        assert!(
            e.contains("`metrics[1].name`") && e.contains("already defined"),
            "{e}"
        );
        let e = err(&format!("{GOOD}\n[sharding]\nshard_size = 0\n"));
        assert!(
            e.contains("`sharding.shard_size`: must be at least 1"),
            "{e}"
        );
        let e = err(&GOOD.replace("kind = \"generate\"", "kind = \"generate\"\nprompt = \"x\""));
        assert!(e.contains("not both"), "{e}");
        let e = err(&format!("{GOOD}\n[task.generation]\ntemperature = 3.0\n"));
        assert!(e.contains("`task.generation.temperature`"), "{e}");
        let e = err(&format!("{GOOD}\n[task.generation]\ntop_p = 0.0\n"));
        assert!(e.contains("`task.generation.top_p`"), "{e}");
        let e = err(&format!("{GOOD}\n[task.generation]\nn = 0\n"));
        assert!(e.contains("`task.generation.n`"), "{e}");
        let e = err(&format!(
            "{GOOD}\n[task.generation.extra_body]\nmodel = \"other\"\n"
        ));
        assert!(e.contains("`task.generation.extra_body.model`"), "{e}");
    }

    #[test]
    fn multiple_choice_on_chat_is_explained() {
        let text = r#"
name = "mc"
[model]
backend = "openai"
model = "m"
base_url = "http://x/v1"
[dataset]
path = "d.jsonl"
[task]
kind = "multiple_choice"
prompt = "{{ q }}"
choices = "options"
target = "{{ answer }}"
[[metrics]]
type = "acc"
"#;
        let e = err(text);
        assert!(e.contains("`model.endpoint`"), "{e}");
        assert!(
            e.contains("endpoint = \\\"completions\\\"")
                || e.contains("endpoint = \"completions\""),
            "{e}"
        );
        assert!(e.contains("log-likelihood"), "{e}");
        let ok = text.replace(
            "base_url = \"http://x/v1\"",
            "base_url = \"http://x/v1\"\nendpoint = \"completions\"",
        );
        JobSpec::from_toml_str(&ok, "job.toml", None).unwrap();
        let e = err(&ok.replace("choices = \"options\"\n", ""));
        assert!(e.contains("`task.choices`"), "{e}");
        let e = err(&ok.replace("choices = \"options\"", "choices = \"options[\""));
        assert!(
            e.contains("`task.choices`: is not a valid expression"),
            "{e}"
        );
    }

    #[test]
    fn json_spec_validates_without_origin_file() {
        let spec = JobSpec::from_toml_str(GOOD, "job.toml", None).unwrap();
        let mut bad = spec.clone();
        bad.model.concurrency = 0;
        let e = bad.validate().unwrap_err();
        assert_eq!(e.field(), Some("model.concurrency"));
        assert_eq!(
            e.to_string(),
            "job spec: `model.concurrency`: must be at least 1"
        );
    }

    const ENGINE: &str = r#"
name = "local"

[model]
backend = "engine"
model = "smollm2"
path = "models/smollm2.gguf"
device = "cpu"

[model.engine]
max_num_seqs = 8
kv_cache_memory = "256MiB"

[dataset]
path = "d.jsonl"

[task]
kind = "generate"
prompt = "{{ q }}"
"#;

    #[test]
    fn engine_spec_needs_a_fingerprint_only_once_submitted() {
        let spec =
            JobSpec::from_toml_str(ENGINE, "job.toml", Some(Path::new("/jobs/local"))).unwrap();
        assert_eq!(
            spec.model.path.as_deref(),
            Some(Path::new("/jobs/local/models/smollm2.gguf"))
        );
        let engine = spec.model.engine.clone().unwrap();
        assert_eq!(
            engine.kv_cache_memory,
            Some(crate::spec::ByteSize(256 << 20))
        );
        assert_eq!(engine.max_num_seqs, Some(8));
        // What the API gets without a fingerprint is refused, saying how to
        // get one.
        let e = spec.validate().unwrap_err();
        assert_eq!(e.field(), Some("model.fingerprint"));
        assert!(e.to_string().contains("shardline run"), "{e}");
        let mut done = spec.clone();
        done.model.fingerprint = Some("ab".repeat(32));
        done.validate().unwrap();
        assert_eq!(
            done.model.fingerprint().0,
            format!("engine:{}", "ab".repeat(32))
        );
        done.model.cache_namespace = Some("mine".into());
        assert_eq!(done.model.fingerprint().0, "ns:mine");
        // JSON round trip (what `submit` posts) keeps every engine field.
        let back: JobSpec = serde_json::from_str(&serde_json::to_string(&done).unwrap()).unwrap();
        assert_eq!(back, done);
        // `none` keeps the engine identity for cache-only scoring.
        let mut none = done.clone();
        none.model.backend = BackendKind::None;
        none.model.cache_namespace = None;
        none.validate().unwrap();
        assert_eq!(
            none.model.fingerprint().0,
            format!("engine:{}", "ab".repeat(32))
        );
    }

    #[test]
    fn engine_fields_are_checked_with_line_and_accepted_values() {
        let e = err(&ENGINE.replace("device = \"cpu\"", "device = \"gpu\""));
        assert!(
            e.contains("job.toml:8:") && e.contains("`model.device`"),
            "{e}"
        );
        assert!(e.contains("\"cpu\", \"cuda\" or \"cuda:N\""), "{e}");
        let ok = JobSpec::from_toml_str(
            &ENGINE.replace("device = \"cpu\"", "device = \"cuda:1\""),
            "job.toml",
            None,
        )
        .unwrap();
        assert_eq!(
            ok.model.device,
            Some(crate::spec::DeviceSpec::Cuda { ordinal: 1 })
        );
        let e = err(&ENGINE.replace("\"256MiB\"", "\"2 parsecs\""));
        assert!(
            e.contains("`model.engine.kv_cache_memory`") && e.contains("MiB"),
            "{e}"
        );
        let e = err(&ENGINE.replace("path = \"models/smollm2.gguf\"\n", ""));
        assert!(e.contains("`model.path`") && e.contains("path_env"), "{e}");
        let e = err(&ENGINE.replace("device = \"cpu\"", "base_url = \"http://x/v1\""));
        assert!(
            e.contains("`model.base_url`") && e.contains("engine"),
            "{e}"
        );
        let e = err(&ENGINE.replace("max_num_seqs = 8", "max_num_seqs = 0"));
        assert!(
            e.contains("job.toml:11:") && e.contains("`model.engine.max_num_seqs`"),
            "{e}"
        );
        let e = err(&ENGINE.replace("max_num_seqs = 8", "max_num_sequences = 8"));
        assert!(e.contains("max_num_sequences"), "{e}");
        let e = err(&format!(
            "{ENGINE}\n[task.generation]\nextra_body = {{ repetition_penalty = 1.1 }}\n"
        ));
        assert!(
            e.contains("`task.generation.extra_body.repetition_penalty`")
                && e.contains("top_k, ignore_eos, stop_token_ids"),
            "{e}"
        );
        let e = err(&ENGINE.replace("device = \"cpu\"", "fingerprint = \"sha256:abc\""));
        assert!(
            e.contains("`model.fingerprint`") && e.contains("64 lowercase hex"),
            "{e}"
        );
        // Engine fields on an endpoint backend are refused.
        let e = err(&GOOD.replace(
            "base_url = \"http://localhost:8000/v1\"",
            "base_url = \"http://localhost:8000/v1\"\npath = \"m.gguf\"",
        ));
        assert!(
            e.contains("`model.path`") && e.contains("applies only to"),
            "{e}"
        );
    }
}
