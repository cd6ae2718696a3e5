//! An engine model's text side for reports and estimates
//! (`jobs::ModelText`): the chat-template text a request's input becomes
//! and the tokens the engine reads for it, exactly as the serving thread
//! makes them (same mapping of job requests, same tokenizer, the same
//! replacement chat template), without loading any weight.

use std::sync::Arc;

use engine::{SystemRole, TextModel};
use jobs::spec::{BackendKind, Endpoint, ModelSpec};
use jobs::{InferenceRequest, ModelText, ModelTextError, RenderedInput, RequestType};

use super::chat_template::read_template;
use super::job_map;
use super::location::locate;
use super::resolve::ModelSpecError;

/// Long enough that counting never truncates a context: a dry run reports
/// what the job asks for, and the run says when a context is cut.
const NO_LIMIT: usize = usize::MAX / 2;

/// The text side of the engine model a spec names.
pub struct EngineText {
    text: TextModel,
    endpoint: Endpoint,
    /// `[model.prompt_format]` is set (see `job_map::prompt`).
    formatted: bool,
    system_role: SystemRole,
}

impl EngineText {
    /// The text side of `model`'s engine model, if the spec names one that
    /// is on this machine (`path`, `path_env` or `path_default`, as
    /// [`super::resolve_model`] finds it): `None` for other backends and
    /// for a model that is not here. A model that is here but cannot be
    /// read is an error naming its file; a `model.chat_template` that is
    /// gone, changed or unreadable gives `None` (prompts as planned).
    pub fn of(model: &ModelSpec) -> Result<Option<Arc<dyn ModelText>>, ModelSpecError> {
        if !matches!(model.backend, BackendKind::Engine | BackendKind::None) {
            return Ok(None);
        }
        let Ok(found) = locate(model, &|var| std::env::var_os(var)) else {
            return Ok(None);
        };
        // A template file that is gone, changed or unreadable is like a
        // model that is not here: prompts are shown as planned (scoring
        // from the cache needs no template; one that changed would render
        // prompts the outputs never saw).
        let template = match read_template(model) {
            Ok(file) => file.map(|file| file.template),
            Err(e) => {
                tracing::warn!(error = %e, "showing the prompts as planned");
                return Ok(None);
            }
        };
        let text = engine::load_text_model(&found.path, template.as_ref())?;
        Ok(Some(Arc::new(EngineText {
            text,
            endpoint: model.endpoint,
            formatted: model.prompt_format.is_some(),
            system_role: job_map::system_role(model.system_role),
        })))
    }
}

fn error(e: impl std::fmt::Display) -> ModelTextError {
    ModelTextError(e.to_string())
}

impl ModelText for EngineText {
    fn prompt_text(&self, input: &RenderedInput) -> Result<String, ModelTextError> {
        let prompt = job_map::prompt(self.endpoint, self.formatted, input).map_err(error)?;
        self.text.render(&prompt, self.system_role).map_err(error)
    }

    fn input_tokens(&self, request: &InferenceRequest) -> Result<u64, ModelTextError> {
        let tokens = match request.request_type {
            RequestType::Generate => {
                let prompt = job_map::prompt(self.endpoint, self.formatted, &request.input)
                    .map_err(error)?;
                self.text
                    .encode_prompt(&prompt, self.system_role)
                    .map_err(error)?
                    .len()
            }
            // As the serving thread reports it: context and continuation.
            RequestType::Loglikelihood => {
                let RenderedInput::Prompt { prompt: context } = &request.input else {
                    return Err(ModelTextError(
                        "loglikelihood needs a plain prompt, but this task renders chat messages"
                            .into(),
                    ));
                };
                let continuation = request.continuation.as_deref().unwrap_or_default();
                let scored = self
                    .text
                    .loglikelihood_tokens(context, continuation, NO_LIMIT)
                    .map_err(error)?;
                scored.request.context_tokens.len() + scored.request.continuation_tokens.len()
            }
        };
        Ok(tokens as u64)
    }
}
