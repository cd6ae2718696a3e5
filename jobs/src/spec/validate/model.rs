//! `[model]`: names, how an endpoint backend is reached, rate limits; the
//! `[model.batch]` and `[model.price]` sections are checked by their own
//! files.

use super::super::error::SpecError;
use super::super::job::JobSpec;
use super::super::model::BackendKind;

impl JobSpec {
    pub(super) fn validate_model(&self) -> Result<(), SpecError> {
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
        if let Some(ca_cert) = &m.ca_cert {
            if !matches!(m.backend, BackendKind::Openai | BackendKind::OpenaiBatch) {
                return Err(SpecError::invalid(
                    "model.ca_cert",
                    "applies to the `openai` and `openai-batch` backends only (the endpoint's \
                     TLS certificate); remove it",
                ));
            }
            if ca_cert.as_os_str().is_empty() {
                return Err(SpecError::invalid(
                    "model.ca_cert",
                    "must not be empty when set: give the path of a PEM file of CA certificates",
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
        self.validate_provider_batch()?;
        if let Some(price) = &m.price {
            price.validate()?;
        }
        Ok(())
    }
}
