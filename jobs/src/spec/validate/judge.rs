//! `type = "judge"` metrics: a grading template that compiles, one way to
//! read a grade (labels or a numeric range, optionally through `pattern`),
//! an aggregation that fits it, and a judge model checked like `[model]`;
//! and no judge option on a metric of another type.

use regex::Regex;

use super::super::error::SpecError;
use super::super::job::JobSpec;
use super::super::metrics::{metric_kind_name, JudgeAggregate, MetricKind, MetricSpec};
use super::super::model::BackendKind;
use super::super::task::{MessageTemplate, TaskKind};
use super::check_template;
use crate::template;

impl SpecError {
    /// The same error with its field path moved from `from` to `to`
    /// (`model.base_url` → `metrics[0].model.base_url`), for a section
    /// checked by the validator of another.
    fn rerooted(self, from: &str, to: &str) -> SpecError {
        match self {
            SpecError::Invalid {
                origin,
                field,
                location,
                message,
            } => SpecError::Invalid {
                origin,
                field: match field.strip_prefix(from) {
                    Some(rest) => format!("{to}{rest}"),
                    None => field,
                },
                location,
                message,
            },
            other => other,
        }
    }
}

impl JobSpec {
    pub(super) fn validate_judges(&self, submitted: bool) -> Result<(), SpecError> {
        for (i, m) in self.metrics.iter().enumerate() {
            let field = |f: &str| format!("metrics[{i}].{f}");
            if m.kind != MetricKind::Judge {
                refuse_judge_options(m, &field)?;
                continue;
            }
            if self.task.kind != TaskKind::Generate {
                return Err(SpecError::invalid(
                    field("type"),
                    "a judge grades generated text; it does not apply to `kind = \
                     \"multiple_choice\"` tasks",
                ));
            }
            if m.name.is_none() {
                return Err(SpecError::invalid(
                    field("name"),
                    "a judge metric needs a `name` (its column in results, e.g. \"correctness\")",
                ));
            }
            let Some(source) = &m.template else {
                return Err(SpecError::invalid(
                    field("template"),
                    "a judge needs `template`, the grading prompt, e.g. \"Question: {{ question \
                     }}\\nAnswer: {{ output }}\\nReference: {{ target }}\\nReply CORRECT or \
                     INCORRECT.\"",
                ));
            };
            check_template(&template::template_env(), &field("template"), source)?;
            if let Some(system) = &m.system {
                check_template(&template::template_env(), &field("system"), system)?;
            }
            self.validate_grade(m, &field)?;
            let Some(model) = &m.model else {
                return Err(SpecError::invalid(
                    field("model"),
                    "a judge needs `[metrics.model]`, the judge model (the same settings as \
                     `[model]`: backend, model, base_url, ...)",
                ));
            };
            if model.backend == BackendKind::None {
                return Err(SpecError::invalid(
                    field("model.backend"),
                    "a judge needs a model that answers: `openai`, `openai-batch` or `engine`",
                ));
            }
            // The judge's model and sampling are checked by the validators
            // of `[model]` and `[task.generation]`, on a spec that has them
            // in those places; their errors are then named under the metric.
            let mut as_main = self.clone();
            as_main.model = (**model).clone();
            as_main.task.kind = TaskKind::Generate;
            as_main.task.generation = m.generation.clone().unwrap_or_default();
            // A judge is sent chat messages: its prompt, after a system turn.
            as_main.task.prompt = None;
            as_main.task.messages = Some(vec![MessageTemplate {
                role: "user".to_string(),
                content: source.clone(),
            }]);
            as_main
                .validate_model()
                .and_then(|()| as_main.validate_engine(submitted))
                .and_then(|()| as_main.validate_model_templates(submitted))
                .map_err(|e| {
                    e.rerooted("model", &field("model"))
                        .rerooted("task.generation", &field("generation"))
                })?;
            as_main
                .validate_generation()
                .map_err(|e| e.rerooted("task.generation", &field("generation")))?;
        }
        Ok(())
    }

