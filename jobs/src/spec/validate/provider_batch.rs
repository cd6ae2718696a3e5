//! `[model.batch]`: only with `backend = "openai-batch"`, and within the
//! Batch API's limits.

use super::super::error::SpecError;
use super::super::job::JobSpec;
use super::super::model::BackendKind;
use super::super::provider_batch::{
    ProviderBatchSpec, API_MAX_FILE_BYTES, API_MAX_REQUESTS_PER_FILE,
};

impl JobSpec {
    /// Spec checks of the provider-batch backend.
    pub(super) fn validate_provider_batch(&self) -> Result<(), SpecError> {
        let model = &self.model;
        if let Some(batch) = &model.provider_batch {
            if model.backend != BackendKind::OpenaiBatch {
                return Err(SpecError::invalid(
                    "model.batch",
                    format!(
                    "is only read by backend = \"openai-batch\", but the backend is {:?}; remove \
                     [model.batch] or change the backend",
                    model.backend.as_str()
                ),
                ));
            }
            batch.validate()?;
        }
        Ok(())
    }
}

impl ProviderBatchSpec {
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.max_requests_per_file == 0 || self.max_requests_per_file > API_MAX_REQUESTS_PER_FILE
        {
            return Err(SpecError::invalid(
                "model.batch.max_requests_per_file",
                format!(
                    "{} is out of range; give 1 to {API_MAX_REQUESTS_PER_FILE} (the Batch API's \
                     limit per input file)",
                    self.max_requests_per_file
                ),
            ));
        }
        // One line needs room for its envelope at least.
        if self.max_file_bytes < 1024 || self.max_file_bytes > API_MAX_FILE_BYTES {
            return Err(SpecError::invalid(
                "model.batch.max_file_bytes",
                format!(
                    "{} is out of range; give 1024 to {API_MAX_FILE_BYTES} (the Batch API's \
                     limit per input file)",
                    self.max_file_bytes
                ),
            ));
        }
        if self.max_enqueued_tokens == Some(0) {
            return Err(SpecError::invalid(
                "model.batch.max_enqueued_tokens",
                "must be at least 1 (leave it out for no cap)",
            ));
        }
        let interval_ok = |v: f64| v.is_finite() && v > 0.0;
        if !interval_ok(self.poll_interval_secs) {
            return Err(SpecError::invalid(
                "model.batch.poll_interval_secs",
                "must be a number of seconds above 0",
            ));
        }
        if !interval_ok(self.max_poll_interval_secs)
            || self.max_poll_interval_secs < self.poll_interval_secs
        {
            return Err(SpecError::invalid(
                "model.batch.max_poll_interval_secs",
                "must be a number of seconds at least poll_interval_secs",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::RetryWith;
    use crate::JobSpec;

    #[test]
    fn spec_limits_are_checked() {
        let mut spec = ProviderBatchSpec::default();
        assert!(spec.validate().is_ok());
        spec.max_requests_per_file = 50_001;
        let e = spec.validate().unwrap_err().to_string();
        assert!(e.contains("max_requests_per_file"), "{e}");
        let mut spec = ProviderBatchSpec {
            poll_interval_secs: 10.0,
            max_poll_interval_secs: 5.0,
            ..ProviderBatchSpec::default()
        };
        assert!(spec.validate().is_err());
        spec.max_poll_interval_secs = 10.0;
        assert!(spec.validate().is_ok());
        assert_eq!(spec.poll_interval_ms(), 10_000);
    }

    fn spec(model: &str) -> Result<JobSpec, SpecError> {
        JobSpec::from_toml_str(
            &format!(
                r#"
name = "t"
[model]
{model}
[dataset]
path = "d.jsonl"
[task]
kind = "generate"
prompt = "{{{{ q }}}}"
"#
            ),
            "job.toml",
            None,
        )
    }

    #[test]
    fn the_spec_names_the_batch_backend_and_checks_its_section() {
        let ok = spec(
            "backend = \"openai-batch\"\nmodel = \"m\"\nbase_url = \"http://x/v1\"\n\
             [model.batch]\nmax_requests_per_file = 10\nretry_with = \"sync\"\n\
             [model.price]\ninput_per_million = 1.0\noutput_per_million = 2.0",
        )
        .unwrap();
        assert_eq!(ok.model.backend, BackendKind::OpenaiBatch);
        let batch = ProviderBatchSpec::of(&ok.model);
        assert_eq!(batch.max_requests_per_file, 10);
        assert_eq!(batch.retry_with, RetryWith::Sync);
        assert_eq!(batch.max_file_bytes, API_MAX_FILE_BYTES);
        let e = spec("backend = \"openai-batch\"\nmodel = \"m\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("model.base_url"), "{e}");
        let e = spec(
            "backend = \"openai\"\nmodel = \"m\"\nbase_url = \"http://x/v1\"\n\
             [model.batch]\nmax_requests_per_file = 10",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`model.batch`") && e.contains("openai-batch"),
            "{e}"
        );
        let e = spec(
            "backend = \"openai-batch\"\nmodel = \"m\"\nbase_url = \"http://x/v1\"\n\
             [model.batch]\nmax_requests_per_file = 60000",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("job.toml:") && e.contains("50000"), "{e}");
    }
}
