//! What `shardline run` and `submit` do to an engine spec before submitting
//! it: find the model, check that the engine can load it, fill in its
//! fingerprint and its chat template's digest, and check that a chat job's
//! model has a chat template.

use std::path::PathBuf;

use engine::chat_template::{ChatTemplate, ChatTemplateError};
use engine::DigestCache;
use jobs::spec::{BackendKind, Endpoint, JobSpec, ModelSpec, TaskKind};

use super::chat_template::{no_chat_template, read_template, TemplateFileError};
use super::location::{locate, Missing};

/// Why an engine model could not be resolved before submitting.
#[derive(Debug, thiserror::Error)]
pub enum ModelSpecError {
    #[error(
        "`model.path_env` names {var}, which is not set here{}; export it with the model's path \
         (a GGUF file or a Hugging Face directory), or write the model's `fingerprint` in [model] \
         to submit without having the model on this machine",
        default.as_ref().map(|d| format!(", and `model.path_default` ({}) does not exist", d.display())).unwrap_or_default()
    )]
    PathEnvUnset {
        var: String,
        /// `model.path_default` as expanded here, when the spec has one.
        default: Option<PathBuf>,
    },
    #[error("`model.path`: {0}")]
    Model(#[from] engine::LoadError),
    #[error(
        "`model.fingerprint` is {written}, but the model at {path} has fingerprint {found}; \
         remove the field to use this model, or point `model.path` at the model it names"
    )]
    FingerprintMismatch {
        path: PathBuf,
        written: String,
        found: String,
    },
    #[error(transparent)]
    TemplateFile(#[from] TemplateFileError),
    #[error("`model.chat_template`: {path}: {source}")]
    TemplateSyntax {
        path: PathBuf,
        #[source]
        source: ChatTemplateError,
    },
    #[error(
        "`model.chat_template_sha256` is {written}, but the chat template {path} has sha256 \
         {found}; remove the field to use this file"
    )]
    TemplateDigestMismatch {
        path: PathBuf,
        written: String,
        found: String,
    },
    /// A chat job on a model without a chat template.
    #[error("{}", no_chat_template(.shown))]
    NoChatTemplate { shown: String },
}

/// The model an engine spec resolved to.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedModel {
    pub path: PathBuf,
    pub fingerprint: String,
    /// The digest of `model.chat_template`, when the spec has one.
    pub chat_template_sha256: Option<String>,
}

/// What `shardline run` and `submit` do to an engine spec before
/// submitting it: find the model (`path`, or `path_env` read here, else
/// `path_default`), check
/// cheaply that the engine can load it (format, architecture, tokenizer,
/// chat template), and fill `model.fingerprint` from its files (a digest
/// cached per file, so a large model is hashed once). A spec that already
/// has a fingerprint and whose model is not here is left as written.
///
/// A `model.chat_template` is read here too, checked to compile, and its
/// digest recorded in `model.chat_template_sha256`.
///
/// `backend = "none"` specs that name a model get the same treatment, so
/// cache-only scoring finds the engine's outputs. Other backends: `None`.
pub fn resolve_model(model: &mut ModelSpec) -> Result<Option<ResolvedModel>, ModelSpecError> {
    let names_model = model.path.is_some() || model.path_env.is_some();
    match model.backend {
        BackendKind::Engine => {}
        BackendKind::None if names_model => {}
        _ => return Ok(None),
    }
    let chat_template_sha256 = resolve_template(model)?;
    let path = match locate(model, &|var| std::env::var_os(var)) {
        Ok(found) => std::path::absolute(&found.path).unwrap_or(found.path),
        Err(Missing::NoField) => return Ok(None),
        Err(Missing::EnvUnset { .. }) if model.fingerprint.is_some() => return Ok(None),
        Err(Missing::EnvUnset { var, default }) => {
            return Err(ModelSpecError::PathEnvUnset { var, default })
        }
    };
    engine::probe_model(&path)?;
    let found = engine::fingerprint_model(&path, &DigestCache::default_location())
        .map_err(engine::LoadError::from)?;
    if let Some(written) = &model.fingerprint {
        if *written != found {
            return Err(ModelSpecError::FingerprintMismatch {
                path,
                written: written.clone(),
                found,
            });
        }
    }
    model.fingerprint = Some(found.clone());
    Ok(Some(ResolvedModel {
        path,
        fingerprint: found,
        chat_template_sha256,
    }))
}

/// Reads `model.chat_template`, checks that it compiles and records its
/// digest in the spec (a digest already written must match the file). A
/// `backend = "none"` spec, which only needs the identity, is left as
/// written when its digest is written and the file is not here.
fn resolve_template(model: &mut ModelSpec) -> Result<Option<String>, ModelSpecError> {
    // Compared here rather than by `read_template`, whose message speaks
    // to a worker about a job already submitted.
    let written = model.chat_template_sha256.take();
    let file = read_template(model);
    model.chat_template_sha256 = written.clone();
    let file = match (file, &written) {
        (Ok(Some(file)), _) => file,
        (Ok(None), _) => return Ok(None),
        (Err(TemplateFileError::Read { .. }), Some(_)) if model.backend == BackendKind::None => {
            return Ok(written)
        }
        (Err(e), _) => return Err(e.into()),
    };
    let path = file.template.path;
    if let Some(written) = written.filter(|w| *w != file.sha256) {
        return Err(ModelSpecError::TemplateDigestMismatch {
            path,
            written,
            found: file.sha256,
        });
    }
    ChatTemplate::new(&file.template.source, None, None)
        .map_err(|source| ModelSpecError::TemplateSyntax { path, source })?;
    model.chat_template_sha256 = Some(file.sha256.clone());
    Ok(Some(file.sha256))
}

/// Refuses, before anything is submitted, an engine job that sends chat
/// turns (a generate task on `endpoint = "chat"` without
/// `[model.prompt_format]`) to a model that has no chat template and is
/// given none: every request would fail the same way. A model that is not
/// on this machine is left to its workers, which say the same.
pub fn check_chat_template(spec: &JobSpec) -> Result<(), ModelSpecError> {
    let m = &spec.model;
    let chat_turns = m.backend == BackendKind::Engine
        && m.endpoint == Endpoint::Chat
        && spec.task.kind == TaskKind::Generate
        && m.prompt_format.is_none()
        && m.chat_template.is_none();
    if !chat_turns {
        return Ok(());
    }
    let Ok(found) = locate(m, &|var| std::env::var_os(var)) else {
        return Ok(());
    };
    if engine::load_text_model(&found.path, None)?
        .chat_template()
        .is_none()
    {
        return Err(ModelSpecError::NoChatTemplate { shown: found.shown });
    }
    Ok(())
}