    /// How a verdict becomes a grade, and grades a score.
    fn validate_grade(
        &self,
        m: &MetricSpec,
        field: &dyn Fn(&str) -> String,
    ) -> Result<(), SpecError> {
        if let Some(pattern) = &m.pattern {
            let re = Regex::new(pattern).map_err(|e| {
                SpecError::invalid(field("pattern"), format!("is not a valid regex: {e}"))
            })?;
            if re.captures_len() < 2 {
                return Err(SpecError::invalid(
                    field("pattern"),
                    "needs a capture group, e.g. \"GRADE: ([A-Z]+)\": its first group is the grade",
                ));
            }
        }
        match (m.labels.is_empty(), m.range) {
            (true, None) => {
                return Err(SpecError::invalid(
                    field("labels"),
                    "a judge needs the grades it may give: `labels = [\"CORRECT\", \
                     \"INCORRECT\"]`, or a numeric `range = [1, 10]`",
                ))
            }
            (false, Some(_)) => {
                return Err(SpecError::invalid(
                    field("range"),
                    "set either `labels` or `range`, not both",
                ))
            }
            _ => {}
        }
        if let Some([low, high]) = m.range {
            if !(low.is_finite() && high.is_finite() && low < high) {
                return Err(SpecError::invalid(
                    field("range"),
                    format!("[{low}, {high}] must be two finite numbers, the lower first"),
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (j, label) in m.labels.iter().enumerate() {
            if label.trim().is_empty() || label.trim() != label {
                return Err(SpecError::invalid(
                    field(&format!("labels[{j}]")),
                    "must be non-empty text without spaces around it",
                ));
            }
            if !seen.insert(label.to_lowercase()) {
                return Err(SpecError::invalid(
                    field(&format!("labels[{j}]")),
                    format!("{label:?} is listed twice (labels are matched ignoring case)"),
                ));
            }
        }
        for (label, score) in &m.label_scores {
            if !m.labels.contains(label) {
                return Err(SpecError::invalid(
                    field("label_scores"),
                    format!("{label:?} is not one of `labels`"),
                ));
            }
            if !score.is_finite() {
                return Err(SpecError::invalid(
                    field(&format!("label_scores.{label}")),
                    "must be a finite number",
                ));
            }
        }
        match m.judge_aggregate() {
            JudgeAggregate::Share => {
                if m.labels.is_empty() {
                    return Err(SpecError::invalid(
                        field("aggregate"),
                        "`share` counts a label: it needs `labels` (use `mean` with `range`)",
                    ));
                }
                if let Some(label) = &m.share_label {
                    if !m.labels.contains(label) {
                        return Err(SpecError::invalid(
                            field("share_label"),
                            format!("{label:?} is not one of `labels`"),
                        ));
                    }
                }
            }
            JudgeAggregate::Mean => {
                if let Some(missing) = m.labels.iter().find(|l| !m.label_scores.contains_key(*l)) {
                    return Err(SpecError::invalid(
                        field("label_scores"),
                        format!(
                            "`mean` over labels needs a score for each: {missing:?} has none \
                             (e.g. label_scores = {{ CORRECT = 1.0, INCORRECT = 0.0 }}), or use \
                             `aggregate = \"share\"`"
                        ),
                    ));
                }
                if m.share_label.is_some() {
                    return Err(SpecError::invalid(
                        field("share_label"),
                        "is only read with `aggregate = \"share\"`",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A metric of another type with a judge's option set: say which.
fn refuse_judge_options(m: &MetricSpec, field: &dyn Fn(&str) -> String) -> Result<(), SpecError> {
    let set = [
        ("template", m.template.is_some()),
        ("system", m.system.is_some()),
        ("labels", !m.labels.is_empty()),
        ("range", m.range.is_some()),
        ("aggregate", m.aggregate.is_some()),
        ("share_label", m.share_label.is_some()),
        ("label_scores", !m.label_scores.is_empty()),
        ("model", m.model.is_some()),
        ("generation", m.generation.is_some()),
    ];
    match set.into_iter().find(|(_, on)| *on) {
        Some((name, _)) => Err(SpecError::invalid(
            field(name),
            format!(
                "is only used by `type = \"judge\"`, not `{}`",
                metric_kind_name(m.kind)
            ),
        )),
        None => Ok(()),
    }
}
