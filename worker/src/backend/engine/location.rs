//! Where an engine job's model is on this machine: `model.path`, else the
//! path in the variable `model.path_env` names, else `model.path_default`
//! (`~/` expanded here), with how messages should name it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use jobs::spec::ModelSpec;

/// The model file or folder a spec names here.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Location {
    pub path: PathBuf,
    /// The model as messages name it: the path a job wrote, or the
    /// variable holding it (a job's author may not see this machine's
    /// environment).
    pub shown: String,
}

/// Why a spec names no model here.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Missing {
    /// Neither `path` nor `path_env`.
    NoField,
    /// `path_env`'s variable is unset, and `path_default`, if any, names
    /// nothing here (the expanded path).
    EnvUnset {
        var: String,
        default: Option<PathBuf>,
    },
}

/// Looks `model`'s path up with `env` (the process's variables in use;
/// a closure in tests). `HOME` expands a `path_default` starting with `~/`.
pub(super) fn locate(
    model: &ModelSpec,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Location, Missing> {
    if let Some(p) = &model.path {
        return Ok(Location {
            path: p.clone(),
            shown: p.display().to_string(),
        });
    }
    let Some(var) = &model.path_env else {
        return Err(Missing::NoField);
    };
    if let Some(value) = env(var).filter(|v| !v.is_empty()) {
        return Ok(Location {
            path: PathBuf::from(value),
            shown: format!("the model in {var} (named by model.path_env)"),
        });
    }
    let default = model
        .path_default
        .as_deref()
        .map(|d| expand_home(d, env("HOME").map(PathBuf::from).as_deref()));
    match default {
        Some(path) if path.exists() => Ok(Location {
            shown: format!(
                "{} (model.path_default)",
                model.path_default.as_deref().unwrap_or(&path).display()
            ),
            path,
        }),
        default => Err(Missing::EnvUnset {
            var: var.clone(),
            default,
        }),
    }
}

/// `~/rest` as `home/rest`; anything else (or without a home) as is.
fn expand_home(path: &Path, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix("~"), home) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(fields: serde_json::Value) -> ModelSpec {
        let mut value = serde_json::json!({"backend": "engine", "model": "m"});
        for (k, v) in fields.as_object().unwrap() {
            value[k] = v.clone();
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn path_then_variable_then_default_under_home() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("models/m.gguf");
        std::fs::create_dir_all(model.parent().unwrap()).unwrap();
        std::fs::write(&model, b"gguf").unwrap();
        let home = dir.path().to_path_buf();
        let env_with = |set: bool| {
            let home = home.clone();
            move |name: &str| match name {
                "HOME" => Some(home.clone().into_os_string()),
                "MY_MODEL" if set => Some(OsString::from("/elsewhere/m.gguf")),
                _ => None,
            }
        };
        let m = spec(serde_json::json!({
            "path_env": "MY_MODEL", "path_default": "~/models/m.gguf"
        }));
        let found = locate(&m, &env_with(true)).unwrap();
        assert_eq!(found.path, Path::new("/elsewhere/m.gguf"));
        assert!(found.shown.contains("MY_MODEL"), "{}", found.shown);
        let found = locate(&m, &env_with(false)).unwrap();
        assert_eq!(found.path, model);
        assert_eq!(found.shown, "~/models/m.gguf (model.path_default)");

        let absent = spec(serde_json::json!({
            "path_env": "MY_MODEL", "path_default": "~/models/other.gguf"
        }));
        assert_eq!(
            locate(&absent, &env_with(false)),
            Err(Missing::EnvUnset {
                var: "MY_MODEL".into(),
                default: Some(home.join("models/other.gguf")),
            })
        );
        let no_default = spec(serde_json::json!({"path_env": "MY_MODEL"}));
        assert_eq!(
            locate(&no_default, &env_with(false)),
            Err(Missing::EnvUnset {
                var: "MY_MODEL".into(),
                default: None,
            })
        );
        assert_eq!(
            locate(&spec(serde_json::json!({})), &env_with(true)),
            Err(Missing::NoField)
        );
        let written = spec(serde_json::json!({"path": "/m.gguf", "path_env": "MY_MODEL"}));
        assert_eq!(
            locate(&written, &env_with(true)).unwrap().path,
            Path::new("/m.gguf")
        );
    }
}
