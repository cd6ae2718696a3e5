//! Turning one dataset document into its inference requests: render the
//! templates, prepend few-shot examples, fold the system turn if asked, and
//! key every request.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use minijinja::value::{Value as JinjaValue, ValueKind};
use minijinja::{Environment, ErrorKind};
use serde_json::{Map, Value};

use crate::dataset::{read_jsonl_examples, Doc};
use crate::render::{resolve_gold, RenderError};
use crate::request::{
    ChatMessage, GenerationParams, InferenceRequest, ModelFingerprint, RenderedInput, RequestType,
};
use crate::spec::SpecError;
use crate::spec::{Endpoint, JobSpec, MetricKind, SystemRole, TargetKind, TaskKind};
use crate::template::{self, describe_error, letter_index};

const PROMPT: &str = "task.prompt";
const TARGET: &str = "task.target";
const CHOICES: &str = "task.choices";

/// Everything planned for one document.
#[derive(Clone, Debug, PartialEq)]
pub struct DocPlan {
    pub doc_index: u64,
    pub doc_id: String,
    pub subset: Option<String>,
    /// The rendered input as one string, for `samples.jsonl`.
    pub prompt_display: String,
    pub target: Option<String>,
    pub choices: Option<Vec<String>>,
    pub gold_index: Option<usize>,
    pub requests: Vec<InferenceRequest>,
}

/// A template source row: the dataset document or a few-shot example.
struct Row<'a> {
    fields: &'a Map<String, Value>,
    location: String,
    id: String,
}

/// Compiled templates and few-shot material for one job.
pub struct Planner {
    env: Environment<'static>,
    kind: TaskKind,
    endpoint: Endpoint,
    system_role: SystemRole,
    fingerprint: ModelFingerprint,
    params: GenerationParams,
    n: u32,
    target_delimiter: String,
    target_kind: TargetKind,
    choices_expr: Option<String>,
    has_target: bool,
    /// `choice_letter` needs a gold index even for generate tasks.
    needs_gold: bool,
    /// `(role, template name)` of each chat turn; empty in prompt mode.
    turns: Vec<(String, String)>,
    /// Chat turns for the few-shot examples (messages mode).
    fewshot_turns: Vec<ChatMessage>,
    /// Text put before the prompt (prompt mode): examples and separator.
    fewshot_prefix: String,
    dataset_path: PathBuf,
    /// Variables each template refers to, to name a missing one in errors.
    variables: HashMap<String, BTreeSet<String>>,
}

impl Planner {
    /// Compiles every template once and renders the few-shot examples.
    pub fn new(spec: &JobSpec) -> Result<Planner, SpecError> {
        spec.validate()?;
        let task = &spec.task;
        let mut env = template::template_env();
        let mut templates: Vec<(String, String)> = Vec::new();
        let mut turns = Vec::new();
        if let Some(prompt) = &task.prompt {
            templates.push((PROMPT.to_string(), prompt.clone()));
        }
        if let Some(messages) = &task.messages {
            for (i, m) in messages.iter().enumerate() {
                let name = format!("task.messages[{i}].content");
                templates.push((name.clone(), m.content.clone()));
                turns.push((m.role.clone(), name));
            }
        }
        if let Some(target) = &task.target {
            templates.push((TARGET.to_string(), target.clone()));
        }
        let mut variables = HashMap::new();
        for (name, source) in templates {
            env.add_template_owned(name.clone(), source).map_err(|e| {
                SpecError::invalid(
                    &name,
                    format!("template does not compile: {}", describe_error(&e)),
                )
            })?;
            if let Ok(t) = env.get_template(&name) {
                variables.insert(name, t.undeclared_variables(false).into_iter().collect());
            }
        }
        if let Some(expr) = &task.choices {
            let compiled = env.compile_expression(expr).map_err(|e| {
                SpecError::invalid(
                    CHOICES,
                    format!("is not a valid expression: {}", describe_error(&e)),
                )
            })?;
            variables.insert(
                CHOICES.to_string(),
                compiled.undeclared_variables(false).into_iter().collect(),
            );
        }
        let g = &task.generation;
        let mut planner = Planner {
            env,
            kind: task.kind,
            endpoint: spec.model.endpoint,
            system_role: spec.model.system_role,
            fingerprint: spec.model.fingerprint(),
            params: GenerationParams {
                max_tokens: g.max_tokens,
                temperature: g.temperature,
                top_p: g.top_p,
                stop: g.stop.clone(),
                seed: g.seed,
                extra_body: g.extra_body.clone(),
            },
            n: g.n,
            target_delimiter: task.target_delimiter.clone(),
            target_kind: task.target_kind,
            choices_expr: task.choices.clone(),
            has_target: task.target.is_some(),
            needs_gold: spec
                .metrics
                .iter()
                .any(|m| m.kind == MetricKind::ChoiceLetter),
            turns,
            fewshot_turns: Vec::new(),
            fewshot_prefix: String::new(),
            dataset_path: spec.dataset.path.clone(),
            variables,
        };
        if let Some(fewshot) = task.fewshot.as_ref().filter(|f| f.k > 0) {
            planner.load_fewshot(&fewshot.path, fewshot.k as usize, &task.fewshot_separator)?;
        }
        Ok(planner)
    }

