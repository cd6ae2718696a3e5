//! Secrets, read from the environment variable that a flag or the config
//! file names (never given as values), and the other environment lookups
//! that clap does not do itself. Lookups go through an [`Env`] function so
//! that resolution is tested without touching the process environment.

use std::fmt;

use super::error::ConfigError;

/// Looks up an environment variable.
pub type Env = dyn Fn(&str) -> Option<String>;

/// The process environment, as resolution reads it.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A secret read from the environment. It has no `Display`, and its
/// `Debug` says only where it came from, so it cannot reach a log line or
/// an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    from: String,
}

impl Secret {
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// The name of the variable it was read from (safe to show).
    pub fn var(&self) -> &str {
        &self.from
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<redacted>, from ${})", self.from)
    }
}

/// Empty and blank variables count as unset.
pub(super) fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// The first environment variable of `names` that is set and not empty.
pub(super) fn first_env(env: &Env, names: &[&str]) -> Option<(String, String)> {
    names
        .iter()
        .find_map(|n| non_empty(env(n)).map(|v| (n.to_string(), v)))
}

/// Reads the secret in the variable `name`; `flag` and `key` name the
/// places that choose the variable, for the message when it is unset.
pub(super) fn secret(
    env: &Env,
    name: String,
    what: &'static str,
    flag: &'static str,
    key: &'static str,
) -> Result<Secret, ConfigError> {
    match non_empty(env(&name)) {
        Some(value) => Ok(Secret { value, from: name }),
        None => Err(ConfigError::MissingSecret {
            what,
            name,
            flag,
            key,
        }),
    }
}
