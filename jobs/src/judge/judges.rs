//! [`Judges`]: a job's judge metrics compiled once — the requests each
//! makes for a document's outputs, and how their verdicts score it.
//!
//! A judge request is an ordinary request of the judge model: its key
//! covers the judge model, the rendered grading prompt (which holds the
//! graded output), the judge's parameters and the verdict's sample index,
//! so it is cached, sharded, retried and priced like any other.

use minijinja::value::Value as JinjaValue;
use minijinja::{Environment, ErrorKind};
use serde_json::Value;
use std::collections::BTreeSet;

use super::grade::{Grade, Grader};
use super::item::JudgeItem;
use crate::plan::fold_system_turns;
use crate::render::RenderError;
use crate::request::{
    ChatMessage, GenerationParams, InferenceRequest, ModelFingerprint, RenderedInput, RequestType,
};
use crate::spec::{Endpoint, JobSpec, MetricKind, ModelSpec, SpecError, SystemRole};
use crate::template::{self, describe_error};

const TEMPLATE: &str = "template";
const SYSTEM: &str = "system";

/// One judge metric, compiled.
struct Judge {
    name: String,
    /// `metrics[i]`, for errors.
    field: String,
    env: Environment<'static>,
    has_system: bool,
    model: ModelSpec,
    fingerprint: ModelFingerprint,
    params: GenerationParams,
    /// Verdicts per output.
    n: u32,
    grader: Grader,
}

/// A request of one judge for one output of a document.
#[derive(Clone, Debug, PartialEq)]
pub struct JudgeRequest {
    /// Position of the judge among [`Judges::names`].
    pub judge: usize,
    /// Which of the document's outputs (its sample index) is graded.
    pub output: usize,
    /// The request; its `sample_index` is the verdict's.
    pub request: InferenceRequest,
}

/// A job's judge metrics, in spec order.
pub struct Judges {
    judges: Vec<Judge>,
    /// The variables the judges' templates read; `None` when one reads
    /// `doc`, the whole row.
    reads: Option<BTreeSet<String>>,
}

impl Judges {
    /// The judges of `spec` (none when it has no judge metric).
    pub fn new(spec: &JobSpec) -> Result<Judges, SpecError> {
        let mut judges = Vec::new();
        let mut reads = Some(BTreeSet::new());
        for (i, m) in spec.metrics.iter().enumerate() {
            if m.kind != MetricKind::Judge {
                continue;
            }
            let field = format!("metrics[{i}]");
            let missing = |what: &str| {
                SpecError::invalid(format!("{field}.{what}"), "a judge metric needs it")
            };
            let model = m.model.as_deref().ok_or_else(|| missing("model"))?.clone();
            let source = m.template.clone().ok_or_else(|| missing("template"))?;
            let mut env = template::template_env();
            let compile = |env: &mut Environment<'static>, name: &str, source: String| {
                env.add_template_owned(name.to_string(), source)
                    .map_err(|e| {
                        SpecError::invalid(
                            format!("{field}.{name}"),
                            format!("template does not compile: {}", describe_error(&e)),
                        )
                    })
            };
            compile(&mut env, TEMPLATE, source)?;
            if let Some(system) = &m.system {
                compile(&mut env, SYSTEM, system.clone())?;
            }
            for name in [TEMPLATE, SYSTEM] {
                let Ok(t) = env.get_template(name) else {
                    continue;
                };
                let names = t.undeclared_variables(false);
                if names.contains("doc") {
                    reads = None;
                }
                if let Some(reads) = reads.as_mut() {
                    reads.extend(names);
                }
            }
            let generation = m.generation.clone().unwrap_or_default();
            judges.push(Judge {
                name: m.display_name(),
                grader: Grader::of(m, &field)?,
                field,
                env,
                has_system: m.system.is_some(),
                fingerprint: model.fingerprint(),
                model,
                params: generation.params(),
                n: generation.n.max(1),
            });
        }
        Ok(Judges { judges, reads })
    }

    /// Drops from `item` what no judge template reads (row fields, the
    /// prompt, the choices), so that what is kept until its outputs exist
    /// stays small; the judge requests rendered from it are the same.
    pub fn trim(&self, item: &mut JudgeItem) {
        let Some(reads) = &self.reads else {
            return;
        };
        item.fields.retain(|name, _| reads.contains(name));
        if !reads.contains("prompt") {
            item.prompt.clear();
        }
        if !reads.contains("choices") {
            item.choices = None;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.judges.is_empty()
    }

    /// The judge metrics' names, in spec order.
    pub fn names(&self) -> Vec<String> {
        self.judges.iter().map(|j| j.name.clone()).collect()
    }

    /// The model of judge `judge`.
    pub fn model(&self, judge: usize) -> Option<&ModelSpec> {
        self.judges.get(judge).map(|j| &j.model)
    }

    /// Renders every judge's grading prompt once with an empty output, so
    /// that a template naming a field the row lacks fails the job when it
    /// is planned, not later when its outputs arrive.
    pub fn check(&self, item: &JudgeItem) -> Result<(), RenderError> {
        let blank = vec![String::new(); item.keys.len().max(1)];
        self.requests(item, &blank).map(|_| ())
    }

    /// The requests that grade `outputs` (the document's output texts, in
    /// sample order): for each judge, each output, each verdict sample.
    pub fn requests(
        &self,
        item: &JudgeItem,
        outputs: &[String],
    ) -> Result<Vec<JudgeRequest>, RenderError> {
        let mut requests = Vec::new();
        for (j, judge) in self.judges.iter().enumerate() {
            for (o, output) in outputs.iter().enumerate() {
                let input = judge.input(item, o, output)?;
                for sample in 0..judge.n {
                    requests.push(JudgeRequest {
                        judge: j,
                        output: o,
                        request: InferenceRequest::new(
                            &judge.fingerprint,
                            item.doc_index,
                            RequestType::Generate,
                            input.clone(),
                            None,
                            judge.params.clone(),
                            sample,
                        ),
                    });
                }
            }
        }
        Ok(requests)
    }

    /// The grade judge `judge` reads in `verdict`.
    pub fn grade(&self, judge: usize, verdict: &str) -> Option<Grade> {
        self.judges.get(judge)?.grader.grade(verdict)
    }

    /// A document's score from judge `judge`'s grades: the mean of their
    /// values; `None` when no verdict gave a grade.
    pub fn score<'a>(
        &self,
        judge: usize,
        grades: impl IntoIterator<Item = &'a Grade>,
    ) -> Option<f64> {
        let grader = &self.judges.get(judge)?.grader;
        let values: Vec<f64> = grades.into_iter().filter_map(|g| grader.value(g)).collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    }
}