    fn load_fewshot(&mut self, path: &Path, k: usize, separator: &str) -> Result<(), SpecError> {
        let examples = read_jsonl_examples(path)
            .map_err(|e| SpecError::invalid("task.fewshot.path", e.to_string()))?;
        if examples.len() < k {
            return Err(SpecError::invalid(
                "task.fewshot.k",
                format!(
                    "asks for {k} examples but {} has only {}",
                    path.display(),
                    examples.len()
                ),
            ));
        }
        let mut prompt_parts = Vec::new();
        for (i, fields) in examples.iter().take(k).enumerate() {
            let row = Row {
                fields,
                location: format!("{} (few-shot example {})", path.display(), i + 1),
                id: format!("fewshot-{i}"),
            };
            let to_spec = |e: RenderError| SpecError::invalid("task.fewshot", e.to_string());
            let choices = self.eval_choices(&row, false).map_err(to_spec)?;
            let ctx = self.context(&row, choices.as_deref());
            let target = self.render(TARGET, &ctx, &row).map_err(to_spec)?;
            if self.turns.is_empty() {
                let prompt = self.render(PROMPT, &ctx, &row).map_err(to_spec)?;
                let answer = match (&self.kind, &choices) {
                    (TaskKind::MultipleChoice, Some(choices)) => {
                        let gold = resolve_gold(&target, choices, self.target_kind)
                            .map_err(|reason| to_spec(gold_error(&row, reason)))?;
                        format!("{}{}", self.target_delimiter, choices[gold])
                    }
                    _ => format!("{}{target}", self.target_delimiter),
                };
                prompt_parts.push(format!("{prompt}{answer}"));
            } else {
                for (role, name) in self.turns.iter().filter(|(role, _)| role != "system") {
                    let content = self.render(name, &ctx, &row).map_err(to_spec)?;
                    self.fewshot_turns.push(ChatMessage {
                        role: role.clone(),
                        content,
                    });
                }
                self.fewshot_turns.push(ChatMessage {
                    role: "assistant".to_string(),
                    content: target,
                });
            }
        }
        if !prompt_parts.is_empty() {
            self.fewshot_prefix = prompt_parts.join(separator);
            self.fewshot_prefix.push_str(separator);
        }
        Ok(())
    }

