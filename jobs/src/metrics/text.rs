//! Metrics over generated text: normalisation (SQuAD's steps), exact match,
//! contains, regex extraction and token F1.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use crate::spec::Normalization;

static ARTICLES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(a|an|the)\b").expect("static regex"));

/// Applies normalisations in SQuAD's order (lowercase, punctuation, articles,
/// whitespace), whatever order the spec lists them in, so that results do not
/// depend on list order.
pub fn normalize(text: &str, norms: &[Normalization]) -> String {
    let has = |n: Normalization| norms.contains(&n);
    let mut s = text.to_string();
    if has(Normalization::Lowercase) {
        s = s.to_lowercase();
    }
    if has(Normalization::RemovePunctuation) {
        s = s.chars().filter(|c| !is_punctuation(*c)).collect();
    }
    if has(Normalization::RemoveArticles) {
        s = ARTICLES.replace_all(&s, " ").into_owned();
        s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    if has(Normalization::Strip) {
        s = s.trim().to_string();
    }
    s
}

/// ASCII punctuation (Python's `string.punctuation`) plus common typographic
/// quotes and dashes that models emit.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(
            c,
            '\u{2018}'
                | '\u{2019}'
                | '\u{201C}'
                | '\u{201D}'
                | '\u{2013}'
                | '\u{2014}'
                | '\u{2026}'
        )
}

/// The full SQuAD normalisation, used by `f1` when the metric lists none.
pub const SQUAD_NORMALIZATION: [Normalization; 4] = [
    Normalization::Lowercase,
    Normalization::RemovePunctuation,
    Normalization::RemoveArticles,
    Normalization::Strip,
];

pub fn exact_match(output: &str, target: &str, norms: &[Normalization]) -> f64 {
    bool_score(normalize(output, norms) == normalize(target, norms))
}

/// 1 when the normalised target occurs in the normalised output.
pub fn contains(output: &str, target: &str, norms: &[Normalization]) -> f64 {
    bool_score(normalize(output, norms).contains(&normalize(target, norms)))
}

/// Extracts the first capture group of `pattern` from the output and
/// exact-matches it against the target; no match scores 0.
pub fn regex_match(pattern: &Regex, output: &str, target: &str, norms: &[Normalization]) -> f64 {
    match pattern.captures(output).and_then(|c| c.get(1)) {
        Some(m) => exact_match(m.as_str(), target, norms),
        None => 0.0,
    }
}

/// SQuAD token F1 over whitespace tokens of the normalised texts.
pub fn token_f1(output: &str, target: &str, norms: &[Normalization]) -> f64 {
    let norms: &[Normalization] = if norms.is_empty() {
        &SQUAD_NORMALIZATION
    } else {
        norms
    };
    let pred = normalize(output, norms);
    let gold = normalize(target, norms);
    let pred: Vec<&str> = pred.split_whitespace().collect();
    let gold: Vec<&str> = gold.split_whitespace().collect();
    if pred.is_empty() || gold.is_empty() {
        return bool_score(pred == gold);
    }
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for t in &gold {
        *counts.entry(t).or_default() += 1;
    }
    let mut same = 0usize;
    for t in &pred {
        if let Some(c) = counts.get_mut(t) {
            if *c > 0 {
                *c -= 1;
                same += 1;
            }
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / pred.len() as f64;
    let recall = same as f64 / gold.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

pub(super) fn bool_score(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Normalization::*;

    #[test]
    fn normalisation_cases() {
        assert_eq!(normalize("  The Cat!  ", &[Strip]), "The Cat!");
        assert_eq!(normalize("The Cat!", &[Lowercase]), "the cat!");
        assert_eq!(normalize("U.S.A., yes!", &[RemovePunctuation]), "USA yes");
        assert_eq!(
            normalize("the  cat ate an apple", &[RemoveArticles]),
            "cat ate apple"
        );
        assert_eq!(normalize("The Answer", &[RemoveArticles]), "Answer");
        assert_eq!(normalize("theory", &[RemoveArticles]), "theory");
        assert_eq!(
            normalize(" The \u{201C}Big\u{201D} Apple. ", &SQUAD_NORMALIZATION),
            "big apple"
        );
        // Order in the list does not matter.
        assert_eq!(
            normalize(
                "A Dog.",
                &[Strip, RemoveArticles, Lowercase, RemovePunctuation]
            ),
            normalize(
                "A Dog.",
                &[Lowercase, RemovePunctuation, RemoveArticles, Strip]
            )
        );
    }

    #[test]
    fn exact_match_and_contains() {
        assert_eq!(exact_match("Paris", "Paris", &[]), 1.0);
        assert_eq!(exact_match(" paris.", "Paris", &[]), 0.0);
        assert_eq!(exact_match(" paris.", "Paris", &SQUAD_NORMALIZATION), 1.0);
        assert_eq!(
            contains("The capital is Paris.", "paris", &[Lowercase]),
            1.0
        );
        assert_eq!(contains("The capital is Rome.", "paris", &[Lowercase]), 0.0);
    }

    #[test]
    fn regex_extracts_first_group() {
        let re = Regex::new(r"answer is (\w+)").unwrap();
        assert_eq!(
            regex_match(&re, "I think the answer is Paris.", "paris", &[Lowercase]),
            1.0
        );
        assert_eq!(
            regex_match(&re, "I think the answer is Rome.", "paris", &[Lowercase]),
            0.0
        );
        assert_eq!(regex_match(&re, "Paris", "Paris", &[]), 0.0);
    }

    #[test]
    fn squad_f1() {
        assert_eq!(token_f1("Paris", "Paris", &[]), 1.0);
        assert_eq!(token_f1("the cat sat", "a cat sat down", &[]), 0.8);
        assert_eq!(token_f1("dog", "cat", &[]), 0.0);
        assert_eq!(token_f1("", "", &[]), 1.0);
        assert_eq!(token_f1("the", "cat", &[]), 0.0);
        // Repeated tokens count once per occurrence in the gold.
        let f = token_f1("cat cat cat", "cat", &[]);
        assert!((f - 0.5).abs() < 1e-12, "{f}");
    }
}
