//! Turning one dataset document into its inference requests: render the
//! templates, prepend few-shot examples, fold the system turn if asked, and
//! key every request.
//!
//! One file per step: `fewshot` renders the examples once, `doc` turns a
//! document into its requests, `templates` evaluates and explains the
//! templates for one row.

mod doc;
mod fewshot;
mod templates;

pub(crate) use doc::fold_system_turns;

use std::collections::{BTreeSet, HashMap};

use minijinja::Environment;
use serde_json::{Map, Value};

use crate::dataset::ReadPolicy;
use crate::render::RenderError;
use crate::request::{
    ChatMessage, GenerationParams, InferenceRequest, ModelFingerprint, RenderedInput,
};
use crate::spec::SpecError;
use crate::spec::{Endpoint, JobSpec, MetricKind, PromptFormat, SystemRole, TargetKind, TaskKind};
use crate::template::{self, describe_error};

const PROMPT: &str = "task.prompt";
const TARGET: &str = "task.target";
const CHOICES: &str = "task.choices";

/// Everything planned for one document.
#[derive(Clone, Debug, PartialEq)]
pub struct DocPlan {
    pub doc_index: u64,
    pub doc_id: String,
    pub subset: Option<String>,
    /// The document's input as planned: a generate request's messages or
    /// prompt, a multiple-choice question's context.
    pub prompt: RenderedInput,
    pub target: Option<String>,
    pub choices: Option<Vec<String>>,
    pub gold_index: Option<usize>,
    pub requests: Vec<InferenceRequest>,
}

impl DocPlan {
    /// The input as one string (`[role] content` lines for messages), for
    /// messages and hashes.
    pub fn prompt_display(&self) -> String {
        self.prompt.display_text()
    }
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
    /// `[model.prompt_format]`: chat turns become one prompt.
    prompt_format: Option<PromptFormat>,
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
    /// Variables each template refers to, to name a missing one in errors.
    variables: HashMap<String, BTreeSet<String>>,
}

impl Planner {
    /// Compiles every template once and renders the few-shot examples.
    /// The planner of `spec`; its few-shot file is read under `policy`.
    pub fn new(spec: &JobSpec, policy: &ReadPolicy) -> Result<Planner, SpecError> {
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
            let compiled = template::compile_expression(&env, expr).map_err(|e| {
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
            prompt_format: spec.model.prompt_format.clone(),
            fingerprint: spec.model.fingerprint(),
            params: g.params(),
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
            variables,
        };
        if let Some(fewshot) = task.fewshot.as_ref().filter(|f| f.k > 0) {
            planner.load_fewshot(
                &fewshot.path,
                fewshot.k as usize,
                &task.fewshot_separator,
                policy,
            )?;
        }
        Ok(planner)
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
mod tests;
