//! The error of a job spec that could not be read, parsed or validated.
//!
//! Every error names where it comes from (the file, or `job spec` for specs
//! posted as JSON), the field path (`model.backend`, `task.messages[1].content`)
//! and, when the spec came from TOML text, the line and column. For enum fields
//! the message lists the accepted values (toml's "expected one of" list).

use super::locate::{locate_field, Location};

/// A job spec that could not be read, parsed or validated.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The spec file could not be read.
    #[error("{origin}: cannot read job spec: {source}")]
    Read {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML, or does not fit the spec's shape.
    #[error("{}", format_located(.origin, .location, .field.as_deref(), .message))]
    Parse {
        origin: String,
        /// Dotted field path, when the error concerns a field.
        field: Option<String>,
        location: Option<Location>,
        message: String,
    },
    /// The spec parsed but a value is not acceptable.
    #[error("{}", format_located(.origin, .location, Some(.field.as_str()), .message))]
    Invalid {
        origin: String,
        field: String,
        location: Option<Location>,
        message: String,
    },
}

impl SpecError {
    /// The field path the error concerns, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            SpecError::Read { .. } => None,
            SpecError::Parse { field, .. } => field.as_deref(),
            SpecError::Invalid { field, .. } => Some(field),
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError::Invalid {
            origin: DEFAULT_ORIGIN.to_string(),
            field: field.into(),
            location: None,
            message: message.into(),
        }
    }

    /// Re-labels an error with the file it came from and, when the field
    /// can be found in `text`, its line and column.
    pub(super) fn located_in(self, origin: &str, text: Option<&str>) -> Self {
        match self {
            SpecError::Invalid {
                field,
                location,
                message,
                ..
            } => {
                let location = location.or_else(|| text.and_then(|t| locate_field(t, &field)));
                SpecError::Invalid {
                    origin: origin.to_string(),
                    field,
                    location,
                    message,
                }
            }
            SpecError::Parse {
                field,
                location,
                message,
                ..
            } => SpecError::Parse {
                origin: origin.to_string(),
                field,
                location,
                message,
            },
            SpecError::Read { source, .. } => SpecError::Read {
                origin: origin.to_string(),
                source,
            },
        }
    }
}

const DEFAULT_ORIGIN: &str = "job spec";

fn format_located(
    origin: &str,
    location: &Option<Location>,
    field: Option<&str>,
    message: &str,
) -> String {
    let mut out = origin.to_string();
    if let Some(loc) = location {
        out.push_str(&format!(":{loc}"));
    }
    out.push_str(": ");
    if let Some(field) = field.filter(|f| !f.is_empty()) {
        out.push_str(&format!("`{field}`: "));
    }
    out.push_str(message);
    out
}
