//! Reading a grade out of a judge's verdict, and a grade's value in the
//! metric's aggregation. Extraction happens at scoring time, from the
//! cached verdict, so a changed `pattern`, `labels` or `range` costs no
//! request.

use std::collections::BTreeMap;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::spec::{JudgeAggregate, MetricSpec, SpecError};

/// A verdict's grade: one of the metric's labels, or a number in its range.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum Grade {
    Number(f64),
    Label(String),
}

/// How one judge metric reads verdicts and values grades.
#[derive(Debug)]
pub struct Grader {
    pattern: Option<Regex>,
    labels: Vec<String>,
    range: Option<[f64; 2]>,
    aggregate: JudgeAggregate,
    share_label: Option<String>,
    label_scores: BTreeMap<String, f64>,
}

/// A number as a verdict writes it: `7`, `-2`, `8.5`; compiled once, as
/// every verdict of a job is read with it.
static NUMBER: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
    // A fixed, valid expression: compiling it cannot fail.
    Regex::new(r"-?\d+(?:\.\d+)?").unwrap_or_else(|_| unreachable!())
});

impl Grader {
    /// The grader of a validated judge metric; `field` names it in errors.
    pub fn of(m: &MetricSpec, field: &str) -> Result<Grader, SpecError> {
        let pattern = match &m.pattern {
            Some(p) => Some(Regex::new(p).map_err(|e| {
                SpecError::invalid(
                    format!("{field}.pattern"),
                    format!("is not a valid regex: {e}"),
                )
            })?),
            None => None,
        };
        let aggregate = m.judge_aggregate();
        Ok(Grader {
            pattern,
            labels: m.labels.clone(),
            range: m.range,
            aggregate,
            share_label: match aggregate {
                JudgeAggregate::Share => {
                    m.share_label.clone().or_else(|| m.labels.first().cloned())
                }
                JudgeAggregate::Mean => None,
            },
            label_scores: m.label_scores.clone(),
        })
    }

    /// The grade `verdict` gives, or `None` when it gives none the metric
    /// accepts. With `pattern`, the grade is the first group of its last
    /// match; without, the last label (as a whole word, ignoring case) or
    /// the last number the verdict names: judges tend to reason first and
    /// conclude last.
    pub fn grade(&self, verdict: &str) -> Option<Grade> {
        let text: &str = match &self.pattern {
            Some(re) => re
                .captures_iter(verdict)
                .last()
                .and_then(|c| c.get(1))?
                .as_str()
                .trim(),
            None => verdict,
        };
        if self.labels.is_empty() {
            let number = if self.pattern.is_some() {
                text.trim_end_matches(['.', ',', ';', ')', ']', '*'])
                    .trim_start_matches(['(', '[', '*'])
                    .parse::<f64>()
                    .ok()
            } else {
                NUMBER
                    .find_iter(text)
                    .last()
                    .and_then(|m| m.as_str().parse::<f64>().ok())
            }?;
            let [low, high] = self.range?;
            return (number.is_finite() && (low..=high).contains(&number))
                .then_some(Grade::Number(number));
        }
        if self.pattern.is_some() {
            let word = text.trim_matches(|c: char| !c.is_alphanumeric());
            return self
                .labels
                .iter()
                .find(|l| l.to_lowercase() == word.to_lowercase())
                .map(|l| Grade::Label(l.clone()));
        }
        last_label(text, &self.labels).map(|l| Grade::Label(l.to_string()))
    }

    /// What a grade counts in the document's score: for `share`, 1 when it
    /// is the counted label and 0 otherwise; for `mean`, the number or the
    /// label's score.
    pub fn value(&self, grade: &Grade) -> Option<f64> {
        match (self.aggregate, grade) {
            (JudgeAggregate::Share, Grade::Label(l)) => {
                Some(f64::from(u8::from(Some(l) == self.share_label.as_ref())))
            }
            (JudgeAggregate::Mean, Grade::Label(l)) => self.label_scores.get(l).copied(),
            (JudgeAggregate::Mean, Grade::Number(n)) => Some(*n),
            (JudgeAggregate::Share, Grade::Number(_)) => None,
        }
    }
}

