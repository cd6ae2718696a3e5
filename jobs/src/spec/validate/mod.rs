//! Validating a parsed job spec: what serde cannot check (templates and
//! regexes compile, metrics fit the task kind, numbers are in range), one
//! file per section. Used for TOML files and for specs submitted as JSON.

mod dataset;
mod engine;
mod generation;
mod judge;
mod metrics;
mod model;
mod model_templates;
mod name;
mod price;
mod provider_batch;
mod sharding;
mod task;

use super::error::SpecError;
use super::job::JobSpec;
use crate::template;

impl JobSpec {
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
        self.validate_model_templates(submitted)?;
        self.validate_dataset()?;
        self.validate_task()?;
        self.validate_metrics()?;
        self.validate_judges(submitted)?;
        self.validate_sharding()
    }
}

pub(super) fn check_template(
    env: &minijinja::Environment<'static>,
    field: &str,
    source: &str,
) -> Result<(), SpecError> {
    env.template_from_named_str(field, source)
        .map(|_| ())
        .map_err(|e| {
            SpecError::invalid(
                field,
                format!(
                    "template does not compile: {}",
                    template::describe_error(&e)
                ),
            )
        })
}
