//! Prompt templates: the minijinja environment every job template is compiled
//! in, and the error a failed render reports.
//!
//! Templates see the dataset row's fields as top-level variables, `doc` (the
//! whole row) and `choices` (when the task has them). Undefined variables are
//! errors, so a typo in a field name fails the job instead of silently
//! rendering an empty string.

use std::fmt;

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};

/// Answer letters, `letters[i]` for choice `i`.
pub const LETTERS: [&str; 26] = [
    "A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M", "N", "O", "P", "Q", "R", "S",
    "T", "U", "V", "W", "X", "Y", "Z",
];

/// The environment job templates are compiled in: strict undefined, no HTML
/// escaping, plus the `letters` global and the `letter` filter (`0 | letter`
/// gives `"A"`), handy for multiple-choice prompts.
pub fn template_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Prompts are plain text: HTML-escaping `<`, `&` or quotes would change
    // what the model sees (and the request key).
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.add_global("letters", Value::from_serialize(LETTERS));
    env.add_filter("letter", letter_filter);
    env
}

fn letter_filter(index: i64) -> Result<String, Error> {
    usize::try_from(index)
        .ok()
        .and_then(|i| LETTERS.get(i))
        .map(|l| (*l).to_string())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("letter: {index} is not between 0 and 25"),
            )
        })
}

/// minijinja's reason, with the line and the detail it carries.
pub fn describe_error(err: &Error) -> String {
    let mut out = err.kind().to_string();
    if let Some(detail) = err.detail() {
        out.push_str(": ");
        out.push_str(detail);
    }
    if let Some(line) = err.line() {
        out.push_str(&format!(" (template line {line})"));
    }
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        out.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    out
}

/// A template failed for one dataset row.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderError {
    /// Field path of the template, e.g. `task.messages[1].content`.
    pub template: String,
    /// `file:line` of the row (or of the few-shot example).
    pub row: String,
    pub doc_id: String,
    pub reason: String,
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: template `{}` failed for doc {:?}: {}",
            self.row, self.template, self.doc_id, self.reason
        )
    }
}

impl std::error::Error for RenderError {}

/// Resolves a rendered gold answer to a choice index. Accepted, in order: the
/// exact text of a choice, a 0-based integer index, a letter `A`..`Z`.
pub fn resolve_gold(target: &str, choices: &[String]) -> Option<usize> {
    let t = target.trim();
    // The choice text itself wins, so numeric choices ("1".."4") with the
    // answer stored as text are not misread as indexes.
    if let Some(i) = choices.iter().position(|c| c.trim() == t) {
        return Some(i);
    }
    if let Ok(i) = t.parse::<usize>() {
        if i < choices.len() {
            return Some(i);
        }
    }
    letter_index(t).filter(|&i| i < choices.len())
}

/// `"B"` (or `"b"`) gives 1; anything else `None`.
pub fn letter_index(text: &str) -> Option<usize> {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_alphabetic() => {
            Some(usize::from(c.to_ascii_uppercase() as u8 - b'A'))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_is_strict_and_does_not_escape() {
        let env = template_env();
        let t = env
            .template_from_str("{{ q }} <&> {{ 2 | letter }}{{ letters[0] }}")
            .unwrap();
        assert_eq!(
            t.render(minijinja::context! { q => "a \"b\"" }).unwrap(),
            "a \"b\" <&> CA"
        );
        let err = t.render(minijinja::context! {}).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UndefinedError);
    }

    #[test]
    fn gold_resolution() {
        let choices: Vec<String> = ["Paris", "Rome", "Oslo"].map(String::from).to_vec();
        assert_eq!(resolve_gold("1", &choices), Some(1));
        assert_eq!(resolve_gold(" Oslo ", &choices), Some(2));
        assert_eq!(resolve_gold("C", &choices), Some(2));
        assert_eq!(resolve_gold("a", &choices), Some(0));
        assert_eq!(resolve_gold("D", &choices), None);
        assert_eq!(resolve_gold("7", &choices), None);
        let numeric: Vec<String> = ["1", "2", "3", "4"].iter().map(|s| s.to_string()).collect();
        assert_eq!(resolve_gold("2", &numeric), Some(1));
        assert_eq!(resolve_gold("0", &numeric), Some(0));
        assert_eq!(resolve_gold("Berlin", &choices), None);
    }
}
