//! Loading a job spec from a TOML file or text: parse strictly, anchor
//! relative paths at the file's folder, then validate.

use std::path::{Path, PathBuf};

use super::error::SpecError;
use super::job::JobSpec;
use super::locate::offset_to_location;
use super::model::ModelSpec;

impl JobSpec {
    /// Reads, parses and validates a TOML job file. Relative `dataset.path`,
    /// `task.fewshot.path`, `model.path`, `model.ca_cert` and
    /// `model.chat_template` are resolved against the file's folder
    /// (`s3://` locations stay as they are).
    pub fn from_toml_file(path: &Path) -> Result<JobSpec, SpecError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            origin: origin.clone(),
            source,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new(""));
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        JobSpec::from_toml_str(&text, &origin, Some(&base))
    }

    /// Parses and validates TOML text. `origin` names the text in errors;
    /// `base_dir`, when given, anchors relative paths.
    pub fn from_toml_str(
        text: &str,
        origin: &str,
        base_dir: Option<&Path>,
    ) -> Result<JobSpec, SpecError> {
        let deserializer = toml::Deserializer::new(text);
        let mut spec: JobSpec = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let field = err.path().to_string();
            let inner = err.into_inner();
            let location = inner
                .span()
                .map(|span| offset_to_location(text, span.start));
            SpecError::Parse {
                origin: origin.to_string(),
                field: (field != ".").then_some(field),
                location,
                message: inner.message().trim_end().replace('\n', "; "),
            }
        })?;
        if let Some(base) = base_dir {
            spec.resolve_paths(base);
        }
        // A file may leave `model.fingerprint` to the CLI, which computes it
        // from the model before submitting.
        spec.validate_as_written()
            .map_err(|e| e.located_in(origin, Some(text)))?;
        Ok(spec)
    }

    /// Makes relative dataset, few-shot, model, CA certificate and chat
    /// template paths absolute under `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &PathBuf| -> PathBuf {
            // An `s3://` location is not a path under the job's folder.
            if p.is_absolute() || crate::dataset::is_remote(p) {
                p.clone()
            } else {
                base.join(p)
            }
        };
        self.dataset.path = resolve(&self.dataset.path);
        if let Some(fewshot) = &mut self.task.fewshot {
            fewshot.path = resolve(&fewshot.path);
        }
        let resolve_model = |model: &mut ModelSpec| {
            if let Some(model_path) = &model.path {
                model.path = Some(resolve(model_path));
            }
            // `~/…` is left for the machine that loads the model to expand.
            if let Some(default) = &model.path_default {
                if !default.starts_with("~") && !default.as_os_str().is_empty() {
                    model.path_default = Some(resolve(default));
                }
            }
            if let Some(ca_cert) = &model.ca_cert {
                model.ca_cert = Some(resolve(ca_cert));
            }
            if let Some(template) = &model.chat_template {
                model.chat_template = Some(resolve(template));
            }
        };
        resolve_model(&mut self.model);
        // Judge models' files are the job file's too.
        for (_, judge) in self.judge_models_mut() {
            resolve_model(judge);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_locations_are_not_paths_under_the_job_folder() {
        let mut spec = JobSpec::from_toml_str(
            "name = \"t\"\n[model]\nbackend = \"openai\"\nmodel = \"m\"\n\
             base_url = \"http://127.0.0.1:9/v1\"\n\
             [dataset]\npath = \"s3://evals/data/test-*.parquet\"\n\
             [task]\nkind = \"generate\"\nmessages = [{ role = \"user\", content = \"{{ q }}\" }]\n",
            "job.toml",
            Some(Path::new("/jobs")),
        )
        .unwrap();
        assert_eq!(
            spec.dataset.path,
            PathBuf::from("s3://evals/data/test-*.parquet")
        );
        spec.dataset.path = PathBuf::from("data/qa.jsonl");
        spec.resolve_paths(Path::new("/jobs"));
        assert_eq!(spec.dataset.path, PathBuf::from("/jobs/data/qa.jsonl"));
    }
}
