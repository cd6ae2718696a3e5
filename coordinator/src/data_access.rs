//! Which of a job's data files the coordinator may read: every path a spec
//! names is checked against the operator's dataset roots before the job is
//! stored, and again when it is planned or scored (roots may have changed).

use std::path::Path;

use jobs::JobSpec;

use crate::coordinator::Coordinator;
use crate::error::CoordinatorError;

/// The files a spec makes the coordinator read, by field.
fn data_files(spec: &JobSpec) -> impl Iterator<Item = (&'static str, &Path)> {
    let dataset = std::iter::once(("dataset.path", spec.dataset.path.as_path()));
    let fewshot = spec
        .task
        .fewshot
        .as_ref()
        .filter(|f| f.k > 0)
        .map(|f| ("task.fewshot.path", f.path.as_path()));
    dataset.chain(fewshot)
}

impl Coordinator {
    /// Refuses (403) a spec naming a data file outside the dataset roots.
    pub(crate) fn check_data_access(&self, spec: &JobSpec) -> Result<(), CoordinatorError> {
        let roots = &self.config().read.roots;
        for (field, path) in data_files(spec) {
            roots
                .check(path)
                .map_err(|e| CoordinatorError::Forbidden(format!("{field}: {e}")))?;
        }
        Ok(())
    }
}
