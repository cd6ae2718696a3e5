//! Prompt templates: the minijinja environment every job template is compiled
//! in, the answer letters it offers, and how a minijinja error is described.
//!
//! Templates see the dataset row's fields as top-level variables, `doc` (the
//! whole row) and `choices` (when the task has them). Undefined variables are
//! errors, so a typo in a field name fails the job instead of silently
//! rendering an empty string.

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Expression, UndefinedBehavior};

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

/// Compiles a standalone expression (`task.choices`). A `}}` outside a
/// string and any bracket ends an expression, so no valid one holds it; and
/// minijinja (2.24) panics ("empty lexer stack") on any text after it. Such
/// an expression is refused here as a syntax error, before minijinja sees
/// it, so that no spec can crash the loader or the planner.
pub fn compile_expression<'env, 'source>(
    env: &'env Environment<'source>,
    expr: &'source str,
) -> Result<Expression<'env, 'source>, Error> {
    if ends_early(expr) {
        return Err(Error::new(
            ErrorKind::SyntaxError,
            "`}}` outside a string and brackets ends the expression early",
        ));
    }
    env.compile_expression(expr)
}

/// Whether `expr` has `}}` outside string literals at bracket depth 0 (or
/// below: unbalanced closers), where minijinja's lexer takes it as the end
/// of the expression.
fn ends_early(expr: &str) -> bool {
    let bytes = expr.as_bytes();
    let mut depth: isize = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'"' | b'\'') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'}' if depth <= 0 && bytes.get(i + 1) == Some(&b'}') => return true,
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    false
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

    /// Found by the `plan` fuzz target: `choices = "}}tions"` made
    /// minijinja's expression lexer panic ("empty lexer stack").
    #[test]
    fn an_expression_ended_early_is_an_error_not_a_panic() {
        let env = template_env();
        for expr in [
            "}}tions",
            "a }} b",
            "a -}} b",
            "(a) }} b (c",
            "x) }}",
            "a }}",
        ] {
            let err = compile_expression(&env, expr).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::SyntaxError, "{expr}");
        }
        for expr in [
            "choices",
            "[a, b]",
            "{'a': {'b': 1}}",
            "'}}' ~ x",
            "\"\\\"}}\"",
        ] {
            assert!(!ends_early(expr), "{expr}");
        }
        assert!(compile_expression(&env, "[options[0], '}}']").is_ok());
    }
}