impl Judge {
    /// The judge model's input for output `index` of `item`.
    fn input(
        &self,
        item: &JudgeItem,
        index: usize,
        output: &str,
    ) -> Result<RenderedInput, RenderError> {
        let mut map = item.fields.clone();
        map.insert("doc".to_string(), Value::Object(item.fields.clone()));
        map.insert("output".to_string(), Value::String(output.to_string()));
        map.insert("output_index".to_string(), Value::from(index));
        map.insert("prompt".to_string(), Value::String(item.prompt.clone()));
        map.insert(
            "target".to_string(),
            item.target.clone().map_or(Value::Null, Value::String),
        );
        if let Some(choices) = &item.choices {
            map.insert(
                "choices".to_string(),
                Value::Array(choices.iter().cloned().map(Value::String).collect()),
            );
        }
        let ctx = JinjaValue::from_serialize(&map);
        let render = |name: &str| {
            let err = |reason: String| RenderError {
                template: format!("{}.{name}", self.field),
                row: item.row.clone(),
                doc_id: item.doc_id.clone(),
                reason,
            };
            self.env
                .get_template(name)
                .and_then(|t| t.render(&ctx))
                .map_err(|e| {
                    let mut reason = describe_error(&e);
                    if e.kind() == ErrorKind::UndefinedError {
                        let fields: Vec<&str> = item.fields.keys().map(String::as_str).collect();
                        reason.push_str(&format!(
                            "; a judge template sees the row's fields ({}) and doc, output, \
                             output_index, prompt, target, choices",
                            fields.join(", ")
                        ));
                    }
                    err(reason)
                })
        };
        let user = render(TEMPLATE)?;
        let system = if self.has_system {
            Some(render(SYSTEM)?)
        } else {
            None
        };
        if let Some(format) = &self.model.prompt_format {
            // The judge model's own prompt format, as the planner applies a
            // job's: the key hashes the text the model reads.
            let mut messages = Vec::new();
            if let Some(system) = system {
                messages.push(ChatMessage {
                    role: "system".to_string(),
                    content: system,
                });
            }
            messages.push(ChatMessage {
                role: "user".to_string(),
                content: user,
            });
            return Ok(RenderedInput::Prompt {
                prompt: format.apply(&messages),
            });
        }
        Ok(match self.model.endpoint {
            Endpoint::Completions => RenderedInput::Prompt {
                prompt: match system {
                    Some(system) => format!("{system}\n\n{user}"),
                    None => user,
                },
            },
            Endpoint::Chat => {
                let mut messages = Vec::new();
                if let Some(system) = system {
                    messages.push(ChatMessage {
                        role: "system".to_string(),
                        content: system,
                    });
                }
                messages.push(ChatMessage {
                    role: "user".to_string(),
                    content: user,
                });
                if self.model.system_role == SystemRole::Fold {
                    // A system turn always has the user turn after it.
                    messages = fold_system_turns(messages).unwrap_or_default();
                }
                RenderedInput::Messages { messages }
            }
        })
    }
}
