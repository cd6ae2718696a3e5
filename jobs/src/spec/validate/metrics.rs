//! `[[metrics]]`: each metric fits the task kind, has what it needs
//! (a target, a regex with a group) and a distinct name.

use std::collections::HashSet;

use super::super::error::SpecError;
use super::super::job::JobSpec;
use super::super::metrics::{metric_kind_name, MetricKind};
use super::super::task::TaskKind;

impl JobSpec {
    pub(super) fn validate_metrics(&self) -> Result<(), SpecError> {
        let kind = self.task.kind;
        let mut names = HashSet::new();
        for (i, m) in self.metrics.iter().enumerate() {
            let field = |f: &str| format!("metrics[{i}].{f}");
            let kind_name = metric_kind_name(m.kind);
            let fits = match m.kind {
                MetricKind::Acc | MetricKind::AccNorm => kind == TaskKind::MultipleChoice,
                MetricKind::ExactMatch
                | MetricKind::Contains
                | MetricKind::Regex
                | MetricKind::F1
                | MetricKind::ChoiceLetter => kind == TaskKind::Generate,
                // Checked with the judge's other options (validate/judge.rs).
                MetricKind::Judge => true,
            };
            if !fits {
                let accepted = match kind {
                    TaskKind::MultipleChoice => "acc, acc_norm",
                    TaskKind::Generate => "exact_match, contains, regex, choice_letter, f1, judge",
                };
                let task_kind = match kind {
                    TaskKind::MultipleChoice => "multiple_choice",
                    TaskKind::Generate => "generate",
                };
                return Err(SpecError::invalid(
                    field("type"),
                    format!(
                        "`{kind_name}` does not apply to `kind = \"{task_kind}\"` tasks; accepted \
                         metrics for this kind: {accepted}"
                    ),
                ));
            }
            // A judge may grade without a reference.
            if self.task.target.is_none() && m.kind != MetricKind::Judge {
                return Err(SpecError::invalid(
                    "task.target",
                    format!(
                        "metric `{kind_name}` compares against the reference: set `task.target`"
                    ),
                ));
            }
            match (m.kind, &m.pattern) {
                (MetricKind::Regex, None) => {
                    return Err(SpecError::invalid(
                        field("pattern"),
                        "a `regex` metric needs `pattern`, a regular expression whose first \
                         capture group is the answer, e.g. \"answer is (\\\\w+)\"",
                    ))
                }
                (MetricKind::Regex, Some(pattern)) => {
                    let re = regex::Regex::new(pattern).map_err(|e| {
                        SpecError::invalid(field("pattern"), format!("is not a valid regex: {e}"))
                    })?;
                    if re.captures_len() < 2 {
                        return Err(SpecError::invalid(
                            field("pattern"),
                            "needs a capture group, e.g. \"answer is (\\\\w+)\": its first group \
                             is compared with the target",
                        ));
                    }
                }
                // A judge's pattern finds the grade in a verdict.
                (MetricKind::Judge, _) => {}
                (_, Some(_)) => {
                    return Err(SpecError::invalid(
                        field("pattern"),
                        format!(
                            "is only used by `type = \"regex\"` and `\"judge\"`, not `{kind_name}`"
                        ),
                    ))
                }
                (_, None) => {}
            }
            if matches!(
                m.kind,
                MetricKind::Acc
                    | MetricKind::AccNorm
                    | MetricKind::ChoiceLetter
                    | MetricKind::Judge
            ) && !m.normalize.is_empty()
            {
                return Err(SpecError::invalid(
                    field("normalize"),
                    format!("does not apply to `{kind_name}`; remove it"),
                ));
            }
            let name = m.display_name();
            if name.trim().is_empty() {
                return Err(SpecError::invalid(field("name"), "must not be empty"));
            }
            if !names.insert(name.clone()) {
                return Err(SpecError::invalid(
                    field("name"),
                    format!(
                        "a metric named `{name}` is already defined; give each metric a distinct \
                         `name`"
                    ),
                ));
            }
        }
        Ok(())
    }
}
