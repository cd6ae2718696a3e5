//! Per-document metrics: exact match, contains, regex, choice letter, token F1
//! (SQuAD-style) and log-likelihood accuracy (lm-evaluation-harness's `acc`
//! and `acc_norm`), and the `Scorer` that applies a job's metrics to a
//! document's outputs.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use regex::Regex;

use crate::dataset::Doc;
use crate::output::InferenceOutput;
use crate::plan::DocPlan;
use crate::request::{canonical_json, sha256_hex};
use crate::results::{ChoiceLoglikelihood, SampleOutputs, SampleRecord};
use crate::spec::SpecError;
use crate::spec::{JobSpec, MetricKind, Normalization, TaskKind};
use crate::template::LETTERS;

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
    let in_range = |c: &str| crate::template::letter_index(c).filter(|&i| i < n_choices);
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

fn bool_score(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

struct CompiledMetric {
    name: String,
    kind: MetricKind,
    normalize: Vec<Normalization>,
    pattern: Option<Regex>,
}

/// Applies a job's metrics to planned documents and their outputs.
pub struct Scorer {
    kind: TaskKind,
    metrics: Vec<CompiledMetric>,
}

impl Scorer {
    pub fn new(spec: &JobSpec) -> Result<Scorer, SpecError> {
        spec.validate()?;
        let mut metrics = Vec::new();
        for (i, m) in spec.metrics.iter().enumerate() {
            let pattern = match &m.pattern {
                Some(p) => Some(Regex::new(p).map_err(|e| {
                    SpecError::invalid(
                        format!("metrics[{i}].pattern"),
                        format!("is not a valid regex: {e}"),
                    )
                })?),
                None => None,
            };
            metrics.push(CompiledMetric {
                name: m.display_name(),
                kind: m.kind,
                normalize: m.normalize.clone(),
                pattern,
            });
        }
        Ok(Scorer {
            kind: spec.task.kind,
            metrics,
        })
    }

    /// Metric display names, in spec order.
    pub fn metric_names(&self) -> Vec<String> {
        self.metrics.iter().map(|m| m.name.clone()).collect()
    }

    /// Scores one document. `outputs` is aligned with `plan.requests`; if
    /// any is missing the record is marked `missing` and carries no scores.
    pub fn score_doc(
        &self,
        plan: &DocPlan,
        doc: &Doc,
        outputs: &[Option<&InferenceOutput>],
    ) -> SampleRecord {
        let aligned = outputs.len() == plan.requests.len();
        let (sample_outputs, complete) = match self.kind {
            TaskKind::Generate => {
                let texts: Vec<Option<String>> = (0..plan.requests.len())
                    .map(|i| {
                        outputs
                            .get(i)
                            .copied()
                            .flatten()
                            .map(|o| o.text.clone().unwrap_or_default())
                    })
                    .collect();
                let complete = aligned && texts.iter().all(Option::is_some);
                (SampleOutputs::Generated(texts), complete)
            }
            TaskKind::MultipleChoice => {
                let lls: Vec<Option<ChoiceLoglikelihood>> = (0..plan.requests.len())
                    .map(|i| {
                        outputs
                            .get(i)
                            .copied()
                            .flatten()
                            .and_then(|o| o.loglikelihood.as_ref())
                            .map(|ll| ChoiceLoglikelihood {
                                logprob: ll.logprob,
                                is_greedy: ll.is_greedy,
                            })
                    })
                    .collect();
                let complete = aligned && lls.iter().all(Option::is_some);
                (SampleOutputs::Loglikelihoods(lls), complete)
            }
        };
        let scores = if complete {
            self.scores(plan, &sample_outputs)
        } else {
            BTreeMap::new()
        };
        SampleRecord {
            doc_id: plan.doc_id.clone(),
            doc_index: plan.doc_index,
            subset: plan.subset.clone(),
            prompt: plan.prompt_display.clone(),
            outputs: sample_outputs,
            target: plan.target.clone(),
            choices: plan.choices.clone(),
            gold_index: plan.gold_index,
            scores,
            missing: !complete,
            doc_hash: sha256_hex(&canonical_json(&serde_json::Value::Object(
                doc.fields.clone(),
            ))),
            prompt_hash: sha256_hex(&plan.prompt_display),
            target_hash: plan.target.as_deref().map(sha256_hex),
        }
    }

    fn scores(&self, plan: &DocPlan, outputs: &SampleOutputs) -> BTreeMap<String, f64> {
        let target = plan.target.as_deref().unwrap_or_default();
        let mut scores = BTreeMap::new();
        for m in &self.metrics {
            let score = match outputs {
                SampleOutputs::Generated(texts) => {
                    let per_sample: Vec<f64> = texts
                        .iter()
                        .map(|t| {
                            self.generate_score(m, t.as_deref().unwrap_or_default(), target, plan)
                        })
                        .collect();
                    per_sample.iter().sum::<f64>() / per_sample.len().max(1) as f64
                }
                SampleOutputs::Loglikelihoods(lls) => {
                    let logprobs: Vec<f64> = lls
                        .iter()
                        .map(|l| l.as_ref().map_or(f64::NEG_INFINITY, |l| l.logprob))
                        .collect();
                    let gold = plan.gold_index.unwrap_or(usize::MAX);
                    match m.kind {
                        MetricKind::AccNorm => {
                            // lm-eval normalises by the choice text alone,
                            // without the target delimiter.
                            let choices: Vec<&str> = match &plan.choices {
                                Some(c) => c.iter().map(String::as_str).collect(),
                                None => plan
                                    .requests
                                    .iter()
                                    .map(|r| r.continuation.as_deref().unwrap_or_default())
                                    .collect(),
                            };
                            acc_norm(&logprobs, &choices, gold)
                        }
                        _ => acc(&logprobs, gold),
                    }
                }
            };
            scores.insert(m.name.clone(), score);
        }
        scores
    }

    fn generate_score(
        &self,
        m: &CompiledMetric,
        output: &str,
        target: &str,
        plan: &DocPlan,
    ) -> f64 {
        match m.kind {
            MetricKind::ExactMatch => exact_match(output, target, &m.normalize),
            MetricKind::Contains => contains(output, target, &m.normalize),
            MetricKind::Regex => match &m.pattern {
                Some(re) => regex_match(re, output, target, &m.normalize),
                None => 0.0,
            },
            MetricKind::F1 => token_f1(output, target, &m.normalize),
            MetricKind::ChoiceLetter => {
                let n = plan.choices.as_ref().map_or(LETTERS.len(), Vec::len);
                bool_score(
                    plan.gold_index.is_some()
                        && extract_choice_letter(output, n) == plan.gold_index,
                )
            }
            // Validation keeps log-likelihood metrics off generate tasks.
            MetricKind::Acc | MetricKind::AccNorm => 0.0,
        }
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

    use crate::output::{LoglikelihoodOutput, Usage};
    use crate::plan::Planner;
    use serde_json::Value;

    fn spec(extra: &str, kind: &str) -> JobSpec {
        let text = format!(
            r#"
name = "t"
[model]
backend = "none"
model = "m"
endpoint = "completions"
[dataset]
path = "d.jsonl"
[task]
kind = "{kind}"
prompt = "{{{{ q }}}}"
target = "{{{{ a }}}}"
{extra}
"#
        );
        JobSpec::from_toml_str(&text, "job.toml", None).unwrap()
    }

    fn doc(json: &str) -> Doc {
        let Value::Object(fields) = serde_json::from_str(json).unwrap() else {
            panic!("not an object")
        };
        Doc {
            index: 0,
            line: 1,
            id: "x".into(),
            subset: Some("s".into()),
            fields,
        }
    }

    fn text(t: &str) -> InferenceOutput {
        InferenceOutput {
            text: Some(t.into()),
            finish_reason: Some("stop".into()),
            loglikelihood: None,
            usage: Usage::default(),
            latency_ms: 1,
            attempts: 1,
        }
    }

    fn ll(logprob: f64) -> InferenceOutput {
        InferenceOutput {
            text: None,
            finish_reason: None,
            loglikelihood: Some(LoglikelihoodOutput {
                logprob,
                is_greedy: false,
                token_logprobs: vec![],
            }),
            usage: Usage::default(),
            latency_ms: 1,
            attempts: 1,
        }
    }

    #[test]
    fn generate_doc_scores_mean_over_samples() {
        let spec = spec(
            "choices = \"opts\"\n[task.generation]\nn = 2\ntemperature = 1.0\n[[metrics]]\ntype = \"exact_match\"\n[[metrics]]\ntype = \"choice_letter\"\n[[metrics]]\ntype = \"f1\"\nname = \"tok_f1\"",
            "generate",
        );
        let d = doc(r#"{"q": "Q?", "a": "Rome", "opts": ["Paris", "Rome"]}"#);
        let plan = Planner::new(&spec).unwrap().plan_doc(&d).unwrap();
        assert_eq!(plan.gold_index, Some(1));
        let scorer = Scorer::new(&spec).unwrap();
        assert_eq!(
            scorer.metric_names(),
            vec!["exact_match", "choice_letter", "tok_f1"]
        );
        let (a, b) = (text("Rome"), text("The answer is A"));
        let rec = scorer.score_doc(&plan, &d, &[Some(&a), Some(&b)]);
        assert!(!rec.missing);
        assert_eq!(rec.scores["exact_match"], 0.5);
        assert_eq!(rec.scores["choice_letter"], 0.0);
        assert_eq!(rec.scores["tok_f1"], 0.5);
        assert_eq!(
            rec.outputs,
            SampleOutputs::Generated(vec![Some("Rome".into()), Some("The answer is A".into())])
        );
        assert_eq!(rec.subset.as_deref(), Some("s"));
        assert_eq!(rec.prompt_hash, sha256_hex("Q?"));
        assert_eq!(rec.target_hash, Some(sha256_hex("Rome")));
        assert_eq!(
            rec.doc_hash,
            sha256_hex(r#"{"a":"Rome","opts":["Paris","Rome"],"q":"Q?"}"#)
        );
        let c = text("B");
        assert_eq!(
            scorer.score_doc(&plan, &d, &[Some(&c), Some(&c)]).scores["choice_letter"],
            1.0
        );

        let missing = scorer.score_doc(&plan, &d, &[Some(&a), None]);
        assert!(missing.missing);
        assert!(missing.scores.is_empty());
        assert_eq!(
            missing.outputs,
            SampleOutputs::Generated(vec![Some("Rome".into()), None])
        );
        // Fewer outputs than requests is missing too, never a panic.
        assert!(scorer.score_doc(&plan, &d, &[Some(&a)]).missing);
    }

    #[test]
    fn multiple_choice_doc_scores() {
        let spec = spec(
            "choices = \"opts\"\n[[metrics]]\ntype = \"acc\"\n[[metrics]]\ntype = \"acc_norm\"",
            "multiple_choice",
        );
        let d = doc(r#"{"q": "Q?", "a": 1, "opts": ["no", "a long right answer"]}"#);
        let plan = Planner::new(&spec).unwrap().plan_doc(&d).unwrap();
        let scorer = Scorer::new(&spec).unwrap();
        let (x, y) = (ll(-2.0), ll(-8.0));
        let rec = scorer.score_doc(&plan, &d, &[Some(&x), Some(&y)]);
        assert_eq!(rec.scores["acc"], 0.0);
        assert_eq!(rec.scores["acc_norm"], 1.0);
        assert_eq!(rec.gold_index, Some(1));
        let json = serde_json::to_value(&rec).unwrap();
        assert_eq!(json["outputs"][1]["logprob"], Value::from(-8.0));
        // A generate-shaped output where a log-likelihood was expected counts as missing.
        let t = text("x");
        assert!(scorer.score_doc(&plan, &d, &[Some(&x), Some(&t)]).missing);
    }
}
