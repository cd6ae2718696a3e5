//! The `Scorer`: applies a job's metrics to a planned document's outputs
//! and makes the document's `SampleRecord`.

use std::collections::BTreeMap;
use std::sync::Arc;

use regex::Regex;

use super::choice::{acc, acc_norm, extract_choice_letter};
use super::text::{bool_score, contains, exact_match, regex_match, token_f1};
use crate::dataset::Doc;
use crate::judge::Judges;
use crate::model_text::ModelText;
use crate::output::InferenceOutput;
use crate::plan::DocPlan;
use crate::request::{canonical_json, sha256_hex, RenderedInput};
use crate::results::{ChoiceLoglikelihood, SampleOutputs, SamplePrompt, SampleRecord};
use crate::spec::{JobSpec, MetricKind, Normalization, SpecError, TaskKind};
use crate::template::LETTERS;

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
    /// The model's own rendering of its inputs, when known (engine jobs),
    /// for the samples' `prompt`.
    model_text: Option<Arc<dyn ModelText>>,
    /// The judge metrics, scored from their verdicts (`judged.rs`).
    pub(super) judges: Judges,
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
            model_text: None,
            judges: Judges::new(spec)?,
        })
    }

    /// Records each sample's prompt as `model_text` renders it (the exact
    /// text an engine model read) instead of the input as planned.
    pub fn with_model_text(mut self, model_text: Option<Arc<dyn ModelText>>) -> Scorer {
        self.model_text = model_text;
        self
    }

    /// What the model was given for `plan`: its own rendering when known;
    /// else the messages as sent, or the prompt.
    fn sample_prompt(&self, plan: &DocPlan) -> SamplePrompt {
        // An input the model cannot render was refused by the backend too:
        // the document has no outputs, and its sample shows the input as
        // planned.
        if let Some(Ok(text)) = self
            .model_text
            .as_ref()
            .map(|m| m.prompt_text(&plan.prompt))
        {
            return SamplePrompt::Text(text);
        }
        match &plan.prompt {
            RenderedInput::Messages { messages } => SamplePrompt::Messages(messages.clone()),
            RenderedInput::Prompt { prompt } => SamplePrompt::Text(prompt.clone()),
        }
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
            prompt: self.sample_prompt(plan),
            outputs: sample_outputs,
            target: plan.target.clone(),
            choices: plan.choices.clone(),
            gold_index: plan.gold_index,
            scores,
            missing: !complete,
            doc_hash: sha256_hex(&canonical_json(&serde_json::Value::Object(
                doc.fields.clone(),
            ))),
            prompt_hash: sha256_hex(&plan.prompt_display()),
            target_hash: plan.target.as_deref().map(sha256_hex),
            judges: BTreeMap::new(),
        }
    }

    fn scores(&self, plan: &DocPlan, outputs: &SampleOutputs) -> BTreeMap<String, f64> {
        let target = plan.target.as_deref().unwrap_or_default();
        let mut scores = BTreeMap::new();
        // Judge metrics are scored from their verdicts, when they exist.
        for m in self.metrics.iter().filter(|m| m.kind != MetricKind::Judge) {
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
            // Validation keeps log-likelihood metrics off generate tasks;
            // judges are not scored here.
            MetricKind::Acc | MetricKind::AccNorm | MetricKind::Judge => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::ReadPolicy;
    use crate::model_text::ModelTextError;
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
            path: std::sync::Arc::from(std::path::Path::new("data.jsonl")),
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
        let plan = Planner::new(&spec, &ReadPolicy::unrestricted())
            .unwrap()
            .plan_doc(&d)
            .unwrap();
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

    /// Renders messages as a toy chat template would.
    struct Template;

    impl ModelText for Template {
        fn prompt_text(&self, input: &RenderedInput) -> Result<String, ModelTextError> {
            match input {
                RenderedInput::Messages { messages } => Ok(messages
                    .iter()
                    .map(|m| format!("<|{}|>{}<|end|>", m.role, m.content))
                    .collect::<String>()
                    + "<|assistant|>"),
                RenderedInput::Prompt { .. } => Err(ModelTextError("no chat".into())),
            }
        }

        fn input_tokens(&self, _: &crate::InferenceRequest) -> Result<u64, ModelTextError> {
            Ok(0)
        }
    }

    #[test]
    fn samples_record_the_messages_as_sent_or_the_text_the_model_read() {
        let text_spec = r#"
name = "t"
[model]
backend = "none"
model = "m"
[dataset]
path = "d.jsonl"
[task]
kind = "generate"
target = "{{ a }}"
messages = [{ role = "system", content = "Be brief." }, { role = "user", content = "{{ q }}" }]
[[metrics]]
type = "exact_match"
"#;
        let spec = JobSpec::from_toml_str(text_spec, "job.toml", None).unwrap();
        let d = doc(r#"{"q": "Q?", "a": "Rome"}"#);
        let plan = Planner::new(&spec, &ReadPolicy::unrestricted())
            .unwrap()
            .plan_doc(&d)
            .unwrap();
        let a = text("Rome");
        let api = Scorer::new(&spec)
            .unwrap()
            .score_doc(&plan, &d, &[Some(&a)]);
        let json = serde_json::to_value(&api).unwrap();
        assert_eq!(
            json["prompt"],
            serde_json::json!([
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Q?"}
            ])
        );
        // The hash is of the one-string form, whatever `prompt` holds.
        assert_eq!(api.prompt_hash, sha256_hex("[system] Be brief.\n[user] Q?"));
        let engine = Scorer::new(&spec)
            .unwrap()
            .with_model_text(Some(Arc::new(Template)))
            .score_doc(&plan, &d, &[Some(&a)]);
        assert_eq!(
            engine.prompt,
            SamplePrompt::Text("<|system|>Be brief.<|end|><|user|>Q?<|end|><|assistant|>".into())
        );
        assert_eq!(engine.prompt_hash, api.prompt_hash);
        let line = serde_json::to_string(&engine).unwrap();
        let back: SampleRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back, engine);
    }

    #[test]
    fn multiple_choice_doc_scores() {
        let spec = spec(
            "choices = \"opts\"\n[[metrics]]\ntype = \"acc\"\n[[metrics]]\ntype = \"acc_norm\"",
            "multiple_choice",
        );
        let d = doc(r#"{"q": "Q?", "a": 1, "opts": ["no", "a long right answer"]}"#);
        let plan = Planner::new(&spec, &ReadPolicy::unrestricted())
            .unwrap()
            .plan_doc(&d)
            .unwrap();
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
