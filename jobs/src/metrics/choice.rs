//! Metrics that pick a choice: the answer letter in a generated output, and
//! log-likelihood accuracy (lm-evaluation-harness's `acc` and `acc_norm`).

use std::sync::LazyLock;

use regex::Regex;

use super::text::bool_score;
use crate::template::letter_index;

static WHOLE_LETTER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\(\[]?([A-Za-z])[\)\]]?[.:)]?$").expect("static regex"));
static ANSWER_LETTER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i:answer|option|choice)(?:\s+(?i:is))?\s*:?\s*[\*\(\[]*\s*([A-Z])\b")
        .expect("static regex")
});
static LEADING_LETTER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\(\[]?([A-Z])[\)\].:](?:\s|$)").expect("static regex"));
static PAREN_LETTER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[\(\[]([A-Z])[\)\]]").expect("static regex"));
static LONE_LETTER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b([A-Z])\b").expect("static regex"));

/// Finds the answer letter in a model's output, as a choice index below
/// `n_choices`. Tries, in order: the whole output is a letter (`B`, `(B)`,
/// `B.`); the last "answer is B" / "Answer: (B)"; a leading `B)` / `B.`;
/// a single distinct `(B)`; a single distinct stand-alone capital letter.
pub fn extract_choice_letter(output: &str, n_choices: usize) -> Option<usize> {
    let in_range = |c: &str| letter_index(c).filter(|&i| i < n_choices);
    let text = output.trim().trim_matches('*').trim();
    if let Some(c) = WHOLE_LETTER.captures(text) {
        return in_range(c.get(1)?.as_str());
    }
    if let Some(i) = ANSWER_LETTER
        .captures_iter(text)
        .filter_map(|c| in_range(c.get(1)?.as_str()))
        .last()
    {
        return Some(i);
    }
    if let Some(i) = LEADING_LETTER
        .captures(text)
        .and_then(|c| in_range(c.get(1)?.as_str()))
    {
        return Some(i);
    }
    for re in [&*PAREN_LETTER, &*LONE_LETTER] {
        let mut found: Vec<usize> = re
            .captures_iter(text)
            .filter_map(|c| in_range(c.get(1)?.as_str()))
            .collect();
        found.sort_unstable();
        found.dedup();
        if found.len() == 1 {
            return found.first().copied();
        }
        if found.len() > 1 {
            return None;
        }
    }
    None
}

/// 1 when the highest log-likelihood is the gold choice (first on ties, like
/// `numpy.argmax`).
pub fn acc(logprobs: &[f64], gold: usize) -> f64 {
    bool_score(argmax(logprobs) == Some(gold))
}

/// `acc` with each log-likelihood divided by the length of its choice text
/// in characters (without the target delimiter), exactly as
/// lm-evaluation-harness computes `acc_norm`, so figures are comparable.
pub fn acc_norm(logprobs: &[f64], choices: &[&str], gold: usize) -> f64 {
    let normed: Vec<f64> = logprobs
        .iter()
        .zip(choices)
        .map(|(lp, c)| lp / (c.chars().count().max(1) as f64))
        .collect();
    bool_score(argmax(&normed) == Some(gold))
}

fn argmax(values: &[f64]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, &v) in values.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        let better = match best {
            None => true,
            Some((_, b)) => v > b,
        };
        if better {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_letter_extraction() {
        for (text, want) in [
            ("B", Some(1)),
            ("(B)", Some(1)),
            ("b", Some(1)),
            ("**C**", Some(2)),
            ("Answer: B", Some(1)),
            ("The answer is B.", Some(1)),
            ("the correct answer is (D) because", Some(3)),
            ("A is wrong, B is wrong; answer: C", Some(2)),
            ("B) Paris", Some(1)),
            ("C. Oslo", Some(2)),
            ("I think it's (A).", Some(0)),
            ("I think C", Some(2)),
            ("A or B", None),
            ("E", None),
            ("Paris", None),
            ("", None),
        ] {
            assert_eq!(extract_choice_letter(text, 4), want, "{text:?}");
        }
    }

    #[test]
    fn acc_and_acc_norm() {
        assert_eq!(acc(&[-3.0, -1.0, -2.0], 1), 1.0);
        assert_eq!(acc(&[-3.0, -1.0, -2.0], 0), 0.0);
        // Ties go to the first choice.
        assert_eq!(acc(&[-1.0, -1.0], 0), 1.0);
        // A long continuation loses on the sum but wins per byte.
        let choices = ["a", "a much longer answer"];
        assert_eq!(acc(&[-2.0, -6.0], 1), 0.0);
        assert_eq!(acc_norm(&[-2.0, -6.0], &choices, 1), 1.0);
        // Characters, not bytes, and no delimiter: -2/2 = -1.0 beats
        // -3.3/3 = -1.1 (the delimiter would have made it -2/3 vs -3.3/4).
        assert_eq!(acc_norm(&[-2.0, -3.3], &["ab", "abc"], 0), 1.0);
        assert_eq!(acc_norm(&[-2.0, -2.5], &["éé", "abc"], 1), 1.0);
    }
}
