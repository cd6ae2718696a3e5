//! What `shardline run` and `submit` do to an engine spec before submitting
//! it: find the model, check that the engine can load it, and fill in its
//! fingerprint.

use std::path::PathBuf;

use engine::DigestCache;
use jobs::spec::{BackendKind, ModelSpec};

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
}

/// The model an engine spec resolved to.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedModel {
    pub path: PathBuf,
    pub fingerprint: String,
}

/// What `shardline run` and `submit` do to an engine spec before
/// submitting it: find the model (`path`, or `path_env` read here, else
/// `path_default`), check
/// cheaply that the engine can load it (format, architecture, tokenizer,
/// chat template), and fill `model.fingerprint` from its files (a digest
/// cached per file, so a large model is hashed once). A spec that already
/// has a fingerprint and whose model is not here is left as written.
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
    }))
}
