//! The environment variables a job's `[model]` names in its `*_env` fields,
//! which its backend reads wherever it is built. `shardline run` checks them
//! before anything starts: its workers share its environment, so a variable
//! unset there would only fail every shard later.

use super::model::{BackendKind, ModelSpec};

/// Every field of the spec that names an environment variable. A test
/// holds this list to the `*_env` fields the spec's types declare.
pub const ENV_FIELDS: &[&str] = &["model.base_url_env", "model.api_key_env", "model.path_env"];

/// A variable the spec names, and the field that names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvVar {
    /// The field, e.g. `model.api_key_env`.
    pub field: &'static str,
    /// The variable, e.g. `OPENAI_API_KEY`.
    pub name: String,
}

/// A variable the backend would read that is missing from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingEnvVar {
    pub var: EnvVar,
    /// Set, but empty or blank (which the backends take as unset).
    pub empty: bool,
}

/// The variables a spec names that its backend would find missing, each
/// with its field; the message says what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe(.missing))]
pub struct MissingEnvVars {
    pub missing: Vec<MissingEnvVar>,
}

impl ModelSpec {
    /// The variables this model's backend reads when it is built:
    /// `base_url_env` only without a `base_url`, `path_env` only without a
    /// `path` or a `path_default` (a written value wins), and none for
    /// `backend = "none"`,
    /// which builds no backend.
    pub fn env_vars(&self) -> Vec<EnvVar> {
        let mut vars = Vec::new();
        let mut add = |field: &'static str, name: &Option<String>| {
            if let Some(name) = name {
                vars.push(EnvVar {
                    field,
                    name: name.clone(),
                });
            }
        };
        match self.backend {
            BackendKind::Openai | BackendKind::OpenaiBatch => {
                if self.base_url.is_none() {
                    add("model.base_url_env", &self.base_url_env);
                }
                add("model.api_key_env", &self.api_key_env);
            }
            BackendKind::Engine => {
                // With a `path_default` the variable is optional: unset, the
                // default is loaded (and a missing file is named then).
                if self.path.is_none() && self.path_default.is_none() {
                    add("model.path_env", &self.path_env);
                }
            }
            BackendKind::None => {}
        }
        vars
    }

    /// Checks that every variable of [`ModelSpec::env_vars`] is set to
    /// something other than blanks in the environment `lookup` reads.
    pub fn check_env(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<(), MissingEnvVars> {
        let missing: Vec<MissingEnvVar> = self
            .env_vars()
            .into_iter()
            .filter_map(|var| match lookup(&var.name) {
                Some(value) if !value.trim().is_empty() => None,
                Some(_) => Some(MissingEnvVar { var, empty: true }),
                None => Some(MissingEnvVar { var, empty: false }),
            })
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(MissingEnvVars { missing })
        }
    }
}

fn describe(missing: &[MissingEnvVar]) -> String {
    let list: Vec<String> = missing
        .iter()
        .map(|m| {
            format!(
                "{} (named by {}) is {}",
                m.var.name,
                m.var.field,
                if m.empty { "empty" } else { "not set" }
            )
        })
        .collect();
    format!(
        "{}; export {} and run again",
        list.join(", "),
        if missing.len() == 1 { "it" } else { "them" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::JobSpec;

    fn model(backend: &str, fields: &str) -> ModelSpec {
        let text = format!(
            "name = \"e\"\n[model]\nbackend = \"{backend}\"\nmodel = \"m\"\n{fields}\n\
             [dataset]\npath = \"d.jsonl\"\n[task]\nkind = \"generate\"\nprompt = \"{{{{ q }}}}\"\n"
        );
        JobSpec::from_toml_str(&text, "job.toml", None)
            .expect("spec")
            .model
    }

    #[test]
    fn every_env_field_of_the_spec_is_known() {
        // Every `pub NAME_env:` field declared by the spec's types.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/spec");
        let mut declared = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
            for line in text.lines() {
                let Some(rest) = line.trim().strip_prefix("pub ") else {
                    continue;
                };
                if let Some((name, _)) = rest.split_once(':') {
                    if name.ends_with("_env") && !name.contains(' ') {
                        declared.push(name.to_string());
                    }
                }
            }
        }
        declared.sort();
        let mut known: Vec<String> = ENV_FIELDS
            .iter()
            .map(|f| f.rsplit('.').next().unwrap().to_string())
            .collect();
        known.sort();
        assert_eq!(
            declared, known,
            "a `*_env` field is missing from ENV_FIELDS and ModelSpec::env_vars"
        );
    }

    #[test]
    fn the_variables_a_backend_reads_are_listed_and_checked() {
        let openai = model(
            "openai",
            "base_url_env = \"URL_VAR\"\napi_key_env = \"KEY_VAR\"",
        );
        let names: Vec<&str> = openai.env_vars().iter().map(|v| v.field).collect();
        assert_eq!(names, ["model.base_url_env", "model.api_key_env"]);
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(openai
            .check_env(env(&[("URL_VAR", "http://x/v1"), ("KEY_VAR", "k")]))
            .is_ok());
        let err = openai.check_env(env(&[("KEY_VAR", "  ")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "URL_VAR (named by model.base_url_env) is not set, KEY_VAR (named by \
             model.api_key_env) is empty; export them and run again"
        );

        // A written value wins over its variable, which is then not read.
        let written = model(
            "openai",
            "base_url = \"http://x/v1\"\nbase_url_env = \"URL_VAR\"",
        );
        assert!(written.env_vars().is_empty());
        let engine = model("engine", "path_env = \"MODEL_VAR\"");
        let err = engine.check_env(|_| None).unwrap_err().to_string();
        assert!(err.starts_with("MODEL_VAR (named by model.path_env) is not set; export it"));
        let defaulted = model(
            "engine",
            "path_env = \"MODEL_VAR\"\npath_default = \"~/m.gguf\"",
        );
        assert!(defaulted.check_env(|_| None).is_ok());
        assert!(model("none", "").env_vars().is_empty());
    }
}
