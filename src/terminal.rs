//! Text that reaches the terminal: job names, endpoint errors and specs are
//! someone else's words, so their control characters are shown escaped and
//! never acted on (no cursor moves, colours or cleared screens).

use std::borrow::Cow;

/// `text` with every control character (C0, DEL and C1, newlines and tabs
/// included) written as a Rust escape, e.g. ESC as `\u{1b}`: for one-line
/// fields such as a job's name or error in a table.
pub fn printable(text: &str) -> Cow<'_, str> {
    escape(text, |c| c.is_control())
}

/// [`printable`], but line breaks stay: for messages that span lines.
pub fn printable_lines(text: &str) -> Cow<'_, str> {
    escape(text, |c| c.is_control() && c != '\n')
}

fn escape(text: &str, unsafe_char: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(&unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::{printable, printable_lines};

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(
            printable("plain text, é ✓"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(printable("red \u{1b}[31mX"), "red \\u{1b}[31mX");
        assert_eq!(printable("a\nb\tc\u{7f}\u{9b}"), "a\\nb\\tc\\u{7f}\\u{9b}");
        assert_eq!(printable_lines("a\nb\u{1b}"), "a\nb\\u{1b}");
    }
}
