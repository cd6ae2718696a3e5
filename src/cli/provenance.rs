//! Which of a subcommand's flags were set on the command line or by their
//! environment variable (clap's `value_source`), so that the config file
//! goes beneath them and above the defaults.

use std::collections::HashMap;

use clap::parser::ValueSource;

use crate::config::{Given, Origin};

/// Origins of the flags given explicitly; a flag not listed holds its
/// default.
#[derive(Debug, Clone, Default)]
pub struct Provenance(HashMap<String, Origin>);

impl Provenance {
    /// Reads the origins from `matches`, parsed by `cmd`.
    pub fn of(cmd: &clap::Command, matches: &clap::ArgMatches) -> Self {
        let mut origins = HashMap::new();
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if !matches.ids().any(|present| present.as_str() == id) {
                continue;
            }
            let origin = match matches.value_source(id) {
                Some(ValueSource::CommandLine) => Origin::Flag(match arg.get_long() {
                    Some(long) => format!("--{long}"),
                    None => id.to_string(),
                }),
                Some(ValueSource::EnvVariable) => Origin::Env(
                    arg.get_env()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                ),
                _ => continue,
            };
            origins.insert(id.to_string(), origin);
        }
        Provenance(origins)
    }

    /// The flag `id`'s value with its origin.
    pub fn given<T>(&self, id: &str, value: T) -> Given<T> {
        Given {
            value,
            origin: self.0.get(id).cloned().unwrap_or_default(),
        }
    }

    /// Whether the flag `id` was typed or set by its variable.
    pub fn is_set(&self, id: &str) -> bool {
        self.0.contains_key(id)
    }

    /// Whether the flag `id` was typed (not only set by its variable).
    pub fn on_command_line(&self, id: &str) -> bool {
        matches!(self.0.get(id), Some(Origin::Flag(_)))
    }
}