    /// Renders one document into its requests.
    pub fn plan_doc(&self, doc: &Doc) -> Result<DocPlan, RenderError> {
        let row = Row {
            fields: &doc.fields,
            location: format!("{}:{}", self.dataset_path.display(), doc.line),
            id: doc.id.clone(),
        };
        let choices = self.eval_choices(&row, self.kind == TaskKind::MultipleChoice)?;
        let ctx = self.context(&row, choices.as_deref());
        let target = if self.has_target {
            Some(self.render(TARGET, &ctx, &row)?)
        } else {
            None
        };
        let gold: Result<usize, String> = match (&target, &choices) {
            (Some(t), Some(c)) => resolve_gold(t, c, self.target_kind),
            (Some(t), None) => t
                .trim()
                .parse::<usize>()
                .ok()
                .or_else(|| letter_index(t.trim()))
                .ok_or_else(|| format!("gold answer {t:?} is not a choice index or letter")),
            (None, _) => Err("the task has no `target` template".to_string()),
        };
        let gold_required = self.kind == TaskKind::MultipleChoice || self.needs_gold;
        let gold_index = match gold {
            Ok(i) => Some(i),
            Err(reason) if gold_required => return Err(gold_error(&row, reason)),
            Err(_) => None,
        };

        let (prompt_display, requests) = match self.kind {
            TaskKind::Generate => {
                let input = self.generate_input(&ctx, &row)?;
                let requests = (0..self.n)
                    .map(|sample| {
                        InferenceRequest::new(
                            &self.fingerprint,
                            doc.index,
                            RequestType::Generate,
                            input.clone(),
                            None,
                            self.params.clone(),
                            sample,
                        )
                    })
                    .collect();
                (input.display_text(), requests)
            }
            TaskKind::MultipleChoice => {
                let context = format!(
                    "{}{}",
                    self.fewshot_prefix,
                    self.render(PROMPT, &ctx, &row)?
                );
                let requests = choices
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .map(|choice| {
                        InferenceRequest::new(
                            &self.fingerprint,
                            doc.index,
                            RequestType::Loglikelihood,
                            RenderedInput::Prompt {
                                prompt: context.clone(),
                            },
                            Some(format!("{}{choice}", self.target_delimiter)),
                            self.params.clone(),
                            0,
                        )
                    })
                    .collect();
                (context, requests)
            }
        };
        Ok(DocPlan {
            doc_index: doc.index,
            doc_id: doc.id.clone(),
            subset: doc.subset.clone(),
            prompt_display,
            target,
            choices,
            gold_index,
            requests,
        })
    }

    fn generate_input(
        &self,
        ctx: &JinjaValue,
        row: &Row<'_>,
    ) -> Result<RenderedInput, RenderError> {
        if self.turns.is_empty() {
            let prompt = format!("{}{}", self.fewshot_prefix, self.render(PROMPT, ctx, row)?);
            return Ok(match self.endpoint {
                Endpoint::Completions => RenderedInput::Prompt { prompt },
                Endpoint::Chat => RenderedInput::Messages {
                    messages: self.fold(vec![ChatMessage {
                        role: "user".to_string(),
                        content: prompt,
                    }]),
                },
            });
        }
        let mut rendered = Vec::with_capacity(self.turns.len());
        for (role, name) in &self.turns {
            rendered.push(ChatMessage {
                role: role.clone(),
                content: self.render(name, ctx, row)?,
            });
        }
        let leading_system = rendered.iter().take_while(|m| m.role == "system").count();
        let rest = rendered.split_off(leading_system);
        rendered.extend(self.fewshot_turns.iter().cloned());
        rendered.extend(rest);
        Ok(RenderedInput::Messages {
            messages: self.fold(rendered),
        })
    }

    /// With `system_role = "fold"`, merges the leading system turns into the
    /// first user turn, for chat templates that have no system role.
    fn fold(&self, mut messages: Vec<ChatMessage>) -> Vec<ChatMessage> {
        if self.system_role != SystemRole::Fold {
            return messages;
        }
        let leading = messages.iter().take_while(|m| m.role == "system").count();
        if leading == 0 {
            return messages;
        }
        let rest = messages.split_off(leading);
        let system = messages
            .into_iter()
            .map(|m| m.content)
            .collect::<Vec<_>>()
            .join("\n\n");
        let mut out = rest;
        match out.first_mut() {
            Some(first) if first.role == "user" => {
                first.content = format!("{system}\n\n{}", first.content);
            }
            _ => out.insert(
                0,
                ChatMessage {
                    role: "user".to_string(),
                    content: system,
                },
            ),
        }
        out
    }

