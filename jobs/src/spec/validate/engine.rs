//! The `engine` backend's fields in `[model]` and `[model.engine]`.

use super::super::error::SpecError;
use super::super::job::JobSpec;
use super::super::model::{is_fingerprint, BackendKind, ENGINE_EXTRA_BODY_KEYS};

impl JobSpec {
    /// The `engine` backend's fields: where the model is, its fingerprint
    /// once submitted, the engine settings, and no field of another backend
    /// (nor engine fields on other backends, except that `backend = "none"`
    /// keeps an engine job's model identity for cache-only scoring).
    pub(super) fn validate_engine(&self, submitted: bool) -> Result<(), SpecError> {
        let m = &self.model;
        let engine = m.backend == BackendKind::Engine;
        if !engine && m.backend != BackendKind::None {
            let foreign = [
                ("path", m.path.is_some()),
                ("path_env", m.path_env.is_some()),
                ("path_default", m.path_default.is_some()),
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
            match (&m.path_default, &m.path, &m.path_env) {
                (Some(d), _, _) if d.as_os_str().is_empty() => {
                    return Err(SpecError::invalid(
                        "model.path_default",
                        "must not be empty",
                    ))
                }
                (Some(_), Some(_), _) | (Some(_), None, None) => {
                    return Err(SpecError::invalid(
                        "model.path_default",
                        "is where the model is when the variable `path_env` names is unset, so it \
                         goes with `path_env`, not `path`; remove it, or replace `path` by \
                         `path_env`",
                    ))
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
            Some(fp) if !is_fingerprint(fp) => Err(SpecError::invalid(
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
}
