//! Value parsers of the flags that an environment variable may set. A
//! variable's value is trimmed, and a bad one is reported as the
//! variable's (the same message as a bad value in the config file), not as
//! a flag the user never typed.

use std::ffi::OsStr;

use clap::builder::{
    PathBufValueParser, RangedU64ValueParser, StringValueParser, TypedValueParser,
};
use clap::error::ErrorKind;
use clap::parser::ValueSource;

use crate::config::ConfigError;

/// Wraps a parser: values from the command line and defaults go to it
/// as they are; a variable's value is trimmed first.
#[derive(Clone)]
pub struct FromEnv<P> {
    inner: P,
    /// What a valid value looks like, for the message.
    expected: &'static str,
}

impl<P: TypedValueParser> TypedValueParser for FromEnv<P> {
    type Value = P::Value;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<Self::Value, clap::Error> {
        self.inner.parse_ref(cmd, arg, value)
    }

    fn parse_ref_(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
        source: ValueSource,
    ) -> Result<Self::Value, clap::Error> {
        if source != ValueSource::EnvVariable {
            return self.inner.parse_ref_(cmd, arg, value, source);
        }
        let text = value.to_string_lossy();
        self.inner
            .parse_ref_(cmd, arg, OsStr::new(text.trim()), source)
            .map_err(|_| {
                let name = arg
                    .and_then(clap::Arg::get_env)
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let message = ConfigError::Invalid {
                    source_name: format!("environment variable {name}"),
                    value: text.to_string(),
                    expected: self.expected,
                };
                clap::Error::raw(ErrorKind::ValueValidation, format!("{message}\n")).with_cmd(cmd)
            })
    }
}

pub fn text() -> FromEnv<StringValueParser> {
    FromEnv {
        inner: StringValueParser::new(),
        expected: "text",
    }
}

pub fn path() -> FromEnv<PathBufValueParser> {
    FromEnv {
        inner: PathBufValueParser::new(),
        expected: "a path",
    }
}

pub fn seconds() -> FromEnv<RangedU64ValueParser<u64>> {
    FromEnv {
        inner: RangedU64ValueParser::new(),
        expected: "a whole number of seconds",
    }
}

pub fn millis() -> FromEnv<RangedU64ValueParser<u64>> {
    FromEnv {
        inner: RangedU64ValueParser::new(),
        expected: "a whole number of milliseconds",
    }
}

pub fn count() -> FromEnv<RangedU64ValueParser<usize>> {
    FromEnv {
        inner: RangedU64ValueParser::new(),
        expected: "a whole number",
    }
}

/// A limit: a whole number of at least 1.
pub fn limit() -> FromEnv<RangedU64ValueParser<u32>> {
    FromEnv {
        inner: RangedU64ValueParser::new().range(1..=u64::from(u32::MAX)),
        expected: "a whole number of at least 1",
    }
}

/// A size or count limit of at least 1, up to 2^64 - 1.
pub fn big_limit() -> FromEnv<RangedU64ValueParser<u64>> {
    FromEnv {
        inner: RangedU64ValueParser::new().range(1..),
        expected: "a whole number of at least 1",
    }
}

/// An on/off switch: `--flag` alone, or its variable set to a word.
pub fn switch() -> FromEnv<Switch> {
    FromEnv {
        inner: Switch,
        expected: "1, true, yes, 0, false or no",
    }
}

#[derive(Clone)]
pub struct Switch;

impl TypedValueParser for Switch {
    type Value = bool;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<bool, clap::Error> {
        match value.to_string_lossy().trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            other => Err(clap::Error::raw(
                ErrorKind::InvalidValue,
                format!("{other:?} is not 1, true, yes, 0, false or no\n"),
            )
            .with_cmd(cmd)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_variable_is_named_and_a_good_one_trimmed() {
        let mut cmd = clap::Command::new("serve").arg(
            clap::Arg::new("lease_secs")
                .long("lease-secs")
                .env("SHARDLINE_LEASE_SECS"),
        );
        cmd.build();
        let arg = cmd.get_arguments().next().unwrap().clone();
        let parser = seconds();
        let err = parser
            .parse_ref_(
                &cmd,
                Some(&arg),
                OsStr::new("soon"),
                ValueSource::EnvVariable,
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("environment variable SHARDLINE_LEASE_SECS: \"soon\" is not valid"),
            "{err}"
        );
        let ok = parser.parse_ref_(
            &cmd,
            Some(&arg),
            OsStr::new(" 20 "),
            ValueSource::EnvVariable,
        );
        assert_eq!(ok.unwrap(), 20);
        let on = switch().parse_ref_(
            &cmd,
            Some(&arg),
            OsStr::new("Yes"),
            ValueSource::EnvVariable,
        );
        assert!(on.unwrap());
        let bad = switch().parse_ref_(
            &cmd,
            Some(&arg),
            OsStr::new("maybe"),
            ValueSource::EnvVariable,
        );
        assert!(bad.unwrap_err().to_string().contains("1, true, yes"));
    }
}