    /// The template context: row fields, `doc`, and `choices` when known.
    fn context(&self, row: &Row<'_>, choices: Option<&[String]>) -> JinjaValue {
        let mut map = row.fields.clone();
        map.insert("doc".to_string(), Value::Object(row.fields.clone()));
        if let Some(choices) = choices {
            map.insert(
                "choices".to_string(),
                Value::Array(choices.iter().cloned().map(Value::String).collect()),
            );
        }
        JinjaValue::from_serialize(&map)
    }

    /// Evaluates the `choices` expression. For generate tasks it is optional
    /// context; for multiple choice it must give a non-empty list.
    fn eval_choices(
        &self,
        row: &Row<'_>,
        required: bool,
    ) -> Result<Option<Vec<String>>, RenderError> {
        let Some(expr) = &self.choices_expr else {
            return Ok(None);
        };
        let ctx = self.context(row, None);
        let err = |reason: String| RenderError {
            template: CHOICES.to_string(),
            row: row.location.clone(),
            doc_id: row.id.clone(),
            reason,
        };
        let compiled = self
            .env
            .compile_expression(expr)
            .map_err(|e| err(describe_error(&e)))?;
        let value = compiled
            .eval(&ctx)
            .map_err(|e| err(self.explain(CHOICES, &e, row)))?;
        let not_a_list = || {
            err(format!(
                "must give a list of strings, got {} ({value})",
                value.kind()
            ))
        };
        // Strings and maps are iterable too, but a string of choices is
        // almost certainly a dataset mistake, not one choice per character.
        if !matches!(value.kind(), ValueKind::Seq | ValueKind::Iterable) {
            return Err(not_a_list());
        }
        let items = value.try_iter().map_err(|_| not_a_list())?;
        let mut choices = Vec::new();
        for item in items {
            if let Some(s) = item.as_str() {
                choices.push(s.to_string());
            } else if item.is_number() {
                choices.push(item.to_string());
            } else {
                return Err(err(format!(
                    "must give a list of strings, but item {} is {} ({item})",
                    choices.len(),
                    item.kind()
                )));
            }
        }
        if required && choices.is_empty() {
            return Err(err("gave an empty list of choices".to_string()));
        }
        Ok(Some(choices))
    }

    fn render(&self, name: &str, ctx: &JinjaValue, row: &Row<'_>) -> Result<String, RenderError> {
        let err = |reason: String| RenderError {
            template: name.to_string(),
            row: row.location.clone(),
            doc_id: row.id.clone(),
            reason,
        };
        let template = self
            .env
            .get_template(name)
            .map_err(|e| err(describe_error(&e)))?;
        template
            .render(ctx)
            .map_err(|e| err(self.explain(name, &e, row)))
    }

    /// minijinja's reason, plus the variables the row lacks when a variable
    /// was undefined (minijinja does not name it).
    fn explain(&self, name: &str, e: &minijinja::Error, row: &Row<'_>) -> String {
        let mut reason = describe_error(e);
        if e.kind() == ErrorKind::UndefinedError {
            let known = |v: &str| {
                row.fields.contains_key(v)
                    || matches!(v, "doc" | "choices" | "letters" | "loop" | "range")
            };
            let missing: Vec<&str> = self
                .variables
                .get(name)
                .into_iter()
                .flatten()
                .map(String::as_str)
                .filter(|v| !known(v))
                .collect();
            if !missing.is_empty() {
                let fields: Vec<&str> = row.fields.keys().map(String::as_str).collect();
                reason.push_str(&format!(
                    "; not in this row: {} (the row has: {})",
                    missing.join(", "),
                    fields.join(", ")
                ));
            }
        }
        reason
    }
}

