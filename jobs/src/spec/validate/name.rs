//! `name`: the job's name becomes a folder name.

use super::super::error::SpecError;
use super::super::job::JobSpec;

/// Longest job name accepted (it becomes a folder name).
const MAX_NAME_LEN: usize = 100;

impl JobSpec {
    pub(super) fn validate_name(&self) -> Result<(), SpecError> {
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
}
