//! The checks a request passes before it reaches the scheduler: token ids
//! inside the vocabulary, lengths inside the context, sane sampling values.
//! Errors are messages; the caller names the request.

use super::request::{GenerateRequest, LoglikelihoodRequest};

/// What a request must fit.
#[derive(Clone, Copy, Debug)]
pub(super) struct RequestLimits {
    pub vocab_size: usize,
    pub max_model_len: usize,
}

impl RequestLimits {
    pub(super) fn check_generate(&self, r: &GenerateRequest) -> Result<(), String> {
        self.check_tokens(&r.prompt_tokens)?;
        if r.prompt_tokens.is_empty() {
            return Err("prompt_tokens is empty".into());
        }
        if r.prompt_tokens.len() >= self.max_model_len {
            return Err(format!(
                "prompt of {} tokens leaves no room to generate within max_model_len {}",
                r.prompt_tokens.len(),
                self.max_model_len
            ));
        }
        if !(r.temperature >= 0.0 && r.top_p > 0.0 && r.top_p <= 1.0) {
            return Err("temperature must be >= 0 and top_p in (0, 1]".into());
        }
        Ok(())
    }

    pub(super) fn check_loglikelihood(&self, r: &LoglikelihoodRequest) -> Result<(), String> {
        self.check_tokens(&r.context_tokens)?;
        self.check_tokens(&r.continuation_tokens)?;
        if r.context_tokens.is_empty() || r.continuation_tokens.is_empty() {
            return Err(
                "context and continuation must both be non-empty (prepend BOS to an empty context)"
                    .into(),
            );
        }
        let total = r.context_tokens.len() + r.continuation_tokens.len();
        if total - 1 > self.max_model_len {
            return Err(format!(
                "{total} tokens exceed max_model_len {}; truncate the context from the left",
                self.max_model_len
            ));
        }
        Ok(())
    }

    pub(super) fn check_tokens(&self, tokens: &[u32]) -> Result<(), String> {
        match tokens.iter().find(|&&t| t as usize >= self.vocab_size) {
            Some(t) => Err(format!(
                "token id {t} is outside the vocabulary of {}",
                self.vocab_size
            )),
            None => Ok(()),
        }
    }
}