fn gold_error(row: &Row<'_>, reason: String) -> RenderError {
    RenderError {
        template: TARGET.to_string(),
        row: row.location.clone(),
        doc_id: row.id.clone(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::DatasetReader;
    use std::io::Write;

    fn doc(index: u64, json: &str) -> Doc {
        let Value::Object(fields) = serde_json::from_str(json).unwrap() else {
            panic!("not an object")
        };
        Doc {
            index,
            line: index + 1,
            id: format!("d{index}"),
            subset: None,
            fields,
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        spec: JobSpec,
    }

    /// A spec over a temp folder holding `shots.jsonl`.
    fn fixture(toml_text: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut f = std::fs::File::create(dir.path().join("shots.jsonl")).unwrap();
        writeln!(
            f,
            r#"{{"q": "2+2?", "a": "4", "options": ["3", "4"], "gold": 1}}"#
        )
        .unwrap();
        writeln!(
            f,
            r#"{{"q": "Capital of Italy?", "a": "Rome", "options": ["Rome", "Oslo"], "gold": 0}}"#
        )
        .unwrap();
        writeln!(
            f,
            r#"{{"q": "unused", "a": "x", "options": ["x"], "gold": 0}}"#
        )
        .unwrap();
        let spec = JobSpec::from_toml_str(toml_text, "job.toml", Some(dir.path())).unwrap();
        Fixture { _dir: dir, spec }
    }

    const CHAT: &str = r#"
name = "t"
[model]
backend = "none"
model = "m"
[dataset]
path = "data.jsonl"
[task]
kind = "generate"
target = "{{ a }}"
[[task.messages]]
role = "system"
content = "Be brief."
[[task.messages]]
role = "user"
content = "Q: {{ q }}"
[task.fewshot]
path = "shots.jsonl"
k = 2
[[metrics]]
type = "exact_match"
"#;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    fn messages(req: &InferenceRequest) -> Vec<ChatMessage> {
        match &req.input {
            RenderedInput::Messages { messages } => messages.clone(),
            other => panic!("expected messages, got {other:?}"),
        }
    }

    #[test]
    fn messages_mode_with_fewshot() {
        let fx = fixture(CHAT);
        let planner = Planner::new(&fx.spec).unwrap();
        let plan = planner
            .plan_doc(&doc(0, r#"{"q": "Capital of France?", "a": "Paris"}"#))
            .unwrap();
        assert_eq!(plan.requests.len(), 1);
        assert_eq!(plan.target.as_deref(), Some("Paris"));
        assert_eq!(
            messages(&plan.requests[0]),
            vec![
                msg("system", "Be brief."),
                msg("user", "Q: 2+2?"),
                msg("assistant", "4"),
                msg("user", "Q: Capital of Italy?"),
                msg("assistant", "Rome"),
                msg("user", "Q: Capital of France?"),
            ]
        );
        assert!(plan
            .prompt_display
            .starts_with("[system] Be brief.\n[user] Q: 2+2?"));
        let r = &plan.requests[0];
        assert_eq!(
            (r.request_type, r.sample_index, r.doc_index),
            (RequestType::Generate, 0, 0)
        );
    }

    #[test]
    fn fold_merges_system_into_first_user_turn() {
        let fx = fixture(&CHAT.replace("model = \"m\"", "model = \"m\"\nsystem_role = \"fold\""));
        let planner = Planner::new(&fx.spec).unwrap();
        let plan = planner
            .plan_doc(&doc(0, r#"{"q": "x", "a": "y"}"#))
            .unwrap();
        let m = messages(&plan.requests[0]);
        assert_eq!(m.len(), 5);
        assert_eq!(m[0], msg("user", "Be brief.\n\nQ: 2+2?"));
        assert!(m.iter().all(|m| m.role != "system"));
        assert_eq!(m[4], msg("user", "Q: x"));
    }

    const PROMPT_MODE: &str = r#"
name = "t"
[model]
backend = "none"
model = "m"
endpoint = "completions"
[dataset]
path = "data.jsonl"
[task]
kind = "generate"
prompt = "Q: {{ q }}\nA:"
target = "{{ a }}"
fewshot_separator = "\n\n"
[task.fewshot]
path = "shots.jsonl"
k = 2
[task.generation]
n = 3
temperature = 0.7
seed = 5
"#;

    #[test]
    fn prompt_mode_fewshot_and_samples() {
        let fx = fixture(PROMPT_MODE);
        let planner = Planner::new(&fx.spec).unwrap();
        let plan = planner
            .plan_doc(&doc(4, r#"{"q": "Sky colour?", "a": "blue"}"#))
            .unwrap();
        let want = "Q: 2+2?\nA: 4\n\nQ: Capital of Italy?\nA: Rome\n\nQ: Sky colour?\nA:";
        assert_eq!(plan.prompt_display, want);
        assert_eq!(plan.requests.len(), 3);
        for (i, r) in plan.requests.iter().enumerate() {
            assert_eq!(
                r.input,
                RenderedInput::Prompt {
                    prompt: want.to_string()
                }
            );
            assert_eq!(r.sample_index, i as u32);
            assert_eq!(r.doc_index, 4);
            assert_eq!(r.params.temperature, 0.7);
            assert_eq!(r.params.seed, Some(5));
        }
        let keys: std::collections::HashSet<_> = plan.requests.iter().map(|r| &r.key).collect();
        assert_eq!(keys.len(), 3);

        // The chat endpoint sends the same text as one user message.
        let fx = fixture(&PROMPT_MODE.replace("endpoint = \"completions\"", "endpoint = \"chat\""));
        let plan2 = Planner::new(&fx.spec)
            .unwrap()
            .plan_doc(&doc(4, r#"{"q": "Sky colour?", "a": "blue"}"#))
            .unwrap();
        assert_eq!(messages(&plan2.requests[0]), vec![msg("user", want)]);
    }

    #[test]
    fn keys_are_stable_and_change_with_params() {
        let d = doc(0, r#"{"q": "a", "a": "b"}"#);
        let fx = fixture(PROMPT_MODE);
        let a = Planner::new(&fx.spec).unwrap().plan_doc(&d).unwrap();
        let b = Planner::new(&fx.spec).unwrap().plan_doc(&d).unwrap();
        assert_eq!(a.requests, b.requests);
        // The doc's position does not change its key (cache reuse across datasets).
        let moved = Planner::new(&fx.spec)
            .unwrap()
            .plan_doc(&doc(9, r#"{"q": "a", "a": "b"}"#))
            .unwrap();
        assert_eq!(a.requests[0].key, moved.requests[0].key);
        let fx2 = fixture(&PROMPT_MODE.replace("temperature = 0.7", "temperature = 0.8"));
        let c = Planner::new(&fx2.spec).unwrap().plan_doc(&d).unwrap();
        assert_ne!(a.requests[0].key, c.requests[0].key);
        let fx3 = fixture(&PROMPT_MODE.replace("model = \"m\"", "model = \"m2\""));
        let e = Planner::new(&fx3.spec).unwrap().plan_doc(&d).unwrap();
        assert_ne!(a.requests[0].key, e.requests[0].key);
    }

    const MC: &str = r#"
name = "mc"
[model]
backend = "none"
model = "m"
endpoint = "completions"
[dataset]
path = "data.jsonl"
[task]
kind = "multiple_choice"
prompt = "{% for c in choices %}{{ letters[loop.index0] }}. {{ c }}\n{% endfor %}Q: {{ q }}\nA:"
choices = "options"
target = "{{ gold }}"
[[metrics]]
type = "acc"
[[metrics]]
type = "acc_norm"
"#;

    #[test]
    fn multiple_choice_requests_and_gold() {
        let fx = fixture(MC);
        let planner = Planner::new(&fx.spec).unwrap();
        let plan = planner
            .plan_doc(&doc(
                0,
                r#"{"q": "Capital?", "options": ["Paris", "Rome"], "gold": "B"}"#,
            ))
            .unwrap();
        assert_eq!(plan.prompt_display, "A. Paris\nB. Rome\nQ: Capital?\nA:");
        assert_eq!(
            plan.choices,
            Some(vec!["Paris".to_string(), "Rome".to_string()])
        );
        assert_eq!(plan.gold_index, Some(1));
        assert_eq!(plan.requests.len(), 2);
        assert_eq!(plan.requests[0].request_type, RequestType::Loglikelihood);
        assert_eq!(plan.requests[0].continuation.as_deref(), Some(" Paris"));
        assert_eq!(plan.requests[1].continuation.as_deref(), Some(" Rome"));
        assert_ne!(plan.requests[0].key, plan.requests[1].key);
        for (gold, want) in [("0", 0), ("Rome", 1), ("a", 0)] {
            let d = doc(
                0,
                &format!(r#"{{"q": "x", "options": ["Paris", "Rome"], "gold": "{gold}"}}"#),
            );
            assert_eq!(
                planner.plan_doc(&d).unwrap().gold_index,
                Some(want),
                "{gold}"
            );
        }
        let d = doc(
            2,
            r#"{"q": "x", "options": ["Paris", "Rome"], "gold": "Berlin"}"#,
        );
        let e = planner.plan_doc(&d).unwrap_err();
        assert_eq!(e.template, "task.target");
        assert!(e.row.ends_with("data.jsonl:3"), "{e}");
        assert!(e.to_string().contains("\"Berlin\""), "{e}");
        let d = doc(0, r#"{"q": "x", "options": "Paris", "gold": 0}"#);
        let e = planner.plan_doc(&d).unwrap_err();
        assert_eq!(e.template, "task.choices");

        // Few-shot in prompt mode appends the gold choice text.
        let fx = fixture(&MC.replace(
            "[[metrics]]\ntype = \"acc\"",
            "[task.fewshot]\npath = \"shots.jsonl\"\nk = 1\n[[metrics]]\ntype = \"acc\"",
        ));
        let plan = Planner::new(&fx.spec)
            .unwrap()
            .plan_doc(&doc(
                0,
                r#"{"q": "Capital?", "options": ["Paris", "Rome"], "gold": 0}"#,
            ))
            .unwrap();
        assert!(
            plan.prompt_display
                .starts_with("A. 3\nB. 4\nQ: 2+2?\nA: 4\n\nA. Paris"),
            "{}",
            plan.prompt_display
        );
    }

    #[test]
    fn missing_field_names_template_row_and_field() {
        let fx = fixture(CHAT);
        let planner = Planner::new(&fx.spec).unwrap();
        let e = planner
            .plan_doc(&doc(6, r#"{"question": "x", "a": "y"}"#))
            .unwrap_err();
        assert_eq!(e.template, "task.messages[1].content");
        assert_eq!(e.doc_id, "d6");
        let text = e.to_string();
        assert!(
            text.contains("data.jsonl:7: template `task.messages[1].content`"),
            "{text}"
        );
        assert!(text.contains("undefined"), "{text}");
        assert!(
            text.contains("not in this row: q (the row has: question, a)"),
            "{text}"
        );
    }

    #[test]
    fn missing_fewshot_file_is_a_spec_error() {
        let fx = fixture(&CHAT.replace("shots.jsonl", "nope.jsonl"));
        let e = Planner::new(&fx.spec).err().unwrap().to_string();
        assert!(
            e.contains("`task.fewshot.path`") && e.contains("nope.jsonl"),
            "{e}"
        );
        let fx = fixture(&CHAT.replace("k = 2", "k = 9"));
        let e = Planner::new(&fx.spec).err().unwrap().to_string();
        assert!(e.contains("asks for 9 examples"), "{e}");
    }

    #[test]
    fn example_jobs_plan_every_doc() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        for (name, docs, per_doc) in [("quickstart", 60, 1), ("mmlu-style", 30, 4)] {
            let spec = JobSpec::from_toml_file(&root.join(name).join("job.toml")).unwrap();
            let planner = Planner::new(&spec).unwrap();
            let reader = DatasetReader::open(&spec.dataset).unwrap();
            let mut count = 0;
            let mut ids = std::collections::HashSet::new();
            for d in reader {
                let d = d.unwrap();
                let plan = planner
                    .plan_doc(&d)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(plan.requests.len(), per_doc, "{name} {}", d.id);
                assert!(plan.subset.is_some());
                assert!(ids.insert(d.id.clone()), "duplicate id {}", d.id);
                if spec.task.kind == TaskKind::MultipleChoice {
                    assert!(plan.gold_index.is_some());
                } else {
                    assert_eq!(messages(&plan.requests[0]).len(), 6);
                }
                count += 1;
            }
            assert_eq!(count, docs, "{name}");
        }
    }
}
