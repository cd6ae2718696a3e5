//! Scrubbing secrets out of text an endpoint sent back, before it is
//! stored, logged or printed: the key values known to the caller, and the
//! shapes keys have (`Bearer …`, `sk-…`, `x-api-key: …`), since an endpoint
//! may echo a request's headers into its error.

use regex::Regex;
use std::borrow::Cow;
use std::sync::LazyLock;

/// What a scrubbed secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Shortest known value replaced: shorter ones would match ordinary words.
const MIN_KNOWN_LEN: usize = 8;

static KEY_SHAPES: LazyLock<[(Regex, &'static str); 3]> = LazyLock::new(|| {
    let shape = |pattern: &str| Regex::new(pattern).expect("a valid key pattern");
    [
        (
            shape(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
            "${1}[redacted]",
        ),
        (shape(r"\bsk-[A-Za-z0-9_-]{8,}"), "sk-[redacted]"),
        (
            shape(r#"(?i)(x-api-key["']?\s*[:=]\s*["']?)[A-Za-z0-9._~+/=-]{8,}"#),
            "${1}[redacted]",
        ),
    ]
});

/// `text` with every value of `known` (8 characters or more) and every
/// key-shaped run replaced by [`REDACTED`].
pub fn scrub<'a>(text: &'a str, known: &[&str]) -> Cow<'a, str> {
    let mut out = Cow::Borrowed(text);
    for secret in known.iter().filter(|s| s.len() >= MIN_KNOWN_LEN) {
        if out.contains(secret) {
            out = Cow::Owned(out.replace(secret, REDACTED));
        }
    }
    for (shape, replacement) in KEY_SHAPES.iter() {
        if shape.is_match(&out) {
            out = Cow::Owned(shape.replace_all(&out, *replacement).into_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_and_key_shapes_are_scrubbed() {
        let text = "401: Incorrect API key provided: my-custom-key-42 \
                    (Authorization: Bearer abcdefgh12345678, x-api-key: zyxwvuts9876, \
                    sk-proj-AbCdEf123456)";
        let scrubbed = scrub(text, &["my-custom-key-42"]);
        for secret in [
            "my-custom-key-42",
            "abcdefgh12345678",
            "zyxwvuts9876",
            "AbCdEf123456",
        ] {
            assert!(!scrubbed.contains(secret), "{scrubbed}");
        }
        assert!(scrubbed.contains("Bearer [redacted]"), "{scrubbed}");
        assert!(scrubbed.contains("sk-[redacted]"), "{scrubbed}");
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        let text = "model gpt-4o-mini not found; the bearer of bad news";
        assert!(matches!(scrub(text, &["short", ""]), Cow::Borrowed(_)));
    }
}