/// The label named last in `text`, as a whole word, ignoring case (so that
/// `INCORRECT` is not read as `CORRECT`): the match that ends last, and of
/// two ending together the longer (`PARTIALLY CORRECT` over `CORRECT`).
fn last_label<'a>(text: &str, labels: &'a [String]) -> Option<&'a str> {
    let haystack = text.to_lowercase();
    let is_word_char = |c: char| c.is_alphanumeric() || c == '_';
    // (end, length) of the best match so far.
    let mut best: Option<((usize, usize), &'a str)> = None;
    for label in labels {
        let needle = label.to_lowercase();
        for (at, _) in haystack.match_indices(&needle) {
            let end = at + needle.len();
            let before = haystack[..at].chars().next_back();
            let after = haystack[end..].chars().next();
            let whole = !before.is_some_and(is_word_char) && !after.is_some_and(is_word_char);
            let rank = (end, needle.len());
            if whole && best.is_none_or(|(b, _)| rank > b) {
                best = Some((rank, label.as_str()));
            }
        }
    }
    best.map(|(_, l)| l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::MetricKind;

    fn grader(edit: impl FnOnce(&mut MetricSpec)) -> Grader {
        let mut m = MetricSpec::of_kind(MetricKind::Judge);
        edit(&mut m);
        Grader::of(&m, "metrics[0]").unwrap()
    }

    fn labels() -> Grader {
        grader(|m| m.labels = vec!["CORRECT".into(), "INCORRECT".into()])
    }

    #[test]
    fn labels_are_whole_words_and_the_last_one_wins() {
        let g = labels();
        assert_eq!(g.grade("INCORRECT"), Some(Grade::Label("INCORRECT".into())));
        assert_eq!(
            g.grade("It looks correct at first, but it is incorrect."),
            Some(Grade::Label("INCORRECT".into()))
        );
        assert_eq!(
            g.grade("Not incorrect: the answer is Correct"),
            Some(Grade::Label("CORRECT".into()))
        );
        assert_eq!(g.grade("CORRECTED"), None);
        let nested = grader(|m| {
            m.labels = vec![
                "CORRECT".into(),
                "PARTIALLY CORRECT".into(),
                "INCORRECT".into(),
            ]
        });
        assert_eq!(
            nested.grade("Verdict: partially correct"),
            Some(Grade::Label("PARTIALLY CORRECT".into()))
        );
        assert_eq!(g.grade("no idea"), None);
    }

    #[test]
    fn share_counts_the_first_label_by_default() {
        let g = labels();
        assert_eq!(g.value(&Grade::Label("CORRECT".into())), Some(1.0));
        assert_eq!(g.value(&Grade::Label("INCORRECT".into())), Some(0.0));
    }

    #[test]
    fn a_pattern_picks_the_grade_of_its_last_match() {
        let g = grader(|m| {
            m.labels = vec!["C".into(), "P".into(), "I".into()];
            m.pattern = Some("GRADE: ([A-Za-z])".into());
        });
        assert_eq!(
            g.grade("Format: GRADE: X.\nReasoning...\nGRADE: P"),
            Some(Grade::Label("P".into())),
            "the last match counts"
        );
        assert_eq!(g.grade("GRADE: X"), None, "X is no label");
        assert_eq!(
            g.grade("Reasoning...\nGRADE: P\nGRADE: c"),
            Some(Grade::Label("C".into()))
        );
    }

    #[test]
    fn numbers_must_lie_in_the_range() {
        let g = grader(|m| {
            m.range = Some([1.0, 10.0]);
            m.pattern = Some(r"\[\[([0-9.]+)\]\]".into());
        });
        assert_eq!(g.grade("Rating: [[7.5]]"), Some(Grade::Number(7.5)));
        assert_eq!(g.grade("Rating: [[11]]"), None);
        assert_eq!(g.grade("Rating: 7"), None);
        assert_eq!(g.value(&Grade::Number(7.5)), Some(7.5));
        let bare = grader(|m| m.range = Some([0.0, 5.0]));
        assert_eq!(bare.grade("Step 1 ... so 4"), Some(Grade::Number(4.0)));
    }

    #[test]
    fn mean_over_labels_uses_their_scores() {
        let g = grader(|m| {
            m.labels = vec!["good".into(), "meh".into(), "bad".into()];
            m.aggregate = Some(JudgeAggregate::Mean);
            m.label_scores = BTreeMap::from([
                ("good".into(), 1.0),
                ("meh".into(), 0.5),
                ("bad".into(), 0.0),
            ]);
        });
        let grade = g.grade("Overall: MEH").unwrap();
        assert_eq!(grade, Grade::Label("meh".into()));
        assert_eq!(g.value(&grade), Some(0.5));
    }
}
