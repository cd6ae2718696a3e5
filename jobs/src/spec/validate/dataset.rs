//! `[dataset]`: a path, and no empty or zero settings.

use super::super::error::SpecError;
use super::super::job::JobSpec;

impl JobSpec {
    pub(super) fn validate_dataset(&self) -> Result<(), SpecError> {
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
}
