//! Why the settings cannot be resolved; each message says where the bad
//! value came from and what to do.

use std::path::PathBuf;

use super::defaults::CONFIG_ENV;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read config file {path}: {source}; fix the path given by --config or ${CONFIG_ENV}"
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{what}: environment variable {name} is not set; set it (or name another variable with {flag} or `{key}` in the config file)")]
    MissingSecret {
        what: &'static str,
        name: String,
        flag: &'static str,
        key: &'static str,
    },
    /// A token `serve` refuses (too short, or the admin token equal to the
    /// worker token); the variable is named, never the value.
    #[error("the {what} in environment variable {name} {rule}")]
    WeakToken {
        what: &'static str,
        name: String,
        rule: coordinator::TokenRule,
    },
    /// A dataset root that is not an existing folder or an s3:// prefix.
    #[error("{source_name}: {error}")]
    DatasetRoot {
        source_name: String,
        error: jobs::dataset::RootError,
    },
    /// Key variables the operator allowed by name that this worker's
    /// environment lacks: every job naming one would fail here.
    #[error(
        "{source_name}: jobs may name {} as their API key, but {} not set on this worker; set \
         {} in its environment, or leave {} out of the list",
        names.join(", "), pick(names, "it is", "they are"), pick(names, "it", "them"),
        pick(names, "it", "them")
    )]
    UnsetKeyEnv {
        source_name: String,
        names: Vec<String>,
    },
    #[error("{source_name}: {value:?} is not valid: expected {expected}")]
    Invalid {
        source_name: String,
        value: String,
        expected: &'static str,
    },
}

/// `one` for one name, `many` for several.
fn pick(names: &[String], one: &'static str, many: &'static str) -> &'static str {
    if names.len() == 1 {
        one
    } else {
        many
    }
}
