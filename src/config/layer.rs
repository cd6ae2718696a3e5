//! A flag's value with where it came from: the command line, the flag's
//! environment variable (both read by clap), or neither, when it is the
//! default. The config file slots in between: flag > environment > file >
//! default.

/// Where a [`Given`] value came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Origin {
    /// The command line; holds the flag as typed, e.g. `--lease-secs`.
    Flag(String),
    /// The flag's environment variable; holds its name.
    Env(String),
    /// Neither: the value is the default, which the config file beats.
    #[default]
    Default,
}

/// A flag's value (the default when it was not given) and its origin.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Given<T> {
    pub value: T,
    pub origin: Origin,
}

impl<T> Given<T> {
    #[cfg(test)]
    pub fn flag(flag: &str, value: T) -> Self {
        Given {
            value,
            origin: Origin::Flag(flag.to_string()),
        }
    }

    #[cfg(test)]
    pub fn env(name: &str, value: T) -> Self {
        Given {
            value,
            origin: Origin::Env(name.to_string()),
        }
    }

    pub fn default_value(value: T) -> Self {
        Given {
            value,
            origin: Origin::Default,
        }
    }

    /// Set on the command line or in the environment (not a default).
    pub fn is_explicit(&self) -> bool {
        self.origin != Origin::Default
    }

    /// The flag's or variable's value, else the file's, else the default.
    pub fn layered(self, file: Option<T>) -> T {
        match (self.is_explicit(), file) {
            (false, Some(from_file)) => from_file,
            _ => self.value,
        }
    }

    /// Names the origin for messages: `--flag`, `environment variable X`,
    /// or what `otherwise` says (the file's key, the default).
    pub fn source_name(&self, otherwise: impl FnOnce() -> String) -> String {
        match &self.origin {
            Origin::Flag(flag) => flag.clone(),
            Origin::Env(name) => format!("environment variable {name}"),
            Origin::Default => otherwise(),
        }
    }
}

impl<T> Given<Option<T>> {
    /// [`Given::layered`] for a setting without a default.
    pub fn layered_opt(self, file: Option<T>) -> Option<T> {
        if self.is_explicit() {
            self.value
        } else {
            file.or(self.value)
        }
    }
}

/// A list flag's values, else the file's (with the source's name for
/// messages); a variable's comma-separated value is split here.
pub(super) fn layered_list(
    given: &Given<Vec<String>>,
    file_list: Option<&Vec<String>>,
    file_origin: String,
) -> Option<(Vec<String>, String)> {
    let source = given.source_name(|| file_origin);
    match &given.origin {
        Origin::Flag(_) => Some((given.value.clone(), source)),
        Origin::Env(_) => {
            let items = given
                .value
                .iter()
                .flat_map(|v| v.split(','))
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            Some((items, source))
        }
        Origin::Default => file_list.map(|list| (list.clone(), source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_values_beat_the_file_which_beats_the_default() {
        assert_eq!(Given::flag("--n", 1).layered(Some(2)), 1);
        assert_eq!(Given::env("N", 1).layered(Some(2)), 1);
        assert_eq!(Given::default_value(1).layered(Some(2)), 2);
        assert_eq!(Given::default_value(1).layered(None), 1);
        assert_eq!(Given::<Option<u8>>::default().layered_opt(Some(2)), Some(2));
        assert_eq!(Given::env("N", Some(1)).layered_opt(Some(2)), Some(1));
        let from_env = Given::env("N", 1);
        assert_eq!(
            from_env.source_name(|| "file".into()),
            "environment variable N"
        );
    }
}
